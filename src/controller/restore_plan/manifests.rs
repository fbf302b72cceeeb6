//! Captured manifests made ready to create in the target (pure): moved to the target
//! namespace, StorageClasses renamed everywhere a claim names one (PVCs **and** the
//! StatefulSets' `volumeClaimTemplates`), and stripped of what must not travel: one
//! cluster's identity of the object (uid, resourceVersion, managedFields, status), its
//! binding to a volume there (`volumeName`, the binding annotations, a Service's cluster
//! IP), owner references (a garbage collector would delete restored claims with their old
//! owner), and the tracking marks of a GitOps tool (Argo CD's tracking annotation and
//! instance label, which would make it prune or overwrite the restored objects).

use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Where the objects go.
#[derive(Debug, Clone, Default)]
pub struct Mapping {
    pub namespace: String,
    /// StorageClass renames, source name to target name.
    pub storage_classes: BTreeMap<String, String>,
}

/// Annotations that must not travel.
const ANNOTATIONS: [&str; 7] = [
    "argocd.argoproj.io/tracking-id",
    "kubectl.kubernetes.io/last-applied-configuration",
    "pv.kubernetes.io/bind-completed",
    "pv.kubernetes.io/bound-by-controller",
    "volume.beta.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/storage-provisioner",
    "volume.kubernetes.io/selected-node",
];

/// Labels that must not travel (Argo CD's label tracking).
const LABELS: [&str; 1] = ["app.kubernetes.io/instance"];

fn clean_metadata(meta: &mut Map<String, Value>) {
    crate::k8s::strip_cluster_metadata(meta);
    for (field, keys) in [("annotations", &ANNOTATIONS[..]), ("labels", &LABELS[..])] {
        if let Some(m) = meta.get_mut(field).and_then(Value::as_object_mut) {
            for k in keys {
                m.remove(*k);
            }
            if m.is_empty() {
                meta.remove(field);
            }
        }
    }
}

fn map_class(spec: &mut Value, m: &Mapping) {
    if let Some(to) = spec["storageClassName"].as_str().and_then(|c| m.storage_classes.get(c)) {
        spec["storageClassName"] = Value::String(to.clone());
    }
}

/// A claim's spec for a new volume: no binding to the old one, no data source of the old
/// cluster, the class renamed.
fn claim_spec(spec: &mut Value, m: &Mapping) {
    if let Some(s) = spec.as_object_mut() {
        for k in ["volumeName", "dataSource", "dataSourceRef"] {
            s.remove(k);
        }
    }
    map_class(spec, m);
}

/// The object, ready to create in the target.
pub fn prepare(obj: &Value, m: &Mapping) -> Value {
    let mut v = crate::k8s::without_cluster_state(obj.clone());
    if let Some(meta) = v["metadata"].as_object_mut() {
        clean_metadata(meta);
        meta.insert("namespace".into(), Value::String(m.namespace.clone()));
    }
    match (v["apiVersion"].as_str(), v["kind"].as_str()) {
        (Some("v1"), Some("PersistentVolumeClaim")) => claim_spec(&mut v["spec"], m),
        (Some("apps/v1"), Some("StatefulSet")) => {
            if let Some(templates) = v["spec"]["volumeClaimTemplates"].as_array_mut() {
                for t in templates {
                    if let Some(o) = t.as_object_mut() {
                        o.remove("status");
                    }
                    if let Some(meta) = t["metadata"].as_object_mut() {
                        clean_metadata(meta);
                        meta.remove("namespace");
                    }
                    claim_spec(&mut t["spec"], m);
                }
            }
            if let Some(meta) = v["spec"]["template"]["metadata"].as_object_mut() {
                meta.remove("creationTimestamp");
            }
        }
        (Some("v1"), Some("Service")) => {
            // A cluster IP is the old cluster's; a headless Service stays headless.
            let spec = &mut v["spec"];
            if spec["clusterIP"].as_str() != Some("None")
                && let Some(s) = spec.as_object_mut()
            {
                s.remove("clusterIP");
                s.remove("clusterIPs");
            }
        }
        _ => {}
    }
    v
}

/// Whether a create failed because a node port the object asked for is taken.
pub fn node_port_taken(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 422 && s.message.contains("nodePort") && s.message.contains("already allocated"))
}

/// The Service's node ports, as `port:nodePort/protocol` texts.
pub fn node_ports(svc: &Value) -> Vec<String> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some(format!("{}:{}/{}", p["port"], p["nodePort"].as_i64()?, p["protocol"].as_str().unwrap_or("TCP")))
        })
        .collect()
}

