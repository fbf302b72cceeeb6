//! The fence gate: what keeps a returning site's workload from writing to its volumes.
//!
//! A site that comes back after another cluster took its workload over restarts its Pods
//! (kubelets restart containers without admission) before its operator can stand the
//! workload down. A StatefulSet that opts in runs `lifeline fence-gate` as an init
//! container named [`CONTAINER`] and labels its Pods [`LABEL`]`: "true"`; the gate holds
//! the Pod's containers until this controller has read the fencing markers at every
//! location of the workload's policy, after that container started, and found that no
//! other cluster took the workload over. It then writes the container's start time into
//! the Pod's [`ANNOTATION`], which the gate waits for. A fenced Pod is never cleared: the
//! policy controller scales its StatefulSet to zero and this one deletes the held Pods
//! that scale-down condemned; a location that cannot be read
//! keeps the gate closed and is retried, so the gate fails closed.
//!
//! Which markers decide: those of the BackupPolicy in the Pod's namespace that protects
//! its StatefulSet; else, for a StatefulSet a RestorePlan restored (annotation
//! [`super::restore_plan::ANNOTATION_PLAN`]), those of the plan's source policy at the
//! plan's locations. A Pod of a StatefulSet neither names is cleared at once (nothing
//! fences it).

use super::{Context, Error, Result};
use crate::api::{BackupLocation, BackupPolicy, RestorePlan};
use crate::controller::location::access;
use crate::k8s::events;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "fence-gate";
/// The label a gated Pod carries (value `"true"`): the controller watches only these.
pub const LABEL: &str = "lifeline.io/fence-gate";
/// The start time of the gate container this controller cleared.
pub const ANNOTATION: &str = "lifeline.io/fence-cleared";
/// The name of the init container that runs `lifeline fence-gate`.
pub const CONTAINER: &str = "fence-gate";
/// How soon a gate held by an unreadable location is looked at again.
const RETRY: Duration = Duration::from_secs(5);

/// When the running gate container of `pod` started (RFC 3339), if one is running.
pub fn gate_started(pod: &Pod, container: &str) -> Option<String> {
    let st = pod.status.as_ref()?.init_container_statuses.as_ref()?.iter().find(|c| c.name == container)?;
    Some(st.state.as_ref()?.running.as_ref()?.started_at.as_ref()?.0.to_string())
}

/// What decides about a StatefulSet: the namespace and name the fencing markers are
/// kept under, and the locations to read them from (in `ns`).
struct Decider {
    what: String,
    ns: String,
    marker_ns: String,
    policy: String,
    locations: Vec<String>,
}

async fn decider(ctx: &Context, ns: &str, sts: &str) -> Result<Option<Decider>> {
    let policies: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), ns);
    let all = policies.list(&ListParams::default()).await.map_err(Error::kube("list BackupPolicies"))?.items;
    for p in &all {
        let named = p.spec.protect.stateful_sets.iter().any(|s| s == sts);
        let selected = match &p.spec.protect.stateful_set_selector {
            Some(sel) if !named => {
                let api: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
                let lp = ListParams::default().labels(&super::policy::resolve::selector_string(sel));
                api.list(&lp).await.map_err(Error::kube("list StatefulSets"))?.items.iter().any(|s| s.name_any() == sts)
            }
            _ => false,
        };
        if named || selected {
            return Ok(Some(Decider {
                what: format!("BackupPolicy {}", p.name_any()),
                ns: ns.to_string(),
                marker_ns: ns.to_string(),
                policy: p.name_any(),
                locations: p.spec.locations.iter().map(|l| l.name.clone()).collect(),
            }));
        }
    }
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), ns);
    let Some(set) = sets.get_opt(sts).await.map_err(Error::kube(format!("read StatefulSet {sts}")))? else {
        return Ok(None);
    };
    let Some((pns, pname)) =
        set.annotations().get(super::restore_plan::ANNOTATION_PLAN).and_then(|a| a.split_once('/'))
    else {
        return Ok(None);
    };
    let plans: Api<RestorePlan> = Api::namespaced(ctx.client.clone(), pns);
    let Some(plan) = plans.get_opt(pname).await.map_err(Error::kube(format!("read RestorePlan {pname}")))? else {
        return Ok(None);
    };
    let src = &plan.spec.source;
    Ok(Some(Decider {
        what: format!("RestorePlan {pns}/{pname}"),
        ns: pns.to_string(),
        marker_ns: src.namespace.clone().unwrap_or_else(|| pns.to_string()),
        policy: src.policy.clone(),
        locations: src.locations.clone(),
    }))
}

