//! The one error type of the program and the exit-code table it maps to.
//!
//! | code | meaning |
//! | ---- | ------- |
//! | 0    | done (also when stdout was closed early by the reader) |
//! | 1    | failed while working: network, gateway refusal, response verification, I/O |
//! | 2    | usage or configuration error found before any request was sent |
//! | 3    | a batch finished but some rows failed or have an unknown outcome |
//! | 130  | interrupted (Ctrl-C, SIGTERM); progress is saved |

use std::fmt;
use std::io;
use std::process::ExitCode;

use crate::gateway::CallError;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug)]
pub enum Error {
    /// Bad flags or arguments (exit 2).
    Usage(String),
    /// Missing or invalid configuration: app id, keys, certificates (exit 2). Never holds key material.
    Config(String),
    /// A file or stream operation failed; `context` says which file and what we were doing.
    Io { context: String, source: io::Error },
    /// The gateway call failed (transport, HTTP status, gateway code, verification).
    Gateway(CallError),
    /// Any other failure while working, already phrased for the user (exit 1).
    Failed(String),
    /// Stopped by Ctrl-C or SIGTERM after saving what was done; says how to continue (exit 130).
    Interrupted(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            Error::Usage(_) | Error::Config(_) => 2,
            Error::Io { .. } | Error::Gateway(_) | Error::Failed(_) => 1,
            Error::Interrupted(_) => 130,
        })
    }

    /// True when the error is stdout being closed by its reader (`alipaylife export -o - | head`).
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Usage(msg)
            | Error::Config(msg)
            | Error::Failed(msg)
            | Error::Interrupted(msg) => f.write_str(msg),
            Error::Io { context, source } => {
                write!(f, "{context}: {source}")?;
                if source.raw_os_error() == Some(28) {
                    f.write_str(" (the disk is full: free some space and run the command again)")?;
                }
                Ok(())
            }
            Error::Gateway(err) => write!(f, "{err}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<CallError> for Error {
    fn from(err: CallError) -> Error {
        Error::Gateway(err)
    }
}
