//! Fencing, the first step of a `Failover` once the restore point is chosen: the old
//! primary is kept from writing again before anything is promoted here.
//!
//! 1. **The source cluster, where reachable**: with `spec.failover.sourceKubeconfig`, its
//!    BackupPolicy is suspended and its StatefulSets scaled to zero. A primary that cannot
//!    be reached (the usual case in a disaster) does not block the failover: the step is
//!    recorded as skipped, with the reason.
//! 2. **A fencing marker in every source location** (`fencing/<ns>/<policy>/<epoch>.json`,
//!    see [`crate::repo::fence`]), naming this cluster: a primary that comes back reads it
//!    with its location check and stands down (its policy suspended, its StatefulSets held
//!    at zero, a `Fenced` condition). This is the one object a failover writes to a
//!    `ReadOnly` location; where it cannot (credentials, an outage) the status says so.

use super::{Run, enter};
use crate::api::RestorePlanStatus;
use crate::api::common::SecretKeyRef;
use crate::api::restore_plan::{FencingStatus, PlanPhase};
use crate::controller::location::access;
use crate::controller::{Error, Result};
use crate::k8s::events;
use crate::repo::fence::Marker;
use crate::store::LocationOptions;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::controller::Action;
use serde_json::json;
use std::time::Duration;

/// A location's options, URL and newest marker of the policy.
type Found = (LocationOptions, String, Option<Marker>);

/// How long reaching the source cluster may take before fencing it counts as skipped.
const SOURCE_TIMEOUT: Duration = Duration::from_secs(15);

pub async fn step(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Action> {
    let now = run.now();
    let spec = &run.plan.spec;
    let opts = spec.failover.clone().unwrap_or_default();
    let source_ns = run.plan.source_namespace();
    let workloads: Vec<String> = st.workloads.iter().map(|w| w.name.clone()).collect();
    let source = if !opts.fence_source {
        "not asked for (spec.failover.fenceSource: false)".to_string()
    } else if let Some(kc) = &opts.source_kubeconfig {
        match tokio::time::timeout(SOURCE_TIMEOUT, fence_source(run, kc, &source_ns, &workloads)).await {
            Ok(Ok(done)) => done,
            Ok(Err(Error::Kube { source, .. })) if !matches!(*source, kube::Error::Api(_)) => {
                format!("skipped: the source cluster cannot be reached ({source})")
            }
            Ok(Err(e)) => format!("skipped: the source cluster could not be fenced ({e})"),
            Err(_) => format!("skipped: the source cluster did not answer within {}s", SOURCE_TIMEOUT.as_secs()),
        }
    } else {
        "skipped: no spec.failover.sourceKubeconfig to reach the source cluster".to_string()
    };
    let point = st.restored_point.as_ref().map(|p| p.name.clone()).unwrap_or_default();
    let cluster = run.ctx.cluster_id().await?;
    let marker = Marker {
        epoch: 0,
        namespace: source_ns.clone(),
        policy: spec.source.policy.clone(),
        cluster_id: cluster.clone(),
        time: now.to_string(),
        plan: format!("{}/{}", run.ns, run.name),
        restore_point: point.clone(),
    };
    // What each location holds now: the newest marker of the policy, or why it cannot be
    // read. The locations are read at once (and written at once below): a failover waits
    // for the slowest location, not for the sum of them.
    let locs = futures::future::try_join_all(
        spec.source.locations.iter().map(|l| async move { Ok::<_, Error>((l.clone(), run.location(l).await?)) }),
    )
    .await?;
    let at: Vec<(String, Result<Found, String>)> = futures::future::join_all(locs.into_iter().map(|(l, loc)| {
        let m = marker.clone();
        async move {
            let Some(loc) = loc else { return (l, Err("no such BackupLocation".to_string())) };
            let found = match access::options(run.ctx, &loc).await {
                Ok(o) => {
                    let (url, opts) = (loc.spec.url.clone(), o.clone());
                    crate::mover::inline::run(move || {
                        let b = access::backend(&url, &opts)?;
                        Ok(crate::repo::fence::newest(b.as_ref(), &m.namespace, &m.policy)?)
                    })
                    .await
                    .map(|newest| (o, loc.spec.url.clone(), newest))
                    .map_err(|e| format!("{e} ({})", e.hint()))
                }
                Err(e) => Err(e.to_string()),
            };
            (l, found)
        }
    }))
    .await;
    // One epoch for all locations: this takeover's own if an earlier attempt of it wrote
    // the highest marker already (a replayed step writes no second one), else one above
    // every marker found.
    let ours = |m: &Marker| m.cluster_id == marker.cluster_id && m.plan == marker.plan && m.restore_point == point;
    let newest: Vec<&Marker> = at.iter().filter_map(|(_, r)| r.as_ref().ok()?.2.as_ref()).collect();
    let highest = newest.iter().map(|m| m.epoch).max().unwrap_or(0);
    let epoch = if highest > 0 && newest.iter().filter(|m| m.epoch == highest).all(|m| ours(m)) {
        highest
    } else {
        highest + 1
    };
    let results: Vec<(String, bool)> = futures::future::join_all(at.into_iter().map(|(l, found)| {
        let marker = &marker;
        let ours = &ours;
        async move {
            let (opts, url, existing) = match found {
                Ok(f) => f,
                Err(e) => return (format!("{l}: not written ({e})"), false),
            };
            if existing.as_ref().is_some_and(|m| m.epoch == epoch && ours(m)) {
                return (format!("{l}: epoch {epoch}"), true);
            }
            let m = Marker { epoch, ..marker.clone() };
            let res = crate::mover::inline::run(move || {
                let b = access::backend(&url, &opts)?;
                Ok(crate::repo::fence::write_epoch(b.as_ref(), &m)?)
            })
            .await;
            match res {
                Ok(()) => (format!("{l}: epoch {epoch}"), true),
                Err(crate::repo::RepoError::Store(crate::store::StoreError::AlreadyExists { .. })) => {
                    (format!("{l}: not written (epoch {epoch} was taken by another site meanwhile)"), false)
                }
                Err(e) => (format!("{l}: not written ({e} ({}))", e.hint()), false),
            }
        }
    }))
    .await;
    let written = results.iter().any(|(_, w)| *w);
    let markers: Vec<String> = results.into_iter().map(|(m, _)| m).collect();
    let epoch = written.then_some(epoch as i64);
    let note = format!("source cluster: {source}; fencing markers: {}", markers.join(", "));
    let warn = epoch.is_none() || source.starts_with("skipped");
    run.event(warn, events::FENCING, note.clone()).await;
    st.fencing = Some(FencingStatus { source, epoch, markers });
    st.message = Some(note);
    // A warm standby's volumes hold the point already: its promotion goes straight on to
    // starting the workloads (each step spared is API round trips, which under load are
    // most of a promotion's time).
    let held = !st.volumes.is_empty() && st.volumes.iter().all(|v| v.done);
    enter(st, if held { PlanPhase::StartingWorkloads } else { PlanPhase::RestoringVolumes }, now);
    Ok(Action::requeue(Duration::ZERO))
}

/// A client of the source cluster, from `spec.failover.sourceKubeconfig`.
pub async fn source_client(run: &Run<'_>, kc: &SecretKeyRef) -> Result<kube::Client> {
    let invalid = |e: String| Error::Invalid(format!("spec.failover.sourceKubeconfig: {e}"));
    let (data, _) = access::secret_data(&run.ctx.client, &run.ns, &kc.name, "spec.failover.sourceKubeconfig").await?;
    let value = data.get(&kc.key).ok_or_else(|| invalid(format!("Secret {} has no key {}", kc.name, kc.key)))?;
    let text = String::from_utf8_lossy(value).to_string();
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).map_err(|e| invalid(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| invalid(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| invalid(e.to_string()))
}

/// The BackupPolicies of a namespace in another cluster (whose CRD version may differ
/// from this operator's: read and patched as plain objects).
pub fn policies(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("lifeline.io", "v1alpha1", "BackupPolicy"),
            "backuppolicies",
        ),
    )
}

