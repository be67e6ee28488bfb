//! How both binaries end: one mapping from what went wrong to an exit code.

use std::process::ExitCode;

/// What a command's failure was, for its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Bad input: a workflow, a flag, a file or a reference that does not hold (exit 2).
    Usage,
    /// The command ran and failed: a node failed, a store or a server refused (exit 1).
    Failed,
    /// Stopped by Ctrl-C or a signal (exit 130, as a shell reports SIGINT).
    Cancelled,
}

impl Exit {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Usage => 2,
            Self::Failed => 1,
            Self::Cancelled => 130,
        }
    }

    /// The exit code a `scorch-worker` (or any child following this mapping) ended with, as
    /// this kind; `None` for success or a code outside the mapping.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            2 => Some(Self::Usage),
            1 => Some(Self::Failed),
            130 => Some(Self::Cancelled),
            _ => None,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> Self {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for e in [Exit::Usage, Exit::Failed, Exit::Cancelled] {
            assert_eq!(Exit::from_code(i32::from(e.code())), Some(e));
        }
        assert_eq!(Exit::from_code(0), None);
    }
}
