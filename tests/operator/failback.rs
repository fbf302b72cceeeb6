//! Failback: after a failover, the standby protects the workload; the original site
//! comes back (and stands down), then takes the workload back with the data written
//! during the outage, writing only what changed, and both sites' roles are as before.

use super::{Env, example, system_clock};
use crate::support::s3;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::Api;
use lifeline::api::{BackupPolicy, RestorePoint};
use lifeline::sim::Options as SimOptions;

/// The documents of `yaml` of the given kinds.
fn docs(yaml: &str, kinds: &[&str]) -> String {
    yaml.split("\n---\n")
        .filter(|d| kinds.iter().any(|k| d.contains(&format!("kind: {k}\n"))))
        .collect::<Vec<_>>()
        .join("\n---\n")
}

fn kubeconfig_secret(name: &str, text: &str) -> String {
    serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": "records"},
        "stringData": {"kubeconfig": text}})
    .to_string()
}

/// The records StatefulSet with the fence gate: an init container that holds its Pods
/// until the operator has read the fencing markers.
fn gated(yaml: &str) -> String {
    let template =
        "    metadata:\n      labels:\n        app.kubernetes.io/name: records\n    spec:\n      containers:\n";
    assert!(yaml.contains(template), "the example's Pod template changed");
    let gate = format!(
        "    metadata:\n      labels:\n        app.kubernetes.io/name: records\n        lifeline.io/fence-gate: \"true\"\n    spec:\n      initContainers:\n        - name: fence-gate\n          image: lifeline:test\n          command: [\"{}\", fence-gate, --interval, 500ms]\n          env:\n            - name: POD_NAME\n              valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}\n            - name: POD_NAMESPACE\n              valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}\n      containers:\n",
        env!("CARGO_BIN_EXE_lifeline")
    );
    yaml.replace(template, &gate)
}

async fn fenced(client: kube::Client) -> Option<String> {
    let api: Api<BackupPolicy> = Api::namespaced(client, "records");
    let p = api.get("records").await.ok()?;
    let c = p.status?.conditions.into_iter().find(|c| c.type_ == "Degraded" && c.status == "True")?;
    (c.reason == "Fenced").then_some(c.message)
}

