//! The policy's status, computed (pure) from the policy, its restore points and the time.

use crate::api::common::condition::{DEGRADED, PROGRESSING, READY};
use crate::api::policy::{LastBackup, LocationReplication, LocationRole, ReplicationState};
use crate::api::restore_point::RunPhase;
use crate::api::{BackupPolicy, BackupPolicyStatus, RestorePoint};
use crate::controller::restore_point::machine::terminal;
use crate::k8s::conditions;
use kube::{Resource, ResourceExt};
use std::time::Duration;

/// How far the achieved RPO may drift before it alone is worth a status write.
pub const RPO_RESOLUTION: Duration = Duration::from_secs(300);

/// The points that record runs (not failed ones), newest first by data time; of two
/// taken in the same second (times have a second's resolution: a run that waited for the
/// one before it may start in the second that one did), the later slot first.
pub fn completed(points: &[RestorePoint]) -> Vec<&RestorePoint> {
    let mut v: Vec<&RestorePoint> =
        points.iter().filter(|p| p.status.as_ref().is_some_and(|s| s.phase == RunPhase::Completed)).collect();
    v.sort_by_cached_key(|p| std::cmp::Reverse((data_time(p), p.spec.scheduled_time.0, p.name_any())));
    v
}

/// When a point's data was taken: the run's start (the snapshots follow within the hook
/// window), else its slot.
pub fn data_time(p: &RestorePoint) -> jiff::Timestamp {
    p.status.as_ref().and_then(|s| s.start_time.as_ref()).map(|t| t.0).unwrap_or(p.spec.scheduled_time.0)
}

/// The facts of the status (conditions are set by [`conditions_for`]).
pub fn compute(
    policy: &BackupPolicy,
    points: &[RestorePoint],
    old: &BackupPolicyStatus,
    now: jiff::Timestamp,
) -> BackupPolicyStatus {
    let mut st = old.clone();
    st.observed_generation = policy.meta().generation;
    let done = completed(points);
    let newest = done.first();
    st.last_backup = newest.map(|p| {
        let s = p.status.clone().unwrap_or_default();
        LastBackup {
            restore_point: p.name_any(),
            start_time: s.start_time,
            completion_time: s.completion_time,
            new_bytes: s.new_bytes,
        }
    });
    let rpo = newest.map(|p| now.duration_since(data_time(p)).unsigned_abs());
    st.achieved_rpo = match (rpo, &old.achieved_rpo) {
        // Unchanged but for drift below the resolution, and the breach state unchanged:
        // the old value stays (a status write per reconcile would be a storm).
        (Some(new), Some(was))
            if drift(new, (*was).into()) < resolution(policy)
                && breached(policy, Some(new)) == breached(policy, Some((*was).into())) =>
        {
            Some(*was)
        }
        (Some(new), _) => Some(Duration::from_secs(new.as_secs()).into()),
        (None, _) => None,
    };
    st.protected_bytes = newest.and_then(|p| p.status.as_ref()?.protected_bytes);
    let stored: i64 = done.iter().filter_map(|p| p.status.as_ref()?.new_bytes).sum();
    st.stored_bytes = (!done.is_empty()).then_some(stored);
    st.backup_ratio = match st.protected_bytes {
        Some(p) if p > 0 => Some(format!("{:.2}", stored as f64 / p as f64)),
        _ => None,
    };
    st.locations = policy
        .spec
        .locations
        .iter()
        .map(|l| {
            let here = done
                .iter()
                .find(|p| p.status.as_ref().is_some_and(|s| s.locations.iter().any(|x| x.name == l.name && x.present)));
            let state = match (here, newest) {
                (Some(h), Some(n)) if h.name_any() == n.name_any() => ReplicationState::InSync,
                (Some(_), _) => ReplicationState::Lagging,
                (None, _) => ReplicationState::Pending,
            };
            let previous = old.locations.iter().find(|x| x.name == l.name);
            LocationReplication {
                name: l.name.clone(),
                role: l.role,
                state: if l.role == LocationRole::Primary
                    || previous.is_none_or(|p| p.state != ReplicationState::Failing)
                {
                    state
                } else {
                    ReplicationState::Failing
                },
                last_restore_point: here.map(|p| p.name_any()),
                last_sync_time: here
                    .and_then(|p| p.status.as_ref()?.locations.iter().find(|x| x.name == l.name)?.time.clone()),
                message: previous
                    .and_then(|p| p.message.clone())
                    .filter(|_| previous.is_some_and(|p| p.state == ReplicationState::Failing)),
                prune: previous.and_then(|p| p.prune.clone()),
                verification: previous.and_then(|p| p.verification.clone()),
            }
        })
        .collect();
    st
}

