//! The operator killed in the middle of a run, at each of its steps, and started again:
//! the run finishes once, with one record at the location, and nothing left behind.

use super::backup::assert_no_children;
use super::{Env, example, system_clock};
use crate::support::s3;
use kube::api::Api;
use lifeline::api::RestorePoint;
use lifeline::api::restore_point::RunPhase;
use lifeline::sim::Options as SimOptions;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Restore points recorded at a location: record snapshots by point name.
pub fn records_at(url: &str, endpoint: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in super::points_at(url, endpoint) {
        if p["tags"]["lifeline.io/kind"] == "record" {
            *out.entry(p["tags"]["lifeline.io/point"].as_str().unwrap_or_default().to_string()).or_default() += 1;
        }
    }
    out
}

#[test]
fn killed_at_every_step_a_run_finishes_once_and_leaves_nothing_behind() {
    let mut env = Env::start(SimOptions::default());
    let prefix = s3::unique("crash");
    // A slower pre-hook, so the quiescing step lasts long enough to be caught.
    let yaml = example("records-two-regions.yaml", &prefix).replace(
        "sync; tail -n 1 /data/records.log > /data/last-before-snapshot",
        "sync; tail -n 1 /data/records.log > /data/last-before-snapshot; sleep 1",
    );
    env.apply(&yaml);
    // A driver without group snapshots: each volume gets its own VolumeSnapshot.
    env.kubectl(&["delete", "volumegroupsnapshotclass", "sim-groupsnapclass"], None);
    env.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    let api: Api<RestorePoint> = Api::namespaced(env.client.clone(), "records");
    let mut seen = Vec::new();
    let mut caught = Vec::new();
    for target in
        [RunPhase::Pending, RunPhase::Quiescing, RunPhase::Snapshotting, RunPhase::Resuming, RunPhase::Uploading]
    {
        env.start_operator(system_clock());
        env.kubectl(
            &[
                "annotate",
                "--overwrite",
                "backuppolicy/records",
                "-n",
                "records",
                &format!("lifeline.io/run-now={target:?}"),
            ],
            None,
        );
        let name = env.new_point("records", &seen, 60);
        // Kill the operator as soon as the run is at (or past) the target step.
        let deadline = Instant::now() + Duration::from_secs(60);
        let phase = loop {
            let p = env.block_on(api.get_opt(&name)).ok().flatten();
            let phase = p.and_then(|p| p.status).map(|s| s.phase).unwrap_or_default();
            if phase as u8 >= target as u8 || Instant::now() > deadline {
                break phase;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        env.kill_operator();
        caught.push(phase);
        env.start_operator(system_clock());
        let p = env.finished_point("records", &name, 120);
        let st = p.status.unwrap();
        assert_eq!(st.phase, RunPhase::Completed, "killed at {phase:?}: {:?}", st.message);
        assert!(st.group_snapshot.is_none());
        assert_no_children(&env, "records");
        env.kill_operator();
        seen.push(name);
    }
    eprintln!("killed at: {caught:?}");
    // Each kill landed inside a run, at a step of its own.
    caught.dedup();
    assert!(caught.len() >= 3 && caught.contains(&RunPhase::Uploading), "caught only {caught:?}");
    let (eu, _) = s3::regions();
    let records = records_at(&format!("s3://lifeline/{prefix}-eu"), &eu.endpoint);
    assert_eq!(records.len(), seen.len(), "{records:?}");
    assert!(records.values().all(|n| *n == 1), "a run recorded twice: {records:?}");
}
