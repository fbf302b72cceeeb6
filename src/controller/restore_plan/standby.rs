//! `WarmStandby`: the standby volumes kept at the newest restore point, the workloads at
//! zero, until a failover promotes them.
//!
//! Resolving -> RestoringVolumes (the claims created and filled) -> StartingWorkloads
//! (the StatefulSets created at zero replicas) -> **Standby**. In Standby the plan looks
//! for a newer completed restore point at a source location it can read; when there is
//! one it goes through RestoringVolumes again: each volume brought to the new point in
//! place (`restore --in-place --check`: only what differs is written, and everything is
//! read back against the point), then back to Standby, with the lag and the bytes the
//! refresh wrote in `status.standby`.
//!
//! **Promotion**: `spec.failover.promote: true`, or (trigger `HeartbeatLoss`) the
//! primary lost (see [`super::heartbeat`]). The newest point is checked against
//! `spec.failover.maxDataAge` (refused with `DataTooOld` unless `force`), the old primary
//! is fenced (see [`super::fencing`]), the volumes are brought to that point if the
//! standby is behind it, and the StatefulSets are scaled up group by group behind their
//! readiness gates -> Completed. The RTO counts from the promotion.

use super::{Chosen, Run, enter};
use crate::api::RestorePlanStatus;
use crate::api::common::condition::{DEGRADED, PROGRESSING, READY};
use crate::api::restore_plan::{PlanPhase, PointInTime, RestoredPoint, StandbyStatus, TriggerType};
use crate::controller::{Error, Result};
use crate::k8s::{conditions, events};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::Resource;
use kube::runtime::controller::Action;
use std::time::Duration;

/// How often a standby without a heartbeat trigger looks for new restore points.
const LOOK: Duration = Duration::from_secs(5);
/// The least change of `status.standby.lag` that is written.
const LAG_RESOLUTION: Duration = Duration::from_secs(30);

pub async fn step(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Action> {
    let now = run.now();
    let g = run.plan.meta().generation;
    let heartbeat = run.plan.spec.trigger.type_ == TriggerType::HeartbeatLoss;
    let poll = if heartbeat { super::heartbeat::poll(run).min(LOOK) } else { LOOK };
    let asked = run.plan.spec.failover.as_ref().is_some_and(|f| f.promote);
    let mut why = asked.then(|| "promotion requested (spec.failover.promote)".to_string());
    let mut watching = None;
    if why.is_none() && heartbeat {
        match super::heartbeat::watch(run, st).await? {
            super::heartbeat::Verdict::Lost(m) => why = Some(m),
            super::heartbeat::Verdict::Alive(m) | super::heartbeat::Verdict::Deciding(m) => watching = Some(m),
        }
    }
    let newest = match super::choose(run, &PointInTime::default()).await? {
        Chosen::Point(c) => Some(c),
        Chosen::NotChecked(_) | Chosen::None(_) => None,
    };
    if let Some(why) = why {
        return promote(run, st, &why, newest).await;
    }
    let held = st.restored_point.clone();
    if let Some(c) = &newest
        && held.as_ref().is_none_or(|h| h.name != c.point && h.time.0 < c.time)
    {
        let msg = format!("refreshing the standby to restore point {} (from {}), in place", c.point, c.location);
        run.event(false, events::STANDBY_REFRESHING, msg.clone()).await;
        switch(st, c, now);
        conditions::set(&mut st.conditions, PROGRESSING, true, "Refreshing", &msg, g, now);
        st.message = Some(msg);
        enter(st, PlanPhase::RestoringVolumes, now);
        return Ok(Action::requeue(Duration::ZERO));
    }
    let sb = st.standby.get_or_insert_with(Default::default);
    if let Some(t) = &sb.point_time {
        let lag = Duration::from_secs(now.duration_since(t.0).unsigned_abs().as_secs());
        // Rewritten when it drifts by a quarter (30 s at least), not at every look.
        let old = sb.lag.map(Duration::from);
        if old.is_none_or(|o| o.abs_diff(lag) >= (o / 4).max(LAG_RESOLUTION)) {
            sb.lag = Some(lag.into());
        }
    }
    let mut msg = format!(
        "standby holds restore point {} (lag {}); workloads at zero until promoted",
        sb.point.as_deref().unwrap_or("?"),
        sb.lag.map(|l| l.to_string()).unwrap_or_else(|| "unknown".into())
    );
    if let Some(w) = watching {
        msg.push_str(&format!("; {w}"));
    }
    conditions::set(&mut st.conditions, READY, true, "Standby", &msg, g, now);
    conditions::set(&mut st.conditions, PROGRESSING, false, "Standby", "", g, now);
    conditions::set(&mut st.conditions, DEGRADED, false, "Standby", "", g, now);
    st.message = Some(msg);
    Ok(Action::requeue(poll))
}

/// Points the run at a newer restore point: every volume is brought to it again.
fn switch(st: &mut RestorePlanStatus, c: &super::select::Choice, now: jiff::Timestamp) {
    super::restore_again(st, RestoredPoint { name: c.point.clone(), time: Time(c.time), location: c.location.clone() });
    let sb = st.standby.get_or_insert_with(Default::default);
    sb.refresh_started = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now));
}

