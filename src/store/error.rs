use std::fmt;

/// Why a storage operation failed, with what the user can do about it.
#[derive(Debug, Clone)]
pub enum StoreError {
    NotFound {
        url: String,
        key: String,
    },
    AlreadyExists {
        url: String,
        key: String,
    },
    /// The bucket or container does not exist.
    BucketMissing {
        url: String,
        detail: String,
    },
    /// Credentials were refused or lack a permission.
    PermissionDenied {
        url: String,
        key: String,
        detail: String,
    },
    /// The service could not be reached or failed transiently.
    Unreachable {
        url: String,
        detail: String,
    },
    /// The URL or its options are wrong.
    Config {
        url: String,
        detail: String,
    },
    Other {
        url: String,
        detail: String,
    },
}

impl StoreError {
    /// Worth retrying with backoff.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// A short machine-readable category, for metrics labels and result files.
    pub fn category(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "NotFound",
            Self::AlreadyExists { .. } => "AlreadyExists",
            Self::BucketMissing { .. } => "BucketMissing",
            Self::PermissionDenied { .. } => "PermissionDenied",
            Self::Unreachable { .. } => "LocationUnreachable",
            Self::Config { .. } => "InvalidLocation",
            Self::Other { .. } => "StorageError",
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// What the user should do, in words that fit a terminal and a Kubernetes Event
    /// alike (no command line).
    pub fn hint(&self) -> &'static str {
        match self {
            Self::NotFound { .. } => "the object is missing: verify the repository to see what is affected",
            Self::AlreadyExists { .. } => {
                "objects are never overwritten; if this is a fresh location, another repository is already there"
            }
            Self::BucketMissing { .. } => "create the bucket (Lifeline never creates buckets) or fix the URL",
            Self::PermissionDenied { .. } => {
                "check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the location's Secret) and the bucket policy"
            }
            Self::Unreachable { .. } => "check the endpoint, network and TLS settings; the operation can be retried",
            Self::Config { .. } => "fix the location URL or its options",
            Self::Other { .. } => "see the detail; the operation can be retried",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { url, key } => write!(f, "object {key} not found at {url}"),
            Self::AlreadyExists { url, key } => write!(f, "object {key} already exists at {url}"),
            Self::BucketMissing { url, detail } => write!(f, "bucket of {url} does not exist: {detail}"),
            Self::PermissionDenied { url, key, detail } => write!(f, "permission denied for {key} at {url}: {detail}"),
            Self::Unreachable { url, detail } => write!(f, "location {url} is unreachable: {detail}"),
            Self::Config { url, detail } => write!(f, "invalid location {url}: {detail}"),
            Self::Other { url, detail } => write!(f, "storage error at {url}: {detail}"),
        }
    }
}

impl std::error::Error for StoreError {}
