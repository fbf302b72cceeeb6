//! Retention across a simulated month of daily runs, per location: the operator's clock
//! is moved a day at a time, each day's run is taken and replicated, and in the end each
//! location holds exactly what its rules keep. Each location where retention forgot
//! something is pruned by a mover Job, and what it keeps stays restorable.

use super::{Env, example};
use crate::support::s3;
use jiff::{SignedDuration, Timestamp, ToSpan};
use kube::api::Api;
use lifeline::api::restore_point::RunPhase;
use lifeline::api::{BackupPolicy, RestorePoint};
use lifeline::controller::clock::{Clock, ManualClock};
use lifeline::sim::Options as SimOptions;
use std::collections::BTreeSet;
use std::sync::Arc;

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
"#;

#[test]
fn a_month_of_daily_runs_keeps_exactly_what_each_location_rules_say() {
    let mut env = Env::start(SimOptions::default());
    let prefix = s3::unique("month");
    let yaml = example("records-two-regions.yaml", &prefix).replace("  replicas: 3\n", "  replicas: 1\n");
    let objects: Vec<&str> = yaml.split("\n---\n").filter(|d| !d.contains("kind: BackupPolicy")).collect();
    env.apply(&objects.join("\n---\n"));
    env.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    // The clock starts now (objects are created at real times) and then jumps.
    let start = Timestamp::now();
    let clock = ManualClock::at(start);
    env.start_operator(Arc::new(clock.clone()) as Arc<dyn Clock>);
    env.apply(POLICY);
    let api: Api<RestorePoint> = Api::namespaced(env.client.clone(), "records");
    let first_midnight = start
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .tomorrow()
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    let mut runs: Vec<(String, Timestamp)> = Vec::new();
    for day in 0..DAYS {
        let slot = first_midnight.checked_add(SignedDuration::from_hours(24 * day)).unwrap();
        clock.set(slot.checked_add(1.minute()).unwrap());
        let name = env.eventually(60, &format!("the run of day {day}"), || async {
            let list = api.list(&Default::default()).await.ok()?;
            list.items.into_iter().find(|p| p.spec.scheduled_time.0 == slot).map(|p| kube::ResourceExt::name_any(&p))
        });
        let st = env.finished_point("records", &name, 120).status.unwrap();
        assert_eq!(st.phase, RunPhase::Completed, "day {day}: {:?}", st.message);
        // Replicated before the clock moves on (the replica copies after every run).
        env.eventually(60, &format!("day {day} replicated"), || async {
            let p = api.get_opt(&name).await.ok()??;
            p.status?.locations.iter().any(|l| l.name == "us" && l.present).then_some(())
        });
        runs.push((name, slot));
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
        let prune = env.eventually(60, &format!("a finished prune at {l}"), || async {
            let p = policies.get("records").await.ok()?;
            let pr = p.status?.locations.into_iter().find(|x| x.name == l)?.prune?;
            (pr.last_time.is_some() && pr.job.is_none()).then_some(pr)
        });
        let msg = prune.message.unwrap_or_default();
        assert!(msg.contains("packs unused and marked"), "prune at {l}: {msg}");
    }
    let events = env.kubectl(
        &["get", "events", "-n", "records", "--field-selector", "reason=Pruned", "-o", "jsonpath={.items[*].message}"],
        None,
    );
    assert!(events.contains("prune at eu") && events.contains("prune at us"), "{events}");
    let oldest_kept = runs.iter().find(|(n, _)| eu.contains(n)).unwrap().0.clone();
    let url = format!("s3://lifeline/{prefix}-eu");
    let id = super::volume_at(&url, &eu_s3.endpoint, &oldest_kept, "records/data-records-0");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("r");
    super::lifeline_cli(&["repo", "restore", &url, &id, target.to_str().unwrap(), "--endpoint", &eu_s3.endpoint]);
    assert!(std::fs::read_to_string(target.join("records.log")).unwrap().contains("record 1\n"));
}
