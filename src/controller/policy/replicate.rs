//! Replication: each replica location gets the policy's newest restore point on its own
//! cadence (after every run when it has none), copied by a mover Job that uploads only
//! what the replica lacks, the volumes first and the record last, verifying what it
//! wrote. A failed copy is retried; the policy says which location fails and why.

use super::resolve::Resolved;
use super::status;
use crate::api::names::LABEL_POLICY;
use crate::api::policy::{LocationReplication, PolicyLocation, ReplicationState};
use crate::api::schedule::Schedule;
use crate::api::{BackupLocation, BackupPolicy, BackupPolicyStatus, RestorePoint};
use crate::controller::location::access;
use crate::controller::restore_point::machine::{JobOutcome, job_outcome};
use crate::controller::restore_point::names;
use crate::controller::{Context, Error, Result, movers};
use crate::k8s::{COMPONENT_MOVER, LABEL_COMPONENT, apply, events};
use crate::mover::job::{self, Plan};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::time::Duration;

/// How long a failed copy waits before it is tried again.
const RETRY: Duration = Duration::from_secs(30);

/// What replication needs the policy to say.
#[derive(Debug, Default)]
pub struct Report {
    /// The soonest time to look again.
    pub wake: Option<Duration>,
    /// A location that fails: condition reason and message.
    pub problem: Option<(String, String)>,
}

fn present(p: &RestorePoint, loc: &str) -> bool {
    p.status.as_ref().is_some_and(|s| s.locations.iter().any(|l| l.name == loc && l.present))
}

fn entry<'a>(st: &'a mut BackupPolicyStatus, name: &str) -> Option<&'a mut LocationReplication> {
    st.locations.iter_mut().find(|l| l.name == name)
}

pub async fn run(
    ctx: &Context,
    policy: &BackupPolicy,
    r: &Resolved,
    points: &[RestorePoint],
    st: &mut BackupPolicyStatus,
) -> Result<Report> {
    let mut report = Report::default();
    let now = ctx.now();
    let done = status::completed(points);
    let Some(newest) = done.first() else { return Ok(report) };
    // The run's own cleanup removes the Jobs labelled with it: copy once it is done.
    if !newest.status.as_ref().is_some_and(|s| s.cleaned_up) {
        report.wake = Some(Duration::from_secs(1));
        return Ok(report);
    }
    let older = finish_older(ctx, policy, r, &done[1..], now).await?;
    for (i, (pl, loc)) in r.replicas.iter().enumerate() {
        let name = loc.name_any();
        if present(newest, &name) {
            continue;
        }
        if let Some(wait) = cadence_wait(policy, pl, st, now) {
            report.wake = Some(report.wake.map_or(wait, |w| w.min(wait)));
            continue;
        }
        let point = newest.name_any();
        let ns = policy.namespace().unwrap_or_default();
        let job_name = names::replication(&point, i);
        let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
        let Some(j) = jobs.get_opt(&job_name).await.map_err(Error::kube(format!("read Job {job_name}")))? else {
            if movers::slot(ctx).await?.is_none() {
                let plan = plan(ctx, policy, newest, &r.primary, loc, &job_name);
                apply::apply(&jobs, super::NAME, &job::job(&plan))
                    .await
                    .map_err(Error::kube(format!("create replication Job {job_name}")))?;
            }
            report.wake = Some(Duration::from_secs(2));
            continue;
        };
        let message = movers::termination_message(ctx, &ns, &j).await?;
        match job_outcome(&j, message.as_deref()) {
            JobOutcome::Running => report.wake = Some(Duration::from_secs(2)),
            JobOutcome::Succeeded(_) => {
                record_copy(ctx, &jobs, &job_name, &point, &name, now).await?;
                if let Some(e) = entry(st, &name) {
                    e.state = ReplicationState::InSync;
                    e.last_restore_point = Some(point.clone());
                    e.last_sync_time = Some(Time(now));
                    e.message = None;
                }
                let note = format!("restore point {point} copied to {name} ({}) and verified there", loc.spec.url);
                ctx.events.normal(&newest.object_ref(&()), events::REPLICATED, "Replicate", note).await;
                report.wake = Some(Duration::from_secs(1));
            }
            JobOutcome::Failed { category, message, .. } => {
                let reason =
                    if category == "LocationUnreachable" { category.clone() } else { "ReplicationFailed".to_string() };
                let msg = format!("copy of {point} to {name} failed: {category}: {message}");
                let was_failing = st.locations.iter().any(|l| {
                    l.name == name && l.state == ReplicationState::Failing && l.message.as_deref() == Some(msg.as_str())
                });
                if let Some(e) = entry(st, &name) {
                    e.state = ReplicationState::Failing;
                    e.message = Some(msg.clone());
                }
                if !was_failing {
                    ctx.events
                        .warning(&policy.object_ref(&()), events::REPLICATION_FAILED, "Replicate", msg.clone())
                        .await;
                }
                report.problem = Some((reason, msg));
                // Kept for a while (its Pod says what happened), then removed so that the
                // next look starts a new copy.
                let finished = j.status.as_ref().and_then(|s| {
                    s.conditions.as_ref()?.iter().find(|c| c.status == "True")?.last_transition_time.clone()
                });
                let age = finished.map(|t| now.duration_since(t.0).unsigned_abs()).unwrap_or(RETRY);
                if age >= RETRY {
                    apply::delete(&jobs, &job_name).await.map_err(Error::kube("remove a failed replication Job"))?;
                    report.wake = Some(Duration::from_secs(1));
                } else {
                    report.wake = Some(RETRY - age);
                }
            }
        }
    }
    if let Some(w) = older {
        report.wake = Some(report.wake.map_or(w, |r| r.min(w)));
    }
    Ok(report)
}

