//! Retention across a simulated month of daily runs, per location: the operator's clock
//! is moved a day at a time, each day's run is taken and replicated, and in the end each
//! location holds exactly what its rules keep. Each location where retention forgot
//! something is pruned by a mover Job, and what it keeps stays restorable. Weekly
//! verification reads every location back (and finds a damaged pack), and weekly drills
//! are recorded as RestorePlans, the newest three kept. With a watch that trails the
//! API server by seconds, as a loaded one does, each prune retention starts is still
//! followed to its end.

use super::Env;
use crate::support::s3;
use jiff::{SignedDuration, Timestamp, ToSpan};
use kube::api::Api;
use lifeline::api::policy::MaintenanceState;
use lifeline::api::restore_point::RunPhase;
use lifeline::api::{BackupPolicy, RestorePlan, RestorePoint};
use std::collections::BTreeSet;

/// A month of daily runs.
const DAYS: i64 = 31;

const POLICY: &str = r#"apiVersion: lifeline.io/v1alpha1
kind: BackupPolicy
metadata:
  name: records
  namespace: records
spec:
  protect:
    statefulSets: [records]
  schedule: "0 0 * * *"
  locations:
    - name: eu
      role: Primary
      retention:
        keepLast: 3
        weekly: 2
    - name: us
      role: Replica
      retention:
        daily: 7
  encryption:
    keySecret:
      name: records-repository-key
      key: passphrase
  retention:
    keepLast: 1
  verification:
    schedule: "0 0 * * 0"
    samplePercent: 100
  drill:
    schedule: "0 0 * * 1"
    checks:
      - name: records-there
        container: writer
        command: ["sh", "-c", "test -s /data/records.log"]
"#;

