//! Where the diagnostics of one load gather, each placed at its key path in the file.

use std::collections::HashMap;

use crate::error::{Diagnostic, ErrorKind};
use crate::yaml::SpanIndex;

pub(super) struct Ctx<'a> {
    pub(super) index: &'a SpanIndex,
    /// The file's text, to see which variables a value refers to.
    pub(super) text: &'a str,
    /// The `--set PATH=VALUE`s applied, as `(PATH, the whole flag)`: a problem in a value one
    /// of them wrote is placed at the flag, not in the file.
    pub(super) sets: Vec<(String, String)>,
    pub(super) diags: Vec<Diagnostic>,
    /// What may be wrong but does not stop a load (a local file that is not there yet).
    pub(super) warnings: Vec<Diagnostic>,
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

    /// A warning at `path`, placed like a diagnostic.
    pub(super) fn warn(
        &mut self,
        kind: ErrorKind,
        path: &str,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.add(kind, path, message, hint, false);
        if let Some(d) = self.diags.pop() {
            self.warnings.push(d);
        }
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
        let message = message.into();
        if let Some(flag) = self.set_behind(&path, span) {
            // The value came from the command line: say so first, and show where the file
            // uses it only as context.
            let mut d = Diagnostic::new(kind, format!("`--set {flag}`: {message}"))
                .at(path.clone())
                .hint(hint);
            let direct = self.sets.iter().any(|(p, _)| is_under(&path, p));
            if let Some(s) = span.filter(|_| !direct) {
                d.related.push((s, "the variable is used here".to_owned()));
            }
            self.diags.push(d);
            return;
        }
        self.diags.push(
            Diagnostic::new(kind, message)
                .at(path)
                .spanned(span)
                .hint(hint),
        );
    }

    /// The `--set` flag that wrote the value at `path`: one whose path is `path` or above it,
    /// or one of a variable that the file's value at `span` refers to (`${vars.NAME}`).
    fn set_behind(&self, path: &str, span: Option<crate::yaml::Span>) -> Option<&str> {
        if let Some((_, flag)) = self.sets.iter().find(|(p, _)| is_under(path, p)) {
            return Some(flag);
        }
        // Only a scalar's text: a mapping that mentions the variable somewhere is not the
        // value that is wrong.
        let written = span
            .and_then(|s| self.text.get(s.offset..s.offset + s.len))
            .filter(|w| !w.contains('\n') && !w.starts_with(['{', '[']))?;
        self.sets.iter().find_map(|(p, flag)| {
            let name = p.strip_prefix("vars.")?;
            let refers = written.contains(&format!("${{vars.{name}}}"))
                || written.contains(&format!("${{vars.{name}."));
            refers.then_some(flag.as_str())
        })
    }

    fn file_path(&self, path: &str) -> String {
        if let Some(rest) = path.strip_prefix("nodes.") {
            // The instance id is `rest` up to one of its dots (a matrix value may hold dots
            // too: `eval[lr=0.5]`), the longest that is an instance; looked up, not searched,
            // so a file with thousands of problems is placed in linear time.
            let ends = rest
                .match_indices('.')
                .map(|(i, _)| i)
                .chain(std::iter::once(rest.len()));
            let found = ends
                .filter_map(|end| Some((end, self.bases.get(&rest[..end])?)))
                .next_back();
            if let Some((end, base)) = found
                && base != &rest[..end]
            {
                return format!("nodes.{base}{}", &rest[end..]);
            }
        }
        path.to_owned()
    }
}

/// Whether key path `path` is `set` or lies under it.
fn is_under(path: &str, set: &str) -> bool {
    path == set
        || path
            .strip_prefix(set)
            .is_some_and(|rest| rest.starts_with('.'))
}
