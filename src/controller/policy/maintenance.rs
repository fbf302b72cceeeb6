//! Maintenance at each of a policy's locations, carried out by mover Jobs:
//!
//! - **Prune**, once retention has forgotten restore points there (`lifeline mover prune`).
//!   The repository's prune works in two phases (mark now, delete what an earlier prune
//!   marked once the grace period has passed and no older writer runs), so a backup that
//!   runs meanwhile never loses data, and the bytes forgotten today are freed by the next
//!   prune.
//! - **Verification**, on the policy's `verification.schedule` (`lifeline mover verify
//!   --sample <samplePercent>`): the stored data is read back, decrypted and re-hashed.
//!   The policy's `lastVerification` sums up the round over all locations.
//!
//! The policy's status says, per location and task, whether it is due, which Job runs it,
//! and what the last one did; each finished task is an Event.

use super::resolve::Resolved;
use crate::api::policy::{CheckResult, LocationReplication, MaintenanceState};
use crate::api::{BackupLocation, BackupPolicy, BackupPolicyStatus};
use crate::controller::location::access;
use crate::controller::restore_point::machine::{JobOutcome, job_outcome};
use crate::controller::restore_point::names;
use crate::controller::{Context, Error, Result, movers};
use crate::k8s::{COMPONENT_MOVER, LABEL_COMPONENT, apply, events};
use crate::mover::job::{self, Plan};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use std::time::Duration;

/// How long after a failed attempt the next is tried.
const RETRY: Duration = Duration::from_secs(60);

/// Grace period of the prunes the operator runs: a pack marked unused is deleted by a
/// later prune at least this long after the mark.
pub const GRACE: &str = "1h";

/// A maintenance task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Prune,
    Verify,
}

impl Task {
    const ALL: [Task; 2] = [Task::Prune, Task::Verify];

    fn word(self) -> &'static str {
        match self {
            Task::Prune => "prune",
            Task::Verify => "verify",
        }
    }

    fn state(self, e: &mut LocationReplication) -> &mut Option<MaintenanceState> {
        match self {
            Task::Prune => &mut e.prune,
            Task::Verify => &mut e.verification,
        }
    }

    fn args(self, policy: &BackupPolicy, url: &str) -> Vec<String> {
        match self {
            Task::Prune => vec!["prune".into(), url.into(), "--grace".into(), GRACE.into()],
            Task::Verify => {
                let pct = policy.spec.verification.as_ref().map_or(100, |v| v.sample_percent.clamp(1, 100));
                vec!["verify".into(), url.into(), "--sample".into(), pct.to_string()]
            }
        }
    }

    /// Event reasons for success and failure.
    fn reasons(self) -> (&'static str, &'static str) {
        match self {
            Task::Prune => (events::PRUNED, events::PRUNE_FAILED),
            Task::Verify => (events::VERIFIED, events::VERIFICATION_FAILED),
        }
    }
}

/// Marks a task as due at a location.
pub fn mark_due(st: &mut BackupPolicyStatus, location: &str, task: Task) {
    if let Some(e) = st.locations.iter_mut().find(|l| l.name == location) {
        task.state(e).get_or_insert_with(MaintenanceState::default).due = true;
    }
}

/// Follows running maintenance Jobs and starts the due ones; returns when to look again.
///
/// A due verification waits while a run of the policy is writing (`writing`), and the two
/// tasks never run at once at one location: a verification reads what is settled, not a
/// repository in the middle of a change (it would be safe, but would read data that is
/// about to change, and compete with the run for the same bandwidth).
pub async fn run(
    ctx: &Context,
    policy: &BackupPolicy,
    r: &Resolved,
    st: &mut BackupPolicyStatus,
    writing: bool,
) -> Result<Option<Duration>> {
    let ns = policy.namespace().unwrap_or_default();
    let now = ctx.now();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut wake: Option<Duration> = None;
    let mut soon = |d: Duration| wake = Some(wake.map_or(d, |w: Duration| w.min(d)));
    let oref = policy.object_ref(&());
    for task in Task::ALL {
        for (i, pl) in policy.spec.locations.iter().enumerate() {
            let loc =
                std::iter::once(&r.primary).chain(r.replicas.iter().map(|(_, l)| l)).find(|l| l.name_any() == pl.name);
            let Some(loc) = loc else { continue };
            let Some(entry) = st.locations.iter_mut().find(|l| l.name == pl.name) else { continue };
            let other = match task {
                Task::Prune => &entry.verification,
                Task::Verify => &entry.prune,
            };
            let held = other.as_ref().is_some_and(|o| o.job.is_some()) || (task == Task::Verify && writing);
            let Some(state) = task.state(entry).as_mut() else { continue };
            let mut finished: Option<(bool, Option<Value>, String)> = None;
            if let Some(job_name) = state.job.clone() {
                let Some(j) = jobs.get_opt(&job_name).await.map_err(Error::kube(format!("read Job {job_name}")))?
                else {
                    // Removed by someone else: what it did is unknown, so it is due again.
                    state.job = None;
                    state.due = true;
                    continue;
                };
                let message = movers::termination_message(ctx, &ns, &j).await?;
                let (ok, text, result, last_try) = match job_outcome(&j, message.as_deref()) {
                    JobOutcome::Running => {
                        soon(Duration::from_secs(5));
                        continue;
                    }
                    JobOutcome::Succeeded(res) => (true, summary(task, res.result.as_ref()), res.result, true),
                    JobOutcome::Failed { category, message, retryable } => {
                        // A transient failure is tried again; a finding (damage) is final.
                        state.due |= retryable;
                        (false, format!("{category}: {message}"), None, !retryable)
                    }
                };
                let (good, bad) = task.reasons();
                let note = format!("{} at {}: {text}", task.word(), pl.name);
                if ok {
                    ctx.events.normal(&oref, good, "Maintain", note).await;
                } else {
                    ctx.events.warning(&oref, bad, "Maintain", note).await;
                }
                state.job = None;
                state.last_time = Some(Time(now));
                state.succeeded = Some(ok);
                state.message = Some(text.clone());
                apply::delete(&jobs, &job_name).await.map_err(Error::kube(format!("remove Job {job_name}")))?;
                finished = last_try.then_some((ok, result, text));
            }
            if state.due && held {
                soon(Duration::from_secs(5));
            } else if state.due {
                start(ctx, policy, loc, task, i, state, now, &jobs, &mut soon).await?;
            }
            if let (Task::Verify, Some((ok, report, text))) = (task, finished) {
                record_verification(st, &pl.name, ok, report.as_ref(), &text, now);
            }
        }
    }
    Ok(wake)
}

