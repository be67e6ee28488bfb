//! Why a request to an OpenAI-compatible endpoint failed, by class: the transport (the
//! connection was refused, reset or timed out, or the body was cut off), an HTTP status, or a
//! reply that is not a chat completion (an HTML error page a proxy sent with status 200,
//! JSON without `choices`). Each keeps its source; [`EndpointError::retryable`] says which
//! a retry may cure.

/// A failed endpoint request.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The request or its reply did not get through.
    #[error("{url}: {cause} (after {attempts} attempt(s))")]
    Transport {
        /// The URL.
        url: String,
        /// What happened: `connection refused`, `connection reset`, `timed out`, `body cut
        /// off`, ...
        cause: String,
        /// Attempts made.
        attempts: u32,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status.
    #[error("{url}: HTTP {status} (after {attempts} attempt(s)): {body}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The start of the reply's body.
        body: String,
        /// Attempts made.
        attempts: u32,
    },
    /// The reply is not a chat completion.
    #[error("{url}: the reply is not a chat completion: {what} (after {attempts} attempt(s))")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong with it, and how it began.
        what: String,
        /// Attempts made.
        attempts: u32,
    },
    /// Not sent: the client is not usable (a missing API key, a closed client).
    #[error("{0}")]
    Setup(String),
}

impl EndpointError {
    /// Whether another attempt may succeed: transport failures, malformed replies, 408, 429
    /// and 5xx; not other statuses (a bad request stays bad) or setup errors.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Protocol { .. } => true,
            Self::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            Self::Setup(_) => false,
        }
    }

    /// The same error, counting `attempts`.
    pub fn after(mut self, n: u32) -> Self {
        match &mut self {
            Self::Transport { attempts, .. }
            | Self::Status { attempts, .. }
            | Self::Protocol { attempts, .. } => *attempts = n,
            Self::Setup(_) => {}
        }
        self
    }
}

/// What a transport error was, from the innermost I/O error of its chain where there is one.
pub fn transport_cause(e: &reqwest::Error) -> String {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    let mut io = None;
    while let Some(s) = source {
        if let Some(x) = s.downcast_ref::<std::io::Error>() {
            io = Some(x.kind());
        }
        source = s.source();
    }
    let what = match io {
        Some(std::io::ErrorKind::ConnectionRefused) => "connection refused",
        Some(std::io::ErrorKind::ConnectionReset) => "connection reset",
        Some(std::io::ErrorKind::ConnectionAborted) => "connection aborted",
        Some(std::io::ErrorKind::TimedOut) => "timed out",
        Some(std::io::ErrorKind::UnexpectedEof) => "connection closed early",
        _ if e.is_timeout() => "timed out",
        _ if e.is_connect() => "could not connect",
        _ if e.is_body() || e.is_decode() => "reply body cut off",
        _ => "request failed",
    };
    // The innermost message says the rest (`Connection refused (os error 111)`).
    let mut inner = e.to_string();
    let mut s: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(x) = s {
        inner = x.to_string();
        s = x.source();
    }
    format!("{what}: {inner}")
}
