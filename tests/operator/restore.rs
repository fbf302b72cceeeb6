//! Recovery in another cluster: the primary cluster is gone, its first region is down,
//! and a RestorePlan in a standby cluster that knows only the locations brings the
//! StatefulSet back with every record up to the restore point, volumes filled and
//! checked before the workload starts, storage classes mapped in claims and templates.

use super::{Env, example, system_clock};
use crate::support::s3;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use kube::ResourceExt;
use kube::api::Api;
use lifeline::api::restore_plan::PlanPhase;
use lifeline::api::restore_point::RunPhase;
use lifeline::api::{RestorePlan, RestorePoint};
use lifeline::sim::Options as SimOptions;

const PLAN: &str = r#"
apiVersion: lifeline.io/v1alpha1
kind: RestorePlan
metadata:
  name: records-back
  namespace: records
spec:
  mode: Restore
  source:
    locations: [eu, us]
    policy: records
  target:
    storageClassMapping:
      - from: standard
        to: fast-standby
  trigger:
    detectedAt: "DETECTED"
"#;

#[test]
fn a_lost_statefulset_comes_back_in_a_standby_cluster_from_the_region_that_is_up() {
    // The primary: the example, with its claims' class written out.
    let mut primary = Env::start(SimOptions::default());
    let prefix = s3::unique("restore");
    let yaml = example("records-two-regions.yaml", &prefix).replace(
        "        accessModes: [\"ReadWriteOnce\"]\n",
        "        accessModes: [\"ReadWriteOnce\"]\n        storageClassName: standard\n",
    );
    let name = primary.protected_point(&yaml);
    // What the point holds, read with the CLI alone.
    let (_, us) = s3::regions();
    let us_url = format!("s3://lifeline/{prefix}-us");
    let recorded = super::recorded_logs(&us_url, &us.endpoint, &name);
    // The site is lost.
    primary.kill_operator();
    drop(primary);

    // The standby knows the two locations; the first region is down (nothing listens).
    let mut standby = Env::start(SimOptions::default());
    let locations = super::standby_locations(&yaml);
    let eu_endpoint = s3::regions().0.endpoint.clone();
    let locations = locations.replacen(&eu_endpoint, "http://127.0.0.1:9", 1);
    standby.apply(&locations);
    standby.apply(
        "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: fast-standby\nprovisioner: sim.lifeline.io\nvolumeBindingMode: Immediate\n",
    );
    standby.start_operator(system_clock());
    let sapi: Api<RestorePoint> = Api::namespaced(standby.client.clone(), "records");
    standby.eventually(60, "the restore point in the standby", || async {
        let p = sapi.get_opt(&name).await.ok()??;
        (p.status?.phase == RunPhase::Completed).then_some(())
    });
    let detected = jiff::Timestamp::now();
    standby.apply(&PLAN.replace("DETECTED", &detected.to_string()));

    let plans: Api<RestorePlan> = Api::namespaced(standby.client.clone(), "records");
    // The operator dies while the volumes are being restored, and comes back.
    standby.eventually(120, "the volumes' restore to start", || async {
        let p = plans.get_opt("records-back").await.ok()??;
        (p.status?.phase == PlanPhase::RestoringVolumes).then_some(())
    });
    standby.kill_operator();
    standby.start_operator(system_clock());
    let plan = standby.eventually(240, "the restore to finish", || async {
        let p = plans.get_opt("records-back").await.ok()??;
        matches!(p.status.as_ref()?.phase, PlanPhase::Completed | PlanPhase::Failed).then_some(p)
    });
    let st = plan.status.clone().unwrap();
    let events = |reason: &str| standby.event_messages("records", reason);
    assert_eq!(st.phase, PlanPhase::Completed, "{:?}\n{}", st.message, events("RestoreFailed"));
    let used = st.restored_point.clone().unwrap();
    assert_eq!((used.name.as_str(), used.location.as_str()), (name.as_str(), "us"));
    let chosen = events("RestorePointChosen");
    assert!(
        chosen.contains("from BackupLocation us, not eu: unreachable"),
        "the region that was down is named: {chosen}"
    );

    // Every record up to the point, byte for byte, in the running workload.
    let sts: Api<StatefulSet> = Api::namespaced(standby.client.clone(), "records");
    let restored = standby.block_on(sts.get("records")).unwrap();
    assert_eq!(restored.status.as_ref().and_then(|s| s.ready_replicas), Some(3));
    standby.holds_records(&recorded);
    // Each volume was checked against the point before the workload existed.
    assert_eq!(st.volumes.len(), 3);
    for v in &st.volumes {
        assert!(v.done && v.digest.as_ref().is_some_and(|d| d.len() == 64) && v.files >= Some(1), "{v:?}");
    }
    // Mapped in the claims and in the StatefulSet's templates; no owner to take them away.
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(standby.client.clone(), "records");
    for i in 0..3 {
        let c = standby.block_on(pvcs.get(&format!("data-records-{i}"))).unwrap();
        assert_eq!(c.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("fast-standby"));
        assert!(c.metadata.owner_references.is_none(), "{:?}", c.metadata.owner_references);
        assert_eq!(c.annotations().get("lifeline.io/restored-from"), Some(&name));
    }
    let templates = restored.spec.as_ref().unwrap().volume_claim_templates.clone().unwrap();
    assert_eq!(templates[0].spec.as_ref().unwrap().storage_class_name.as_deref(), Some("fast-standby"));

    // RPO: the age of the data at detection; RTO: decision and execution.
    let rpo = std::time::Duration::from(st.rpo.unwrap());
    assert!(rpo > std::time::Duration::ZERO && rpo < std::time::Duration::from_secs(600), "{rpo:?}");
    let rto = st.rto.clone().unwrap();
    assert!(rto.execution.is_some() && rto.decision.is_some() && rto.total.is_some(), "{rto:?}");
    // The story, in order.
    super::in_order(
        &standby.plan_story("records", "records-back"),
        &["RestoreStarted", "RestorePointChosen", "VolumesRestored", "WorkloadStarted", "RestoreCompleted"],
    );

    // Applying the same plan again (a GitOps re-sync) restores nothing again.
    standby.apply(&PLAN.replace("DETECTED", &detected.to_string()));
    std::thread::sleep(std::time::Duration::from_secs(3));
    let again = standby.block_on(plans.get("records-back")).unwrap().status.unwrap();
    assert_eq!(again.completion_time, st.completion_time);
    assert_eq!(events("RestoreStarted").matches("started").count(), 1);

    // A new run of the plan does not restore over what is there now, and says why.
    standby.kubectl(
        &[
            "patch",
            "restoreplan/records-back",
            "-n",
            "records",
            "--type=merge",
            "-p",
            r#"{"spec":{"trigger":{"runToken":"again"}}}"#,
        ],
        None,
    );
    let refused = standby.eventually(60, "the second run to be refused", || async {
        let s = plans.get("records-back").await.ok()?.status?;
        (s.run_token.as_deref() == Some("again") && s.phase == PlanPhase::Failed).then_some(s)
    });
    let msg = refused.message.unwrap_or_default();
    assert!(msg.contains("PersistentVolumeClaim data-records-0") && msg.contains("StatefulSet records"), "{msg}");
    let degraded = refused.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    assert_eq!(degraded.reason, "TargetExists");

    // Deleting the plan leaves what it restored.
    standby.kubectl(&["delete", "restoreplan/records-back", "-n", "records", "--wait=true"], None);
    std::thread::sleep(std::time::Duration::from_secs(2));
    for i in 0..3 {
        assert!(standby.block_on(pvcs.get_opt(&format!("data-records-{i}"))).unwrap().is_some());
    }
    assert!(standby.block_on(sts.get_opt("records")).unwrap().is_some());

    // Selective recovery: one volume, one path in it, after the workload and its claims
    // are gone again.
    standby.kubectl(&["delete", "statefulset/records", "-n", "records", "--wait=true"], None);
    // The claims outlive the StatefulSet they were restored for (no owner reference).
    standby.eventually(60, "the StatefulSet's Pods to go", || async {
        let pods = standby.kubectl(&["get", "pods", "-n", "records", "-o", "name"], None);
        pods.trim().is_empty().then_some(())
    });
    for i in 0..3 {
        assert!(standby.block_on(pvcs.get_opt(&format!("data-records-{i}"))).unwrap().is_some());
    }
    standby.kubectl(&["delete", "pvc", "--all", "-n", "records", "--wait=true"], None);
    standby.apply(
        r#"
apiVersion: lifeline.io/v1alpha1
kind: RestorePlan
metadata:
  name: one-file
  namespace: records
spec:
  source:
    locations: [us]
    policy: records
  volumes: [data-records-1]
  paths: [last-before-snapshot]
  workloads:
    - name: records
      replicas: 0
"#,
    );
    let one = standby.completed_plan("records", "one-file", 120);
    assert_eq!(one.volumes.iter().map(|v| v.pvc.as_str()).collect::<Vec<_>>(), ["data-records-1"]);
    assert_eq!(one.volumes[0].files, Some(1), "only the chosen path: {:?}", one.volumes[0]);
    for i in [0, 2] {
        assert!(standby.block_on(pvcs.get_opt(&format!("data-records-{i}"))).unwrap().is_none(), "data-records-{i}");
    }
    assert!(standby.block_on(pvcs.get_opt("data-records-1")).unwrap().is_some());

    // Drills: restore into a scratch namespace, check, measure, leave nothing behind.
    let census = || {
        standby.kubectl(
            &["get", "pods,pvc,jobs,secrets,statefulsets,services,configmaps", "-n", "records", "-o", "name"],
            None,
        )
    };
    let before = census();
    let drill = |name: &str, check: &str| {
        format!(
            "apiVersion: lifeline.io/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: {name}\n  namespace: records\nspec:\n  mode: Drill\n  source:\n    locations: [us]\n    policy: records\n  postRestoreHooks:\n    - name: has-records\n      command: [\"sh\", \"-c\", {check:?}]\n"
        )
    };
    standby.apply(&drill("drill-ok", "test -s /data/records.log && grep -q 'record 1$' /data/records.log"));
    let ok = standby.completed_plan("records", "drill-ok", 180);
    assert!(ok.rto.as_ref().and_then(|r| r.execution).is_some(), "{:?}", ok.rto);
    assert!(events("HooksRan").contains("3 check(s) passed in 3 Pod(s)"), "{}", events("HooksRan"));
    let namespaces = standby.kubectl(&["get", "namespaces", "-o", "name"], None);
    assert!(!namespaces.contains("namespace/records-drill"), "the scratch namespace is gone: {namespaces}");
    assert_eq!(census(), before, "the drill left nothing behind in the protected namespace");

    // A drill whose check fails is Degraded with the check's output, and cleans up too.
    standby.apply(&drill("drill-bad", "echo the orders table is missing >&2; exit 3"));
    let bad = standby.finished_plan("records", "drill-bad", 180);
    assert_eq!(bad.phase, PlanPhase::Failed, "{:?}", bad.message);
    let degraded = bad.conditions.iter().find(|c| c.type_ == "Degraded").unwrap();
    assert_eq!((degraded.status.as_str(), degraded.reason.as_str()), ("True", "CheckFailed"));
    assert!(
        degraded.message.contains("exit code 3") && degraded.message.contains("the orders table is missing"),
        "{}",
        degraded.message
    );
    let namespaces = standby.kubectl(&["get", "namespaces", "-o", "name"], None);
    assert!(!namespaces.contains("namespace/records-drill"), "{namespaces}");
    assert_eq!(census(), before);

    // Into another namespace: the namespace lands in the claims, the class mapping in the
    // claims and the templates; the Secrets copied for the restore Jobs go afterwards.
    let into = |name: &str, ns: &str| {
        format!(
            "apiVersion: lifeline.io/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: {name}\n  namespace: records\nspec:\n  source:\n    locations: [us]\n    policy: records\n  target:\n    namespace: {ns}\n    storageClassMapping:\n      - from: standard\n        to: fast-standby\n"
        )
    };
    standby.apply(&into("copy", "records-copy"));
    standby.completed_plan("records", "copy", 180);
    let cpvcs: Api<PersistentVolumeClaim> = Api::namespaced(standby.client.clone(), "records-copy");
    for i in 0..3 {
        let c = standby.block_on(cpvcs.get(&format!("data-records-{i}"))).unwrap();
        assert_eq!(c.spec.unwrap().storage_class_name.as_deref(), Some("fast-standby"));
    }
    let csts: Api<StatefulSet> = Api::namespaced(standby.client.clone(), "records-copy");
    let moved = standby.block_on(csts.get("records")).unwrap();
    let t = &moved.spec.unwrap().volume_claim_templates.unwrap()[0];
    assert_eq!(t.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("fast-standby"));
    assert!(t.metadata.namespace.is_none(), "{:?}", t.metadata);
    let secrets = standby.kubectl(&["get", "secrets", "-n", "records-copy", "-o", "name"], None);
    assert!(!secrets.contains("lifeline-"), "the Jobs' copies are gone: {secrets}");
    assert!(secrets.contains("secret/records-auth"), "the workload's own Secret came with it: {secrets}");

    // Damaged data at the location: the plan fails naming the volume; no workload starts.
    let location = us.open(&us_url);
    let secret =
        lifeline::repo::Secret::Passphrase(zeroize::Zeroizing::new(b"test passphrase for the operator tests".to_vec()));
    let repo = lifeline::repo::Repository::open(location.clone(), &secret).unwrap();
    repo.load_index_for_reading().unwrap();
    let snaps = repo.points().unwrap().good;
    let tagged = |k: &str, v: &str| {
        snaps
            .iter()
            .find(|(_, s)| {
                s.tags.get("lifeline.io/point") == Some(&name) && s.tags.get(k).map(String::as_str) == Some(v)
            })
            .map(|(_, s)| s.clone())
            .unwrap()
    };
    // The packs holding the content of volume data-records-0 and nothing of the record.
    let volume = packs_of(&repo, &tagged("lifeline.io/pvc", "records/data-records-0"));
    let record = packs_of(&repo, &tagged("lifeline.io/kind", "record"));
    let chunk_packs: Vec<String> = volume.difference(&record).map(lifeline::repo::format::pack_key).collect();
    assert!(!chunk_packs.is_empty());
    for key in chunk_packs {
        let o = lifeline::store::ObjectInfo { key, size: 0, modified: 0 };
        let mut data = location.get(&o.key).unwrap().to_vec();
        // The first blob starts at byte 0 (the pack's header is at its end).
        data[0] ^= 0xff;
        location.delete(&o.key).unwrap();
        location.put_new(&o.key, data.into()).unwrap();
    }
    standby.apply(&into("broken", "records-broken"));
    let broken = standby.finished_plan("records", "broken", 180);
    assert_eq!(broken.phase, PlanPhase::Failed);
    let msg = broken.message.unwrap_or_default();
    // Data is deduplicated across volumes: whichever volume reads a damaged pack first is
    // the one named.
    assert!(msg.contains("volume data-records-") && msg.contains(": Corrupted: "), "{msg}");
    let bsts: Api<StatefulSet> = Api::namespaced(standby.client.clone(), "records-broken");
    assert!(standby.block_on(bsts.get_opt("records")).unwrap().is_none(), "no workload on damaged data");
}

/// The packs the files of a repository snapshot keep their content in.
fn packs_of(
    repo: &lifeline::repo::Repository,
    snap: &lifeline::repo::format::Snapshot,
) -> std::collections::HashSet<lifeline::repo::format::Id> {
    let mut out = std::collections::HashSet::new();
    let mut trees: Vec<_> = snap.root.subtree.into_iter().collect();
    while let Some(t) = trees.pop() {
        for n in repo.read_tree(&t).unwrap().nodes {
            trees.extend(n.subtree);
            for seg in &n.content {
                out.extend(repo.read_segment(&seg.id).unwrap().iter().map(|c| c.loc.pack));
            }
        }
    }
    out
}
