//! `Failback`: handing a workload back to its original site after a failover, applied
//! in the original cluster once it is back (and stood down: its policy fenced, its
//! StatefulSets at zero). `spec.failover.sourceKubeconfig` reaches the cluster the
//! workload runs in now (the "source" of the failback).
//!
//! 1. **Resolving**: the newest restore point (the other site protects the workload now);
//!    the StatefulSets here must exist at zero replicas or not at all.
//! 2. **RestoringVolumes (PreSync)**: the volumes here, which still hold what they held
//!    when the site was lost, are brought to that point in place: only what changed since
//!    the point both sites share is written, while the workload still runs there.
//! 3. **Fencing**: Quiescing (the other site's StatefulSets scaled to zero and gone),
//!    FinalBackup (one last restore point taken there on request, waited for, and read
//!    into the catalog here), then the other site's policy suspended and a fencing marker
//!    with a higher epoch naming this cluster written to every location (see
//!    [`super::fencing`]): the other site stands down, this one is no longer fenced.
//! 4. **RestoringVolumes (FinalSync)**: only what the final point changed.
//! 5. **StartingWorkloads (Resuming)**: the policy here resumed, the StatefulSets scaled
//!    up group by group behind their readiness gates -> Completed.
//!
//! No write the other site made is lost: its workload is stopped before the final
//! backup, and this site starts only from that backup.

use super::{Run, enter, fail};
use crate::api::RestorePlanStatus;
use crate::api::restore_plan::{FailbackStatus, PlanPhase, RestoredPoint};
use crate::api::restore_point::RunPhase;
use crate::api::{BackupPolicy, RestorePoint};
use crate::controller::{Error, Result};
use crate::k8s::{ANNOTATION_CATALOG, conditions, events};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::time::Duration;

pub const PRE_SYNC: &str = "PreSync";
pub const QUIESCING: &str = "Quiescing";
pub const FINAL_BACKUP: &str = "FinalBackup";
pub const FENCING: &str = "Fencing";
pub const FINAL_SYNC: &str = "FinalSync";
pub const RESUMING: &str = "Resuming";

/// How long the final backup at the other site may take.
const FINAL_BACKUP_TIMEOUT: Duration = Duration::from_secs(3600);

fn status(st: &mut RestorePlanStatus) -> &mut FailbackStatus {
    st.failback.get_or_insert_with(|| FailbackStatus { step: PRE_SYNC.into(), ..Default::default() })
}

async fn note(run: &Run<'_>, st: &mut RestorePlanStatus, step: &str, msg: String) {
    let (now, g) = (run.now(), run.plan.meta().generation);
    status(st).step = step.to_string();
    conditions::set(&mut st.conditions, crate::api::common::condition::PROGRESSING, true, step, &msg, g, now);
    st.message = Some(msg.clone());
    run.event(false, events::FAILBACK, format!("{step}: {msg}")).await;
}

/// Checks before anything is written: a way to reach the other site, and the workload
/// stood down here.
pub async fn check(run: &Run<'_>, workloads: &[String]) -> Result<Option<String>> {
    if run.plan.spec.failover.as_ref().and_then(|f| f.source_kubeconfig.as_ref()).is_none() {
        return Err(Error::Invalid(
            "spec.failover.sourceKubeconfig: a failback must reach the cluster the workload runs in now, to stop it and take its final backup".into(),
        ));
    }
    let api: Api<StatefulSet> = Api::namespaced(run.ctx.client.clone(), &run.target);
    let mut running = Vec::new();
    for w in workloads {
        if let Some(s) = api.get_opt(w).await.map_err(Error::kube(format!("read StatefulSet {w}")))? {
            let replicas = s.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1);
            let pods = s.status.as_ref().map(|x| x.replicas).unwrap_or(0);
            if replicas > 0 || pods > 0 {
                running.push(format!("StatefulSet {w} ({replicas} replica(s), {pods} Pod(s))"));
            }
        }
    }
    Ok((!running.is_empty()).then(|| {
        format!(
            "{} run(s) in namespace {}: a failback writes into this site's volumes only while its workload is stood down (a fenced policy holds it at zero)",
            running.join(", "),
            run.target
        )
    }))
}

