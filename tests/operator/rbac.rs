//! RBAC proven, not guessed: the operator runs as the ServiceAccount the Helm chart
//! renders, bound to the chart's rendered roles, on clusters that enforce RBAC, through a
//! backup (hooks, snapshots, movers, replication), a restore into a new namespace, a
//! drill and a failover with fencing; then what it did is compared with what the chart
//! grants. A request the roles do not allow fails the test (naming it), and so does a
//! grant no request used.

use super::{Env, example, standby_locations, system_clock};
use crate::support::s3;
use kube::api::Api;
use lifeline::api::RestorePoint;
use lifeline::sim::Options as SimOptions;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

pub(super) const NAMESPACE: &str = "lifeline-system";
pub(super) const ACCOUNT: &str = "lifeline";

/// Grants these scenarios do not reach, and why (each has a caller in the code).
const UNREACHED: &[(&str, &str, &str, &str)] = &[
    ("lifeline.io", "backuppolicies", "patch", "a returning site suspends its own policy when the takeover could not"),
    ("lifeline.io", "restoreplans", "create", "drills on a policy's schedule"),
    ("lifeline.io", "restorepoints/finalizers", "update", "OwnerReferencesPermissionEnforcement, off here"),
    ("lifeline.io", "restoreplans/finalizers", "update", "OwnerReferencesPermissionEnforcement, off here"),
    ("", "pods/log", "get", "a running mover's progress, read only when a Job outlasts a poll"),
    ("", "pods", "patch", "the fence gate (operator::failback)"),
    ("", "pods", "delete", "the fence gate (operator::failback)"),
    ("", "configmaps", "get", "captured like Secrets; the records workload has none"),
    ("", "configmaps", "create", "restored like Services; the records workload has none"),
    ("snapshot.storage.k8s.io", "volumesnapshots", "get", "single snapshots, where no group class serves"),
    ("snapshot.storage.k8s.io", "volumesnapshots", "create", "single snapshots, where no group class serves"),
    ("snapshot.storage.k8s.io", "volumesnapshots", "patch", "single snapshots, where no group class serves"),
    // A group's members are owned by it: garbage collection usually removes them before
    // the run's clean-up lists them, and the operator deletes only those still there.
    ("snapshot.storage.k8s.io", "volumesnapshots", "delete", "single snapshots; group members GC has not removed yet"),
    // The event recorder patches an Event's series when the same Event repeats within its
    // cache window; whether a scenario repeats one depends on timing (a warm promotion
    // repeated VolumesRestored until it went straight to starting its workloads).
    ("events.k8s.io", "events", "patch", "an Event repeated while the recorder still holds it"),
];

/// The chart's ServiceAccount and roles applied to `env`; returns the rendered roles.
pub(super) fn install_identity(env: &Env) -> Vec<Value> {
    let (_dir, _, docs) = crate::chart::render(&["--set", "crds.install=false"]);
    env.kubectl(&["create", "namespace", NAMESPACE], None);
    let kinds = ["ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"];
    let identity: Vec<String> = docs
        .iter()
        .filter(|d| kinds.contains(&d["kind"].as_str().unwrap_or_default()))
        .map(|d| serde_json::to_string(d).unwrap())
        .collect();
    env.kubectl(&["apply", "-f", "-"], Some(&identity.join("\n---\n")));
    docs.into_iter()
        .filter(|d| d["kind"] == "ClusterRole" || d["kind"] == "Role")
        // Granted to workloads that use the fence gate, not to the operator.
        .filter(|d| !d["metadata"]["name"].as_str().unwrap_or_default().ends_with("-fence-gate"))
        .collect()
}

