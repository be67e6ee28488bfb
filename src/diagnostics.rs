//! Rendering workflow diagnostics with miette: file, line and column, a caret, the key path
//! and a hint.

use std::io::IsTerminal;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource, Severity,
    SourceSpan,
};
use scorch_engine::error::{self, WorkflowError};
use scorch_engine::workflow::Workflow;

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Rendered {
    message: String,
    code: String,
    src: NamedSource<String>,
    labels: Vec<LabeledSpan>,
    help: Option<String>,
    severity: Severity,
}

impl Diagnostic for Rendered {
    fn code<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        Some(Box::new(&self.code))
    }
    fn severity(&self) -> Option<Severity> {
        Some(self.severity)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        Some(&self.src)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn help<'a>(&'a self) -> Option<Box<dyn std::fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn std::fmt::Display>)
    }
}

fn handler() -> GraphicalReportHandler {
    let color = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let theme = if color {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    GraphicalReportHandler::new_themed(theme).with_context_lines(1)
}

/// Longest source line shown as a snippet: miette's graphical handler panics on columns
/// past 65,535, and a caret under a line this long helps nobody anyway.
const MAX_SNIPPET_LINE: usize = 4_096;

/// The length of the line of `text` that holds byte `offset`.
fn line_len_at(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    let start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    end - start
}

/// Every diagnostic of `err`, rendered for a terminal or a log. A diagnostic on a line over
/// [`MAX_SNIPPET_LINE`] bytes is printed without its snippet: file:line:col, message, key
/// path and hint.
pub fn render(err: &WorkflowError) -> String {
    render_list(
        &err.file,
        &err.source_text,
        &err.diagnostics,
        Severity::Error,
    )
}

/// A loaded workflow's warnings, rendered like [`render`]'s errors.
pub fn render_warnings(wf: &Workflow) -> String {
    render_list(
        &wf.file.display().to_string(),
        &wf.source_text,
        &wf.warnings,
        Severity::Warning,
    )
}

fn render_list(
    file: &str,
    text: &str,
    diagnostics: &[error::Diagnostic],
    severity: Severity,
) -> String {
    let handler = handler();
    let mut out = String::new();
    for d in diagnostics {
        let mut labels = Vec::new();
        if let Some(s) = d.span {
            let text = match (&d.label, &d.path) {
                (Some(l), Some(p)) => format!("{l} (at `{p}`)"),
                (Some(l), None) => l.clone(),
                (None, Some(p)) if !p.is_empty() => format!("at `{p}`"),
                (None, Some(_)) => String::new(),
                (None, None) => String::new(),
            };
            labels.push(LabeledSpan::new_primary_with_span(
                Some(text),
                SourceSpan::new(s.offset.into(), s.len.max(1)),
            ));
        }
        for (s, text) in &d.related {
            labels.push(LabeledSpan::new_with_span(
                Some(text.clone()),
                SourceSpan::new(s.offset.into(), s.len.max(1)),
            ));
        }
        let long = d
            .span
            .iter()
            .map(|s| s.offset)
            .chain(d.related.iter().map(|(s, _)| s.offset))
            .any(|o| line_len_at(text, o) > MAX_SNIPPET_LINE);
        if long {
            labels.clear();
        }
        let mut help = d.hint.clone();
        if (d.span.is_none() || long)
            && let Some(p) = &d.path
        {
            help = Some(match help {
                Some(h) => format!("at `{p}`: {h}"),
                None => format!("at `{p}`"),
            });
        }
        let message = match d.span {
            Some(s) => format!("{}:{}:{}: {}", file, s.line, s.column, d.message),
            None => format!("{}: {}", file, d.message),
        };
        let rendered = Rendered {
            message,
            code: format!("scorch::workflow::{}", d.kind.code()),
            src: NamedSource::new(file, if long { String::new() } else { text.to_owned() }),
            labels,
            help,
            severity,
        };
        if handler.render_report(&mut out, &rendered).is_err() {
            out.push_str(&rendered.message);
        }
        out.push('\n');
    }
    out
}
