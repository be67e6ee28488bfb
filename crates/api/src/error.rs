use std::fmt;

/// What went wrong in a plugin run, in broad classes the engine acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum PluginErrorKind {
    /// An input artifact was missing, unreadable or not of the declared shape.
    Input,
    /// An output was not written, written twice, or did not match its declaration.
    Output,
    /// A filesystem or object-store operation failed.
    Io,
    /// The run was cancelled (Ctrl-C or a failing sibling); never retried.
    Cancelled,
    /// The plugin's own work failed (a bad external command, a diverging model...).
    Failed,
}

impl fmt::Display for PluginErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Input => "input error",
            Self::Output => "output error",
            Self::Io => "I/O error",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        })
    }
}

/// An error returned by a plugin's run.
#[derive(Debug, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct PluginError {
    /// The class of the failure.
    pub kind: PluginErrorKind,
    /// A sentence for the user: what failed, and where.
    pub message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl PluginError {
    /// A new error of `kind`.
    pub fn new(kind: PluginErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }
    /// The plugin's work failed.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::new(PluginErrorKind::Failed, message)
    }
    /// The run was cancelled.
    pub fn cancelled() -> Self {
        Self::new(PluginErrorKind::Cancelled, "the run was cancelled")
    }
    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }
    /// An I/O failure with context.
    pub fn io(
        context: impl fmt::Display,
        err: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self::new(PluginErrorKind::Io, format!("{context}: {err}")).with_source(err)
    }
    /// Whether retrying can help (everything but cancellation).
    pub fn is_retryable(&self) -> bool {
        self.kind != PluginErrorKind::Cancelled
    }
}

/// A parameter that does not fit the plugin's declared parameter type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", if path.is_empty() { String::new() } else { format!("at `{path}`: ") })]
pub struct ParamError {
    /// Dotted path inside `params` (`optimizer.lr`, `columns.0`); empty for the whole object.
    pub path: String,
    /// What is wrong.
    pub message: String,
    /// A hint for the user, such as the closest valid field name.
    pub hint: Option<String>,
}

impl ParamError {
    /// A new error at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
            hint: None,
        }
    }
    /// Add a hint.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}
