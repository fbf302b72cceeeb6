//! When a policy's next run is due. Pure: the schedule, what the status records, and
//! the time in; the decision out.
//!
//! Runs missed while the operator was down (or the policy suspended) are detected and
//! made up for **once**: the latest missed slot is run, the earlier ones are counted and
//! reported, never queued. This is what users of CronJob-style schedulers ask for after
//! an outage: one fresh restore point, not a burst of stale ones.

use crate::api::schedule::Schedule;
use jiff::Timestamp;

/// What the plan says about the schedule at `now`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    /// A slot to run now (the latest one due), if any.
    pub run: Option<Timestamp>,
    /// Slots that passed without a run and will not be run (all but the latest).
    pub skipped: u32,
    /// The next slot after `now`.
    pub next: Option<Timestamp>,
}

/// How many missed slots are counted at most (a minute schedule down for a year would
/// otherwise count half a million).
const COUNT_LIMIT: u32 = 10_000;

/// Decides at `now` for a schedule whose last scheduled run was `last` (or, for a
/// policy that never ran, counting from its creation `since`).
pub fn due(schedule: &Schedule, last: Option<Timestamp>, since: Timestamp, now: Timestamp) -> Due {
    let from = last.unwrap_or(since);
    let mut latest = None;
    let mut passed = 0u32;
    let mut at = from;
    while let Some(slot) = schedule.next_after(at) {
        if slot > now || passed >= COUNT_LIMIT {
            break;
        }
        latest = Some(slot);
        passed += 1;
        at = slot;
    }
    // With the count cut off, the latest slot is the last one before `now`.
    if passed >= COUNT_LIMIT {
        latest = latest_before(schedule, at, now).or(latest);
    }
    Due { run: latest, skipped: passed.saturating_sub(1), next: schedule.next_after(now) }
}

/// The last slot at or before `now`, searched back from `now` in growing steps.
fn latest_before(schedule: &Schedule, not_before: Timestamp, now: Timestamp) -> Option<Timestamp> {
    let mut back = jiff::SignedDuration::from_mins(1);
    loop {
        let from = now.checked_sub(back).ok()?.max(not_before);
        let mut slot = schedule.next_after(from)?;
        if slot <= now {
            while let Some(next) = schedule.next_after(slot).filter(|n| *n <= now) {
                slot = next;
            }
            return Some(slot);
        }
        if from == not_before {
            return None;
        }
        back = back.checked_mul(4)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_slot_is_due_once_and_the_next_is_reported() {
        let s = Schedule::parse("0 * * * *", "UTC").unwrap();
        let d = due(&s, Some(t("2026-03-01T10:00:00Z")), t("2026-01-01T00:00:00Z"), t("2026-03-01T10:30:00Z"));
        assert_eq!(d, Due { run: None, skipped: 0, next: Some(t("2026-03-01T11:00:00Z")) });
        let d = due(&s, Some(t("2026-03-01T10:00:00Z")), t("2026-01-01T00:00:00Z"), t("2026-03-01T11:00:05Z"));
        assert_eq!(d.run, Some(t("2026-03-01T11:00:00Z")));
        assert_eq!(d.skipped, 0);
    }

    #[test]
    fn runs_missed_while_down_are_made_up_once() {
        let s = Schedule::parse("0 * * * *", "UTC").unwrap();
        // Down from 10:00 to 15:20: slots 11..15 passed; only 15:00 runs.
        let d = due(&s, Some(t("2026-03-01T10:00:00Z")), t("2026-01-01T00:00:00Z"), t("2026-03-01T15:20:00Z"));
        assert_eq!((d.run, d.skipped), (Some(t("2026-03-01T15:00:00Z")), 4));
        assert_eq!(d.next, Some(t("2026-03-01T16:00:00Z")));
    }

    #[test]
    fn a_new_policy_counts_from_its_creation_and_time_zones_hold() {
        let s = Schedule::parse("30 2 * * *", "Europe/Berlin").unwrap();
        let d = due(&s, None, t("2026-06-01T12:00:00Z"), t("2026-06-02T00:31:00Z"));
        // 02:30 in Berlin (summer time) is 00:30 UTC.
        assert_eq!((d.run, d.skipped), (Some(t("2026-06-02T00:30:00Z")), 0));
    }

    #[test]
    fn a_year_of_minutes_missed_still_runs_the_latest_once() {
        let s = Schedule::parse("* * * * *", "UTC").unwrap();
        let d = due(&s, Some(t("2025-03-01T00:00:00Z")), t("2025-01-01T00:00:00Z"), t("2026-03-01T12:34:30Z"));
        assert_eq!(d.run, Some(t("2026-03-01T12:34:00Z")));
        assert!(d.skipped >= COUNT_LIMIT - 1);
    }
}
