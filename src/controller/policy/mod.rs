//! The BackupPolicy controller: checks the policy and what it refers to, starts runs
//! when the schedule (or an on-demand request) says so, and reports the policy's state.
//! A run is a RestorePoint named from its slot (or request), so starting it twice is
//! impossible: the second create finds the first.

pub mod capture;
pub mod fenced;
pub mod maintenance;
pub mod plan;
pub mod replicate;
pub mod resolve;
pub mod retention;
pub mod routine;
pub mod status;

use crate::api::common::condition::{DEGRADED, READY};
use crate::api::names::{ANNOTATION_RUN_NOW, LABEL_POLICY};
use crate::api::schedule::Schedule;
use crate::api::{BackupPolicy, RestorePoint};
use crate::controller::restore_point::machine::terminal;
use crate::controller::restore_point::{self, names};
use crate::controller::{Context, Error, Result};
use crate::k8s::{ANNOTATION_CATALOG, apply, conditions, events};
use crate::telemetry::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "policy";
/// The longest a policy goes without a look (RPO, references that may have been fixed).
const REVISIT: Duration = Duration::from_secs(300);

pub async fn reconcile(policy: Arc<BackupPolicy>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.get_or_create(&Metrics::controller(NAME)).inc();
    // Built on the status the previous reconcile wrote (its restore point changes start
    // this one at once), never an older one: that would forget a started or due prune.
    let Some(policy) = ctx.newest(policy).await? else {
        return Ok(Action::await_change());
    };
    if policy.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let now = ctx.now();
    let g = policy.meta().generation;
    let old = policy.status.clone().unwrap_or_default();
    let points_api: Api<RestorePoint> = Api::namespaced(ctx.client.clone(), &ns);
    let lp = ListParams::default().labels(&format!("{LABEL_POLICY}={}", crate::k8s::truncate_label(&name)));
    let mut points: Vec<RestorePoint> = points_api
        .list(&lp)
        .await
        .map_err(Error::kube("list RestorePoints"))?
        .items
        .into_iter()
        .filter(|p| p.spec.policy == name)
        // A finished point whose data is being deleted on request counts no more.
        .filter(|p| {
            restore_point::delete::requested(p).is_none() || p.status.as_ref().is_none_or(|s| !terminal(s.phase))
        })
        .collect();
    let oref = policy.object_ref(&());

    let mut st = status::compute(&policy, &points, &old, now);
    let checked = async {
        let r = resolve::resolve(&ctx, &policy).await?;
        resolve::check_key(&ctx, &policy, &r.primary).await?;
        routine::check_drill_namespace(&ctx, &policy).await?;
        Ok(r)
    }
    .await;
    let mut wait = REVISIT;
    let resolved = match checked {
        Err(e @ (Error::Invalid(_) | Error::NotPermitted(_))) => {
            // Nothing is snapshotted while the policy cannot work.
            let (reason, msg) = (e.category(), e.to_string());
            let was = conditions::get(&old.conditions, DEGRADED).map(|c| c.message.clone());
            if was.as_deref() != Some(msg.as_str()) {
                ctx.events.warning(&oref, reason, "Validate", msg.clone()).await;
            }
            conditions::set(&mut st.conditions, DEGRADED, true, reason, &msg, g, now);
            conditions::set(&mut st.conditions, READY, false, reason, &msg, g, now);
            st.next_run = None;
            write(&ctx, &policy, &old, &st).await?;
            return Ok(Action::requeue(invalid_retry(&st, now)));
        }
        Err(e) => return Err(e),
        Ok(r) => r,
    };
    if let Some(f) = fenced::marker(&ctx, &policy, &resolved).await? {
        let msg = fenced::message(&f);
        let scaled = fenced::stand_down(&ctx, &policy, &resolved).await?;
        let was = conditions::get(&old.conditions, DEGRADED).is_some_and(|c| c.reason == "Fenced");
        if !was || !scaled.is_empty() {
            let note =
                if scaled.is_empty() { msg.clone() } else { format!("{msg}; scaled to zero: {}", scaled.join(", ")) };
            ctx.events.warning(&oref, events::FENCED, "StandDown", note).await;
        }
        conditions::set(&mut st.conditions, DEGRADED, true, "Fenced", &msg, g, now);
        conditions::set(&mut st.conditions, READY, false, "Fenced", &msg, g, now);
        st.next_run = None;
        write(&ctx, &policy, &old, &st).await?;
        return Ok(Action::requeue(Duration::from_secs(30)));
    }
    let schedule = Schedule::parse(&policy.spec.schedule, &policy.spec.time_zone).map_err(Error::Invalid)?;
    let running = points.iter().any(|p| {
        !p.annotations().contains_key(ANNOTATION_CATALOG) && p.status.as_ref().is_none_or(|s| !terminal(s.phase))
    });
    let last = points
        .iter()
        .filter(|p| p.spec.trigger == crate::api::restore_point::RunTrigger::Schedule)
        .map(|p| p.spec.scheduled_time.0)
        .chain(old.last_schedule_time.as_ref().map(|t| t.0))
        .max();
    let since = policy.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let due = plan::due(&schedule, last, since, now);
    st.next_run = if policy.spec.suspend { None } else { due.next.map(Time) };
    if let Some(next) = due.next {
        wait = wait.min(next.duration_since(now).unsigned_abs());
    }
    let mut writing = running;
    if let (Some(slot), false, false) = (due.run, policy.spec.suspend, running) {
        writing = true;
        let point = names::scheduled_point(&name, slot);
        create_point(&ctx, &policy, &point, "Schedule", slot, None).await?;
        if due.skipped > 0 {
            st.missed_runs = Some(old.missed_runs.unwrap_or(0) + due.skipped as i64);
            let note = format!(
                "{} scheduled run(s) were missed (the operator was down or a run was still going); running the latest slot {slot} once",
                due.skipped
            );
            ctx.events.warning(&oref, events::RUNS_MISSED, "Schedule", note).await;
        }
        st.last_schedule_time = Some(Time(slot));
        wait = Duration::from_secs(1);
    }
    if let Some(req) = policy.annotations().get(ANNOTATION_RUN_NOW).filter(|v| !v.is_empty()) {
        let point = names::manual_point(&name, req);
        if !points.iter().any(|p| p.name_any() == point) {
            let who = crate::k8s::requester(policy.meta(), ANNOTATION_RUN_NOW);
            create_point(&ctx, &policy, &point, "Manual", now, who).await?;
            writing = true;
            if let Ok(p) = points_api.get(&point).await {
                points.push(p);
            }
        }
    }
    if let Some(w) = routine::run(&ctx, &policy, &points, &old, &mut st).await? {
        wait = wait.min(w);
    }
    let replication = replicate::run(&ctx, &policy, &resolved, &points, &mut st).await?;
    retention::run(&ctx, &policy, &resolved, &points, &mut st).await?;
    if let Some(w) = maintenance::run(&ctx, &policy, &resolved, &mut st, writing).await? {
        wait = wait.min(w);
    }
    if let Some(w) = replication.wake {
        wait = wait.min(w);
    }
    status::conditions_for(&policy, &points, &mut st, now);
    if let Some((reason, msg)) = &replication.problem
        && !conditions::is_true(&st.conditions, DEGRADED)
    {
        // The data is safe at the primary; the policy is degraded until every location has it.
        conditions::set(&mut st.conditions, DEGRADED, true, reason, msg, g, now);
    }
    write(&ctx, &policy, &old, &st).await?;
    Ok(Action::requeue(wait.max(Duration::from_secs(1))))
}

