//! Errors: workflow diagnostics (bad input, exit code 2) and engine errors (a failed run, exit 1).

use std::fmt;
use std::sync::Arc;

use crate::yaml::Span;

/// The class of a workflow diagnostic; [`code`](ErrorKind::code) is stable for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The file cannot be read.
    Io,
    /// Not valid YAML.
    Syntax,
    /// Valid YAML of the wrong shape.
    Structure,
    /// A key the workflow format does not have.
    UnknownField,
    /// A required key is missing.
    MissingField,
    /// A value of the wrong type.
    InvalidType,
    /// A node id that is not an identifier.
    InvalidId,
    /// Two nodes with one id.
    DuplicateNode,
    /// A mapping with a key twice.
    DuplicateKey,
    /// `${...}` names a variable that is not set.
    UnsetVariable,
    /// A bad `matrix:`.
    InvalidMatrix,
    /// A bad `--set`.
    InvalidSet,
    /// No plugin of that kind.
    UnknownPlugin,
    /// Params rejected by the plugin.
    InvalidParam,
    /// A reference to a node that does not exist.
    UnknownNode,
    /// A reference to an output the producer does not have.
    UnknownOutput,
    /// An input the plugin does not take.
    UnknownInput,
    /// A required input not connected.
    MissingInput,
    /// A malformed or ambiguous `from:`.
    InvalidReference,
    /// The producer's output does not fit the consumer's input.
    SchemaMismatch,
    /// The nodes' references form a cycle.
    Cycle,
    /// A node needs more of a resource than the run has.
    Resources,
    /// A node named on the command line does not exist.
    UnknownTarget,
    /// A local file a node reads is not there (a warning).
    MissingFile,
    /// An environment variable that decides what the workflow means is bad.
    Environment,
}

impl ErrorKind {
    /// A stable identifier, `scorch::workflow::<kind>`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Io => "io",
            Self::Syntax => "syntax",
            Self::Structure => "structure",
            Self::UnknownField => "unknown-field",
            Self::MissingField => "missing-field",
            Self::InvalidType => "invalid-type",
            Self::InvalidId => "invalid-id",
            Self::DuplicateNode => "duplicate-node",
            Self::DuplicateKey => "duplicate-key",
            Self::UnsetVariable => "unset-variable",
            Self::InvalidMatrix => "invalid-matrix",
            Self::InvalidSet => "invalid-set",
            Self::UnknownPlugin => "unknown-plugin",
            Self::InvalidParam => "invalid-param",
            Self::UnknownNode => "unknown-node",
            Self::UnknownOutput => "unknown-output",
            Self::UnknownInput => "unknown-input",
            Self::MissingInput => "missing-input",
            Self::InvalidReference => "invalid-reference",
            Self::SchemaMismatch => "schema-mismatch",
            Self::Cycle => "cycle",
            Self::Resources => "resources",
            Self::UnknownTarget => "unknown-target",
            Self::MissingFile => "missing-file",
            Self::Environment => "environment",
        }
    }
}

/// One problem in a workflow file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// The class of problem.
    pub kind: ErrorKind,
    /// What is wrong.
    pub message: String,
    /// The key path (`nodes.rl.inputs.model.from`).
    pub path: Option<String>,
    /// Where in the file.
    pub span: Option<Span>,
    /// A short label under the caret.
    pub label: Option<String>,
    /// How to fix it.
    pub hint: Option<String>,
    /// Other places worth showing (the first of two duplicates, say).
    pub related: Vec<(Span, String)>,
}

impl Diagnostic {
    /// A diagnostic without a place.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            path: None,
            span: None,
            label: None,
            hint: None,
            related: Vec::new(),
        }
    }
    /// Set the key path.
    pub fn at(mut self, path: impl Into<String>) -> Self {
        self.path = Some(path.into());
        self
    }
    /// Set the span.
    pub fn spanned(mut self, span: Option<Span>) -> Self {
        self.span = span;
        self
    }
    /// Set the label.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }
    /// Set the hint.
    pub fn hint(mut self, hint: Option<String>) -> Self {
        self.hint = hint;
        self
    }
}

/// A workflow file that cannot run, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct WorkflowError {
    /// The file as given on the command line.
    pub file: String,
    /// Its text.
    pub source_text: Arc<str>,
    /// The problems.
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for WorkflowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            match d.span {
                Some(s) => write!(f, "{}:{}:{}: ", self.file, s.line, s.column)?,
                None => write!(f, "{}: ", self.file)?,
            }
            write!(f, "{}", d.message)?;
            if let Some(p) = &d.path {
                write!(f, " (at `{p}`)")?;
            }
            if let Some(h) = &d.hint {
                write!(f, "; {h}")?;
            }
        }
        Ok(())
    }
}

/// What an engine failure is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EngineErrorKind {
    /// Bad command-line input (exit 2).
    Usage,
    /// The artifact store failed.
    Store,
    /// Local files failed.
    Io,
    /// A stored record is corrupt or of an unknown format.
    Corrupt,
    /// Something that should not happen.
    Internal,
}

/// The plain meaning of an S3 error code found in `text`, if it is one of the usual ones.
fn s3_meaning(text: &str) -> Option<&'static str> {
    const CODES: &[(&str, &str)] = &[
        (
            "NoSuchBucket",
            "the bucket does not exist (create it, or check the name in the store URL)",
        ),
        (
            "InvalidAccessKeyId",
            "the server does not know this access key (check AWS_ACCESS_KEY_ID)",
        ),
        (
            "SignatureDoesNotMatch",
            "the server refused the credentials: the secret key does not match (check AWS_SECRET_ACCESS_KEY)",
        ),
        (
            "AccessDenied",
            "access denied: these credentials may not use this bucket",
        ),
        (
            "ExpiredToken",
            "the session token has expired (renew AWS_SESSION_TOKEN)",
        ),
    ];
    CODES
        .iter()
        .find(|(code, _)| text.contains(&format!("<Code>{code}</Code>")) || text.contains(code))
        .map(|(_, what)| *what)
}

/// A failure of the engine itself (not of a node).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct EngineError {
    /// What it is about.
    pub kind: EngineErrorKind,
    /// A sentence for the user.
    pub message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl EngineError {
    /// A new error.
    pub fn new(kind: EngineErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }
    /// Bad command-line input.
    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(EngineErrorKind::Usage, message)
    }
    /// A store failure with context.
    pub fn store(
        context: impl fmt::Display,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        let text = err.to_string();
        // S3 answers the usual mistakes with an XML body: say what it means instead.
        let message = if let Some(what) = s3_meaning(&text) {
            format!("{context}: {what}")
        } else {
            format!("{context}: {text}")
        };
        Self {
            kind: EngineErrorKind::Store,
            message,
            source: Some(Box::new(err)),
        }
    }
    /// A local I/O failure with context.
    pub fn io(
        context: impl fmt::Display,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind: EngineErrorKind::Io,
            message: format!("{context}: {err}"),
            source: Some(Box::new(err)),
        }
    }
}

/// The one conversion at the engine/plugin border: a store failure is an I/O error of the
/// node, anything else a failure; the engine error stays as the source.
impl From<EngineError> for scorch_api::PluginError {
    fn from(e: EngineError) -> Self {
        let kind = if e.kind == EngineErrorKind::Store {
            scorch_api::PluginErrorKind::Io
        } else {
            scorch_api::PluginErrorKind::Failed
        };
        scorch_api::PluginError::new(kind, e.message.clone()).with_source(e)
    }
}