/// How much the achieved RPO may drift before the status is rewritten: a quarter of the
/// target (a one-minute RPO is reported to within 15 s), at most [`RPO_RESOLUTION`], at
/// least 5 s.
pub fn resolution(policy: &BackupPolicy) -> Duration {
    match policy.spec.rpo {
        Some(t) => (Duration::from(t) / 4).clamp(Duration::from_secs(5), RPO_RESOLUTION),
        None => RPO_RESOLUTION,
    }
}

fn drift(a: Duration, b: Duration) -> Duration {
    a.abs_diff(b)
}

/// Whether the newest point is older than the policy's RPO.
pub fn breached(policy: &BackupPolicy, achieved: Option<Duration>) -> bool {
    match (policy.spec.rpo, achieved) {
        (Some(target), Some(a)) => a > Duration::from(target),
        _ => false,
    }
}

/// Conditions from the run state: `Progressing` while a run is going, `Degraded` when the
/// newest run failed or the RPO is breached, `Ready` otherwise (once a run completed).
pub fn conditions_for(
    policy: &BackupPolicy,
    points: &[RestorePoint],
    st: &mut BackupPolicyStatus,
    now: jiff::Timestamp,
) {
    let g = policy.meta().generation;
    let running = points.iter().find(|p| p.status.as_ref().is_none_or(|s| !terminal(s.phase)));
    match running {
        Some(p) => conditions::set(
            &mut st.conditions,
            PROGRESSING,
            true,
            "RunInProgress",
            &format!("restore point {} is being taken", p.name_any()),
            g,
            now,
        ),
        None => conditions::set(&mut st.conditions, PROGRESSING, false, "Idle", "", g, now),
    }
    let mut newest_run: Vec<&RestorePoint> =
        points.iter().filter(|p| p.status.as_ref().is_some_and(|s| terminal(s.phase))).collect();
    newest_run.sort_by_key(|p| std::cmp::Reverse(p.spec.scheduled_time.0));
    let failed = newest_run.first().filter(|p| p.status.as_ref().is_some_and(|s| s.phase == RunPhase::Failed));
    let achieved = st.achieved_rpo.map(Duration::from);
    let (degraded, reason, msg) = if let Some(p) = failed {
        let s = p.status.clone().unwrap_or_default();
        let reason =
            conditions::get(&s.conditions, DEGRADED).map(|c| c.reason.clone()).unwrap_or_else(|| "RunFailed".into());
        (true, reason, format!("the newest run {} failed: {}", p.name_any(), s.message.unwrap_or_default()))
    } else if breached(policy, achieved) {
        let target = policy.spec.rpo.map(|d| crate::api::schedule::go_duration(d.into())).unwrap_or_default();
        let a = achieved.map(crate::api::schedule::go_duration).unwrap_or_default();
        (true, "RPOBreached".to_string(), format!("the newest restore point is {a} old; the RPO is {target}"))
    } else {
        (false, "AsExpected".to_string(), String::new())
    };
    conditions::set(&mut st.conditions, DEGRADED, degraded, &reason, &msg, g, now);
    let has_point = st.last_backup.is_some();
    let (ready, r, m) = if degraded {
        (false, reason.clone(), msg.clone())
    } else if has_point {
        (
            true,
            "Protected".to_string(),
            format!(
                "newest restore point {}",
                st.last_backup.as_ref().map(|l| l.restore_point.as_str()).unwrap_or_default()
            ),
        )
    } else if policy.spec.suspend {
        (false, "Suspended".to_string(), "suspended before its first run".to_string())
    } else {
        (true, "Scheduled".to_string(), "waiting for the first run".to_string())
    };
    conditions::set(&mut st.conditions, READY, ready, &r, &m, g, now);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(name: &str, slot: &str, started: &str) -> RestorePoint {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "lifeline.io/v1alpha1", "kind": "RestorePoint",
            "metadata": {"name": name, "namespace": "records"},
            "spec": {"policy": "records", "scheduledTime": slot},
            "status": {"phase": "Completed", "startTime": started},
        }))
        .unwrap()
    }

    #[test]
    fn of_two_runs_started_in_one_second_the_later_slot_is_newest() {
        // The 20:32 run waited and started in the same second as the 20:33 one after it.
        let a = point("records-20261202-2032", "2026-12-02T20:32:00Z", "2026-12-02T20:33:02Z");
        let b = point("records-20261202-2033", "2026-12-02T20:33:00Z", "2026-12-02T20:33:02Z");
        let c = point("records-20261202-2031", "2026-12-02T20:31:00Z", "2026-12-02T20:31:05Z");
        for list in [vec![a.clone(), b.clone(), c.clone()], vec![c.clone(), b.clone(), a.clone()]] {
            let names: Vec<String> = completed(&list).iter().map(|p| p.name_any()).collect();
            assert_eq!(names, ["records-20261202-2033", "records-20261202-2032", "records-20261202-2031"]);
        }
    }
}
