//! Pruning, per location: once retention has forgotten restore points at a location, a
//! mover Job (`lifeline mover prune`) frees the data no restore point needs any more. The
//! repository's prune works in two phases (mark now, delete what an earlier prune marked
//! once the grace period has passed and no older writer runs), so a backup that runs
//! meanwhile never loses data, and the bytes forgotten today are freed by the next prune.
//! The policy's status says, per location, whether a prune is due, which Job runs it, and
//! what the last one did.

use super::resolve::Resolved;
use crate::api::policy::PruneState;
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
use std::time::Duration;

/// How long after a failed prune the next is tried.
const RETRY: Duration = Duration::from_secs(60);

/// Grace period of the prunes the operator runs: a pack marked unused is deleted by a
/// later prune at least this long after the mark.
pub const GRACE: &str = "1h";

/// Marks a prune as due at a location (after retention forgot something there).
pub fn mark_due(st: &mut BackupPolicyStatus, location: &str) {
    if let Some(e) = st.locations.iter_mut().find(|l| l.name == location) {
        e.prune.get_or_insert_with(PruneState::default).due = true;
    }
}

/// Follows running prune Jobs and starts the due ones; returns when to look again.
pub async fn run(
    ctx: &Context,
    policy: &BackupPolicy,
    r: &Resolved,
    st: &mut BackupPolicyStatus,
) -> Result<Option<Duration>> {
    let ns = policy.namespace().unwrap_or_default();
    let now = ctx.now();
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    let mut wake: Option<Duration> = None;
    let mut soon = |d: Duration| wake = Some(wake.map_or(d, |w: Duration| w.min(d)));
    for (i, pl) in policy.spec.locations.iter().enumerate() {
        let loc =
            std::iter::once(&r.primary).chain(r.replicas.iter().map(|(_, l)| l)).find(|l| l.name_any() == pl.name);
        let (Some(loc), Some(entry)) = (loc, st.locations.iter_mut().find(|l| l.name == pl.name)) else { continue };
        let Some(pr) = entry.prune.as_mut() else { continue };
        if let Some(job_name) = pr.job.clone() {
            let Some(j) = jobs.get_opt(&job_name).await.map_err(Error::kube(format!("read Job {job_name}")))? else {
                // Removed by someone else: what it did is unknown, so prune again.
                pr.job = None;
                pr.due = true;
                continue;
            };
            let message = movers::termination_message(ctx, &ns, &job_name).await?;
            let oref = policy.object_ref(&());
            match job_outcome(&j, message.as_deref()) {
                JobOutcome::Running => {
                    soon(Duration::from_secs(5));
                    continue;
                }
                JobOutcome::Succeeded(res) => {
                    let text = summary(res.result.as_ref());
                    let note = format!("prune at {}: {text}", pl.name);
                    ctx.events.normal(&oref, events::PRUNED, "Prune", note).await;
                    pr.message = Some(text);
                }
                JobOutcome::Failed { category, message, retryable } => {
                    let text = format!("failed: {category}: {message}");
                    ctx.events
                        .warning(&oref, events::PRUNE_FAILED, "Prune", format!("prune at {}: {text}", pl.name))
                        .await;
                    pr.message = Some(text);
                    pr.due |= retryable;
                }
            }
            pr.job = None;
            pr.last_time = Some(Time(now));
            apply::delete(&jobs, &job_name).await.map_err(Error::kube(format!("remove Job {job_name}")))?;
        }
        if !pr.due {
            continue;
        }
        // After a failure, wait a while before the next attempt.
        let failed = pr.message.as_deref().is_some_and(|m| m.starts_with("failed:"));
        if let Some(last) = pr.last_time.as_ref().map(|t| t.0).filter(|_| failed) {
            let since = now.duration_since(last).unsigned_abs();
            if since < RETRY {
                soon(RETRY - since);
                continue;
            }
        }
        if movers::slot(ctx).await?.is_some() {
            soon(Duration::from_secs(5));
            continue;
        }
        let job_name = names::prune(&policy.name_any(), i);
        apply::apply(&jobs, super::NAME, &job::job(&plan(ctx, policy, loc, &job_name)))
            .await
            .map_err(Error::kube(format!("create prune Job {job_name}")))?;
        pr.job = Some(job_name);
        pr.due = false;
        soon(Duration::from_secs(5));
    }
    Ok(wake)
}

/// What a prune did, from its report.
fn summary(report: Option<&serde_json::Value>) -> String {
    let n = |k: &str| report.and_then(|r| r[k].as_u64()).unwrap_or(0);
    format!(
        "{} of {} packs unused and marked, {} deleted ({} bytes), {} waiting for the grace period",
        n("packsMarked"),
        n("packsTotal"),
        n("packsDeleted"),
        n("bytesDeleted"),
        n("packsWaiting")
    )
}

fn plan(ctx: &Context, policy: &BackupPolicy, loc: &BackupLocation, name: &str) -> Plan {
    let cfg = &ctx.config;
    let (env, env_from) = access::job_env(loc);
    let mut labels = std::collections::BTreeMap::new();
    labels.insert(crate::api::names::LABEL_MANAGED_BY.into(), crate::api::names::MANAGED_BY_VALUE.into());
    labels.insert(crate::api::names::LABEL_POLICY.into(), crate::k8s::truncate_label(&policy.name_any()));
    labels.insert(LABEL_COMPONENT.into(), COMPONENT_MOVER.into());
    Plan {
        name: name.into(),
        namespace: policy.namespace().unwrap_or_default(),
        labels,
        owner: apply::owner_ref(policy),
        image: cfg.mover_image.clone(),
        command: cfg.mover_command.clone(),
        args: vec!["prune".into(), loc.spec.url.clone(), "--grace".into(), GRACE.into()],
        claim: None,
        env,
        env_from,
        key: policy.spec.encryption.key_secret.clone(),
        host_paths: crate::store::file_path(&loc.spec.url).ok().map(|p| p.display().to_string()).into_iter().collect(),
        deadline_seconds: cfg.mover_timeout.as_secs() as i64,
    }
}
