//! Volume group snapshots (profile `full`): the `groupsnapshot.storage.k8s.io/v1` API
//! (GA in Kubernetes 1.36) and the snapshot controller's group path with the simulated
//! driver. A VolumeGroupSnapshot selects the bound claims of its namespace by label; all
//! of them are copied in one pass of the controller (the store is locked: one point in
//! time). As the external snapshotter does, the controller then creates a
//! VolumeGroupSnapshotContent listing each volume's snapshot handle, and per member a
//! pre-provisioned VolumeSnapshotContent and a VolumeSnapshot owned by the group, which
//! is how users find the members (and claims restore from them).
//!
//! A cluster whose driver should lack group support simply has no
//! VolumeGroupSnapshotClass: delete `sim-groupsnapclass`.

use super::client::{self, ns_name};
use super::meta;
use super::storage::{DRIVER, copy_tree, volume_path};
use super::store::Store;
use serde_json::{Value, json};
use std::path::Path;

pub const GROUP: &str = "groupsnapshot.storage.k8s.io";
const SNAPSHOT_GROUP: &str = super::snapshots::GROUP;
const DEFAULT_CLASS: &str = "groupsnapshot.storage.kubernetes.io/is-default-class";

fn crd(kind: &str, plural: &str, scope: &str, short: &[&str], props: Value, columns: Value) -> Value {
    // Classes are plain objects; groups and contents have a spec and a status.
    let class = kind == "VolumeGroupSnapshotClass";
    let (required, status) = if class { (vec!["deletionPolicy", "driver"], false) } else { (vec!["spec"], true) };
    let mut version = json!({
        "name": "v1", "served": true, "storage": true,
        "schema": {"openAPIV3Schema": {"type": "object", "properties": props, "required": required}},
        "additionalPrinterColumns": columns,
    });
    if status {
        version["subresources"] = json!({"status": {}});
        version["schema"]["openAPIV3Schema"]["properties"]["status"] =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    }
    json!({
        "metadata": {"name": format!("{plural}.{GROUP}"), "annotations": {"api-approved.kubernetes.io": "https://github.com/kubernetes-csi/external-snapshotter/pull/1150"}},
        "spec": {
            "group": GROUP, "scope": scope,
            "names": {"kind": kind, "listKind": format!("{kind}List"), "plural": plural, "singular": kind.to_lowercase(), "shortNames": short},
            "versions": [version],
        },
    })
}