/// Removes a Service's node ports (and its health-check node port) so the target cluster
/// assigns free ones; returns the ones removed.
pub fn clear_node_ports(svc: &mut Value) -> Vec<String> {
    let before = node_ports(svc);
    if let Some(spec) = svc["spec"].as_object_mut() {
        spec.remove("healthCheckNodePort");
    }
    for p in svc["spec"]["ports"].as_array_mut().into_iter().flatten() {
        if let Some(p) = p.as_object_mut() {
            p.remove("nodePort");
        }
    }
    before
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_ports_are_cleared_for_the_target_to_assign() {
        let mut svc = json!({"spec": {"type": "LoadBalancer", "healthCheckNodePort": 31000, "ports": [
            {"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "nodePort": 30053, "protocol": "UDP"}]}});
        assert_eq!(clear_node_ports(&mut svc), ["80:30080/TCP", "53:30053/UDP"]);
        assert!(node_ports(&svc).is_empty() && svc["spec"].get("healthCheckNodePort").is_none(), "{svc}");
        let invalid = |message: &str| {
            let mut s = kube::core::Status::failure(message, "Invalid");
            s.code = 422;
            kube::Error::Api(s.boxed())
        };
        assert!(node_port_taken(&invalid(
            "Service \"db\" is invalid: spec.ports[0].nodePort: Invalid value: 30080: provided port is already allocated"
        )));
        assert!(!node_port_taken(&invalid(
            "Service \"db\" is invalid: spec.clusterIPs: Invalid value: [\"10.96.0.9\"]: failed to allocate IP 10.96.0.9: provided IP is already allocated"
        )));
    }

    fn mapping() -> Mapping {
        Mapping {
            namespace: "shop-dr".into(),
            storage_classes: [("fast-eu".to_string(), "fast-us".to_string())].into(),
        }
    }

    #[test]
    fn a_statefulset_moves_with_its_claim_templates_mapped_and_tracking_stripped() {
        let sts = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop", "uid": "u1", "resourceVersion": "7",
                         "labels": {"app": "db", "app.kubernetes.io/instance": "shop-prod"},
                         "annotations": {"argocd.argoproj.io/tracking-id": "shop:apps/StatefulSet:shop/db", "team": "data"},
                         "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "o", "uid": "u0"}]},
            "spec": {
                "selector": {"matchLabels": {"app": "db", "app.kubernetes.io/instance": "shop-prod"}},
                "template": {"metadata": {"labels": {"app": "db", "app.kubernetes.io/instance": "shop-prod"}, "creationTimestamp": null},
                             "spec": {"containers": [{"name": "db", "image": "postgres"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "namespace": "shop"},
                    "spec": {"storageClassName": "fast-eu", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                    "status": {"phase": "Pending"}}]
            },
            "status": {"replicas": 3}
        });
        let out = prepare(&sts, &mapping());
        assert_eq!(out["metadata"]["namespace"], "shop-dr");
        assert!(out["metadata"].get("uid").is_none() && out["metadata"].get("ownerReferences").is_none());
        assert!(out.get("status").is_none());
        assert_eq!(out["metadata"]["labels"], json!({"app": "db"}));
        assert_eq!(out["metadata"]["annotations"], json!({"team": "data"}));
        // Selectors and Pod labels are the workload's own: untouched.
        assert_eq!(out["spec"]["selector"], sts["spec"]["selector"]);
        assert_eq!(out["spec"]["template"]["metadata"]["labels"], sts["spec"]["template"]["metadata"]["labels"]);
        let t = &out["spec"]["volumeClaimTemplates"][0];
        assert_eq!(t["spec"]["storageClassName"], "fast-us");
        assert!(t.get("status").is_none() && t["metadata"].get("namespace").is_none());
    }

    #[test]
    fn a_claim_loses_its_binding_and_a_service_its_cluster_ip() {
        let pvc = json!({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data-db-0", "namespace": "shop",
                         "annotations": {"pv.kubernetes.io/bind-completed": "yes", "volume.kubernetes.io/selected-node": "n1"},
                         "finalizers": ["kubernetes.io/pvc-protection"]},
            "spec": {"storageClassName": "fast-eu", "volumeName": "pvc-123", "accessModes": ["ReadWriteOnce"],
                     "dataSource": {"kind": "VolumeSnapshot", "name": "s", "apiGroup": "snapshot.storage.k8s.io"}},
            "status": {"phase": "Bound"}
        });
        let out = prepare(&pvc, &mapping());
        assert_eq!(
            out,
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-db-0", "namespace": "shop-dr"},
                   "spec": {"storageClassName": "fast-us", "accessModes": ["ReadWriteOnce"]}})
        );
        // A class without a mapping stays as it is.
        let other = prepare(
            &json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}, "spec": {"storageClassName": "slow"}}),
            &mapping(),
        );
        assert_eq!(other["spec"]["storageClassName"], "slow");

        let svc = |ip: &str| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "db"}, "spec": {"clusterIP": ip, "clusterIPs": [ip], "ports": [{"port": 5432}]}});
        assert_eq!(prepare(&svc("None"), &mapping())["spec"]["clusterIP"], "None", "headless stays headless");
        let plain = prepare(&svc("10.0.0.7"), &mapping());
        assert!(plain["spec"].get("clusterIP").is_none() && plain["spec"].get("clusterIPs").is_none());
    }
}
