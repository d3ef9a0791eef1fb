//! What can go wrong talking to a registry.

use std::time::Duration;

use reqwest::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{op}: cannot reach {host}: {detail}")]
    Transport {
        op: String,
        host: String,
        detail: String,
    },
    #[error("{op}: {host} answered {status}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Status {
        op: String,
        host: String,
        status: StatusCode,
        code: Option<String>,
        message: Option<String>,
        retry_after: Option<Duration>,
    },
    #[error(
        "{op}: {host} rejected the credentials{}",
        detail.as_deref().map(|m| format!(": {m}")).unwrap_or_default()
    )]
    Unauthorized {
        op: String,
        host: String,
        detail: Option<String>,
    },
    #[error("blob {expected} is corrupt in the layout: its content hashes to {actual}")]
    CorruptBlob { expected: String, actual: String },
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Login(String),
}

impl RegistryError {
    pub(crate) fn is_transient(&self) -> bool {
        match self {
            RegistryError::Transport { .. } => true,
            RegistryError::Status { status, .. } => {
                status.is_server_error()
                    || *status == StatusCode::TOO_MANY_REQUESTS
                    || *status == StatusCode::REQUEST_TIMEOUT
            }
            _ => false,
        }
    }

    /// The registry's error code (`TAG_INVALID`, `MANIFEST_BLOB_UNKNOWN`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            RegistryError::Status { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// A tag that already points at another image in a repository that does not
/// let tags move.
#[derive(Debug, thiserror::Error)]
#[error(
    "tag {tag:?} of {repository} is immutable and points at {existing}; refusing to move it to {wanted}"
)]
pub struct ImmutableTag {
    pub repository: String,
    pub tag: String,
    pub existing: String,
    pub wanted: String,
}