#[test]
fn a_failback_returns_the_workload_with_the_outage_writes_writing_only_what_changed() {
    // The original site: the records example with some bulk data, one restore point.
    let mut site_a = Env::start(SimOptions::default());
    let prefix = s3::unique("failback");
    // The locations checked every 2 s: the catalog follows the other site quickly.
    let yaml = example("records-two-regions.yaml", &prefix)
        .split("\n---\n")
        .map(|d| {
            if d.contains("kind: BackupLocation\n") {
                d.replace("\n  keySecret:\n", "\n  checkInterval: 2s\n  keySecret:\n")
            } else {
                d.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n---\n");
    let yaml = gated(&yaml);
    site_a.apply(&yaml);
    // The gate holds the Pods until the operator has read the (absent) fencing markers.
    site_a.start_operator(system_clock());
    site_a.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    for i in 0..3 {
        site_a.exec(&format!("records-{i}"), "head -c 16777216 /dev/urandom > /data/bulk");
    }
    let first = site_a.take_point("first", &[]);
    let a_kubeconfig = site_a.kubeconfig_text();
    site_a.kill_cluster();

    // The standby takes over, then protects the workload where it runs now.
    let mut site_b = Env::start(SimOptions::default());
    site_b.apply(&super::standby_locations(&yaml));
    site_b.apply(&kubeconfig_secret("site-a", &a_kubeconfig));
    site_b.start_operator(system_clock());
    let catalog: Api<RestorePoint> = Api::namespaced(site_b.client.clone(), "records");
    site_b.eventually(60, "the restore point in the standby", || async {
        (catalog.get_opt(&first).await.ok()??.status?.phase == lifeline::api::restore_point::RunPhase::Completed)
            .then_some(())
    });
    site_b.apply(
        "apiVersion: lifeline.io/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: take-over\n  namespace: records\nspec:\n  mode: Failover\n  source:\n    locations: [eu, us]\n    policy: records\n  failover:\n    sourceKubeconfig:\n      name: site-a\n      key: kubeconfig\n",
    );
    site_b.completed_plan("records", "take-over", 240);
    site_b.apply(&docs(&yaml, &["BackupLocation", "BackupPolicy"]));
    // Written during the outage, at the standby.
    site_b.exec("records-1", "echo 'written during the outage' >> /data/records.log");
    let during = site_b.take_point("during", std::slice::from_ref(&first));

    // The original site returns and stands down, without a single write into the
    // locations (every object there is compared before and after, the standby's own
    // heartbeats aside) or into its volumes: the kubelet restarts the Pods at once, and
    // the fence gate holds them until the operator has read the markers.
    let b_id = site_b.kubectl(&["get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}"], None);
    let listing = || -> Vec<(String, u64, i64)> {
        let (eu, us) = s3::regions();
        [(eu, "eu"), (us, "us")]
            .into_iter()
            .flat_map(|(server, r)| {
                let b = server.open(&format!("s3://lifeline/{prefix}-{r}"));
                b.list("").unwrap().into_iter().map(move |o| (format!("{r}/{}", o.key), o.size, o.modified))
            })
            .filter(|(k, _, _)| !k.contains(&format!("heartbeats/records/{b_id}/")))
            .collect()
    };
    let before = listing();
    let volumes_before = site_a.volume_digest();
    site_a.restart_cluster();
    site_a.start_operator(system_clock());
    site_a.eventually(90, "the returning site to stand down", || fenced(site_a.client.clone()));
    let a_sts: Api<StatefulSet> = Api::namespaced(site_a.client.clone(), "records");
    site_a.eventually(60, "its StatefulSet at zero", || async {
        let s = a_sts.get("records").await.ok()?;
        (s.spec?.replicas == Some(0) && s.status?.replicas == 0).then_some(())
    });
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert_eq!(listing(), before, "the returning site wrote into a location");
    assert_eq!(site_a.volume_digest(), volumes_before, "the returning site's workload wrote to its volumes");
    let a_points: Api<RestorePoint> = Api::namespaced(site_a.client.clone(), "records");
    site_a.eventually(60, "the standby's restore point in the original site's catalog", || async {
        a_points.get_opt(&during).await.ok()?.map(|_| ())
    });

    // The failback, applied at the original site.
    site_a.apply(&kubeconfig_secret("site-b", &site_b.kubeconfig_text()));
    site_a.apply(
        "apiVersion: lifeline.io/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: give-back\n  namespace: records\nspec:\n  mode: Failback\n  source:\n    locations: [eu, us]\n    policy: records\n  failover:\n    sourceKubeconfig:\n      name: site-b\n      key: kubeconfig\n",
    );
    let st = site_a.completed_plan("records", "give-back", 300);
    let fb = st.failback.clone().unwrap();
    let final_point = fb.final_point.clone().unwrap();
    assert!(final_point != during && final_point != first, "{fb:?}");
    let total: i64 = st.volumes.iter().map(|v| v.bytes_done).sum();
    let (pre, fin) = (fb.pre_sync_bytes.unwrap(), fb.final_sync_bytes.unwrap());
    println!("failback: {total} bytes in the volumes; the first pass wrote {pre}, the final pass {fin}");
    assert!(total >= 3 * (16 << 20), "{total}");
    assert!(pre > 0 && pre * 20 < total, "the first pass wrote {pre} of {total} bytes");
    assert!(fin * 20 < total, "the final pass wrote {fin} of {total} bytes");
    assert_eq!(st.fencing.as_ref().and_then(|f| f.epoch), Some(2), "{:?}", st.fencing);
    super::in_order(
        &site_a.plan_story("records", "give-back"),
        &["RestorePointChosen", "VolumesRestored", "Failback", "Fencing", "WorkloadStarted", "RestoreCompleted"],
    );

    // Every record of the final point, the outage's among them, at the original site.
    let (_, us) = s3::regions();
    let recorded = super::recorded_logs(&format!("s3://lifeline/{prefix}-us"), &us.endpoint, &final_point);
    assert!(recorded[1].contains("written during the outage\n"), "{}", recorded[1]);
    site_a.holds_records(&recorded);

    // Roles as before: the standby stands down, the original site protects again.
    site_b.eventually(90, "the standby to stand down", || fenced(site_b.client.clone()));
    let b_sts: Api<StatefulSet> = Api::namespaced(site_b.client.clone(), "records");
    let s = site_b.block_on(b_sts.get("records")).unwrap();
    assert_eq!(s.spec.unwrap().replicas, Some(0));
    let a_policies: Api<BackupPolicy> = Api::namespaced(site_a.client.clone(), "records");
    let p = site_a.block_on(a_policies.get("records")).unwrap();
    assert!(!p.spec.suspend, "the original site's policy is resumed");
    site_a.eventually(60, "the original site no longer fenced", || async {
        fenced(site_a.client.clone()).await.is_none().then_some(())
    });
    let mut known: Vec<String> = site_a.points("records").iter().map(kube::ResourceExt::name_any).collect();
    known.push(first);
    let after = site_a.take_point("after-failback", &known);
    assert!(!after.is_empty());
}
