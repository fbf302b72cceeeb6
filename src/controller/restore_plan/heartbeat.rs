//! Trigger `HeartbeatLoss`: watching the primary's heartbeats (see
//! [`crate::repo::heartbeat`]) at every source location, and deciding that the site is
//! lost.
//!
//! - A location is **Alive** while the epoch of the newest heartbeat of the source
//!   policy there has advanced within `heartbeat.timeout`, by the standby's own clock
//!   (the two sites' clocks need not agree); **Silent** when it has not; **NoHeartbeat**
//!   when none naming the policy is there; **Unreachable** when it cannot be read. The
//!   epoch and when it was first seen are recorded at most every quarter of the timeout
//!   (not at every beat, which would rewrite the status each time), so silence is found
//!   between one and one and a quarter timeouts after the last beat.
//! - The site counts as **lost** only when no location is Alive, at least one location
//!   answered, and a heartbeat of the policy was seen at some point: one unreachable
//!   location (a network split, a region's storage outage) is not a site loss, and
//!   neither is a standby that never saw its primary.
//! - The loss is detected when that first holds (`status.heartbeat.lossDetected`); the
//!   plan acts `heartbeat.decisionDelay` later if it still holds (a heartbeat coming back
//!   in between cancels it). The RTO is split accordingly: detection (last heartbeat's
//!   own time to the detection), decision (detection to the start), execution.
//!
//! What each location showed is kept in `status.heartbeat`, which is also where the
//! observations survive an operator restart.

use super::Run;
use crate::api::RestorePlanStatus;
use crate::api::restore_plan::HeartbeatSeen;
use crate::controller::location::access;
use crate::controller::{Error, Result};
use crate::k8s::events;
use crate::repo::heartbeat::Beat;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

pub const ALIVE: &str = "Alive";
pub const SILENT: &str = "Silent";
pub const NO_HEARTBEAT: &str = "NoHeartbeat";
pub const UNREACHABLE: &str = "Unreachable";

/// How long reading one location's heartbeats may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// What the heartbeats say.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The primary is alive (or it cannot be told): the message says what was seen.
    Alive(String),
    /// Lost, but the decision delay has not passed.
    Deciding(String),
    /// Lost: act now.
    Lost(String),
}

/// The heartbeat timeout and decision delay of a plan.
pub fn settings(run: &Run<'_>) -> (Duration, Duration) {
    let hb = run.plan.spec.trigger.heartbeat.clone();
    let timeout = hb.as_ref().map(|h| Duration::from(h.timeout)).unwrap_or(Duration::from_secs(300));
    let delay = hb.and_then(|h| h.decision_delay).map(Duration::from).unwrap_or_default();
    (timeout, delay)
}

