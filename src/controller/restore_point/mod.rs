//! The RestorePoint controller: a backup run as a state machine kept in the
//! RestorePoint's status. Pending -> Quiescing (pre-hooks) -> Snapshotting (one group,
//! or per-volume snapshots back to back) -> Resuming (post-hooks, as soon as the
//! snapshots are cut) -> Uploading (a mover Job per volume, from a read-only clone) ->
//! Completed, or Failed; then cleanup of every child. Each reconcile observes, takes the
//! step of the recorded phase, and writes status only when it changed; a crash between
//! any two lines replays the same step, and children (named from the run) are adopted.

pub mod delete;
pub mod hooks;
pub mod machine;
pub mod names;
pub mod snapshot;
pub mod upload;

use crate::api::common::condition::{DEGRADED, PROGRESSING, READY};
use crate::api::policy::ConsistencyMode;
use crate::api::restore_point::{PointLocation, RunPhase, RunTrigger, VolumeRecord};
use crate::api::{BackupPolicy, RestorePoint, RestorePointStatus};
use crate::controller::policy::resolve::{self, Resolved};
use crate::controller::{Context, Error, Result};
use crate::k8s::{ANNOTATION_CATALOG, apply, conditions, events};
use crate::telemetry::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use machine::enter;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "restore-point";

/// How soon to look again while waiting on something that sends no watch event of ours.
const POLL: Duration = Duration::from_secs(2);

/// What a step needs about its run.
pub struct Run<'a> {
    pub ctx: &'a Context,
    pub point: &'a RestorePoint,
    pub ns: String,
    pub name: String,
}

impl Run<'_> {
    pub fn now(&self) -> jiff::Timestamp {
        self.ctx.now()
    }

    pub async fn event(&self, warning: bool, reason: &str, note: String) {
        let r = self.point.object_ref(&());
        if warning {
            self.ctx.events.warning(&r, reason, "Backup", note).await
        } else {
            self.ctx.events.normal(&r, reason, "Backup", note).await
        }
    }

    pub async fn policy(&self) -> Result<Option<BackupPolicy>> {
        let api: Api<BackupPolicy> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        api.get_opt(&self.point.spec.policy)
            .await
            .map_err(Error::kube(format!("read BackupPolicy {}", self.point.spec.policy)))
    }
}

pub async fn reconcile(point: Arc<RestorePoint>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.get_or_create(&Metrics::controller(NAME)).inc();
    // Built on the status the previous reconcile wrote (the Job or claim it made starts
    // this one at once), never an older one: that would repeat a finished step.
    let Some(point) = ctx.newest(point).await? else {
        return Ok(Action::await_change());
    };
    if point.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let catalog = point.annotations().contains_key(ANNOTATION_CATALOG);
    let old = point.status.clone().unwrap_or_default();
    let finished = catalog || (machine::terminal(old.phase) && old.cleaned_up);
    let run = Run { ctx: &ctx, point: &point, ns: point.namespace().unwrap_or_default(), name: point.name_any() };
    if finished && delete::requested(&point).is_some() {
        // A request to delete the data is carried out once the run is over.
        let mut st = old.clone();
        return match delete::step(&ctx, &point, &mut st).await {
            Ok(None) => Ok(Action::await_change()),
            Ok(Some(a)) => {
                write(&run, &old, &st).await?;
                Ok(a)
            }
            Err(e) => {
                let generation = point.meta().generation;
                conditions::set(
                    &mut st.conditions,
                    PROGRESSING,
                    true,
                    e.category(),
                    &e.to_string(),
                    generation,
                    run.now(),
                );
                write(&run, &old, &st).await?;
                Err(e)
            }
        };
    }
    if finished {
        return Ok(Action::await_change());
    }
    let mut st = old.clone();
    let action = match step(&run, &mut st).await {
        Ok(a) => a,
        Err(Error::Invalid(msg)) => {
            fail(&run, &mut st, "InvalidSpec", &msg).await;
            Action::requeue(Duration::ZERO)
        }
        Err(e) => {
            // Transient: the step is retried; the condition says what is in the way.
            let generation = point.meta().generation;
            conditions::set(&mut st.conditions, PROGRESSING, true, e.category(), &e.to_string(), generation, run.now());
            write(&run, &old, &st).await?;
            return Err(e);
        }
    };
    write(&run, &old, &st).await?;
    Ok(action)
}

