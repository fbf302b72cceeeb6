//! What can go wrong in a reconcile, by class: an invalid or impossible spec (reported,
//! then waiting for a change), a transient failure (retried with back-off), or a data-path
//! error carried with its category.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("failed to {action}: {source}")]
    Kube {
        action: String,
        #[source]
        source: Box<kube::Error>,
    },
    /// A repository or store call failed.
    #[error("failed to {action}: {source}")]
    Repo {
        action: String,
        #[source]
        source: Box<crate::repo::RepoError>,
    },
    /// The spec names something that does not exist or cannot work.
    #[error("{0}")]
    Invalid(String),
    /// The spec would cross a namespace boundary without a grant (see
    /// [`super::grants`]): reported like an invalid spec, with its own reason.
    #[error("{0}")]
    NotPermitted(String),
}

impl Error {
    pub fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let action = action.into();
        move |source| Error::Kube { action, source: Box::new(source) }
    }

    pub fn repo(action: impl Into<String>) -> impl FnOnce(crate::repo::RepoError) -> Error {
        let action = action.into();
        move |source| Error::Repo { action, source: Box::new(source) }
    }

    /// A stable name for metric labels and Event reasons.
    pub fn category(&self) -> &'static str {
        match self {
            Error::Kube { source, .. } => match source.as_ref() {
                kube::Error::Api(s) if s.code == 403 => "Forbidden",
                kube::Error::Api(s) if s.code == 409 => "Conflict",
                kube::Error::Api(_) => "ApiError",
                _ => "ApiUnreachable",
            },
            Error::Repo { source, .. } => source.category(),
            Error::Invalid(_) => "InvalidSpec",
            Error::NotPermitted(_) => crate::k8s::events::NOT_PERMITTED,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