/// Copies of older restore points still around: replication follows the newest point, so
/// a copy that was running when a newer run completed (or when the operator that started
/// it stopped) is no longer looked at there. A finished one is recorded (a succeeded copy
/// puts that point at the replica too) and removed; a running one is left to finish, as
/// what it uploads the newest point's copy does not upload again. Without this its Job
/// stayed until the point itself was pruned. Returns when to look again.
async fn finish_older(
    ctx: &Context,
    policy: &BackupPolicy,
    r: &Resolved,
    older: &[&RestorePoint],
    now: jiff::Timestamp,
) -> Result<Option<Duration>> {
    if r.replicas.is_empty() || older.is_empty() {
        return Ok(None);
    }
    let ns = policy.namespace().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let lp = ListParams::default().labels(&format!(
        "{LABEL_POLICY}={},{LABEL_COMPONENT}={COMPONENT_MOVER}",
        crate::k8s::truncate_label(&policy.name_any())
    ));
    let found = jobs.list(&lp).await.map_err(Error::kube("list replication Jobs"))?.items;
    let mut wake = None;
    for j in &found {
        let job_name = j.name_any();
        let copy = r.replicas.iter().enumerate().find_map(|(i, (_, loc))| {
            let p = older.iter().find(|p| names::replication(&p.name_any(), i) == job_name)?;
            Some((*p, loc.name_any()))
        });
        let Some((point, loc)) = copy else { continue };
        let message = movers::termination_message(ctx, &ns, j).await?;
        match job_outcome(j, message.as_deref()) {
            JobOutcome::Running => wake = Some(Duration::from_secs(2)),
            JobOutcome::Succeeded(_) => record_copy(ctx, &jobs, &job_name, &point.name_any(), &loc, now).await?,
            JobOutcome::Failed { .. } => {
                // The newest point's copy supersedes it.
                apply::delete(&jobs, &job_name).await.map_err(Error::kube("remove a failed replication Job"))?;
            }
        }
    }
    Ok(wake)
}

/// A succeeded copy: its point recorded at the replica `loc`, its Job removed.
async fn record_copy(
    ctx: &Context,
    jobs: &Api<Job>,
    job_name: &str,
    point: &str,
    loc: &str,
    now: jiff::Timestamp,
) -> Result<()> {
    let points: Api<RestorePoint> = Api::namespaced(ctx.client.clone(), jobs.namespace().unwrap_or_default());
    apply::apply_presence(&points, point, loc, true, Some(now), None)
        .await
        .map_err(Error::kube(format!("record RestorePoint {point} at {loc}")))?;
    apply::delete(jobs, job_name).await.map_err(Error::kube("remove a replication Job"))
}

/// With a cadence, how long until the next copy is due (`None`: due now).
fn cadence_wait(
    policy: &BackupPolicy,
    pl: &PolicyLocation,
    st: &BackupPolicyStatus,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let cron = pl.schedule.as_ref()?;
    let schedule = Schedule::parse(cron, &policy.spec.time_zone).ok()?;
    let since = st
        .locations
        .iter()
        .find(|l| l.name == pl.name)
        .and_then(|l| l.last_sync_time.as_ref())
        .map(|t| t.0)
        .or(policy.meta().creation_timestamp.as_ref().map(|t| t.0))?;
    let next = schedule.next_after(since)?;
    (next > now).then(|| next.duration_since(now).unsigned_abs())
}

fn plan(
    ctx: &Context,
    policy: &BackupPolicy,
    point: &RestorePoint,
    from: &BackupLocation,
    to: &BackupLocation,
    name: &str,
) -> Plan {
    let cfg = &ctx.config;
    let (mut env, mut env_from) = access::job_env(from);
    let (to_env, to_from) = access::job_env(to);
    // The destination's settings under `LIFELINE_TO_` (`LIFELINE_S3_ENDPOINT` becomes
    // `LIFELINE_TO_S3_ENDPOINT`); its endpoint is always set, so it never falls back to
    // the source's.
    env.push(json!({"name": "LIFELINE_TO_S3_ENDPOINT", "value": to.spec.endpoint.clone().unwrap_or_default()}));
    env.extend(to_env.into_iter().filter(|e| e["name"] != "LIFELINE_S3_ENDPOINT").map(|mut e| {
        let n = e["name"].as_str().unwrap_or_default().trim_start_matches("LIFELINE_").to_string();
        e["name"] = Value::String(format!("LIFELINE_TO_{n}"));
        e
    }));
    env_from.extend(to_from.into_iter().map(|mut e| {
        e["prefix"] = json!("LIFELINE_TO_");
        e
    }));
    let mut labels = crate::k8s::child_labels(&policy.name_any(), &point.name_any());
    labels.insert(LABEL_COMPONENT.into(), COMPONENT_MOVER.into());
    let host_paths = access::host_paths(&[from, to]);
    Plan {
        name: name.into(),
        namespace: policy.namespace().unwrap_or_default(),
        labels,
        owner: apply::owner_ref(point),
        image: cfg.mover_image.clone(),
        command: cfg.mover_command.clone(),
        pod: cfg.mover_pod.clone(),
        args: vec![
            "replicate".into(),
            from.spec.url.clone(),
            to.spec.url.clone(),
            "--point".into(),
            point.name_any(),
            "--namespace".into(),
            point.namespace().unwrap_or_default(),
        ],
        claim: None,
        writable: false,
        env,
        env_from,
        key: policy.spec.encryption.key_secret.clone(),
        host_paths,
        deadline_seconds: cfg.mover_timeout.as_secs() as i64,
    }
}