async fn write(run: &Run<'_>, old: &RestorePointStatus, st: &RestorePointStatus) -> Result<()> {
    if old == st {
        return Ok(());
    }
    let api: Api<RestorePoint> = Api::namespaced(run.ctx.client.clone(), &run.ns);
    let written = apply::apply_status(&api, NAME, &run.name, st)
        .await
        .map_err(Error::kube(format!("update the status of RestorePoint {}", run.name)))?;
    run.ctx.wrote(&written);
    run.ctx.metrics.status_writes.get_or_create(&Metrics::controller(NAME)).inc();
    Ok(())
}

async fn step(run: &Run<'_>, st: &mut RestorePointStatus) -> Result<Action> {
    match st.phase {
        RunPhase::Pending => pending(run, st).await,
        RunPhase::Quiescing => quiescing(run, st).await,
        RunPhase::Snapshotting => snapshot::step(run, st).await,
        RunPhase::Resuming => resuming(run, st).await,
        RunPhase::Uploading => upload::step(run, st).await,
        RunPhase::Completed | RunPhase::Failed => cleanup(run, st).await,
    }
}

/// Fetches and checks everything the run needs; a problem fails the run before anything
/// is snapshotted.
pub async fn resolved(run: &Run<'_>) -> Result<(BackupPolicy, Resolved)> {
    let policy = run.policy().await?.ok_or_else(|| {
        Error::Invalid(format!("spec.policy: BackupPolicy {}/{} not found", run.ns, run.point.spec.policy))
    })?;
    let r = resolve::resolve(run.ctx, &policy).await?;
    Ok((policy, r))
}

/// The fencing marker at the primary location that stops this run, read now (not from
/// the location's last check): a returning site never writes after a takeover.
async fn fenced_at_primary(
    run: &Run<'_>,
    policy: &BackupPolicy,
    r: &Resolved,
) -> Result<Option<crate::api::location::FenceRecord>> {
    let opts = crate::controller::location::access::options(run.ctx, &r.primary).await?;
    let url = r.primary.spec.url.clone();
    let markers = crate::mover::inline::run(move || {
        let b = crate::controller::location::access::backend(&url, &opts)?;
        Ok(crate::repo::fence::read(b.as_ref())?)
    })
    .await
    .map_err(Error::repo(format!("read the fencing markers at BackupLocation {}", r.primary.name_any())))?;
    let Some(m) =
        markers.into_iter().filter(|m| m.namespace == run.ns && m.policy == policy.name_any()).max_by_key(|m| m.epoch)
    else {
        return Ok(None);
    };
    let own = run.ctx.cluster_id().await?;
    let other = m.cluster_id != own;
    Ok(other.then_some(crate::controller::location::fence_record(m)))
}

async fn pending(run: &Run<'_>, st: &mut RestorePointStatus) -> Result<Action> {
    let now = run.now();
    let (policy, r) = resolved(run).await?;
    resolve::check_key(run.ctx, &policy, &r.primary).await?;
    // Before anything is written: has another cluster taken this workload over?
    if let Some(f) = fenced_at_primary(run, &policy, &r).await? {
        fail(run, st, "Fenced", &crate::controller::policy::fenced::message(&f)).await;
        return Ok(Action::requeue(Duration::ZERO));
    }
    st.volumes = r
        .claims
        .iter()
        .map(|c| VolumeRecord {
            pvc: c.pvc.clone(),
            stateful_set: c.stateful_set.clone(),
            volume_mode: Some(if c.block { "Block" } else { "Filesystem" }.into()),
            capacity_bytes: c.capacity_bytes,
            storage_class_name: c.storage_class.clone(),
            ..Default::default()
        })
        .collect();
    st.volume_count = Some(st.volumes.len() as i32);
    st.start_time = Some(Time(now));
    st.group_snapshot = snapshot::group_class(run, &policy, &r.claims).await?.map(|_| names::group(&run.name));
    st.locations = vec![PointLocation { name: r.primary.name_any(), present: false, time: None, message: None }];
    let trigger = match (run.point.spec.trigger, &run.point.spec.requested_by) {
        (RunTrigger::Schedule, _) => format!("the schedule (slot {})", run.point.spec.scheduled_time.0),
        (RunTrigger::Manual, Some(who)) => format!("an on-demand request by {who}"),
        (RunTrigger::Manual, None) => "an on-demand request".to_string(),
    };
    let how = if st.group_snapshot.is_some() { "one VolumeGroupSnapshot" } else { "a VolumeSnapshot per volume" };
    run.event(
        false,
        events::RUN_STARTED,
        format!("backup of {} volume(s) started by {trigger}; {how}", st.volumes.len()),
    )
    .await;
    let hooks =
        policy.spec.consistency.mode == ConsistencyMode::Application && !policy.spec.consistency.pre_hooks.is_empty();
    enter(st, if hooks { RunPhase::Quiescing } else { RunPhase::Snapshotting }, now);
    progressing(run, st, "Started", "the run started");
    Ok(Action::requeue(Duration::ZERO))
}

