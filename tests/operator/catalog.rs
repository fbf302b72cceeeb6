//! What survives the loss of the primary: deleting the protected namespace leaves every
//! restore point's data readable with the standalone CLI, and a second cluster that has
//! only the (read-only) location sees every restore point through catalog sync, also
//! after the primary cluster is gone. An explicit request on one restore point deletes its
//! data from both regions, records who asked, and catalog sync does not bring it back.

use super::{Env, example, system_clock};
use crate::support::s3;
use kube::api::Api;
use lifeline::api::restore_point::RunPhase;
use lifeline::api::{BackupLocation, RestorePoint};
use lifeline::sim::Options as SimOptions;

#[test]
fn a_standby_cluster_sees_every_restore_point_and_deleting_the_namespace_keeps_the_data() {
    let mut primary = Env::start(SimOptions::default());
    let prefix = s3::unique("catalog");
    let yaml = example("records-two-regions.yaml", &prefix);
    primary.apply(&yaml);
    primary.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    primary.start_operator(system_clock());
    let mut names = Vec::new();
    for request in ["one", "two", "three"] {
        primary.kubectl(
            &[
                "annotate",
                "--overwrite",
                "backuppolicy/records",
                "-n",
                "records",
                &format!("lifeline.io/run-now={request}"),
            ],
            None,
        );
        let name = primary.new_point("records", &names, 60);
        let st = primary.finished_point("records", &name, 120).status.unwrap();
        assert_eq!(st.phase, RunPhase::Completed, "{:?}", st.message);
        names.push(name);
    }
    let api: Api<RestorePoint> = Api::namespaced(primary.client.clone(), "records");
    for name in &names {
        primary.eventually(60, "replication to the second region", || async {
            let p = api.get_opt(name).await.ok()??;
            p.status?.locations.iter().any(|l| l.name == "us" && l.present).then_some(())
        });
    }

    // An explicit, recorded request deletes the middle point's data in both regions.
    let gone = names.remove(1);
    primary.kubectl(
        &[
            "annotate",
            &format!("restorepoint/{gone}"),
            "-n",
            "records",
            "lifeline.io/delete-data=cleanup of a test run",
        ],
        None,
    );
    primary.eventually(90, "the deleted restore point's object to go", || async {
        api.get_opt(&gone).await.ok()?.is_none().then_some(())
    });
    let (eu, us) = s3::regions();
    for (url, endpoint) in
        [(format!("s3://lifeline/{prefix}-eu"), &eu.endpoint), (format!("s3://lifeline/{prefix}-us"), &us.endpoint)]
    {
        let at = super::points_at(&url, endpoint);
        assert!(!at.iter().any(|p| p["tags"]["lifeline.io/point"] == gone.as_str()), "{gone} still at {url}: {at:?}");
        for name in &names {
            assert!(at.iter().any(|p| p["tags"]["lifeline.io/point"] == name.as_str()), "{name} lost at {url}");
        }
    }
    let events = primary.event_messages("records", "DataDeleted");
    assert!(
        events.contains(&gone) && events.contains("kubectl-annotate") && events.contains("cleanup of a test run"),
        "the audit trail names the point, the requester and the reason: {events}"
    );
    // Catalog sync of both locations, after the deletion, does not bring it back: checks
    // every second, and two checks later than the deletion mean a whole sync ran.
    let after = jiff::Timestamp::now();
    let locs: Api<BackupLocation> = Api::namespaced(primary.client.clone(), "records");
    for l in ["eu", "us"] {
        primary.kubectl(
            &[
                "patch",
                "backuplocation",
                l,
                "-n",
                "records",
                "--type=merge",
                "-p",
                r#"{"spec":{"checkInterval":"1s"}}"#,
            ],
            None,
        );
    }
    for l in ["eu", "us"] {
        primary.eventually(30, &format!("two checks of {l} after the deletion"), || async {
            let t = locs.get(l).await.ok()?.status?.last_check_time?.0;
            (t.duration_since(after) > jiff::SignedDuration::from_millis(1500)).then_some(())
        });
    }
    assert!(primary.block_on(api.get_opt(&gone)).unwrap().is_none(), "{gone} came back");

    // The whole namespace goes: policy, restore points, workloads. The data stays.
    primary.kubectl(&["delete", "namespace", "records", "--timeout=120s"], None);
    for (url, endpoint) in
        [(format!("s3://lifeline/{prefix}-eu"), &eu.endpoint), (format!("s3://lifeline/{prefix}-us"), &us.endpoint)]
    {
        for name in &names {
            let id = super::volume_at(&url, endpoint, name, "records/data-records-1");
            let dir = tempfile::tempdir().unwrap();
            let target = dir.path().join("r");
            super::lifeline_cli(&["repo", "restore", &url, &id, target.to_str().unwrap(), "--endpoint", endpoint]);
            assert!(std::fs::read_to_string(target.join("records.log")).unwrap().contains("record 1\n"));
        }
    }

    // A standby cluster with only the US location, read-only, and its key.
    let mut standby = Env::start(SimOptions::default());
    let location = yaml
        .split("\n---\n")
        .filter(|d| {
            d.contains("kind: Namespace")
                || d.contains("kind: Secret")
                || (d.contains("kind: BackupLocation") && d.contains("name: us\n"))
        })
        .collect::<Vec<_>>()
        .join("\n---\n")
        .replace("  keySecret:\n", "  accessMode: ReadOnly\n  checkInterval: 2s\n  keySecret:\n");
    standby.apply(&location);
    primary.kill_operator();
    drop(primary);
    standby.start_operator(system_clock());
    let sapi: Api<RestorePoint> = Api::namespaced(standby.client.clone(), "records");
    for name in &names {
        let p = standby.eventually(60, &format!("restore point {name} in the standby cluster"), || async {
            let p = sapi.get_opt(name).await.ok()??;
            let s = p.status.clone()?;
            (s.phase == RunPhase::Completed && s.locations.iter().any(|l| l.name == "us" && l.present)).then_some(p)
        });
        let st = p.status.unwrap();
        assert_eq!(p.spec.policy, "records");
        assert_eq!(st.volumes.len(), 3, "{st:?}");
        assert!(st.volumes.iter().all(|v| v.repository_snapshot.is_some() && v.done));
        assert!(st.manifests.iter().any(|m| m.kind == "StatefulSet" && m.name == "records"), "{:?}", st.manifests);
        assert!(
            st.manifests.iter().any(|m| m.kind == "Secret"),
            "the key Secret the Pods use is captured: {:?}",
            st.manifests
        );
    }
    // The standby wrote nothing to the read-only location: still exactly the records.
    let records = super::crash::records_at(&format!("s3://lifeline/{prefix}-us"), &us.endpoint);
    assert_eq!(records.len(), names.len(), "{records:?}");
    assert!(standby.block_on(sapi.get_opt(&gone)).unwrap().is_none(), "the deleted point is not listed");
}
