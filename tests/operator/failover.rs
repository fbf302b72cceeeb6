//! Failover without split brain: the primary site is lost, a `Failover` plan in the
//! standby (its operator killed at the start of every step) fences it (the source cluster cannot be reached, so that part is recorded as
//! skipped; markers go into both regions) and restores; when the primary cluster comes
//! back, its operator finds the marker and stands down: its policy suspended, its
//! StatefulSet held at zero replicas, no backup run, a `Fenced` condition saying why.

use super::{Env, example, system_clock};
use crate::support::s3;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::ResourceExt;
use kube::api::{Api, WatchEvent, WatchParams};
use lifeline::api::restore_plan::PlanPhase;
use lifeline::api::restore_point::RunPhase;
use lifeline::api::{BackupPolicy, RestorePlan, RestorePoint};
use lifeline::sim::Options as SimOptions;

#[test]
fn a_failover_fences_the_lost_primary_and_the_returning_primary_stands_down() {
    let mut primary = Env::start(SimOptions::default());
    let prefix = s3::unique("failover");
    let yaml = example("records-two-regions.yaml", &prefix);
    let name = primary.protected_point(&yaml);
    let (_, us) = s3::regions();
    let recorded = super::recorded_logs(&format!("s3://lifeline/{prefix}-us"), &us.endpoint, &name);
    let primary_kubeconfig = primary.kubeconfig_text();
    primary.kill_cluster();

    // The standby: both regions read-only, and a way to reach the primary's cluster.
    let mut standby = Env::start(SimOptions::default());
    let locations = super::standby_locations(&yaml);
    standby.apply(&locations);
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "primary-kubeconfig", "namespace": "records"},
        "stringData": {"kubeconfig": primary_kubeconfig}});
    standby.apply(&secret.to_string());
    standby.start_operator(system_clock());
    let spoints: Api<RestorePoint> = Api::namespaced(standby.client.clone(), "records");
    standby.eventually(60, "the restore point in the standby", || async {
        (spoints.get_opt(&name).await.ok()??.status?.phase == RunPhase::Completed).then_some(())
    });
    standby.apply(
        r#"
apiVersion: lifeline.io/v1alpha1
kind: RestorePlan
metadata:
  name: take-over
  namespace: records
spec:
  mode: Failover
  source:
    locations: [eu, us]
    policy: records
  failover:
    sourceKubeconfig:
      name: primary-kubeconfig
      key: kubeconfig
"#,
    );
    let plans: Api<RestorePlan> = Api::namespaced(standby.client.clone(), "records");
    // The operator is killed as soon as each step begins, and started again. The plan is
    // watched, not polled, so that a step which passes quickly is seen all the same.
    let mut seen = Vec::new();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    let first = standby.block_on(plans.get("take-over")).unwrap();
    let mut rv = first.resource_version().unwrap();
    let mut pending = Some(first);
    let wp = WatchParams::default().fields("metadata.name=take-over").timeout(10);
    let mut events = None;
    let st = loop {
        let plan = match pending.take() {
            Some(p) => p,
            None => {
                assert!(std::time::Instant::now() < deadline, "the failover did not finish: {seen:?}");
                if events.is_none() {
                    events = Some(standby.block_on(plans.watch(&wp, &rv)).unwrap().boxed());
                }
                let Some(e) = standby.block_on(events.as_mut().unwrap().next()) else {
                    events = None;
                    continue;
                };
                match e.unwrap() {
                    WatchEvent::Added(p) | WatchEvent::Modified(p) => {
                        rv = p.resource_version().unwrap();
                        p
                    }
                    WatchEvent::Bookmark(b) => {
                        rv = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Deleted(_) => panic!("the plan was deleted"),
                    WatchEvent::Error(e) => panic!("watching the plan: {e:?}"),
                }
            }
        };
        let s = plan.status.unwrap_or_default();
        if matches!(s.phase, PlanPhase::Completed | PlanPhase::Failed) {
            break s;
        }
        if seen.last() != Some(&s.phase) {
            seen.push(s.phase);
            standby.kill_operator();
            standby.start_operator(system_clock());
        }
    };
    assert_eq!(st.phase, PlanPhase::Completed, "{:?}", st.message);
    for step in [PlanPhase::Fencing, PlanPhase::RestoringVolumes, PlanPhase::StartingWorkloads] {
        assert!(seen.contains(&step), "the operator was not killed in {step:?}: {seen:?}");
    }
    // No duplicate or empty volume: three claims, each restored once and checked.
    let pvcs = standby.kubectl(&["get", "pvc", "-n", "records", "-o", "name"], None);
    assert_eq!(pvcs.lines().count(), 3, "{pvcs}");
    assert!(st.volumes.iter().all(|v| v.done && v.files >= Some(1) && v.digest.is_some()), "{:?}", st.volumes);
    let fencing = st.fencing.clone().unwrap();
    assert!(fencing.source.starts_with("skipped: the source cluster"), "{fencing:?}");
    // One epoch in all locations, also when a kill interrupted the writing of the markers:
    // the replayed step finds its own and writes the missing ones with the same epoch.
    let epoch = fencing.epoch.unwrap();
    assert_eq!(epoch, 1, "{fencing:?}");
    assert_eq!(fencing.markers, ["eu: epoch 1", "us: epoch 1"], "{fencing:?}");
    let story = standby.event_messages("records", "Fencing");
    assert!(story.contains(&format!("fencing markers: eu: epoch {epoch}, us: epoch {epoch}")), "{story}");
    super::in_order(
        &standby.plan_story("records", "take-over"),
        &["RestoreStarted", "RestorePointChosen", "Fencing", "VolumesRestored", "WorkloadStarted", "RestoreCompleted"],
    );
    assert!(st.rpo.is_some() && st.rto.as_ref().and_then(|r| r.execution).is_some(), "{st:?}");
    // Every record of the restore point, byte for byte, in the running workload.
    standby.holds_records(&recorded);

    // The primary site comes back, with its operator: it reads the marker and stands down.
    primary.restart_cluster();
    primary.start_operator(system_clock());
    let policies: Api<BackupPolicy> = Api::namespaced(primary.client.clone(), "records");
    let policy = primary.eventually(60, "the returning primary to stand down", || async {
        let p = policies.get_opt("records").await.ok()??;
        let c = p.status.as_ref()?.conditions.iter().find(|c| c.type_ == "Degraded" && c.reason == "Fenced")?.clone();
        (c.status == "True").then_some(p)
    });
    assert!(policy.spec.suspend, "the policy is suspended");
    let msg = &policy.status.as_ref().unwrap().conditions.iter().find(|c| c.reason == "Fenced").unwrap().message;
    assert!(msg.contains("records/take-over") && msg.contains("stands down"), "{msg}");
    let sts: Api<StatefulSet> = Api::namespaced(primary.client.clone(), "records");
    primary.eventually(60, "the primary's StatefulSet at zero", || async {
        let s = sts.get("records").await.ok()?;
        (s.spec?.replicas == Some(0) && s.status?.replicas == 0).then_some(())
    });
    // Scaled up by hand (or by a GitOps sync), it is held at zero; a run asked for does
    // not write.
    primary.kubectl(&["scale", "statefulset/records", "-n", "records", "--replicas=3"], None);
    primary.kubectl(
        &["annotate", "--overwrite", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=after"],
        None,
    );
    primary.eventually(60, "the StatefulSet back at zero", || async {
        (sts.get("records").await.ok()?.spec?.replicas == Some(0)).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(3));
    let names: Vec<String> = primary.points("records").iter().map(kube::ResourceExt::name_any).collect();
    assert_eq!(names, std::slice::from_ref(&name), "no run starts at a fenced site");
    let eu = &s3::regions().0;
    for (url, endpoint) in
        [(format!("s3://lifeline/{prefix}-eu"), &eu.endpoint), (format!("s3://lifeline/{prefix}-us"), &us.endpoint)]
    {
        let records = super::crash::records_at(&url, endpoint);
        assert_eq!(records.keys().collect::<Vec<_>>(), [&name], "{url}: {records:?}");
    }
}
