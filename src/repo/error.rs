use super::format::{BlobKind, Id};
use crate::store::StoreError;

/// Errors of repository operations. Each says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no repository at {url}: run `lifeline repo init {url}` first")]
    NotInitialized { url: String },
    #[error("a repository already exists at {url}")]
    AlreadyInitialized { url: String },
    #[error("repository format version {version} is not supported by this lifeline; upgrade lifeline")]
    UnsupportedVersion { version: u32 },
    #[error("wrong key: the passphrase (LIFELINE_PASSWORD or --password-file) does not open any key slot at {url}")]
    WrongKey { url: String },
    #[error("no restore points at {url}")]
    NoSnapshots { url: String },
    #[error("no restore point {name:?} at {url}: list them with `lifeline repo points {url}`")]
    SnapshotNotFound { name: String, url: String },
    #[error("restore point prefix {name:?} is ambiguous: give more characters")]
    AmbiguousSnapshot { name: String },
    #[error("{kind:?} blob {id:?} is missing from the index: run `lifeline repo verify`")]
    MissingBlob { kind: BlobKind, id: Id },
    #[error("corrupted data: {kind:?} blob {id:?} in pack {pack:?} failed verification ({detail})")]
    BadBlob { kind: BlobKind, id: Id, pack: Id, detail: String },
    #[error("corrupted {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("repository at {url} is locked: {detail}")]
    Locked { url: String, detail: String },
    #[error(
        "the {operation} at {url} lost its lock (it expired and a prune removed it: was the process paused or cut off for more than 5 minutes?); nothing was recorded, run it again"
    )]
    LockLost { url: String, operation: String },
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
    #[error("target {path} is not empty: restore into an empty directory, or pass --overwrite")]
    TargetNotEmpty { path: String },
    #[error("{0}")]
    Invalid(String),
    #[error("failed to encode: {0}")]
    Encode(String),
}

impl RepoError {
    pub fn corrupt(what: &str, e: impl std::fmt::Display) -> Self {
        Self::Corrupt { what: what.to_string(), detail: e.to_string() }
    }

    pub fn encode(e: impl std::fmt::Display) -> Self {
        Self::Encode(e.to_string())
    }

    pub fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        Self::Io { action, path: path.display().to_string(), source }
    }

    /// A stable category for result files and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Store(e) => e.category(),
            Self::NotInitialized { .. } => "NotInitialized",
            Self::AlreadyInitialized { .. } => "AlreadyInitialized",
            Self::UnsupportedVersion { .. } => "UnsupportedVersion",
            Self::WrongKey { .. } => "WrongKey",
            Self::NoSnapshots { .. } | Self::SnapshotNotFound { .. } | Self::AmbiguousSnapshot { .. } => "NotFound",
            Self::MissingBlob { .. } | Self::BadBlob { .. } | Self::Corrupt { .. } => "Corrupted",
            Self::Locked { .. } | Self::LockLost { .. } => "Locked",
            Self::Io { .. } => "IoError",
            Self::TargetNotEmpty { .. } | Self::Invalid(_) => "InvalidArgument",
            Self::Encode(_) => "Internal",
        }
    }

    /// Worth retrying later.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.retryable(),
            Self::Locked { .. } | Self::LockLost { .. } => true,
            _ => false,
        }
    }
}