async fn quiescing(run: &Run<'_>, st: &mut RestorePointStatus) -> Result<Action> {
    let (policy, r) = resolved(run).await?;
    let c = &policy.spec.consistency;
    let out = hooks::run(&run.ctx.client, &run.ns, &c.pre_hooks, &r.pods).await;
    for w in &out.warnings {
        run.event(true, events::HOOK_FAILED, format!("pre-hook failed (onError: Continue): {w}")).await;
    }
    if let Some(f) = out.failure {
        // No snapshot is taken; the post-hooks still run, to release the application.
        let post = hooks::run(&run.ctx.client, &run.ns, &c.post_hooks, &r.pods).await;
        for w in post.warnings.iter().chain(post.failure.iter()) {
            run.event(true, events::HOOK_FAILED, format!("post-hook failed: {w}")).await;
        }
        fail(run, st, "HookFailed", &format!("HookFailed: {f}")).await;
        return Ok(Action::requeue(Duration::ZERO));
    }
    run.event(false, events::HOOKS_RAN, format!("pre-hooks ran in {} Pod(s)", r.pods.len())).await;
    enter(st, RunPhase::Snapshotting, run.now());
    progressing(run, st, "Snapshotting", "taking the snapshots");
    Ok(Action::requeue(Duration::ZERO))
}

async fn resuming(run: &Run<'_>, st: &mut RestorePointStatus) -> Result<Action> {
    let (policy, r) = resolved(run).await?;
    let c = &policy.spec.consistency;
    if c.mode == ConsistencyMode::Application {
        let out = hooks::run(&run.ctx.client, &run.ns, &c.post_hooks, &r.pods).await;
        for w in out.warnings.iter().chain(out.failure.iter()) {
            run.event(true, events::HOOK_FAILED, format!("post-hook failed: {w}")).await;
        }
    }
    snapshot::release_claims(run, st).await?;
    enter(st, RunPhase::Uploading, run.now());
    progressing(run, st, "Uploading", "shipping the snapshots to the primary location");
    Ok(Action::requeue(Duration::ZERO))
}

/// Ends the run as failed (children are removed by the cleanup step that follows).
pub async fn fail(run: &Run<'_>, st: &mut RestorePointStatus, reason: &str, message: &str) {
    let now = run.now();
    let generation = run.point.meta().generation;
    enter(st, RunPhase::Failed, now);
    st.message = Some(message.to_string());
    conditions::set(&mut st.conditions, READY, false, reason, message, generation, now);
    conditions::set(&mut st.conditions, PROGRESSING, false, reason, "", generation, now);
    conditions::set(&mut st.conditions, DEGRADED, true, reason, message, generation, now);
    run.event(true, events::RUN_FAILED, format!("backup failed: {message}")).await;
    run.ctx.metrics.reconcile_errors.get_or_create(&Metrics::error(NAME, reason)).inc();
}

pub fn progressing(run: &Run<'_>, st: &mut RestorePointStatus, reason: &str, message: &str) {
    let now = run.now();
    let generation = run.point.meta().generation;
    st.message = Some(message.to_string());
    conditions::set(&mut st.conditions, PROGRESSING, true, reason, message, generation, now);
    conditions::set(&mut st.conditions, READY, false, reason, message, generation, now);
}

/// Removes every child of the run; done when none is left.
async fn cleanup(run: &Run<'_>, st: &mut RestorePointStatus) -> Result<Action> {
    let left = snapshot::remove_children(run, st).await?;
    if left == 0 {
        st.cleaned_up = true;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue(POLL))
}