/// Called when a refresh (or the first fill) is complete and the workloads are held at
/// zero: the Jobs go, the status says what the standby holds, and the plan waits.
pub async fn refreshed(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<()> {
    let now = run.now();
    if let Err(e) = super::volumes::remove_jobs(run).await {
        tracing::warn!(plan = %run.name, error = %e, "could not remove the restore Jobs of a refresh");
    }
    let written: i64 = st.volumes.iter().map(|v| v.written.unwrap_or(v.bytes_done)).sum();
    let total: i64 = st.volumes.iter().map(|v| v.bytes_done).sum();
    let point = st.restored_point.clone();
    let start = st.start_time.clone();
    let sb = st.standby.get_or_insert_with(StandbyStatus::default);
    let started = sb.refresh_started.take().or(start).map(|t| t.0).unwrap_or(now);
    let took = now.duration_since(started).unsigned_abs();
    sb.refreshes += 1;
    sb.point = point.as_ref().map(|p| p.name.clone());
    sb.point_time = point.as_ref().map(|p| p.time.clone());
    sb.lag = point.as_ref().map(|p| Duration::from_secs(now.duration_since(p.time.0).unsigned_abs().as_secs()).into());
    sb.last_refresh_time = Some(Time(now));
    sb.last_refresh_bytes = Some(written);
    sb.last_refresh_duration = Some(Duration::from_millis(took.as_millis() as u64).into());
    run.event(
        false,
        events::STANDBY_READY,
        format!(
            "standby holds restore point {}: {} volume(s), {total} bytes, {written} written by this refresh in {}",
            sb.point.as_deref().unwrap_or("?"),
            st.volumes.len(),
            crate::api::common::Duration::from(took)
        ),
    )
    .await;
    enter(st, PlanPhase::Standby, now);
    Ok(())
}

/// Promotes the standby, or refuses to (data too old) and says why.
async fn promote(
    run: &Run<'_>,
    st: &mut RestorePlanStatus,
    why: &str,
    newest: Option<super::select::Choice>,
) -> Result<Action> {
    let now = run.now();
    // In Standby the volumes hold a point (the first fill put one there).
    let held = st.restored_point.clone().ok_or_else(|| Error::Invalid("the standby holds no restore point".into()))?;
    // The newest readable point if it is newer, else the one the volumes hold (the
    // locations may be unreachable: the standby still has its data).
    let candidate = match newest {
        Some(c) if c.time > held.time.0 => c,
        _ => super::select::Choice {
            point: held.name.clone(),
            time: held.time.0,
            location: held.location.clone(),
            passed_over: Vec::new(),
        },
    };
    if let Some(msg) = super::too_old(run, &candidate) {
        super::refuse(run, st, &msg).await;
        return Ok(Action::requeue(LOOK));
    }
    let refresh = held.name != candidate.point;
    if refresh {
        switch(st, &candidate, now);
    }
    st.start_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now));
    st.rpo =
        super::failure_time(run, st).map(|t| super::millis(t.duration_since(candidate.time).unsigned_abs()).into());
    st.standby.get_or_insert_with(Default::default).promoted = Some(Time(now));
    let msg = format!(
        "promoting the warm standby ({why}): restore point {}{}",
        candidate.point,
        if refresh { " (refreshing first)" } else { " (held already)" }
    );
    run.event(false, events::PROMOTING, msg.clone()).await;
    let g = run.plan.meta().generation;
    conditions::set(&mut st.conditions, PROGRESSING, true, "Promoting", &msg, g, now);
    conditions::set(&mut st.conditions, READY, false, "Promoting", &msg, g, now);
    st.message = Some(msg);
    enter(st, PlanPhase::Fencing, now);
    Ok(Action::requeue(Duration::ZERO))
}