/// (group, resource, verb) of every rule.
fn granted(roles: &[Value]) -> BTreeSet<(String, String, String)> {
    let strs = |v: &Value| -> Vec<String> {
        v.as_array().into_iter().flatten().filter_map(|s| s.as_str().map(String::from)).collect()
    };
    let mut out = BTreeSet::new();
    for role in roles {
        for rule in role["rules"].as_array().unwrap() {
            for g in strs(&rule["apiGroups"]) {
                for r in strs(&rule["resources"]) {
                    for v in strs(&rule["verbs"]) {
                        out.insert((g.clone(), r.clone(), v));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn the_operator_needs_exactly_the_roles_the_chart_grants() {
    let rbac = || SimOptions { rbac: true, ..Default::default() };
    let mut site_a = Env::start(rbac());
    let roles = install_identity(&site_a);
    site_a.start_operator_as(NAMESPACE, ACCOUNT, system_clock());
    let prefix = s3::unique("rbac");
    // The locations checked every 2 s: the primary finds the fence quickly.
    // Retention keeps one point, so a second run deletes the first.
    // The workload's Service is a NodePort one: a restore into the same cluster cannot
    // keep its node port.
    let yaml = example("records-two-regions.yaml", &prefix)
        .replace("\n  keySecret:\n", "\n  checkInterval: 2s\n  keySecret:\n")
        .replace("    keepLast: 24\n    daily: 7\n", "    keepLast: 1\n")
        .replace("  clusterIP: None\n", "  type: NodePort\n")
        .replace("    - name: none\n      port: 80\n", "    - name: http\n      port: 80\n      nodePort: 30999\n");
    assert!(yaml.contains("nodePort: 30999"), "the example's Service changed");
    site_a.apply(&yaml);
    site_a.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    let first = site_a.take_point("first", &[]);
    let second = site_a.take_point("second", std::slice::from_ref(&first));
    let points: Api<RestorePoint> = Api::namespaced(site_a.client.clone(), "records");
    site_a.eventually(120, "retention to delete the first point", || async {
        points.get_opt(&first).await.ok()?.is_none().then_some(())
    });

    // A restore into a new namespace, and a drill (its scratch namespace created and
    // deleted), at the same site.
    site_a.apply(
        "apiVersion: lifeline.io/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: copy\n  namespace: records\nspec:\n  source:\n    locations: [us]\n    policy: records\n  target:\n    namespace: records-copy\n",
    );
    site_a.completed_plan("records", "copy", 180);
    let node_port = |ns: &str| {
        site_a.kubectl(&["get", "service", "records", "-n", ns, "-o", "jsonpath={.spec.ports[0].nodePort}"], None)
    };
    let (kept, copied) = (node_port("records"), node_port("records-copy"));
    assert!(kept == "30999" && !copied.is_empty() && copied != kept, "{kept} {copied}");
    let reassigned = site_a.event_messages("records", "NodePortsReassigned");
    assert!(
        reassigned.contains(&format!(
            "Service records: node port(s) 80:30999/TCP taken in the target; created with 80:{copied}/TCP"
        )),
        "{reassigned}"
    );
    site_a.apply(
        "apiVersion: lifeline.io/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: drill\n  namespace: records\nspec:\n  mode: Drill\n  source:\n    locations: [us]\n    policy: records\n  postRestoreHooks:\n    - name: has-records\n      command: [\"sh\", \"-c\", \"test -s /data/records.log\"]\n",
    );
    site_a.completed_plan("records", "drill", 180);

    // A failover into a standby cluster, which fences the primary through its kubeconfig.
    let mut site_b = Env::start(rbac());
    let roles_b = install_identity(&site_b);
    assert_eq!(roles, roles_b);
    site_b.apply(&standby_locations(&yaml));
    let secret = serde_json::json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "site-a", "namespace": "records"},
        "stringData": {"kubeconfig": site_a.kubeconfig_text()}});
    site_b.apply(&secret.to_string());
    site_b.start_operator_as(NAMESPACE, ACCOUNT, system_clock());
    let catalog: Api<RestorePoint> = Api::namespaced(site_b.client.clone(), "records");
    site_b.eventually(90, "the restore point in the standby's catalog", || async {
        catalog.get_opt(&second).await.ok()?.map(|_| ())
    });
    site_b.apply(
        "apiVersion: lifeline.io/v1alpha1\nkind: RestorePlan\nmetadata:\n  name: take-over\n  namespace: records\nspec:\n  mode: Failover\n  source:\n    locations: [eu, us]\n    policy: records\n  failover:\n    sourceKubeconfig:\n      name: site-a\n      key: kubeconfig\n",
    );
    site_b.completed_plan("records", "take-over", 240);
    // The primary stands down (its operator reads the fence).
    site_a.eventually(90, "the primary to stand down", || async {
        let api: Api<lifeline::api::BackupPolicy> = Api::namespaced(site_a.client.clone(), "records");
        let p = api.get("records").await.ok()?;
        p.status?.conditions.into_iter().any(|c| c.reason == "Fenced").then_some(())
    });
    site_a.kill_operator();
    site_b.kill_operator();

    // What the operator asked for, at both sites.
    let user = format!("system:serviceaccount:{NAMESPACE}:{ACCOUNT}");
    let mut used: BTreeMap<(String, String, String), u64> = BTreeMap::new();
    let mut denied = Vec::new();
    for (a, n) in site_a.audit().into_iter().chain(site_b.audit()) {
        if a.user != user {
            continue;
        }
        if !a.allowed {
            denied.push(format!("{} {}/{} in {:?} ({n}x)", a.verb, a.group, a.resource, a.namespace));
        }
        *used.entry((a.group, a.resource, a.verb)).or_default() += n;
    }
    println!("requests of the operator by group, resource and verb:");
    for ((g, r, v), n) in &used {
        println!("  {n:6}  {v:8} {g}/{r}");
    }
    assert!(denied.is_empty(), "the chart's roles do not allow:\n{}", denied.join("\n"));
    let unreached: BTreeSet<(String, String, String)> =
        UNREACHED.iter().map(|(g, r, v, _)| (g.to_string(), r.to_string(), v.to_string())).collect();
    let unused: Vec<String> = granted(&roles)
        .into_iter()
        .filter(|k| !used.contains_key(k) && !unreached.contains(k))
        .map(|(g, r, v)| format!("{v} {g}/{r}"))
        .collect();
    assert!(unused.is_empty(), "the chart grants what the operator never used:\n{}", unused.join("\n"));
}
