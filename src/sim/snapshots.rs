//! CSI snapshots (profile `full`): the `snapshot.storage.k8s.io/v1` CRDs a cluster with
//! the external snapshotter has, a default VolumeSnapshotClass, and the snapshot
//! controller with the simulated driver: a VolumeSnapshot of a bound claim becomes a
//! VolumeSnapshotContent holding a point-in-time copy of the volume, then `readyToUse`.
//!
//! A class whose `parameters` hold `sim.lifeline.io/fail: <message>` fails every snapshot
//! with that message, to test error handling.

use super::client::{self, ns_name};
use super::meta;
use super::storage::{DRIVER, copy_tree, volume_path};
use super::store::Store;
use serde_json::{Value, json};
use std::path::Path;

pub const GROUP: &str = "snapshot.storage.k8s.io";
const BOUND_PROTECTION: &str = "snapshot.storage.kubernetes.io/volumesnapshot-bound-protection";
const CONTENT_PROTECTION: &str = "snapshot.storage.kubernetes.io/volumesnapshotcontent-bound-protection";
/// The class parameter that makes the simulated driver fail.
pub const FAIL_PARAMETER: &str = "sim.lifeline.io/fail";

fn crd(kind: &str, plural: &str, scope: &str, short: &[&str], spec: Value, status: bool, columns: Value) -> Value {
    let mut props =
        json!({"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}});
    let mut required = vec![];
    if kind == "VolumeSnapshotClass" {
        props["driver"] = json!({"type": "string"});
        props["deletionPolicy"] = json!({"type": "string", "enum": ["Delete", "Retain"]});
        props["parameters"] = json!({"type": "object", "additionalProperties": {"type": "string"}});
        required = vec!["deletionPolicy", "driver"];
    } else {
        props["spec"] = spec;
        required.push("spec");
    }
    if status {
        props["status"] = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    }
    let mut version = json!({
        "name": "v1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": props, "required": required}},
        "additionalPrinterColumns": columns,
    });
    if status {
        version["subresources"] = json!({"status": {}});
    }
    json!({
        "metadata": {"name": format!("{plural}.{GROUP}"), "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-csi/external-snapshotter/pull/814"}},
        "spec": {
            "group": GROUP, "scope": scope,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": kind.to_lowercase(), "shortNames": short},
            "versions": [version],
        },
    })
}