#[allow(clippy::too_many_arguments)]
async fn start(
    ctx: &Context,
    policy: &BackupPolicy,
    loc: &BackupLocation,
    task: Task,
    i: usize,
    state: &mut MaintenanceState,
    now: jiff::Timestamp,
    jobs: &Api<Job>,
    soon: &mut impl FnMut(Duration),
) -> Result<()> {
    // After a failure, wait a while before the next attempt.
    if let (Some(false), Some(last)) = (state.succeeded, state.last_time.as_ref()) {
        let since = now.duration_since(last.0).unsigned_abs();
        if since < RETRY {
            soon(RETRY - since);
            return Ok(());
        }
    }
    if movers::slot(ctx).await?.is_some() {
        soon(Duration::from_secs(5));
        return Ok(());
    }
    let job_name = names::maintenance(&policy.name_any(), task.word(), i);
    apply::apply(jobs, super::NAME, &job::job(&plan(ctx, policy, loc, task, &job_name)))
        .await
        .map_err(Error::kube(format!("create {} Job {job_name}", task.word())))?;
    state.job = Some(job_name);
    state.due = false;
    soon(Duration::from_secs(5));
    Ok(())
}

/// Adds one location's finished verification to the policy's result for the round
/// (the newest verification slot): passed only if every location passed.
fn record_verification(
    st: &mut BackupPolicyStatus,
    location: &str,
    ok: bool,
    report: Option<&Value>,
    text: &str,
    now: jiff::Timestamp,
) {
    let bytes = report.and_then(|r| r["bytesRead"].as_i64());
    let round = st.last_verification_schedule_time.as_ref().map(|t| t.0);
    let same_round = st.last_verification.as_ref().is_some_and(|v| round.is_none_or(|r| v.time.0 >= r));
    let problem = (!ok).then(|| format!("{location}: {text}"));
    match st.last_verification.as_mut().filter(|_| same_round) {
        Some(v) => {
            v.time = Time(now);
            v.passed &= ok;
            v.checked_bytes = match (v.checked_bytes, bytes) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            if let Some(p) = problem {
                v.message = Some(match v.message.take() {
                    Some(m) => format!("{m}; {p}"),
                    None => p,
                });
            }
        }
        None => {
            st.last_verification =
                Some(CheckResult { time: Time(now), passed: ok, checked_bytes: bytes, message: problem })
        }
    }
}

/// What a task did, from its report.
fn summary(task: Task, report: Option<&Value>) -> String {
    let n = |k: &str| report.and_then(|r| r[k].as_u64()).unwrap_or(0);
    match task {
        Task::Prune => format!(
            "{} of {} packs unused and marked, {} deleted ({} bytes), {} waiting for the grace period",
            n("packsMarked"),
            n("packsTotal"),
            n("packsDeleted"),
            n("bytesDeleted"),
            n("packsWaiting")
        ),
        Task::Verify => format!(
            "checked {} of {} packs ({} bytes) and {} restore points: nothing damaged",
            n("packsChecked"),
            n("packsTotal"),
            n("bytesRead"),
            n("snapshotsChecked")
        ),
    }
}

fn plan(ctx: &Context, policy: &BackupPolicy, loc: &BackupLocation, task: Task, name: &str) -> Plan {
    let cfg = &ctx.config;
    let (env, env_from) = access::job_env(loc);
    let mut labels = crate::k8s::policy_labels(&policy.name_any());
    labels.insert(LABEL_COMPONENT.into(), COMPONENT_MOVER.into());
    Plan {
        name: name.into(),
        namespace: policy.namespace().unwrap_or_default(),
        labels,
        owner: apply::owner_ref(policy),
        image: cfg.mover_image.clone(),
        command: cfg.mover_command.clone(),
        pod: cfg.mover_pod.clone(),
        args: task.args(policy, &loc.spec.url),
        claim: None,
        writable: false,
        env,
        env_from,
        key: policy.spec.encryption.key_secret.clone(),
        host_paths: access::host_paths(&[loc]),
        deadline_seconds: cfg.mover_timeout.as_secs() as i64,
    }
}