/// How soon to look again at a policy that cannot work: soon while the problem is new
/// (objects applied together arrive in any order: the claim a moment after its policy),
/// then less and less often, at most once a minute.
fn invalid_retry(st: &crate::api::BackupPolicyStatus, now: jiff::Timestamp) -> Duration {
    let since = conditions::get(&st.conditions, DEGRADED).map(|c| c.last_transition_time.0).unwrap_or(now);
    (now.duration_since(since).unsigned_abs() / 4).clamp(Duration::from_secs(2), Duration::from_secs(60))
}

async fn create_point(
    ctx: &Context,
    policy: &BackupPolicy,
    point: &str,
    trigger: &str,
    at: jiff::Timestamp,
    who: Option<String>,
) -> Result<()> {
    let ns = policy.namespace().unwrap_or_default();
    let api: Api<RestorePoint> = Api::namespaced(ctx.client.clone(), &ns);
    let mut spec = json!({"policy": policy.name_any(), "trigger": trigger, "scheduledTime": Time(at)});
    if let Some(w) = who {
        spec["requestedBy"] = json!(w);
    }
    let obj = json!({
        "apiVersion": "lifeline.io/v1alpha1", "kind": "RestorePoint",
        "metadata": {"name": point, "namespace": ns, "labels": crate::k8s::child_labels(&policy.name_any(), point)},
        "spec": spec,
    });
    match api
        .create(&Default::default(), &serde_json::from_value(obj).map_err(|e| Error::Invalid(e.to_string()))?)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if crate::k8s::is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::kube(format!("create RestorePoint {point}"))(e)),
    }
}

/// Writes the status when it changed.
async fn write(
    ctx: &Context,
    policy: &BackupPolicy,
    old: &crate::api::BackupPolicyStatus,
    st: &crate::api::BackupPolicyStatus,
) -> Result<()> {
    if old == st {
        return Ok(());
    }
    let api: Api<BackupPolicy> = Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    let written = apply::apply_status(&api, NAME, &policy.name_any(), st)
        .await
        .map_err(Error::kube(format!("update the status of BackupPolicy {}", policy.name_any())))?;
    ctx.wrote(&written);
    ctx.metrics.status_writes.get_or_create(&Metrics::controller(NAME)).inc();
    Ok(())
}