/// How often to look: a fifth of the timeout, between 1 and 30 seconds.
pub fn poll(run: &Run<'_>) -> Duration {
    (settings(run).0 / 5).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

/// One location's reading: the newest beat naming the policy, or why there is none.
pub type Reading = std::result::Result<Option<Beat>, String>;

/// Folds a reading into what was seen at a location before (pure).
pub fn observe(
    prev: Option<&HeartbeatSeen>,
    location: &str,
    r: &Reading,
    now: jiff::Timestamp,
    timeout: Duration,
) -> HeartbeatSeen {
    match r {
        Err(msg) => HeartbeatSeen {
            location: location.into(),
            state: UNREACHABLE.into(),
            message: Some(msg.clone()),
            // What was seen before stays: a location coming back continues from it.
            ..prev.cloned().map(|p| HeartbeatSeen { state: String::new(), message: None, ..p }).unwrap_or_default()
        },
        Ok(None) => HeartbeatSeen { location: location.into(), state: NO_HEARTBEAT.into(), ..Default::default() },
        Ok(Some(b)) => {
            let epoch = b.epoch as i64;
            let prev = prev.filter(|p| p.cluster_id.as_deref() == Some(b.cluster_id.as_str()));
            let seen = prev.and_then(|p| Some((p.epoch?, p.seen_at.clone()?.0)));
            let seen_at = match seen {
                Some((e, t)) if e == epoch => t,
                // Advanced since a record less than a quarter of the timeout old: alive,
                // and the record stays (the status is not rewritten for every beat).
                Some((_, t)) if now.duration_since(t).unsigned_abs() < timeout / 4 => {
                    let p = prev.cloned().unwrap_or_default();
                    return HeartbeatSeen { state: ALIVE.into(), message: None, ..p };
                }
                _ => now,
            };
            let fresh = now.duration_since(seen_at).unsigned_abs() < timeout;
            HeartbeatSeen {
                location: location.into(),
                state: if fresh { ALIVE } else { SILENT }.into(),
                cluster_id: Some(b.cluster_id.clone()),
                epoch: Some(epoch),
                seen_at: Some(Time(seen_at)),
                time: b.time.parse().ok().map(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime),
                message: None,
            }
        }
    }
}

/// Decides on what every location shows (pure): `None` while the site is alive or it
/// cannot be told (with the reason), else the names of the silent locations.
pub fn lost(seen: &[HeartbeatSeen]) -> std::result::Result<Vec<String>, String> {
    let named = |state: &str| seen.iter().filter(|s| s.state == state).map(|s| s.location.clone()).collect::<Vec<_>>();
    let alive = named(ALIVE);
    if !alive.is_empty() {
        return Err(format!("primary alive: heartbeat advancing at {}", alive.join(", ")));
    }
    if seen.iter().all(|s| s.state == UNREACHABLE) {
        return Err(
            "no source location answers: a lost site cannot be told from a lost network; not failing over".into()
        );
    }
    if seen.iter().all(|s| s.epoch.is_none()) {
        return Err("no heartbeat of the source policy seen at any location yet: not armed".into());
    }
    Ok(seen.iter().filter(|s| s.state != ALIVE).map(|s| format!("{} ({})", s.location, s.state)).collect())
}

/// Reads every source location, updates `status.heartbeat`, and decides.
pub async fn watch(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Verdict> {
    let now = run.now();
    let (timeout, delay) = settings(run);
    let spec = &run.plan.spec;
    let source_ns = run.plan.source_namespace();
    let own = run.ctx.cluster_id().await?;
    let mut hb = st.heartbeat.clone().unwrap_or_default();
    let mut seen = Vec::new();
    for l in &spec.source.locations {
        let reading = read(run, l, &source_ns, &own).await;
        let prev = hb.locations.iter().find(|s| &s.location == l);
        seen.push(observe(prev, l, &reading, now, timeout));
    }
    hb.last_beat = seen.iter().filter_map(|s| s.time.clone()).max_by_key(|t| t.0).or(hb.last_beat);
    hb.locations = seen;
    // No ages in words: the message (and so the status) changes only when a state does.
    let describe = |s: &HeartbeatSeen| match &s.message {
        Some(m) => format!("{}: {} ({m})", s.location, s.state),
        None => format!("{}: {}", s.location, s.state),
    };
    let all = hb.locations.iter().map(describe).collect::<Vec<_>>().join("; ");
    let verdict = match lost(&hb.locations) {
        Err(why) => {
            if hb.loss_detected.take().is_some() {
                run.event(false, events::HEARTBEAT_RESUMED, format!("heartbeat back before the decision: {all}")).await;
            }
            Verdict::Alive(format!("{why} ({all})"))
        }
        Ok(silent) => {
            let detected = match &hb.loss_detected {
                Some(t) => t.0,
                None => {
                    hb.loss_detected = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now));
                    run.event(
                        true,
                        events::HEARTBEAT_LOST,
                        format!(
                            "primary site lost: no heartbeat for {} at {}; deciding in {}",
                            crate::api::common::Duration::from(timeout),
                            silent.join(", "),
                            crate::api::common::Duration::from(delay)
                        ),
                    )
                    .await;
                    now
                }
            };
            let waited = now.duration_since(detected).unsigned_abs();
            if waited < delay {
                Verdict::Deciding(format!(
                    "heartbeat lost at {}; failing over in {} unless it comes back",
                    silent.join(", "),
                    crate::api::common::Duration::from(delay - waited)
                ))
            } else {
                Verdict::Lost(format!("heartbeat lost at {}", silent.join(", ")))
            }
        }
    };
    st.heartbeat = Some(hb);
    Ok(verdict)
}

