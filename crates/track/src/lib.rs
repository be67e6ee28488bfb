//! scorch's trackers: observers of a run ([`scorch_engine::events::Observer`]) that send its
//! params, metrics and logs to the tools researchers watch experiments in, as the run goes.
//! They are set in a workflow's `trackers:` or with `scorch run --tracker`; they watch, and
//! never change what a run computes or its cache keys.
#![deny(missing_docs)]

pub mod mlflow;
pub mod tensorboard;

use std::path::PathBuf;
use std::sync::Arc;

use scorch_engine::events::Observer;
use scorch_engine::spec::{MlflowSpec, TensorBoardSpec, TrackersSpec};
use scorch_engine::store::Store;

/// A tracker that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum TrackError {
    /// The TensorBoard folder cannot be made.
    #[error("cannot create the TensorBoard folder {}", dir.display())]
    TensorBoard {
        /// The folder.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The MLflow server does not answer as one.
    #[error("MLflow at {uri}: {source}")]
    Mlflow {
        /// The server.
        uri: String,
        /// The request that failed.
        source: mlflow::ApiError,
    },
    /// A tracker's thread cannot start.
    #[error("cannot start a tracker's thread")]
    Thread {
        /// Why.
        source: std::io::Error,
    },
    /// A `--tracker` flag that is not `tensorboard=DIR` or `mlflow=URI`.
    #[error("`--tracker {0}`: expected `tensorboard=DIR` or `mlflow=URI`")]
    Flag(String),
}

/// The trackers of `spec` with the `--tracker` flags applied (a flag replaces the
/// workflow's tracker of the same kind).
pub fn with_flags(spec: &TrackersSpec, flags: &[String]) -> Result<TrackersSpec, TrackError> {
    let mut spec = spec.clone();
    for flag in flags {
        match flag.split_once('=') {
            Some(("tensorboard", dir)) if !dir.is_empty() => {
                spec.tensorboard = Some(TensorBoardSpec {
                    dir: dir.to_owned(),
                });
            }
            Some(("mlflow", uri)) if !uri.is_empty() => {
                spec.mlflow = Some(MlflowSpec {
                    uri: uri.to_owned(),
                    experiment: spec.mlflow.as_ref().and_then(|m| m.experiment.clone()),
                });
            }
            _ => return Err(TrackError::Flag(flag.clone())),
        }
    }
    Ok(spec)
}

/// Start the trackers of `spec` for a run of `workflow` on `store`.
pub async fn start(
    spec: &TrackersSpec,
    workflow: &str,
    store: &Store,
) -> Result<Vec<Arc<dyn Observer>>, TrackError> {
    let mut out: Vec<Arc<dyn Observer>> = Vec::new();
    if let Some(tb) = &spec.tensorboard {
        out.push(Arc::new(tensorboard::TensorBoard::new(&tb.dir)?));
    }
    if let Some(m) = &spec.mlflow {
        let experiment = m.experiment.as_deref().unwrap_or(workflow);
        out.push(Arc::new(
            mlflow::Mlflow::connect(&m.uri, experiment, store.clone()).await?,
        ));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_flag_replaces_the_workflows_tracker_of_its_kind() {
        let wf = TrackersSpec {
            tensorboard: Some(TensorBoardSpec { dir: "tb".into() }),
            mlflow: Some(MlflowSpec {
                uri: "http://a".into(),
                experiment: Some("exp".into()),
            }),
        };
        let s = with_flags(&wf, &["mlflow=http://b".into()]).unwrap();
        assert_eq!(s.tensorboard, wf.tensorboard);
        let m = s.mlflow.unwrap();
        assert_eq!(
            (m.uri.as_str(), m.experiment.as_deref()),
            ("http://b", Some("exp"))
        );
        assert!(matches!(
            with_flags(&wf, &["wandb=x".into()]),
            Err(TrackError::Flag(_))
        ));
    }
}
