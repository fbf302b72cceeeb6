//! Backups end to end: from `kubectl apply` of the example to restore points whose data
//! the standalone CLI restores, byte for byte.

use super::{Env, example, system_clock};
use crate::support::s3;
use lifeline::api::restore_point::RunPhase;
use lifeline::sim::Options as SimOptions;

/// Restores a repository snapshot with the standalone CLI into a new directory.
fn restore(url: &str, endpoint: &str, id: &str) -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    let target = out.path().join("r");
    super::lifeline_cli(&["repo", "restore", url, id, target.to_str().unwrap(), "--endpoint", endpoint]);
    out
}

#[test]
fn the_example_policy_backs_up_every_volume_after_its_hooks() {
    let mut env = Env::start(SimOptions::default());
    let prefix = s3::unique("records");
    env.apply(&example("records-two-regions.yaml", &prefix));
    env.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    // Some bulk in every volume, so that what a second run adds can be told apart.
    for i in 0..3 {
        let pod = format!("records-{i}");
        env.kubectl(
            &["exec", "-n", "records", &pod, "--", "sh", "-c", "head -c 8000000 /dev/urandom > /data/bulk"],
            None,
        );
    }
    env.start_operator(system_clock());
    // An on-demand run, as a user would ask for one.
    env.kubectl(&["annotate", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=first"], None);
    let name = env.new_point("records", &[], 60);
    let point = env.finished_point("records", &name, 120);
    let st = point.status.clone().unwrap();
    assert_eq!(st.phase, RunPhase::Completed, "{:?}", st.message);
    assert_eq!(st.volumes.len(), 3);
    // The simulated driver has a group snapshot class: one VolumeGroupSnapshot for all.
    assert!(st.group_snapshot.is_some(), "{st:?}");
    let (eu, _) = s3::regions();
    let url = format!("s3://lifeline/{prefix}-eu");
    for v in &st.volumes {
        let id = v.repository_snapshot.clone().unwrap();
        let dir = restore(&url, &eu.endpoint, &id);
        let root = dir.path().join("r");
        let marker = std::fs::read_to_string(root.join("last-before-snapshot")).unwrap();
        let log = std::fs::read_to_string(root.join("records.log")).unwrap();
        // The hook ran before the snapshot: what it saw is in the restored log.
        assert!(
            !marker.trim().is_empty() && log.contains(marker.trim()),
            "{}: marker {marker:?} not in the log",
            v.pvc
        );
        assert_eq!(std::fs::metadata(root.join("bulk")).unwrap().len(), 8_000_000);
    }
    // Replicated to the second region, where the CLI reads the same data.
    let (_, us) = s3::regions();
    let api: kube::api::Api<lifeline::api::RestorePoint> = kube::api::Api::namespaced(env.client.clone(), "records");
    env.eventually(60, "the restore point in the second region", || async {
        let p = api.get_opt(&name).await.ok()??;
        p.status?.locations.iter().any(|l| l.name == "us" && l.present).then_some(())
    });
    let us_url = format!("s3://lifeline/{prefix}-us");
    let records = super::crash::records_at(&us_url, &us.endpoint);
    assert_eq!(records.get(&name), Some(&1), "{records:?}");
    for v in &st.volumes {
        let id = v.repository_snapshot.clone().unwrap();
        let us_id = super::volume_at(&us_url, &us.endpoint, &name, &format!("records/{}", v.pvc));
        let (a, b) = (restore(&url, &eu.endpoint, &id), restore(&us_url, &us.endpoint, &us_id));
        let (a, b) = (a.path().join("r"), b.path().join("r"));
        for f in ["records.log", "last-before-snapshot", "bulk"] {
            assert_eq!(
                std::fs::read(a.join(f)).unwrap(),
                std::fs::read(b.join(f)).unwrap(),
                "{}: {f} differs between regions",
                v.pvc
            );
        }
    }

    assert_no_children(&env, "records");

    // A second run after a small change stores a small fraction of the data.
    env.kubectl(
        &["annotate", "--overwrite", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=second"],
        None,
    );
    let second = env.new_point("records", std::slice::from_ref(&name), 60);
    let p2 = env.finished_point("records", &second, 120).status.unwrap();
    assert_eq!(p2.phase, RunPhase::Completed, "{:?}", p2.message);
    let (new, protected) = (p2.new_bytes.unwrap(), p2.protected_bytes.unwrap());
    assert!(protected >= 24_000_000 && new * 20 < protected, "second run stored {new} of {protected} bytes");
    assert_eq!(env.points("records").len(), 2);
    assert_no_children(&env, "records");
}

/// Nothing of a finished run is left in the cluster (waiting a little for replication to
/// finish its copy and remove its Job, which on a loaded machine takes a while): no
/// snapshot, clone claim or Job.
pub fn assert_no_children(env: &Env, ns: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let left = [
            env.kubectl(&["get", "volumesnapshots,volumegroupsnapshots", "-n", ns, "-o", "name"], None),
            env.kubectl(&["get", "jobs", "-n", ns, "-o", "name"], None),
            env.kubectl(&["get", "pvc", "-n", ns, "-l", "lifeline.io/restore-point", "-o", "name"], None),
        ]
        .concat();
        if left.trim().is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "left behind: {left}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