/// Suspends the source policy and scales its StatefulSets to zero in the source cluster.
async fn fence_source(run: &Run<'_>, kc: &SecretKeyRef, ns: &str, workloads: &[String]) -> Result<String> {
    let client = source_client(run, kc).await?;
    let pp = PatchParams { field_manager: Some(crate::k8s::apply::manager("fencing")), ..Default::default() };
    let policies = policies(&client, ns);
    let policy = &run.plan.spec.source.policy;
    let mut done = Vec::new();
    match policies.patch(policy, &pp, &Patch::Merge(json!({"spec": {"suspend": true}}))).await {
        Ok(_) => done.push(format!("BackupPolicy {ns}/{policy} suspended")),
        Err(e) if crate::k8s::is_not_found(&e) => done.push(format!("no BackupPolicy {ns}/{policy} there")),
        Err(e) => return Err(Error::kube(format!("suspend BackupPolicy {policy} in the source cluster"))(e)),
    }
    let sts: Api<StatefulSet> = Api::namespaced(client, ns);
    let mut scaled = Vec::new();
    for w in workloads {
        match crate::k8s::apply::scale(&sts, w, 0, "fencing").await {
            Ok(s) => scaled.push(s.name_any()),
            Err(e) if crate::k8s::is_not_found(&e) => {}
            Err(e) => return Err(Error::kube(format!("scale StatefulSet {w} to zero in the source cluster"))(e)),
        }
    }
    if !scaled.is_empty() {
        done.push(format!("StatefulSet(s) {} scaled to zero", scaled.join(", ")));
    }
    Ok(done.join(", "))
}