#[test]
fn a_month_of_daily_runs_keeps_exactly_what_each_location_rules_say() {
    let (env, prefix, clock, start) = super::one_replica_on_a_clock("month", POLICY);
    let first_midnight = midnight_after(start);
    let mut runs: Vec<(String, Timestamp)> = Vec::new();
    for day in 0..DAYS {
        let slot = first_midnight.checked_add(SignedDuration::from_hours(24 * day)).unwrap();
        runs.push((take_run(&env, &clock, day, slot, 60), slot));
    }
    // What the rules keep, worked out by hand: eu keeps the last 3 and the newest of
    // each of the last 2 ISO weeks; us keeps the newest of each of the last 7 days.
    let week = |t: &Timestamp| {
        let w = t.to_zoned(jiff::tz::TimeZone::UTC).date().iso_week_date();
        (w.year(), w.week())
    };
    let newest_week = week(&runs.last().unwrap().1);
    let previous_week = runs.iter().rev().map(|(_, t)| week(t)).find(|w| *w != newest_week).unwrap();
    let newest_of = |w: (i16, i8)| runs.iter().rev().find(|(_, t)| week(t) == w).unwrap().0.clone();
    let mut eu: BTreeSet<String> = runs.iter().rev().take(3).map(|(n, _)| n.clone()).collect();
    eu.insert(newest_of(newest_week));
    eu.insert(newest_of(previous_week));
    let us: BTreeSet<String> = runs.iter().rev().take(7).map(|(n, _)| n.clone()).collect();

    let (eu_s3, us_s3) = s3::regions();
    let at = |url: String, endpoint: &str| -> BTreeSet<String> {
        super::crash::records_at(&url, endpoint).into_keys().collect()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (have_eu, have_us) = (
            at(format!("s3://lifeline/{prefix}-eu"), &eu_s3.endpoint),
            at(format!("s3://lifeline/{prefix}-us"), &us_s3.endpoint),
        );
        let objects: BTreeSet<String> = env.points("records").iter().map(kube::ResourceExt::name_any).collect();
        let union: BTreeSet<String> = eu.union(&us).cloned().collect();
        if have_eu == eu && have_us == us && objects == union {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "eu {have_eu:?} (want {eu:?}), us {have_us:?} (want {us:?}), objects {objects:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }

    // Both locations were pruned after retention forgot points there, and the policy says
    // what the prune did; the points kept stay restorable.
    let policies: Api<BackupPolicy> = Api::namespaced(env.client.clone(), "records");
    for l in ["eu", "us"] {
        // Generous: a location's prune waits while a verification runs there (when the
        // month ends on a Sunday, the last round starts with the last run), and under the
        // whole suite's load both queue behind other Jobs.
        let prune = finished_prune(&env, l, 240, |pr| pr.last_time.is_some() && pr.job.is_none());
        let msg = prune.message.unwrap_or_default();
        assert!(msg.contains("packs unused and marked"), "prune at {l}: {msg}");
    }
    let events = env.event_messages("records", "Pruned");
    assert!(events.contains("prune at eu") && events.contains("prune at us"), "{events}");

    // The run slots that fell on a weekday.
    let on = |day: jiff::civil::Weekday| -> Vec<Timestamp> {
        runs.iter().map(|(_, t)| *t).filter(|t| t.to_zoned(jiff::tz::TimeZone::UTC).weekday() == day).collect()
    };

    // Verification: the newest weekly round read both locations back and found nothing.
    let sundays = on(jiff::civil::Weekday::Sunday);
    let round = *sundays.last().unwrap();
    let verified = |env: &Env, want: bool, round: Timestamp| {
        // Generous: under the whole suite's load a round's Jobs queue behind others.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(240);
        loop {
            let st = env.block_on(policies.get("records")).unwrap().status.unwrap();
            let all_done = st.locations.iter().all(|l| {
                l.verification
                    .as_ref()
                    .is_some_and(|v| !v.due && v.job.is_none() && v.last_time.as_ref().is_some_and(|t| t.0 >= round))
            });
            let this_round = st.last_verification_schedule_time.as_ref().is_some_and(|t| t.0 == round);
            if this_round
                && all_done
                && st.last_verification.as_ref().is_some_and(|v| v.time.0 >= round && v.passed == want)
            {
                return st;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "verification round {round} (want passed={want}): {:?} {:?} {:?}",
                st.last_verification_schedule_time,
                st.last_verification,
                st.locations
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    };
    let st = verified(&env, true, round);
    let v = st.last_verification.unwrap();
    assert!(v.checked_bytes.unwrap_or(0) > 0 && v.message.is_none(), "{v:?}");
    assert!(
        st.locations.iter().all(|l| l.verification.as_ref().unwrap().succeeded == Some(true)),
        "{:?}",
        st.locations
    );
    let events = env.event_messages("records", "Verified");
    assert!(events.contains("verify at eu") && events.contains("verify at us"), "{events}");

    // Drills: one RestorePlan per Monday, the newest three kept, each for the newest
    // complete restore point of its slot, into the scratch namespace, with the checks.
    let mondays = on(jiff::civil::Weekday::Monday);
    let plans: Api<RestorePlan> = Api::namespaced(env.client.clone(), "records");
    let mut drills = env.block_on(plans.list(&Default::default())).unwrap().items;
    drills.sort_by_key(kube::ResourceExt::name_any);
    let want: Vec<String> =
        mondays.iter().rev().take(3).rev().map(|t| format!("records-drill-{}", t.strftime("%Y%m%d-%H%M"))).collect();
    assert_eq!(drills.iter().map(kube::ResourceExt::name_any).collect::<Vec<_>>(), want);
    for (d, monday) in drills.iter().zip(mondays.iter().rev().take(3).rev()) {
        assert_eq!(d.spec.mode, lifeline::api::restore_plan::RestoreMode::Drill);
        assert_eq!(d.spec.target.namespace.as_deref(), Some("records-drill"));
        assert_eq!(d.spec.source.locations, ["eu", "us"]);
        assert_eq!(d.spec.post_restore_hooks.len(), 1);
        // The run of the same midnight was not complete yet: the day before's point.
        let day_before = monday.checked_sub(SignedDuration::from_hours(24)).unwrap();
        let point = runs.iter().find(|(_, t)| *t == day_before).unwrap().0.clone();
        assert_eq!(
            d.spec.point_in_time.restore_point.as_deref(),
            Some(point.as_str()),
            "{}",
            kube::ResourceExt::name_any(d)
        );
    }
    let st = env.block_on(policies.get("records")).unwrap().status.unwrap();
    assert_eq!(st.last_drill_schedule_time.map(|t| t.0), mondays.last().copied());
    assert!(st.next_drill.as_ref().is_some_and(|t| t.0 > *mondays.last().unwrap()), "{:?}", st.next_drill);

    let oldest_kept = runs.iter().find(|(n, _)| eu.contains(n)).unwrap().0.clone();
    let url = format!("s3://lifeline/{prefix}-eu");
    let id = super::volume_at(&url, &eu_s3.endpoint, &oldest_kept, "records/data-records-0");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("r");
    super::lifeline_cli(&["repo", "restore", &url, &id, target.to_str().unwrap(), "--endpoint", &eu_s3.endpoint]);
    assert!(std::fs::read_to_string(target.join("records.log")).unwrap().contains("record 1\n"));

    // The data lost at eu: the next round fails there, names it, and us still passes.
    let eu_store = eu_s3.open(&format!("s3://lifeline/{prefix}-eu"));
    for pack in eu_store.list("data/").unwrap() {
        eu_store.delete(&pack.key).unwrap();
    }
    let next_sunday = round.checked_add(SignedDuration::from_hours(24 * 7)).unwrap();
    clock.set(next_sunday.checked_add(1.minute()).unwrap());
    let st = verified(&env, false, next_sunday);
    let v = st.last_verification.unwrap();
    assert!(v.message.as_deref().is_some_and(|m| m.starts_with("eu: ") && !m.contains("us: ")), "{v:?}");
    let ok = |l: &str| st.locations.iter().find(|x| x.name == l).unwrap().verification.as_ref().unwrap().succeeded;
    assert_eq!((ok("eu"), ok("us")), (Some(false), Some(true)));

    // What the alerts and the dashboard read, from the status at the scrape.
    let policy = [("policy", "records/records")];
    let m = |name: &str, extra: &[(&str, &str)]| {
        let labels: Vec<(&str, &str)> = policy.iter().chain(extra).copied().collect();
        env.metric(name, &labels).unwrap_or_else(|| panic!("no lifeline_{name} {labels:?}"))
    };
    // The scrape reads the operator's watch cache, which sees the status a moment after
    // the API server does: wait for it to hold this verification, as a scraper would.
    let at = v.time.0.as_second() as f64;
    env.eventually(60, "the scrape to show the newest verification", || async {
        (env.metric("verification_last_timestamp_seconds", &policy) == Some(at)).then_some(())
    });
    assert_eq!(m("verification_last_passed", &[]), 0.0);
    assert_eq!(m("verification_last_timestamp_seconds", &[]), at);
    assert_eq!(m("policy_fenced", &[]), 0.0);
    assert_eq!(m("drill_next_timestamp_seconds", &[]), st.next_drill.as_ref().unwrap().0.as_second() as f64);
    // No spec.rpo here: an age (0 when the newest run started at this very time of the
    // test's stopped clock), but no target and nothing to breach.
    let achieved = m("rpo_achieved_seconds", &[]);
    assert!(achieved >= 0.0);
    assert_eq!((env.metric("rpo_target_seconds", &policy), env.metric("rpo_breached", &policy)), (None, None));
    assert!(m("backup_bytes", &[("kind", "protected")]) > 0.0);
    assert!(m("backup_runs", &[("phase", "Completed")]) >= 1.0);
    for loc in ["records/eu", "records/us"] {
        assert!(m("replica_lag_seconds", &[("location", loc)]) >= achieved, "{loc}");
        let states: f64 = ["InSync", "Lagging", "Failing", "Pending"]
            .iter()
            .map(|s| m("replica_state", &[("location", loc), ("state", s)]))
            .sum();
        assert_eq!(states, 1.0, "{loc}: one state at a time");
    }
}

const KEEP_ONE: &str = r#"apiVersion: lifeline.io/v1alpha1
kind: BackupPolicy
metadata:
  name: records
  namespace: records
spec:
  protect:
    statefulSets: [records]
  schedule: "0 0 * * *"
  locations:
    - name: eu
      role: Primary
    - name: us
      role: Replica
  encryption:
    keySecret:
      name: records-repository-key
      key: passphrase
  retention:
    keepLast: 1
"#;

/// The operator's next reconcile is started by the restore points its retention just
/// removed, before the watch brings back the status that same reconcile wrote: it must
/// build on the newest status, not undo it. Undone, the started prune would be recorded
/// nowhere, never reported, and its finished Job left behind.
#[test]
fn with_a_lagging_watch_every_prune_retention_starts_is_followed_to_its_end() {
    let lagging = super::SimOptions { watch_lag: std::time::Duration::from_millis(1500), ..Default::default() };
    let (env, _prefix, clock, start) = super::one_replica_on_a_clock_with("lag", KEEP_ONE, lagging);
    let first_midnight = midnight_after(start);
    for day in 0..3 {
        let slot = first_midnight.checked_add(SignedDuration::from_hours(24 * day)).unwrap();
        take_run(&env, &clock, day, slot, 90);
        if day == 0 {
            continue;
        }
        // Retention forgot yesterday's point at both locations: a prune runs at each, and
        // the policy says what it did, with no prune due or running afterwards.
        for l in ["eu", "us"] {
            let this_day = |pr: &MaintenanceState| pr.last_time.as_ref().is_some_and(|t| t.0 >= slot);
            let pr = finished_prune(&env, l, 180, |pr| this_day(pr) && pr.job.is_none() && !pr.due);
            let msg = pr.message.unwrap_or_default();
            assert!(pr.succeeded == Some(true) && msg.contains("packs unused and marked"), "day {day}, {l}: {msg}");
        }
        // Every finished maintenance Job was read and removed: none is left behind.
        let jobs = env.kubectl(&["get", "jobs", "-n", "records", "-o", "name"], None);
        assert!(!jobs.contains("prune"), "day {day}: {jobs}");
    }
    let events = env.event_messages("records", "Pruned");
    assert!(events.matches("prune at eu").count() >= 2 && events.matches("prune at us").count() >= 2, "{events}");
}

/// The first midnight (UTC) after `t`.
fn midnight_after(t: Timestamp) -> Timestamp {
    let utc = jiff::tz::TimeZone::UTC;
    t.to_zoned(utc.clone()).date().tomorrow().unwrap().to_zoned(utc).unwrap().timestamp()
}

/// Moves the operator's clock just past `slot` and waits (up to `secs`, twice that for
/// the run itself) for the slot's run to complete and reach the replica; returns its name.
fn take_run(env: &Env, clock: &super::ManualClock, day: i64, slot: Timestamp, secs: u64) -> String {
    let api: Api<RestorePoint> = Api::namespaced(env.client.clone(), "records");
    clock.set(slot.checked_add(1.minute()).unwrap());
    let name = env.eventually(secs, &format!("the run of day {day}"), || async {
        let list = api.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|p| p.spec.scheduled_time.0 == slot).map(|p| kube::ResourceExt::name_any(&p))
    });
    let st = env.finished_point("records", &name, 2 * secs).status.unwrap();
    assert_eq!(st.phase, RunPhase::Completed, "day {day}: {:?}", st.message);
    // Replicated before the clock moves on (the replica copies after every run).
    env.eventually(secs, &format!("day {day} replicated"), || async {
        let p = api.get_opt(&name).await.ok()??;
        p.status?.locations.iter().any(|l| l.name == "us" && l.present).then_some(())
    });
    name
}

/// The prune state at location `l` once `done` holds (within `secs`); on a timeout the
/// failure shows every location's state and every Job, for whoever reads it.
fn finished_prune(env: &Env, l: &str, secs: u64, done: impl Fn(&MaintenanceState) -> bool) -> MaintenanceState {
    let policies: Api<BackupPolicy> = Api::namespaced(env.client.clone(), "records");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let st = env.block_on(policies.get("records")).unwrap().status.unwrap_or_default();
        let pr = st.locations.iter().find(|x| x.name == l).and_then(|x| x.prune.clone()).unwrap_or_default();
        if done(&pr) {
            return pr;
        }
        if std::time::Instant::now() >= deadline {
            let jobs = env.kubectl(&["get", "jobs", "-A", "-o", "wide"], None);
            panic!("no finished prune at {l} after {secs} s; locations {:?}; jobs:\n{jobs}", st.locations);
        }
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}
