//! Forget (retention) and two-phase prune.

use super::format::{Id, PruneMark};
use super::{RepoError, Repository};
use std::collections::HashSet;

/// Packs a prune has marked for deletion: writers must not reuse them.
pub fn marked_packs(repo: &Repository) -> Result<HashSet<Id>, RepoError> {
    let mut out = HashSet::new();
    for (_, mark) in marks(repo)? {
        out.extend(mark.packs);
    }
    Ok(out)
}

pub fn marks(repo: &Repository) -> Result<Vec<(String, PruneMark)>, RepoError> {
    let mut out = Vec::new();
    for obj in repo.backend().list("prune/")? {
        let raw = repo.backend().get(&obj.key)?;
        let mark: PruneMark = serde_json::from_slice(&raw).map_err(|e| RepoError::corrupt(&obj.key, e))?;
        out.push((obj.key, mark));
    }
    Ok(out)
}
