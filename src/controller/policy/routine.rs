//! Scheduled verification and drills, on their own cron schedules in the policy's time
//! zone. As with runs, slots missed while the operator was down are made up once (the
//! latest), and `suspend` pauses them too.
//!
//! - A verification slot makes a verification due at every location of the policy; the
//!   maintenance Jobs carry it out (see [`super::maintenance`]).
//! - A drill slot is recorded as a RestorePlan in mode `Drill`, named `<policy>-drill-<slot>`,
//!   for the newest complete restore point: restored into the scratch namespace
//!   (`spec.drill.targetNamespace`, else `<namespace>-drill`), checked with the drill's
//!   checks within its timeout. The recovery controller carries it out and records the
//!   result in the plan's status. The newest [`DRILL_HISTORY`] drill plans are kept.

use super::maintenance::{self, Task};
use super::{plan, status};
use crate::api::names::LABEL_POLICY;
use crate::api::policy::Drill;
use crate::api::schedule::Schedule;
use crate::api::{BackupPolicy, BackupPolicyStatus, RestorePlan, RestorePoint};
use crate::controller::restore_plan::ANNOTATION_PLAN;
use crate::controller::restore_point::names;
use crate::controller::{Context, Error, Result};
use crate::k8s::{LABEL_COMPONENT, apply, events};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::time::Duration;

/// Drill plans kept per policy (older ones are removed; the newest result stays).
pub const DRILL_HISTORY: usize = 3;

/// Value of `app.kubernetes.io/component` on drill plans.
pub const COMPONENT_DRILL: &str = "drill";

/// Starts what is due; returns how long until the next slot.
pub async fn run(
    ctx: &Context,
    policy: &BackupPolicy,
    points: &[RestorePoint],
    old: &BackupPolicyStatus,
    st: &mut BackupPolicyStatus,
) -> Result<Option<Duration>> {
    let now = ctx.now();
    let oref = policy.object_ref(&());
    let mut wake: Option<Duration> = None;

    st.next_verification = None;
    if let Some(v) = &policy.spec.verification {
        let (slot, next) =
            due(policy, "spec.verification.schedule", &v.schedule, &old.last_verification_schedule_time, now)?;
        st.next_verification = next.map(Time);
        wake = soonest(wake, next, now);
        if let Some(slot) = slot {
            // Locations that hold a restore point of the policy (a replica that has had
            // no copy yet has nothing to verify).
            let holding: Vec<String> =
                st.locations.iter().filter(|l| l.last_restore_point.is_some()).map(|l| l.name.clone()).collect();
            for l in &holding {
                maintenance::mark_due(st, l, Task::Verify);
            }
            st.last_verification_schedule_time = Some(Time(slot));
            let note = format!(
                "verification of slot {slot} started at {} location(s), reading {} % of the data",
                holding.len(),
                v.sample_percent
            );
            ctx.events.normal(&oref, events::VERIFICATION_STARTED, "Verify", note).await;
        }
    }

    st.next_drill = None;
    if let Some(d) = &policy.spec.drill {
        let (slot, next) = due(policy, "spec.drill.schedule", &d.schedule, &old.last_drill_schedule_time, now)?;
        st.next_drill = next.map(Time);
        wake = soonest(wake, next, now);
        if let Some(slot) = slot {
            st.last_drill_schedule_time = Some(Time(slot));
            match status::completed(points).first() {
                None => {
                    let note = format!("drill of slot {slot} skipped: there is no complete restore point yet");
                    ctx.events.warning(&oref, events::DRILL_SKIPPED, "Drill", note).await;
                }
                Some(point) => {
                    let name = schedule_drill(ctx, policy, d, &point.name_any(), slot).await?;
                    let note = format!(
                        "drill of slot {slot} recorded as RestorePlan {name}, for restore point {}",
                        point.name_any()
                    );
                    ctx.events.normal(&oref, events::DRILL_SCHEDULED, "Drill", note).await;
                }
            }
        }
    }
    Ok(wake)
}

/// A schedule's slot to start now (the latest missed one, once) and its next slot; none
/// while the policy is suspended.
fn due(
    policy: &BackupPolicy,
    field: &str,
    cron: &str,
    last: &Option<Time>,
    now: jiff::Timestamp,
) -> Result<(Option<jiff::Timestamp>, Option<jiff::Timestamp>)> {
    let sched = Schedule::parse(cron, &policy.spec.time_zone).map_err(|e| Error::Invalid(format!("{field}: {e}")))?;
    if policy.spec.suspend {
        return Ok((None, None));
    }
    let since = policy.meta().creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let d = plan::due(&sched, last.as_ref().map(|t| t.0), since, now);
    Ok((d.run, d.next))
}