/// The newest heartbeat naming the source policy at a location, written by another
/// cluster (and by `source.clusterId` when set).
async fn read(run: &Run<'_>, location: &str, source_ns: &str, own: &str) -> Reading {
    let loc = match run.location(location).await {
        Ok(Some(l)) => l,
        Ok(None) => return Err(format!("no BackupLocation {location} in namespace {}", run.ns)),
        Err(e) => return Err(e.to_string()),
    };
    let opts = access::options(run.ctx, &loc).await.map_err(|e| e.to_string())?;
    let (url, ns) = (loc.spec.url.clone(), source_ns.to_string());
    let fut = crate::mover::inline::run(move || {
        let b = access::backend(&url, &opts)?;
        Ok(crate::repo::heartbeat::read(b.as_ref(), &ns)?)
    });
    let beats = match tokio::time::timeout(READ_TIMEOUT, fut).await {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(Error::repo("read heartbeats")(e).to_string()),
        Err(_) => return Err(format!("no answer within {}s", READ_TIMEOUT.as_secs())),
    };
    let policy = &run.plan.spec.source.policy;
    let want = run.plan.spec.source.cluster_id.as_deref();
    Ok(beats
        .into_iter()
        .filter(|b| b.cluster_id != own && want.is_none_or(|w| w == b.cluster_id))
        .filter(|b| b.policies.iter().any(|p| p == policy))
        .max_by_key(|b| b.time.parse::<jiff::Timestamp>().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(epoch: u64) -> Reading {
        Ok(Some(Beat {
            epoch,
            cluster_id: "east".into(),
            namespace: "shop".into(),
            policies: vec!["db".into()],
            time: "2026-12-01T10:00:00Z".into(),
            interval_seconds: 10,
        }))
    }

    fn t(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn a_location_is_silent_once_its_epoch_stops_advancing_for_the_timeout() {
        let to = Duration::from_secs(30);
        let a = observe(None, "eu", &beat(5), t(0), to);
        assert_eq!(a.state, ALIVE);
        let a = observe(Some(&a), "eu", &beat(5), t(29), to);
        assert_eq!((a.state.as_str(), a.seen_at.clone().unwrap().0), (ALIVE, t(0)));
        let a = observe(Some(&a), "eu", &beat(5), t(31), to);
        assert_eq!(a.state, SILENT);
        // Advancing again: alive, seen from now.
        let a = observe(Some(&a), "eu", &beat(6), t(40), to);
        assert_eq!((a.state.as_str(), a.seen_at.clone().unwrap().0), (ALIVE, t(40)));
        // Advancing again soon after: alive, the record kept (no status write per beat).
        let kept = observe(Some(&a), "eu", &beat(7), t(42), to);
        assert_eq!((kept.state.as_str(), kept.epoch, kept.seen_at.clone().unwrap().0), (ALIVE, Some(6), t(40)));
        let newer = observe(Some(&kept), "eu", &beat(8), t(48), to);
        assert_eq!((newer.epoch, newer.seen_at.clone().unwrap().0), (Some(8), t(48)));
        // Unreachable keeps what was seen; back, it continues from there.
        let u = observe(Some(&a), "eu", &Err("timeout".into()), t(45), to);
        assert_eq!((u.state.as_str(), u.epoch), (UNREACHABLE, Some(6)));
        let back = observe(Some(&u), "eu", &beat(6), t(80), to);
        assert_eq!(back.state, SILENT, "epoch 6 was first seen at 40");
    }

    #[test]
    fn the_site_is_lost_only_when_no_location_is_alive_and_one_answered() {
        let s = |loc: &str, state: &str, epoch: Option<i64>| HeartbeatSeen {
            location: loc.into(),
            state: state.into(),
            epoch,
            ..Default::default()
        };
        // One location unreachable, the other alive: not lost.
        assert!(lost(&[s("eu", UNREACHABLE, None), s("us", ALIVE, Some(3))]).is_err());
        // Both unreachable: cannot tell.
        let why = lost(&[s("eu", UNREACHABLE, Some(3)), s("us", UNREACHABLE, Some(3))]).unwrap_err();
        assert!(why.contains("cannot be told"), "{why}");
        // Never seen: not armed.
        assert!(lost(&[s("eu", NO_HEARTBEAT, None), s("us", NO_HEARTBEAT, None)]).unwrap_err().contains("not armed"));
        // Silent at one, unreachable at the other: lost, naming both.
        let silent = lost(&[s("eu", SILENT, Some(3)), s("us", UNREACHABLE, Some(3))]).unwrap();
        assert_eq!(silent, ["eu (Silent)", "us (Unreachable)"]);
    }
}
