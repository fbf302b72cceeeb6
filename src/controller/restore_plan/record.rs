//! Reading what a restore needs from the chosen location: the key to it, and the captured
//! manifests stored in the restore point's record (a small restore into a private
//! temporary directory, through the one bridge to the data path).

use crate::api::common::SecretKeyRef;
use crate::api::{BackupLocation, BackupPolicy, RestorePlan};
use crate::controller::location::access;
use crate::controller::{Context, Error, Result};
use crate::mover::record;
use crate::repo::RepoError;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::Value;
use std::sync::Arc;

/// The key Secret for reading `loc`: the location's own `keySecret`, else the source
/// policy's key when that policy is in this namespace (a restore in the same cluster).
pub async fn key(ctx: &Context, plan: &RestorePlan, loc: &BackupLocation) -> Result<SecretKeyRef> {
    if let Some(k) = &loc.spec.key_secret {
        return Ok(k.clone());
    }
    let ns = plan.namespace().unwrap_or_default();
    let policies: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), &ns);
    let policy = policies
        .get_opt(&plan.spec.source.policy)
        .await
        .map_err(Error::kube(format!("read BackupPolicy {}", plan.spec.source.policy)))?;
    policy.map(|p| p.spec.encryption.key_secret).ok_or_else(|| {
        Error::Invalid(format!(
            "spec.source.locations: BackupLocation {} has no keySecret and there is no BackupPolicy {} in namespace {ns} to take the key from: set the location's keySecret",
            loc.name_any(),
            plan.spec.source.policy
        ))
    })
}

/// The repository at `loc`, opened with [`key`].
async fn open(ctx: &Context, plan: &RestorePlan, loc: &BackupLocation) -> Result<Arc<crate::repo::Repository>> {
    let ns = plan.namespace().unwrap_or_default();
    let key = key(ctx, plan, loc).await?;
    let (secret, rv) = access::passphrase(&ctx.client, &ns, &key, "the location's keySecret").await?;
    access::open_repo(ctx, loc, secret, rv, false).await
}

/// The manifests captured with restore point `point`, as stored in its record at `loc`.
pub async fn manifests(ctx: &Context, plan: &RestorePlan, loc: &BackupLocation, point: &str) -> Result<Vec<Value>> {
    let repo = open(ctx, plan, loc).await?;
    let wanted = point.to_string();
    let ns = plan.source_namespace();
    let read = crate::mover::inline::run(move || {
        let points = repo.points()?;
        let Some((_, snap)) = points.good.iter().find(|(_, s)| {
            record::of_point(&s.tags, Some(&ns), &wanted)
                && s.tags.get(record::TAG_KIND).map(String::as_str) == Some(record::KIND_RECORD)
        }) else {
            return Err(RepoError::SnapshotNotFound { name: wanted, url: repo.url().to_string() });
        };
        let dir = crate::controller::policy::capture::private_dir()?;
        let root = dir.join("record");
        let res = crate::repo::restore::run(repo.clone(), snap, &root, &Default::default(), Arc::default())
            .and_then(|_| read_dir(&root.join("manifests")));
        let _ = std::fs::remove_dir_all(&dir);
        res
    })
    .await;
    read.map_err(Error::repo(format!(
        "read the manifests of restore point {point} at BackupLocation {}",
        loc.name_any()
    )))
}

/// The repository snapshot of each volume of restore point `point` at `loc`, by claim
/// name. Ids differ between locations (a copy is a new snapshot), so they are looked up
/// where the data is read, by the point's tags.
pub async fn volumes(
    ctx: &Context,
    plan: &RestorePlan,
    loc: &BackupLocation,
    point: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    let repo = open(ctx, plan, loc).await?;
    let wanted = point.to_string();
    let ns = plan.source_namespace();
    let found = crate::mover::inline::run(move || {
        Ok(repo
            .points()?
            .good
            .iter()
            .filter(|(_, s)| {
                record::of_point(&s.tags, Some(&ns), &wanted)
                    && s.tags.get(record::TAG_KIND).map(String::as_str) == Some(record::KIND_VOLUME)
            })
            .filter_map(|(id, s)| {
                let pvc = s.tags.get(record::TAG_PVC)?;
                Some((pvc.rsplit('/').next().unwrap_or(pvc).to_string(), id.hex()))
            })
            .collect())
    })
    .await;
    found
        .map_err(Error::repo(format!("list the volumes of restore point {point} at BackupLocation {}", loc.name_any())))
}

fn read_dir(dir: &std::path::Path) -> Result<Vec<Value>, RepoError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        // A policy that captures no manifests stores none.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(RepoError::io("list", dir, e)),
    };
    for e in entries {
        let p = e.map_err(|e| RepoError::io("list", dir, e))?.path();
        let data = std::fs::read(&p).map_err(|e| RepoError::io("read", &p, e))?;
        out.push(serde_json::from_slice(&data).map_err(|e| RepoError::corrupt(&p.display().to_string(), e))?);
    }
    out.sort_by_key(|v: &Value| {
        (
            v["kind"].as_str().unwrap_or_default().to_string(),
            v["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        )
    });
    Ok(out)
}
