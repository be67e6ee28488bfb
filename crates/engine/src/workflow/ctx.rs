//! Where the diagnostics of one load gather, each placed at its key path in the file.

use std::collections::HashMap;

use crate::error::{Diagnostic, ErrorKind};
use crate::yaml::SpanIndex;

pub(super) struct Ctx<'a> {
    pub(super) index: &'a SpanIndex,
    pub(super) diags: Vec<Diagnostic>,
    /// instance id → base id
    pub(super) bases: HashMap<String, String>,
}

impl Ctx<'_> {
    /// A diagnostic at `path` (instance ids mapped back to the file's ids), pointing at the
    /// value there.
    pub(super) fn push(
        &mut self,
        kind: ErrorKind,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.add(kind, path, message, hint, false);
    }

    /// A diagnostic at `path`, pointing at the key (the name is wrong, not the value).
    pub(super) fn push_at_key(
        &mut self,
        kind: ErrorKind,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.add(kind, path, message, hint, true);
    }

    pub(super) fn add(
        &mut self,
        kind: ErrorKind,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
        at_key: bool,
    ) {
        let path = self.file_path(path);
        let place = self.index.nearest(&path);
        let span = place.map(|(p, pl)| {
            if at_key || p != path {
                pl.key.unwrap_or(pl.value)
            } else {
                pl.value
            }
        });
        let span = match (place, at_key) {
            (Some((p, pl)), false) if p == path => Some(pl.value),
            _ => span,
        };
        self.diags.push(
            Diagnostic::new(kind, message)
                .at(path)
                .spanned(span)
                .hint(hint),
        );
    }

    fn file_path(&self, path: &str) -> String {
        if let Some(rest) = path.strip_prefix("nodes.") {
            for (inst, base) in &self.bases {
                if inst != base
                    && let Some(after) = rest.strip_prefix(inst.as_str())
                    && (after.is_empty() || after.starts_with('.'))
                {
                    return format!("nodes.{base}{after}");
                }
            }
        }
        path.to_owned()
    }
}