/// The newest marker of the decider's policy over all its locations; an error names a
/// location that could not be read.
async fn newest_marker(ctx: &Context, d: &Decider) -> Result<Option<crate::repo::fence::Marker>> {
    let api: Api<BackupLocation> = Api::namespaced(ctx.client.clone(), &d.ns);
    let mut newest: Option<crate::repo::fence::Marker> = None;
    for name in &d.locations {
        let loc = api
            .get_opt(name)
            .await
            .map_err(Error::kube(format!("read BackupLocation {name}")))?
            .ok_or_else(|| Error::Invalid(format!("BackupLocation {}/{name} not found", d.ns)))?;
        let opts = access::options(ctx, &loc).await?;
        let (url, ns, policy) = (loc.spec.url.clone(), d.marker_ns.clone(), d.policy.clone());
        let m = crate::mover::inline::run(move || {
            let b = access::backend(&url, &opts)?;
            Ok(crate::repo::fence::newest(b.as_ref(), &ns, &policy)?)
        })
        .await
        .map_err(Error::repo(format!("read the fencing markers at BackupLocation {name}")))?;
        if let Some(m) = m
            && newest.as_ref().is_none_or(|n| m.epoch > n.epoch)
        {
            newest = Some(m);
        }
    }
    Ok(newest)
}

/// Deletes a held Pod that its StatefulSet no longer wants (the policy stood down and
/// scaled it to zero). The StatefulSet controller would not: in `OrderedReady` mode it
/// deletes no Pod while a lower one is not Ready, and held Pods never are. A held Pod
/// never ran its workload's containers, so nothing is lost.
async fn remove_condemned(ctx: &Context, pod: &Pod) -> Result<()> {
    let ns = pod.namespace().unwrap_or_default();
    let Some(owner) = pod.owner_references().iter().find(|o| o.kind == "StatefulSet") else { return Ok(()) };
    let sets: Api<StatefulSet> = Api::namespaced(ctx.client.clone(), &ns);
    let Some(set) = sets.get_opt(&owner.name).await.map_err(Error::kube(format!("read StatefulSet {}", owner.name)))?
    else {
        return Ok(());
    };
    let replicas = set.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let ordinal: Option<i32> = pod.name_any().strip_prefix(&format!("{}-", owner.name)).and_then(|o| o.parse().ok());
    if ordinal.is_some_and(|o| o >= replicas) {
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        api.delete(&pod.name_any(), &Default::default())
            .await
            .map_err(Error::kube(format!("delete held Pod {}", pod.name_any())))?;
    }
    Ok(())
}

pub async fn reconcile(pod: Arc<Pod>, ctx: Arc<Context>) -> Result<Action> {
    let Some(started) = gate_started(&pod, CONTAINER) else { return Ok(Action::await_change()) };
    if pod.annotations().get(ANNOTATION) == Some(&started) || pod.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = pod.namespace().unwrap_or_default();
    let oref = pod.object_ref(&());
    let owner = pod.owner_references().iter().find(|o| o.kind == "StatefulSet").map(|o| o.name.clone());
    let decider = match owner {
        Some(sts) => decider(&ctx, &ns, &sts).await?,
        None => None,
    };
    let note = match &decider {
        None => "no BackupPolicy or RestorePlan names this Pod's StatefulSet: nothing fences it".to_string(),
        Some(d) => match newest_marker(&ctx, d).await {
            Err(e) => {
                let note = format!("{}: {e}; the Pod waits until every location can be read", d.what);
                ctx.events.warning(&oref, events::FENCE_GATE_HELD, "FenceGate", note).await;
                return Ok(Action::requeue(RETRY));
            }
            Ok(Some(m)) if m.cluster_id != ctx.cluster_id().await? => {
                let note = format!(
                    "cluster {} took this workload over with RestorePlan {} (fencing epoch {}): this Pod stays held and its StatefulSet is scaled to zero",
                    m.cluster_id, m.plan, m.epoch
                );
                ctx.events.warning(&oref, events::FENCE_GATE_HELD, "FenceGate", note).await;
                remove_condemned(&ctx, &pod).await?;
                return Ok(Action::requeue(RETRY));
            }
            Ok(m) => format!(
                "the fencing markers of {} at {} say this cluster may write{}",
                d.what,
                d.locations.join(", "),
                m.map(|m| format!(" (epoch {})", m.epoch)).unwrap_or_default()
            ),
        },
    };
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let pp = PatchParams { field_manager: Some(crate::k8s::apply::manager(NAME)), ..Default::default() };
    api.patch(&pod.name_any(), &pp, &Patch::Merge(json!({"metadata": {"annotations": {ANNOTATION: started}}})))
        .await
        .map_err(Error::kube(format!("annotate Pod {}", pod.name_any())))?;
    ctx.events.normal(&oref, events::FENCE_GATE_CLEARED, "FenceGate", note).await;
    Ok(Action::await_change())
}