/// Where RestoringVolumes goes when its volumes are done.
pub fn after_volumes(st: &mut RestorePlanStatus) -> PlanPhase {
    let bytes: i64 = st.volumes.iter().map(|v| v.written.unwrap_or(v.bytes_done)).sum();
    let fb = status(st);
    if fb.final_point.is_none() {
        fb.pre_sync_bytes = Some(bytes);
        fb.step = QUIESCING.into();
        PlanPhase::Fencing
    } else {
        fb.final_sync_bytes = Some(bytes);
        fb.step = RESUMING.into();
        PlanPhase::StartingWorkloads
    }
}

/// Phase Fencing of a failback: quiesce, final backup, then fence.
pub async fn step(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Action> {
    let now = run.now();
    let kc = run
        .plan
        .spec
        .failover
        .as_ref()
        .and_then(|f| f.source_kubeconfig.clone())
        .ok_or_else(|| Error::Invalid("spec.failover.sourceKubeconfig is required for a failback".into()))?;
    let ns = run.plan.source_namespace();
    let client = super::fencing::source_client(run, &kc).await?;
    let step = status(st).step.clone();
    if step == QUIESCING || step == PRE_SYNC {
        let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
        let mut left = Vec::new();
        for w in st.workloads.iter().map(|w| w.name.clone()) {
            let Some(s) =
                api.get_opt(&w).await.map_err(Error::kube(format!("read StatefulSet {w} at the other site")))?
            else {
                continue;
            };
            if s.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1) != 0 {
                crate::k8s::apply::scale(&api, &w, 0, "failback")
                    .await
                    .map_err(Error::kube(format!("scale StatefulSet {w} to zero at the other site")))?;
            }
            let pods = s.status.as_ref().map(|x| x.replicas).unwrap_or(0);
            if pods > 0 {
                left.push(format!("{w}: {pods} Pod(s)"));
            }
        }
        if !left.is_empty() {
            status(st).step = QUIESCING.into();
            st.message = Some(format!("stopping the workload at the other site: {}", left.join(", ")));
            return Ok(Action::requeue(super::POLL));
        }
        status(st).quiesced = Some(Time(now));
        note(run, st, FINAL_BACKUP, "the workload at the other site is stopped; taking its final backup".into()).await;
        return Ok(Action::requeue(Duration::ZERO));
    }
    if step == FINAL_BACKUP {
        return final_backup(run, st, client, &ns).await;
    }
    // Fencing proper: the other site's policy suspended (its StatefulSets are at zero
    // already), markers written; then this site reads its own marker as the newest.
    let action = super::fencing::step(run, st).await?;
    for l in &run.plan.spec.source.locations {
        if let Some(loc) = run.location(l).await?
            && let Err(e) = crate::controller::location::refresh_fences(run.ctx, &loc).await
        {
            tracing::warn!(location = %l, error = %e, "could not read the fencing markers after a failback");
        }
    }
    status(st).step = FINAL_SYNC.into();
    Ok(action)
}

