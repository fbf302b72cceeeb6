//! Standing down: a policy whose workload another cluster took over (a fencing marker at
//! one of its locations, newest epoch, written by another cluster) runs no backup, no
//! retention and no prune here, is suspended, and its StatefulSets are held at zero
//! replicas, so two sites never write at once. The policy says why in a `Fenced`
//! condition. Fail back (or remove the marker deliberately) to resume here.

use super::resolve::Resolved;
use crate::api::BackupPolicy;
use crate::api::location::FenceRecord;
use crate::controller::{Context, Error, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// The marker that fences this policy here, if one does.
pub async fn marker(ctx: &Context, policy: &BackupPolicy, r: &Resolved) -> Result<Option<FenceRecord>> {
    let (ns, name) = (policy.namespace().unwrap_or_default(), policy.name_any());
    let newest = std::iter::once(&r.primary)
        .chain(r.replicas.iter().map(|(_, l)| l))
        .filter_map(|l| l.status.as_ref())
        .flat_map(|s| s.fences.iter())
        .filter(|f| f.namespace == ns && f.policy == name)
        .max_by_key(|f| f.epoch)
        .cloned();
    let Some(f) = newest else { return Ok(None) };
    let own = ctx.cluster_id().await?;
    Ok((f.cluster_id != own).then_some(f))
}

/// The condition message for a fence.
pub fn message(f: &FenceRecord) -> String {
    format!(
        "cluster {} took over this workload with RestorePlan {} at {} (fencing epoch {}): this site stands down; the policy is suspended and its StatefulSets are held at zero replicas",
        f.cluster_id, f.plan, f.time, f.epoch
    )
}

/// Suspends the policy and scales its StatefulSets to zero (again, if someone scaled
/// them up).
pub async fn stand_down(ctx: &Context, policy: &BackupPolicy, r: &Resolved) -> Result<Vec<String>> {
    let ns = policy.namespace().unwrap_or_default();
    let pp = PatchParams { field_manager: Some(crate::k8s::apply::manager("fencing")), ..Default::default() };
    if !policy.spec.suspend {
        let api: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), &ns);
        api.patch(&policy.name_any(), &pp, &Patch::Merge(json!({"spec": {"suspend": true}})))
            .await
            .map_err(Error::kube(format!("suspend BackupPolicy {}", policy.name_any())))?;
    }
    let mut names: Vec<String> = policy.spec.protect.stateful_sets.clone();
    names.extend(r.claims.iter().filter_map(|c| c.stateful_set.clone()));
    names.sort();
    names.dedup();
    let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let mut scaled = Vec::new();
    for n in names {
        let Some(s) = api.get_opt(&n).await.map_err(Error::kube(format!("read StatefulSet {n}")))? else { continue };
        if s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1) != 0 {
            crate::k8s::apply::scale(&api, &n, 0, "fencing")
                .await
                .map_err(Error::kube(format!("scale StatefulSet {n} to zero")))?;
            scaled.push(n);
        }
    }
    Ok(scaled)
}