/// The sooner of `wake` and the time until `next`.
fn soonest(wake: Option<Duration>, next: Option<jiff::Timestamp>, now: jiff::Timestamp) -> Option<Duration> {
    let w = next.map(|n| n.duration_since(now).unsigned_abs());
    match (wake, w) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// The scratch namespace of the policy's drills.
pub fn drill_namespace(policy: &BackupPolicy) -> String {
    let own = policy.namespace().unwrap_or_default();
    policy
        .spec
        .drill
        .as_ref()
        .and_then(|d| d.target_namespace.clone())
        .unwrap_or_else(|| names::scratch_namespace(&own))
}

/// Refuses a drill whose scratch namespace exists and is not one of this policy's
/// drills' (an application's namespace, another team's, a system namespace): a drill
/// creates its scratch namespace and deletes it afterwards, so it must never adopt one.
pub async fn check_drill_namespace(ctx: &Context, policy: &BackupPolicy) -> Result<()> {
    if policy.spec.drill.is_none() {
        return Ok(());
    }
    let target = drill_namespace(policy);
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(ctx.client.clone());
    let Some(existing) = api.get_opt(&target).await.map_err(Error::kube(format!("read Namespace {target}")))? else {
        return Ok(());
    };
    // Made by a drill of this namespace (a kept failed one says so itself when it runs).
    let ours = format!("{}/", policy.namespace().unwrap_or_default());
    let made_by = existing.metadata.annotations.as_ref().and_then(|a| a.get(ANNOTATION_PLAN));
    if made_by.is_some_and(|p| p.starts_with(&ours)) {
        return Ok(());
    }
    Err(Error::NotPermitted(format!(
        "spec.drill.targetNamespace: namespace {target} exists and was not created by a drill of this policy: a drill restores only into a scratch namespace it creates, and deletes it afterwards; name another one"
    )))
}

/// Creates the drill's RestorePlan (once: the name comes from the slot) and trims the
/// history of drill plans.
async fn schedule_drill(
    ctx: &Context,
    policy: &BackupPolicy,
    d: &Drill,
    point: &str,
    slot: jiff::Timestamp,
) -> Result<String> {
    let ns = policy.namespace().unwrap_or_default();
    let name = names::drill(&policy.name_any(), slot);
    // The primary first, then the replicas, as the policy lists them.
    let mut locations: Vec<&crate::api::policy::PolicyLocation> = policy.spec.locations.iter().collect();
    locations.sort_by_key(|l| l.role != crate::api::policy::LocationRole::Primary);
    let mut labels = crate::k8s::policy_labels(&policy.name_any());
    labels.insert(LABEL_COMPONENT.into(), COMPONENT_DRILL.into());
    let plan = json!({
        "apiVersion": "lifeline.io/v1alpha1", "kind": "RestorePlan",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": labels,
            "ownerReferences": [apply::owner_ref(policy)],
        },
        "spec": {
            "mode": "Drill",
            "source": {"locations": locations.iter().map(|l| l.name.clone()).collect::<Vec<_>>(), "policy": policy.name_any()},
            "pointInTime": {"type": "Named", "restorePoint": point},
            "target": {"namespace": drill_namespace(policy)},
            "postRestoreHooks": d.checks,
            "drill": {"timeout": d.timeout, "keepOnFailure": d.keep_on_failure},
        },
    });
    let api: Api<RestorePlan> = Api::namespaced(ctx.client.clone(), &ns);
    let obj: RestorePlan = serde_json::from_value(plan).map_err(|e| Error::Invalid(format!("drill plan: {e}")))?;
    match api.create(&Default::default(), &obj).await {
        Ok(_) => {}
        Err(e) if crate::k8s::is_conflict(&e) => {}
        Err(e) => return Err(Error::kube(format!("create RestorePlan {name}"))(e)),
    }
    let lp = ListParams::default().labels(&format!(
        "{LABEL_POLICY}={},{LABEL_COMPONENT}={COMPONENT_DRILL}",
        crate::k8s::truncate_label(&policy.name_any())
    ));
    let mut plans = api.list(&lp).await.map_err(Error::kube("list drill RestorePlans"))?.items;
    plans.retain(|p| p.spec.source.policy == policy.name_any());
    plans.sort_by_key(|p| std::cmp::Reverse((p.meta().creation_timestamp.clone().map(|t| t.0), p.name_any())));
    for p in plans.iter().skip(DRILL_HISTORY) {
        apply::delete(&api, &p.name_any()).await.map_err(Error::kube("remove an old drill RestorePlan"))?;
    }
    Ok(name)
}
