//! Rendering workflow diagnostics with miette: file, line and column, a caret, the key path
//! and a hint.

use std::io::IsTerminal;

use std::sync::Arc;

use miette::{
    Diagnostic, GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError,
    MietteSpanContents, Severity, SourceCode, SourceSpan, SpanContents,
};
use scorch_engine::error::{self, WorkflowError};
use scorch_engine::workflow::Workflow;

/// A workflow's text with an index of its line starts: a snippet is read from the lines
/// around its span, not from the start of the file, and the text is shared by every
/// diagnostic, so a file with thousands of problems renders in time linear in their number.
#[derive(Debug, Clone)]
struct Source {
    name: String,
    text: Arc<str>,
    line_starts: Arc<Vec<usize>>,
}

impl Source {
    fn new(name: &str, text: &str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            name: name.to_owned(),
            text: Arc::from(text),
            line_starts: Arc::new(line_starts),
        }
    }

    /// The 0-based line holding byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1)
    }
}

impl SourceCode for Source {
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        context_lines_before: usize,
        context_lines_after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        // The lines miette would read, cut out, read by miette itself, and put back in place.
        let first = self
            .line_of(span.offset())
            .saturating_sub(context_lines_before);
        let last =
            self.line_of(span.offset() + span.len().saturating_sub(1)) + context_lines_after + 1;
        let start = self.line_starts[first];
        let end = self
            .line_starts
            .get(last + 1)
            .copied()
            .unwrap_or(self.text.len());
        let window = &self.text.as_bytes()[start..end];
        let inner = SourceSpan::new((span.offset() - start).into(), span.len());
        let read = window.read_span(&inner, context_lines_before, context_lines_after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            read.data(),
            SourceSpan::new((read.span().offset() + start).into(), read.span().len()),
            read.line() + first,
            read.column(),
            read.line_count() + first,
        )))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct Rendered {
    message: String,
    code: String,
    src: Source,
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
    let source = Source::new(file, text);
    let nothing = Source::new(file, "");
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
            src: if long {
                nothing.clone()
            } else {
                source.clone()
            },
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A diagnostic on `src` with labels at `spans`.
    #[derive(Debug, thiserror::Error)]
    #[error("problem")]
    struct On<S: SourceCode + std::fmt::Debug + 'static> {
        src: S,
        spans: Vec<(usize, usize)>,
    }

    impl<S: SourceCode + std::fmt::Debug + 'static> Diagnostic for On<S> {
        fn source_code(&self) -> Option<&dyn SourceCode> {
            Some(&self.src)
        }
        fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
            Some(Box::new(self.spans.iter().map(|&(o, l)| {
                LabeledSpan::new_with_span(Some("here".into()), SourceSpan::new(o.into(), l))
            })))
        }
    }

    fn draw(d: &dyn Diagnostic) -> String {
        let mut out = String::new();
        GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_context_lines(1)
            .render_report(&mut out, d)
            .unwrap();
        out
    }

    #[test]
    fn snippets_from_the_line_index_equal_miettes_own() {
        let text = "nodes:\n  a:\n    kind: rollout\n    params: {x: 1}\n\n  b:\r\n    kind: sft\nlast line";
        let cases = [
            vec![(0, 5)],
            vec![(9, 1)],
            vec![(13, 4), (40, 3)],
            vec![(29, 20)],
            vec![(text.len() - 4, 4)],
            vec![(text.len() - 1, 1)],
            vec![(52, 1), (0, 1)],
            vec![(61, 3)],
        ];
        for spans in cases {
            let ours = On {
                src: Source::new("wf.yaml", text),
                spans: spans.clone(),
            };
            let theirs = On {
                src: miette::NamedSource::new("wf.yaml", text.to_owned()),
                spans: spans.clone(),
            };
            assert_eq!(draw(&ours), draw(&theirs), "spans {spans:?}");
        }
    }
}
