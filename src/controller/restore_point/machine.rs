//! The pure decisions of a run: what a finished mover Job means, whether a step ran past
//! its deadline, and the figures of the whole run. Table-tested below.

use crate::api::RestorePointStatus;
use crate::api::restore_point::{Progress, RunPhase};
use crate::mover::MoverResult;
use k8s_openapi::api::batch::v1::Job;
use std::time::Duration;

/// What a mover Job's state and its Pod's termination message say.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// Still running (or not started).
    Running,
    /// Finished with a successful result.
    Succeeded(MoverResult),
    /// Finished without success: the mover's error, or why there is no result.
    Failed { category: String, message: String, retryable: bool },
}

/// Decides from the Job and its Pod's termination message. A Job that completed but
/// left no readable result is a failure (retryable): the exit code alone never counts.
pub fn job_outcome(job: &Job, message: Option<&str>) -> JobOutcome {
    let st = job.status.clone().unwrap_or_default();
    let cond = |t: &str| st.conditions.iter().flatten().find(|c| c.type_ == t && c.status == "True").cloned();
    let complete = cond("Complete").is_some();
    let failed = cond("Failed");
    if !complete && failed.is_none() {
        return JobOutcome::Running;
    }
    match message.map(MoverResult::parse) {
        Some(Ok(r)) if r.ok && complete => JobOutcome::Succeeded(r),
        Some(Ok(r)) => {
            let e = r.error.unwrap_or_else(|| crate::mover::MoverError {
                category: "Error".into(),
                message: "the Job failed after reporting success".into(),
                hint: String::new(),
                retryable: true,
            });
            let message = if e.hint.is_empty() { e.message } else { format!("{} ({})", e.message, e.hint) };
            JobOutcome::Failed { category: e.category, message, retryable: e.retryable }
        }
        Some(Err(parse)) => {
            let why = failed.and_then(|c| c.message).unwrap_or_default();
            let tail = message.unwrap_or_default().trim().lines().last().unwrap_or_default().to_string();
            JobOutcome::Failed {
                category: "MoverDied".into(),
                message: format!("{parse}; {why} {tail}").trim().to_string(),
                retryable: true,
            }
        }
        None => {
            let why = failed.map(|c| format!("{}: {}", c.reason.unwrap_or_default(), c.message.unwrap_or_default()));
            JobOutcome::Failed {
                category: "MoverDied".into(),
                message: why.unwrap_or_else(|| "the mover Pod is gone and left no result".into()),
                retryable: true,
            }
        }
    }
}

/// Whether the current step has run longer than `limit`.
pub fn past_deadline(st: &RestorePointStatus, now: jiff::Timestamp, limit: Duration) -> bool {
    st.step_start_time.as_ref().is_some_and(|t| {
        now.duration_since(t.0) > jiff::SignedDuration::try_from(limit).unwrap_or(jiff::SignedDuration::MAX)
    })
}

/// Terminal phases.
pub fn terminal(p: RunPhase) -> bool {
    matches!(p, RunPhase::Completed | RunPhase::Failed)
}

/// Moves to a phase, restarting the step clock.
pub fn enter(st: &mut RestorePointStatus, p: RunPhase, now: jiff::Timestamp) {
    if st.phase != p {
        st.phase = p;
        st.step_start_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(now));
    }
}

/// Progress of the upload over all volumes, with an ETA from the rate so far.
pub fn progress(st: &RestorePointStatus, now: jiff::Timestamp) -> Option<Progress> {
    let total: i64 = st.volumes.iter().filter_map(|v| v.bytes_total.or(v.capacity_bytes)).sum();
    let done: i64 = st.volumes.iter().filter_map(|v| v.bytes_done).sum();
    if total == 0 {
        return None;
    }
    let eta = st.step_start_time.as_ref().and_then(|t| {
        let secs = now.duration_since(t.0).as_secs_f64();
        (done > 0 && secs > 0.0 && done < total).then(|| {
            let rate = done as f64 / secs;
            std::time::Duration::from_secs(((total - done) as f64 / rate) as u64).into()
        })
    });
    Some(Progress { bytes_done: done, bytes_total: total, eta })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(conditions: serde_json::Value) -> Job {
        serde_json::from_value(json!({"metadata": {"name": "j"}, "status": {"conditions": conditions}})).unwrap()
    }

    #[test]
    fn only_a_readable_successful_result_is_a_success() {
        let ok = r#"{"ok": true, "command": "backup", "seconds": 1.0, "result": {}}"#;
        let bad = r#"{"ok": false, "command": "backup", "error": {"category": "WrongKey", "message": "wrong key", "retryable": false}}"#;
        let complete = job(json!([{"type": "Complete", "status": "True"}]));
        let failed = job(
            json!([{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified backoff limit"}]),
        );
        assert_eq!(job_outcome(&job(json!([])), None), JobOutcome::Running);
        assert!(matches!(job_outcome(&complete, Some(ok)), JobOutcome::Succeeded(_)));
        // Exit code 0 with no result, or a torn result: never a success.
        assert!(matches!(job_outcome(&complete, None), JobOutcome::Failed { retryable: true, .. }));
        assert!(matches!(job_outcome(&complete, Some("{\"ok\": tr")), JobOutcome::Failed { retryable: true, .. }));
        match job_outcome(&failed, Some(bad)) {
            JobOutcome::Failed { category, retryable, .. } => {
                assert_eq!((category.as_str(), retryable), ("WrongKey", false))
            }
            o => panic!("{o:?}"),
        }
        match job_outcome(&failed, Some("panic: out of memory\n")) {
            JobOutcome::Failed { category, message, .. } => {
                assert_eq!(category, "MoverDied");
                assert!(message.contains("out of memory"), "{message}");
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn deadlines_count_from_the_step_start() {
        let t0: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut st = RestorePointStatus::default();
        enter(&mut st, RunPhase::Snapshotting, t0);
        let later = t0.checked_add(jiff::SignedDuration::from_secs(601)).unwrap();
        assert!(past_deadline(&st, later, Duration::from_secs(600)));
        assert!(!past_deadline(&st, later, Duration::from_secs(700)));
        // Entering the same phase again keeps the clock.
        enter(&mut st, RunPhase::Snapshotting, later);
        assert!(past_deadline(&st, later, Duration::from_secs(600)));
    }
}