/// The three CRDs, with the fields of the external snapshotter's.
pub fn crds() -> Vec<Value> {
    let base = || json!({"apiVersion": {"type": "string"}, "kind": {"type": "string"}, "metadata": {"type": "object"}});
    let mut class = base();
    class["driver"] = json!({"type": "string"});
    class["deletionPolicy"] = json!({"type": "string", "enum": ["Delete", "Retain"]});
    class["parameters"] = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let mut group = base();
    group["spec"] = json!({
        "type": "object", "required": ["source"],
        "properties": {
            "source": {
                "type": "object",
                "properties": {
                    "selector": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "selector is immutable"}]},
                    "volumeGroupSnapshotContentName": {"type": "string", "x-kubernetes-validations": [{"rule": "self == oldSelf", "message": "volumeGroupSnapshotContentName is immutable"}]},
                },
                "x-kubernetes-validations": [{"rule": "(has(self.selector) && !has(self.volumeGroupSnapshotContentName)) || (!has(self.selector) && has(self.volumeGroupSnapshotContentName))", "message": "exactly one of selector and volumeGroupSnapshotContentName must be set"}],
            },
            "volumeGroupSnapshotClassName": {"type": "string"},
        },
    });
    let mut content = base();
    content["spec"] = json!({
        "type": "object", "required": ["deletionPolicy", "driver", "source", "volumeGroupSnapshotRef"],
        "properties": {
            "deletionPolicy": {"type": "string", "enum": ["Delete", "Retain"]},
            "driver": {"type": "string"},
            "source": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "volumeGroupSnapshotClassName": {"type": "string"},
            "volumeGroupSnapshotRef": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
        },
    });
    vec![
        crd(
            "VolumeGroupSnapshotClass",
            "volumegroupsnapshotclasses",
            "Cluster",
            &["vgsclass", "vgsclasses"],
            class,
            json!([{"name": "Driver", "type": "string", "jsonPath": ".driver"}, {"name": "DeletionPolicy", "type": "string", "jsonPath": ".deletionPolicy"}, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
        ),
        crd(
            "VolumeGroupSnapshot",
            "volumegroupsnapshots",
            "Namespaced",
            &["vgs"],
            group,
            json!([{"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"}, {"name": "VolumeGroupSnapshotClass", "type": "string", "jsonPath": ".spec.volumeGroupSnapshotClassName"}, {"name": "VolumeGroupSnapshotContent", "type": "string", "jsonPath": ".status.boundVolumeGroupSnapshotContentName"}, {"name": "CreationTime", "type": "date", "jsonPath": ".status.creationTime"}, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
        ),
        crd(
            "VolumeGroupSnapshotContent",
            "volumegroupsnapshotcontents",
            "Cluster",
            &["vgsc", "vgscs"],
            content,
            json!([{"name": "ReadyToUse", "type": "boolean", "jsonPath": ".status.readyToUse"}, {"name": "DeletionPolicy", "type": "string", "jsonPath": ".spec.deletionPolicy"}, {"name": "Driver", "type": "string", "jsonPath": ".spec.driver"}, {"name": "VolumeGroupSnapshot", "type": "string", "jsonPath": ".spec.volumeGroupSnapshotRef.name"}, {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]),
        ),
    ]
}

/// The default VolumeGroupSnapshotClass of the simulated driver.
pub fn default_class() -> Value {
    json!({
        "apiVersion": format!("{GROUP}/v1"), "kind": "VolumeGroupSnapshotClass",
        "metadata": {"name": "sim-groupsnapclass", "annotations": {DEFAULT_CLASS: "true"}},
        "driver": DRIVER, "deletionPolicy": "Delete",
    })
}

fn deleting(obj: &Value) -> bool {
    obj["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null())
}

fn hash(s: &str) -> String {
    blake3::hash(s.as_bytes()).to_hex()[..32].to_string()
}

fn set_status(store: &mut Store, plural: &str, group: &str, obj: &Value, status: Value) {
    let rt = client::rt(store, group, plural);
    let (ns, name) = ns_name(obj);
    if let Some(mut o) = store.get(&rt.key(), &ns, &name).cloned() {
        o["status"] = status;
        let _ = client::update_as(store, &rt, o, Some("status"), "snapshot-controller");
    }
}

fn fail(store: &mut Store, g: &Value, message: &str) {
    set_status(
        store,
        "volumegroupsnapshots",
        GROUP,
        g,
        json!({"readyToUse": false, "error": {"message": message, "time": meta::now()}}),
    );
    client::event(store, g, "Warning", "GroupSnapshotCreationFailed", message, "snapshot-controller");
}

pub fn run(store: &mut Store, dir: &Path) {
    if !store.types.iter().any(|t| t.group == GROUP && t.plural == "volumegroupsnapshots") {
        return;
    }
    let g_rt = client::rt(store, GROUP, "volumegroupsnapshots");
    let c_rt = client::rt(store, GROUP, "volumegroupsnapshotcontents");
    // Contents whose group is gone go with their data (deletionPolicy Delete).
    let contents: Vec<Value> = store.list(&c_rt.key(), None).cloned().collect();
    for c in contents {
        let r = &c["spec"]["volumeGroupSnapshotRef"];
        let (ns, name) = (r["namespace"].as_str().unwrap_or_default(), r["name"].as_str().unwrap_or_default());
        let alive = store.get(&g_rt.key(), ns, name).is_some_and(|g| g["metadata"]["uid"] == r["uid"]);
        if !alive {
            let (_, cname) = ns_name(&c);
            let _ = client::delete(store, &c_rt, "", &cname);
        }
    }
    let groups: Vec<Value> = store.list(&g_rt.key(), None).cloned().collect();
    for g in groups {
        if deleting(&g) || g["status"]["readyToUse"] == true || !g["status"]["error"].is_null() {
            continue;
        }
        take(store, dir, &g);
    }
}

fn take(store: &mut Store, dir: &Path, g: &Value) {
    let (ns, name) = ns_name(g);
    let uid = g["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let class_name = g["spec"]["volumeGroupSnapshotClassName"].as_str().map(String::from).or_else(|| {
        store
            .list(&format!("{GROUP}/volumegroupsnapshotclasses"), None)
            .find(|c| c["metadata"]["annotations"][DEFAULT_CLASS] == "true" && c["driver"] == DRIVER)
            .and_then(|c| c["metadata"]["name"].as_str().map(String::from))
    });
    let Some(class) =
        class_name.and_then(|n| store.get(&format!("{GROUP}/volumegroupsnapshotclasses"), "", &n).cloned())
    else {
        fail(
            store,
            g,
            "Failed to set default group snapshot class with error cannot find default group snapshot class",
        );
        return;
    };
    if class["driver"] != DRIVER {
        return;
    }
    let sel = super::selector_string(&g["spec"]["source"]["selector"]);
    let Ok(selector) = super::selector::LabelSelector::parse(&sel) else {
        fail(store, g, &format!("invalid selector {sel:?}"));
        return;
    };
    let claims: Vec<Value> = store
        .list("/persistentvolumeclaims", Some(&ns))
        .filter(|c| selector.matches(&c["metadata"]["labels"]))
        .cloned()
        .collect();
    if claims.is_empty() {
        fail(
            store,
            g,
            &format!("Failed to create group snapshot: no PersistentVolumeClaims in namespace {ns} match the selector"),
        );
        return;
    }
    let mut volumes = Vec::new();
    for c in &claims {
        let pv = c["spec"]["volumeName"].as_str().and_then(|v| store.get("/persistentvolumes", "", v)).cloned();
        let Some(pv) = pv.filter(|_| c["status"]["phase"] == "Bound") else { return };
        volumes.push((c.clone(), pv));
    }
    // One pass under the store's lock: every member is copied at the same point in time.
    let content_name = format!("groupsnapcontent-{uid}");
    let mut infos = Vec::new();
    let now = meta::now();
    for (c, pv) in &volumes {
        let Some(src) = volume_path(pv) else { return };
        let handle = dir.join("snapshots").join(format!("{content_name}-{}", hash(&c["metadata"]["uid"].to_string())));
        if !handle.exists() {
            let copied = if src.is_dir() {
                copy_tree(&src, &handle)
            } else {
                std::fs::create_dir_all(dir.join("snapshots")).and_then(|_| std::fs::copy(&src, &handle).map(|_| ()))
            };
            if let Err(e) = copied {
                fail(store, g, &format!("failed to take group snapshot of the volumes: {e}"));
                return;
            }
        }
        let size = c["status"]["capacity"]["storage"].as_str().and_then(super::storage::quantity_bytes).unwrap_or(0);
        infos.push(json!({"volumeHandle": pv["spec"]["csi"]["volumeHandle"], "snapshotHandle": handle.to_string_lossy(), "readyToUse": true, "restoreSize": size, "creationTime": now}));
    }
    if store.get(&format!("{GROUP}/volumegroupsnapshotcontents"), "", &content_name).is_none() {
        let c_rt = client::rt(store, GROUP, "volumegroupsnapshotcontents");
        let content = json!({
            "apiVersion": format!("{GROUP}/v1"), "kind": "VolumeGroupSnapshotContent",
            "metadata": {"name": content_name},
            "spec": {
                "deletionPolicy": class["deletionPolicy"], "driver": DRIVER,
                "source": {"volumeHandles": volumes.iter().map(|(_, pv)| pv["spec"]["csi"]["volumeHandle"].clone()).collect::<Vec<_>>()},
                "volumeGroupSnapshotClassName": class["metadata"]["name"],
                "volumeGroupSnapshotRef": {"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeGroupSnapshot", "name": name, "namespace": ns, "uid": uid},
            },
        });
        let Ok(created) = client::create(store, &c_rt, content) else { return };
        set_status(
            store,
            "volumegroupsnapshotcontents",
            GROUP,
            &created,
            json!({"creationTime": now, "readyToUse": true, "volumeSnapshotInfoList": infos}),
        );
    }
    // The members: a pre-provisioned content and a VolumeSnapshot owned by the group each.
    let vsc_rt = client::rt(store, SNAPSHOT_GROUP, "volumesnapshotcontents");
    let vs_rt = client::rt(store, SNAPSHOT_GROUP, "volumesnapshots");
    for ((c, pv), info) in volumes.iter().zip(&infos) {
        let key = hash(&format!("{uid}/{}", c["metadata"]["uid"]));
        let (member, member_content) = (format!("snapshot-{key}"), format!("snapcontent-{key}"));
        if store.get(&vsc_rt.key(), "", &member_content).is_none() {
            let content = json!({
                "apiVersion": format!("{SNAPSHOT_GROUP}/v1"), "kind": "VolumeSnapshotContent",
                "metadata": {"name": member_content},
                "spec": {
                    "deletionPolicy": class["deletionPolicy"], "driver": DRIVER,
                    "source": {"snapshotHandle": info["snapshotHandle"]},
                    "sourceVolumeMode": pv["spec"]["volumeMode"],
                    "volumeSnapshotRef": {"apiVersion": format!("{SNAPSHOT_GROUP}/v1"), "kind": "VolumeSnapshot", "name": member, "namespace": ns},
                },
            });
            if let Ok(created) = client::create(store, &vsc_rt, content) {
                set_status(
                    store,
                    "volumesnapshotcontents",
                    SNAPSHOT_GROUP,
                    &created,
                    json!({"creationTime": 0, "readyToUse": true, "restoreSize": info["restoreSize"], "snapshotHandle": info["snapshotHandle"], "volumeGroupSnapshotHandle": content_name}),
                );
            }
        }
        if store.get(&vs_rt.key(), &ns, &member).is_none() {
            let snap = json!({
                "apiVersion": format!("{SNAPSHOT_GROUP}/v1"), "kind": "VolumeSnapshot",
                "metadata": {"name": member, "namespace": ns, "ownerReferences": [{"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeGroupSnapshot", "name": name, "uid": uid, "controller": true}]},
                "spec": {"source": {"volumeSnapshotContentName": member_content}},
            });
            let _ = client::create(store, &vs_rt, snap);
        }
    }
    set_status(
        store,
        "volumegroupsnapshots",
        GROUP,
        g,
        json!({"boundVolumeGroupSnapshotContentName": content_name, "creationTime": now, "readyToUse": true}),
    );
    client::event(
        store,
        g,
        "Normal",
        "GroupSnapshotCreated",
        &format!("GroupSnapshot {ns}/{name} was successfully created by the CSI driver."),
        "snapshot-controller",
    );
}