/// The three CRDs, with the fields and rules of the external snapshotter's.
pub fn crds() -> Vec<Value> {
    let snapshot_spec = json!({
        "type": "object", "required": ["source"],
        "properties": {
            "source": {
                "type": "object",
                "properties": {
                    "persistentVolumeClaimName": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "persistentVolumeClaimName is immutable"}]},
                    "volumeSnapshotContentName": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "volumeSnapshotContentName is immutable"}]},
                },
                "x-kubernetes-validations": [
                    {"rule": "!has(oldSelf.persistentVolumeClaimName) || has(self.persistentVolumeClaimName)", "message": "persistentVolumeClaimName is required once set"},
                    {"rule": "!has(oldSelf.volumeSnapshotContentName) || has(self.volumeSnapshotContentName)", "message": "volumeSnapshotContentName is required once set"},
                    {"rule": "(has(self.volumeSnapshotContentName) && !has(self.persistentVolumeClaimName)) || (!has(self.volumeSnapshotContentName) && has(self.persistentVolumeClaimName))", "message": "exactly one of volumeSnapshotContentName and persistentVolumeClaimName must be set"},
                ],
            },
            "volumeSnapshotClassName": {"type": "string"},
        },
    });
    let content_spec = json!({
        "type": "object", "required": ["deletionPolicy", "driver", "source", "volumeSnapshotRef"],
        "properties": {
            "deletionPolicy": {"type": "string", "enum": ["Delete", "Retain"]},
            "driver": {"type": "string"},
            "source": {"type": "object", "properties": {"snapshotHandle": {"type": "string"}, "volumeHandle": {"type": "string"}}},
            "sourceVolumeMode": {"type": "string"},
            "volumeSnapshotClassName": {"type": "string"},
            "volumeSnapshotRef": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
    });
    vec![
        crd(
            "VolumeSnapshotClass",
            "volumesnapshotclasses",
            "Cluster",
            &["vsclass", "vsclasses"],
            Value::Null,
            false,
            json!([{"name": "Driver", "type": "string", "jsonPath": ".driver"}, {"name": "DeletionPolicy", "type": "string", "jsonPath": ".deletionPolicy"}, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
        ),
        crd(
            "VolumeSnapshot",
            "volumesnapshots",
            "Namespaced",
            &["vs"],
            snapshot_spec,
            true,
            json!([{"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"}, {"name": "SourcePVC", "type": "string", "jsonPath": ".spec.source.persistentVolumeClaimName"}, {"name": "RestoreSize", "type": "string", "jsonPath": ".status.restoreSize"}, {"name": "SnapshotContent", "type": "string", "jsonPath": ".status.boundVolumeSnapshotContentName"}, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
        ),
        crd(
            "VolumeSnapshotContent",
            "volumesnapshotcontents",
            "Cluster",
            &["vsc", "vscs"],
            content_spec,
            true,
            json!([{"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"}, {"name": "RestoreSize", "type": "integer", "jsonPath": ".status.restoreSize"}, {"name": "DeletionPolicy", "type": "string", "jsonPath": ".spec.deletionPolicy"}, {"name": "Driver", "type": "string", "jsonPath": ".spec.driver"}, {"name": "VolumeSnapshot", "type": "string", "jsonPath": ".spec.volumeSnapshotRef.name"}, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
        ),
    ]
}

/// The default VolumeSnapshotClass of the simulated driver.
pub fn default_class() -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshotClass",
        "metadata": {"name": "sim-snapclass", "annotations": {"snapshot.storage.kubernetes.io/is-default-class": "true"}},
        "driver": DRIVER, "deletionPolicy": "Delete",
    })
}

fn deleting(obj: &Value) -> bool {
    obj["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null())
}

fn res(store: &Store, plural: &str) -> Option<std::sync::Arc<super::registry::ResType>> {
    store.types.iter().find(|t| t.group == GROUP && t.plural == plural).cloned()
}

fn tree_size(p: &Path) -> u64 {
    let Ok(md) = std::fs::symlink_metadata(p) else { return 0 };
    if md.is_dir() {
        std::fs::read_dir(p).into_iter().flatten().flatten().map(|e| tree_size(&e.path())).sum()
    } else {
        md.len()
    }
}

pub fn run(store: &mut Store, dir: &Path) {
    let (Some(snap_rt), Some(content_rt), Some(_)) =
        (res(store, "volumesnapshots"), res(store, "volumesnapshotcontents"), res(store, "volumesnapshotclasses"))
    else {
        return;
    };
    let snaps: Vec<Value> = store.list(&snap_rt.key(), None).cloned().collect();
    for snap in snaps {
        let (ns, name) = ns_name(&snap);
        let uid = snap["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        let content_name = format!("snapcontent-{uid}");
        if deleting(&snap) {
            // The content goes with it (deletionPolicy Delete), then the finalizer.
            let bound = snap["status"]["boundVolumeSnapshotContentName"].as_str().unwrap_or(&content_name).to_string();
            if let Some(c) = store.get(&content_rt.key(), "", &bound).cloned() {
                if c["spec"]["deletionPolicy"] == "Delete" && c["spec"]["driver"] == DRIVER {
                    if let Some(h) = c["status"]["snapshotHandle"].as_str() {
                        let _ = std::fs::remove_dir_all(h);
                    }
                    let _ = client::delete(store, &content_rt, "", &bound);
                    if let Some(cur) = store.get(&content_rt.key(), "", &bound).cloned() {
                        let _ = client::drop_finalizer(store, &content_rt, &cur, CONTENT_PROTECTION);
                    }
                } else if let Some(cur) = store.get(&content_rt.key(), "", &bound).cloned() {
                    let _ = client::drop_finalizer(store, &content_rt, &cur, CONTENT_PROTECTION);
                }
            }
            let _ = client::drop_finalizer(store, &snap_rt, &snap, BOUND_PROTECTION);
            continue;
        }
        if snap["status"]["readyToUse"] == true || !snap["status"]["error"].is_null() {
            continue;
        }
        // Pre-provisioned: bind to the named content.
        if let Some(existing) = snap["spec"]["source"]["volumeSnapshotContentName"].as_str() {
            let Some(c) = store.get(&content_rt.key(), "", existing).cloned() else { continue };
            set_status(
                store,
                &snap_rt,
                &snap,
                json!({
                    "boundVolumeSnapshotContentName": existing, "readyToUse": c["status"]["readyToUse"],
                    "restoreSize": c["status"]["restoreSize"], "creationTime": meta::now(),
                }),
            );
            continue;
        }
        let class_name = snap["spec"]["volumeSnapshotClassName"].as_str().map(String::from).or_else(|| {
            store
                .list(&format!("{GROUP}/volumesnapshotclasses"), None)
                .find(|c| {
                    c["metadata"]["annotations"]["snapshot.storage.kubernetes.io/is-default-class"] == "true"
                        && c["driver"] == DRIVER
                })
                .and_then(|c| c["metadata"]["name"].as_str().map(String::from))
        });
        let Some(class) =
            class_name.and_then(|n| store.get(&format!("{GROUP}/volumesnapshotclasses"), "", &n).cloned())
        else {
            fail(
                store,
                &snap_rt,
                &snap,
                "Failed to set default snapshot class with error cannot find default snapshot class",
            );
            continue;
        };
        if class["driver"] != DRIVER {
            continue;
        }
        if let Some(msg) = class["parameters"][FAIL_PARAMETER].as_str() {
            fail(
                store,
                &snap_rt,
                &snap,
                &format!("Failed to check and update snapshot content: failed to take snapshot of the volume: {msg}"),
            );
            continue;
        }
        let pvc_name = snap["spec"]["source"]["persistentVolumeClaimName"].as_str().unwrap_or_default();
        let pvc = store.get("/persistentvolumeclaims", &ns, pvc_name).cloned();
        let pv = pvc
            .as_ref()
            .filter(|c| c["status"]["phase"] == "Bound")
            .and_then(|c| c["spec"]["volumeName"].as_str())
            .and_then(|v| store.get("/persistentvolumes", "", v).cloned());
        let Some(pv) = pv else {
            if pvc.is_none() {
                fail(
                    store,
                    &snap_rt,
                    &snap,
                    &format!(
                        "Failed to create snapshot: error getting handle for DataSource Type VolumeSnapshot by Name {name}: failed to retrieve PVC {pvc_name} from the lister: \"persistentvolumeclaim \\\"{pvc_name}\\\" not found\""
                    ),
                );
            }
            continue;
        };
        let Some(src) = volume_path(&pv) else { continue };
        // The point-in-time copy.
        let handle = dir.join("snapshots").join(&content_name);
        if !handle.exists() {
            let copied = if src.is_dir() {
                copy_tree(&src, &handle)
            } else {
                std::fs::create_dir_all(dir.join("snapshots")).and_then(|_| std::fs::copy(&src, &handle).map(|_| ()))
            };
            if let Err(e) = copied {
                fail(store, &snap_rt, &snap, &format!("failed to take snapshot of the volume: {e}"));
                continue;
            }
        }
        let size = pvc.as_ref().map(|c| c["status"]["capacity"]["storage"].clone()).unwrap_or(Value::Null);
        let bytes = size.as_str().and_then(super::storage::quantity_bytes).unwrap_or_else(|| tree_size(&handle));
        let created_ns =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        if store.get(&content_rt.key(), "", &content_name).is_none() {
            let content = json!({
                "apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshotContent",
                "metadata": {"name": content_name, "finalizers": [CONTENT_PROTECTION]},
                "spec": {
                    "deletionPolicy": class["deletionPolicy"], "driver": DRIVER,
                    "source": {"volumeHandle": pv["spec"]["csi"]["volumeHandle"]},
                    "sourceVolumeMode": pv["spec"]["volumeMode"],
                    "volumeSnapshotClassName": class["metadata"]["name"],
                    "volumeSnapshotRef": {"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshot", "name": name, "namespace": ns, "uid": uid, "resourceVersion": snap["metadata"]["resourceVersion"]},
                },
            });
            let Ok(mut c) = client::create(store, &content_rt, content) else { continue };
            c["status"] = json!({"creationTime": created_ns, "readyToUse": true, "restoreSize": bytes, "snapshotHandle": handle.to_string_lossy()});
            let _ = client::update_as(store, &content_rt, c, Some("status"), "csi-snapshotter");
        }
        if let Some(mut s) = store.get(&snap_rt.key(), &ns, &name).cloned() {
            let fins = s["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
            if !fins.iter().any(|f| f == BOUND_PROTECTION) {
                let mut f = fins;
                f.push(json!(BOUND_PROTECTION));
                s["metadata"]["finalizers"] = json!(f);
                let Ok(updated) = client::update_as(store, &snap_rt, s, None, "snapshot-controller") else { continue };
                s = updated;
            }
            set_status(
                store,
                &snap_rt,
                &s,
                json!({
                    "boundVolumeSnapshotContentName": content_name, "creationTime": meta::now(),
                    "readyToUse": true, "restoreSize": size,
                }),
            );
            client::event(
                store,
                &s,
                "Normal",
                "SnapshotCreated",
                &format!("Snapshot {ns}/{name} was successfully created by the CSI driver."),
                "snapshot-controller",
            );
            client::event(
                store,
                &s,
                "Normal",
                "SnapshotReady",
                &format!("Snapshot {ns}/{name} is ready to use."),
                "snapshot-controller",
            );
        }
    }
}

fn set_status(store: &mut Store, rt: &std::sync::Arc<super::registry::ResType>, snap: &Value, status: Value) {
    let (ns, name) = ns_name(snap);
    if let Some(mut s) = store.get(&rt.key(), &ns, &name).cloned() {
        s["status"] = status;
        let _ = client::update_as(store, rt, s, Some("status"), "snapshot-controller");
    }
}

fn fail(store: &mut Store, rt: &std::sync::Arc<super::registry::ResType>, snap: &Value, message: &str) {
    set_status(store, rt, snap, json!({"readyToUse": false, "error": {"message": message, "time": meta::now()}}));
    client::event(store, snap, "Warning", "SnapshotCreationFailed", message, "snapshot-controller");
}
