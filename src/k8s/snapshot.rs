//! The CSI snapshot kinds (`snapshot.storage.k8s.io/v1` and
//! `groupsnapshot.storage.k8s.io/v1`), used as dynamic objects: these are other projects'
//! CRDs, and Lifeline reads only the few fields below.

use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

pub const GROUP: &str = "snapshot.storage.k8s.io";
pub const GROUP_GROUP: &str = "groupsnapshot.storage.k8s.io";
/// Label the operator sets on the claims of a run while their group snapshot is cut: a
/// VolumeGroupSnapshot selects its members by label.
pub const LABEL_GROUP: &str = "lifeline.io/snapshot-group";

fn resource(group: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, "v1", kind), plural)
}

pub fn volume_snapshot() -> ApiResource {
    resource(GROUP, "VolumeSnapshot", "volumesnapshots")
}
pub fn volume_snapshot_content() -> ApiResource {
    resource(GROUP, "VolumeSnapshotContent", "volumesnapshotcontents")
}
pub fn group_snapshot() -> ApiResource {
    resource(GROUP_GROUP, "VolumeGroupSnapshot", "volumegroupsnapshots")
}
pub fn group_snapshot_content() -> ApiResource {
    resource(GROUP_GROUP, "VolumeGroupSnapshotContent", "volumegroupsnapshotcontents")
}
pub fn group_snapshot_class() -> ApiResource {
    resource(GROUP_GROUP, "VolumeGroupSnapshotClass", "volumegroupsnapshotclasses")
}

/// A VolumeSnapshot of one claim.
pub fn volume_snapshot_of(name: &str, ns: &str, pvc: &str, class: Option<&str>, meta: Value) -> Value {
    let mut spec = json!({"source": {"persistentVolumeClaimName": pvc}});
    if let Some(c) = class {
        spec["volumeSnapshotClassName"] = json!(c);
    }
    with_meta(json!({"apiVersion": format!("{GROUP}/v1"), "kind": "VolumeSnapshot", "spec": spec}), name, ns, meta)
}

/// A VolumeGroupSnapshot of the claims labelled for `run`.
pub fn group_snapshot_of(name: &str, ns: &str, run: &str, class: &str, meta: Value) -> Value {
    let spec = json!({
        "source": {"selector": {"matchLabels": {LABEL_GROUP: run}}},
        "volumeGroupSnapshotClassName": class,
    });
    with_meta(
        json!({"apiVersion": format!("{GROUP_GROUP}/v1"), "kind": "VolumeGroupSnapshot", "spec": spec}),
        name,
        ns,
        meta,
    )
}

fn with_meta(mut obj: Value, name: &str, ns: &str, meta: Value) -> Value {
    let mut m = meta;
    m["name"] = json!(name);
    m["namespace"] = json!(ns);
    obj["metadata"] = m;
    obj
}

/// What a snapshot (single or group) says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct State {
    /// The point in time was taken (`status.creationTime`): hooks may be released.
    pub cut: bool,
    /// The data can be read (`status.readyToUse`).
    pub ready: bool,
    /// The snapshot controller's or driver's error.
    pub error: Option<String>,
}

pub fn state(obj: &DynamicObject) -> State {
    let s = &obj.data["status"];
    State {
        cut: !s["creationTime"].is_null(),
        ready: s["readyToUse"] == true,
        error: s["error"]["message"].as_str().map(String::from),
    }
}

/// The driver a class is for.
pub fn driver(class: &DynamicObject) -> Option<&str> {
    class.data["driver"].as_str()
}

/// Whether a class is the default for its driver.
pub fn is_default(class: &DynamicObject, annotation: &str) -> bool {
    class.metadata.annotations.as_ref().and_then(|a| a.get(annotation)).is_some_and(|v| v == "true")
}

pub const DEFAULT_GROUP_SNAPSHOT_CLASS: &str = "groupsnapshot.storage.kubernetes.io/is-default-class";
