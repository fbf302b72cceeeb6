use super::format::{BlobKind, Id};
use crate::store::StoreError;

/// Errors of repository operations. Each says what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no repository at {url}")]
    NotInitialized { url: String },
    #[error("a repository already exists at {url}")]
    AlreadyInitialized { url: String },
    #[error("repository format version {version} is not supported by this version of Lifeline")]
    UnsupportedVersion { version: u32 },
    #[error("wrong key: the passphrase does not open any key slot at {url}")]
    WrongKey { url: String },
    #[error("no restore points at {url}")]
    NoSnapshots { url: String },
    #[error("no restore point {name:?} at {url}")]
    SnapshotNotFound { name: String, url: String },
    #[error("restore point prefix {name:?} is ambiguous")]
    AmbiguousSnapshot { name: String },
    #[error("{kind:?} blob {id:?} is missing from the index")]
    MissingBlob { kind: BlobKind, id: Id },
    #[error("corrupted data: {kind:?} blob {id:?} in pack {pack:?} failed verification ({detail})")]
    BadBlob { kind: BlobKind, id: Id, pack: Id, detail: String },
    #[error("corrupted {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("repository at {url} is locked: {detail}")]
    Locked { url: String, detail: String },
    #[error(
        "the {operation} at {url} lost its lock (it expired and a prune removed it: was the process paused or cut off for more than 5 minutes?); nothing was recorded"
    )]
    LockLost { url: String, operation: String },
    #[error("failed to {action} {path}: {source}")]
    Io { action: &'static str, path: String, source: std::io::Error },
    #[error("target {path} is not empty")]
    TargetNotEmpty { path: String },
    #[error("what was restored into {path} differs from the restore point: {detail}")]
    CheckFailed { path: String, detail: String },
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
            Self::MissingBlob { .. } | Self::BadBlob { .. } | Self::Corrupt { .. } | Self::CheckFailed { .. } => {
                "Corrupted"
            }
            Self::Locked { .. } | Self::LockLost { .. } => "Locked",
            Self::Io { .. } => "IoError",
            Self::TargetNotEmpty { .. } | Self::Invalid(_) => "InvalidArgument",
            Self::Encode(_) => "Internal",
        }
    }

    /// What the user can do about it, in words that fit a terminal and a Kubernetes
    /// Event alike: the messages say what happened, hints what to do.
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Store(e) => e.hint(),
            Self::NotInitialized { .. } => "initialise the location first (an empty location holds no repository)",
            Self::AlreadyInitialized { .. } => "open the existing repository instead, or use an empty location",
            Self::UnsupportedVersion { .. } => "upgrade Lifeline to a version that reads this repository",
            Self::WrongKey { .. } => "use the passphrase the repository was created with, or a key added to it",
            Self::NoSnapshots { .. } => "run a backup first",
            Self::SnapshotNotFound { .. } => "list the restore points at the location and use one of their ids",
            Self::AmbiguousSnapshot { .. } => "give more characters of the restore point's id",
            Self::MissingBlob { .. } | Self::BadBlob { .. } | Self::Corrupt { .. } => {
                "verify the repository to see what is affected; a repair rebuilds the index and sets damaged restore points aside"
            }
            Self::Locked { .. } => "another operation holds the repository: retry when it has finished",
            Self::LockLost { .. } => "run the operation again",
            Self::Io { .. } => "check the local path and its permissions",
            Self::TargetNotEmpty { .. } => "restore into an empty directory, or allow overwriting",
            Self::CheckFailed { .. } => {
                "the target's storage lost or changed what was written, or something else writes to it: restore again into a new volume"
            }
            Self::Invalid(_) => "fix the argument the message names",
            Self::Encode(_) => "this is a bug in Lifeline: please report it with the message",
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
