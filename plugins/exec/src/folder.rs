//! The `folder` plugin: publish a local folder (a base checkpoint, a data set) as a blob set,
//! so downstream nodes depend on its contents.

use std::path::Path;

use schemars::JsonSchema;
use scorch_api::reexports::async_trait;
use scorch_api::{NodeContext, ParamError, Plugin, PluginError, PortType, Signature};
use serde::{Deserialize, Serialize};

/// The `folder` plugin.
#[derive(Debug, Clone, Copy, Default)]
pub struct Folder;

/// Params of `folder`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FolderParams {
    /// The folder, relative to the workflow file.
    pub path: String,
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<u64> {
    let mut n = 0;
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        let target = to.join(entry.file_name());
        if ty.is_dir() {
            n += copy_tree(&entry.path(), &target)?;
        } else {
            // A hard link when the file system allows it; the store copies the bytes anyway.
            if std::fs::hard_link(entry.path(), &target).is_err() {
                std::fs::copy(entry.path(), &target)?;
            }
            n += 1;
        }
    }
    Ok(n)
}

#[async_trait]
impl Plugin for Folder {
    type Params = FolderParams;
    fn kind(&self) -> &'static str {
        "folder"
    }
    fn version(&self) -> &'static str {
        "1"
    }
    fn description(&self) -> &'static str {
        "Publishes a local folder (a base checkpoint, a data set) as a blob set"
    }
    fn signature(&self, p: &FolderParams) -> Result<Signature, ParamError> {
        if p.path.trim().is_empty() {
            return Err(ParamError::new("path", "give the folder to publish"));
        }
        Ok(Signature::new()
            .output("folder", PortType::Blobs)
            .reads_local("path", &p.path)
            .model(scorch_api::ModelSource::Folder(p.path.clone())))
    }
    async fn run(&self, p: FolderParams, ctx: &NodeContext) -> Result<(), PluginError> {
        let from = ctx.workflow_dir().join(&p.path);
        if !from.is_dir() {
            return Err(PluginError::failed(format!(
                "{} is not a folder",
                from.display()
            )));
        }
        let to = ctx.blob_dir("folder")?;
        let n = ctx
            .blocking(move || {
                copy_tree(&from, &to).map_err(|e| PluginError::io("copying the folder", e))
            })
            .await?;
        ctx.metric("files", n as f64);
        Ok(())
    }
}
