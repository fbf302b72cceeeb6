//! The one bridge from async controller code to the synchronous data path.
//!
//! Repository and store calls block, and the store drives object storage on its own
//! runtime: on a reconciler's thread that panics ("Cannot start a runtime from within a
//! runtime") or stalls the executor. Light calls (open a repository, list its points,
//! forget one) go through [`run`], which moves them to tokio's blocking pool; heavy
//! ones run in mover Jobs.

use crate::repo::RepoError;

/// Runs a blocking data-path call off the async executor and waits for it.
pub async fn run<T, F>(f: F) -> Result<T, RepoError>
where
    F: FnOnce() -> Result<T, RepoError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(RepoError::Invalid(format!("the repository call was cancelled: {e}"))),
    }
}