async fn final_backup(run: &Run<'_>, st: &mut RestorePlanStatus, client: kube::Client, ns: &str) -> Result<Action> {
    let now = run.now();
    let policy = run.plan.spec.source.policy.clone();
    let requested = match status(st).final_backup_requested.clone() {
        Some(t) => t.0,
        None => {
            let policies = super::fencing::policies(&client, ns);
            let token = format!("failback-{}", &run.id[..8]);
            let patch = json!({"metadata": {"annotations": {crate::api::names::ANNOTATION_RUN_NOW: token}}});
            policies
                .patch(&policy, &PatchParams::default(), &Patch::Merge(patch))
                .await
                .map_err(Error::kube(format!("ask BackupPolicy {ns}/{policy} at the other site for a final backup")))?;
            status(st).final_backup_requested = Some(Time(now));
            now
        }
    };
    // The other site's own run (not a catalog copy) that started after the request.
    let points: Api<RestorePoint> = Api::namespaced(client, ns);
    let list = points.list(&Default::default()).await.map_err(Error::kube("list RestorePoints at the other site"))?;
    let since = requested.checked_sub(jiff::SignedDuration::from_secs(1)).unwrap_or(requested);
    let run_point = list
        .items
        .into_iter()
        .filter(|p| p.spec.policy == policy && !p.annotations().contains_key(ANNOTATION_CATALOG))
        .filter(|p| p.meta().creation_timestamp.as_ref().is_some_and(|t| t.0 >= since))
        .max_by_key(|p| p.meta().creation_timestamp.as_ref().map(|t| t.0));
    let waited = now.duration_since(requested).unsigned_abs();
    let Some(p) = run_point else {
        if waited > Duration::from_secs(300) {
            let msg =
                format!("no final backup started at the other site within 5m of asking BackupPolicy {ns}/{policy}");
            fail(run, st, "FinalBackupFailed", &msg).await;
            return Ok(Action::requeue(Duration::ZERO));
        }
        st.message =
            Some(format!("waiting for the final backup of BackupPolicy {ns}/{policy} at the other site to start"));
        return Ok(Action::requeue(super::POLL));
    };
    let name = p.name_any();
    let pst = p.status.clone().unwrap_or_default();
    match pst.phase {
        RunPhase::Completed if pst.cleaned_up => {}
        RunPhase::Failed => {
            let msg = format!("the final backup {name} at the other site failed: {}", pst.message.unwrap_or_default());
            fail(run, st, "FinalBackupFailed", &msg).await;
            return Ok(Action::requeue(Duration::ZERO));
        }
        _ if waited > FINAL_BACKUP_TIMEOUT => {
            fail(run, st, "FinalBackupFailed", &format!("the final backup {name} did not finish within 1h")).await;
            return Ok(Action::requeue(Duration::ZERO));
        }
        _ => {
            st.message = Some(format!("waiting for the final backup {name} at the other site ({:?})", pst.phase));
            return Ok(Action::requeue(super::POLL));
        }
    }
    // Read into the catalog here now, rather than at the locations' next check.
    let here: Api<RestorePoint> = Api::namespaced(run.ctx.client.clone(), &run.ns);
    let mut local = here.get_opt(&name).await.map_err(Error::kube(format!("read RestorePoint {name}")))?;
    if local.as_ref().and_then(|p| p.status.as_ref()).is_none_or(|s| s.phase != RunPhase::Completed) {
        for l in &run.plan.spec.source.locations {
            if let Some(loc) = run.location(l).await?
                && loc.spec.key_secret.is_some()
                && let Err(e) = crate::controller::location::catalog::sync(run.ctx, &loc).await
            {
                tracing::warn!(location = %l, error = %e, "catalog sync for a failback failed");
            }
        }
        local = here.get_opt(&name).await.map_err(Error::kube(format!("read RestorePoint {name}")))?;
    }
    let Some(local) = local.filter(|p| p.status.as_ref().is_some_and(|s| s.phase == RunPhase::Completed)) else {
        st.message = Some(format!("waiting for the final backup {name} to reach a location this site reads"));
        return Ok(Action::requeue(super::POLL));
    };
    let present: Vec<String> = local
        .status
        .as_ref()
        .map(|s| s.locations.iter().filter(|l| l.present).map(|l| l.name.clone()).collect())
        .unwrap_or_default();
    let Some(location) = run.plan.spec.source.locations.iter().find(|l| present.contains(l)).cloned() else {
        st.message = Some(format!("waiting for the final backup {name} to reach a location this site reads"));
        return Ok(Action::requeue(super::POLL));
    };
    super::restore_again(
        st,
        RestoredPoint {
            name: name.clone(),
            time: Time(crate::controller::policy::status::data_time(&local)),
            location,
        },
    );
    status(st).final_point = Some(name.clone());
    note(run, st, FENCING, format!("final backup {name} taken at the other site; fencing it")).await;
    Ok(Action::requeue(Duration::ZERO))
}

/// Resumes the policy here (suspended when this site stood down).
pub async fn resume(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<()> {
    let api: Api<BackupPolicy> = Api::namespaced(run.ctx.client.clone(), &run.target);
    let name = &run.plan.spec.source.policy;
    let Some(p) = api.get_opt(name).await.map_err(Error::kube(format!("read BackupPolicy {name}")))? else {
        return Ok(());
    };
    if p.spec.suspend {
        let pp = PatchParams { field_manager: Some(crate::k8s::apply::manager("failback")), ..Default::default() };
        api.patch(name, &pp, &Patch::Merge(json!({"spec": {"suspend": false}})))
            .await
            .map_err(Error::kube(format!("resume BackupPolicy {name}")))?;
        note(run, st, RESUMING, format!("BackupPolicy {name} resumed here; starting the workloads")).await;
    }
    Ok(())
}

/// Moves a failback to its next phase after Resolving.
pub fn after_resolving(st: &mut RestorePlanStatus, now: jiff::Timestamp) {
    status(st).step = PRE_SYNC.into();
    enter(st, PlanPhase::RestoringVolumes, now);
}
