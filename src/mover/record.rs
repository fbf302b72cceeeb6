//! How a restore point is laid out in a repository, so that any cluster with the
//! location (and the key) can list it without the cluster that made it.
//!
//! A run stores one repository snapshot per volume, tagged with [`TAG_POINT`] and
//! [`TAG_KIND`]` = volume`, and last a **record**: a snapshot of the captured manifests
//! (Secrets included: they exist only inside the encrypted repository), tagged
//! [`TAG_KIND`]` = record`, whose [`TAG_RECORD`] tag holds the [`PointRecord`]. A restore
//! point is complete at a location exactly when its record is there: replication copies
//! the volumes first and the record last.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const TAG_POINT: &str = "lifeline.io/point";
pub const TAG_NAMESPACE: &str = "lifeline.io/namespace";
pub const TAG_POLICY: &str = "lifeline.io/policy";
pub const TAG_PVC: &str = "lifeline.io/pvc";
pub const TAG_KIND: &str = "lifeline.io/kind";
pub const TAG_RECORD: &str = "lifeline.io/record";
pub const KIND_VOLUME: &str = "volume";
pub const KIND_RECORD: &str = "record";

/// What a restore point holds, stored in its record's tags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PointRecord {
    /// The RestorePoint's name.
    pub name: String,
    pub namespace: String,
    pub policy: String,
    /// RFC 3339.
    pub scheduled_time: String,
    /// RFC 3339.
    pub completion_time: String,
    /// `Schedule` or `Manual`.
    pub trigger: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    pub volumes: Vec<RecordVolume>,
    /// `apiVersion/kind/name` of each captured manifest.
    #[serde(default)]
    pub manifests: Vec<String>,
    pub protected_bytes: u64,
    pub new_bytes: u64,
}

/// One volume of a restore point.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RecordVolume {
    pub pvc: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set: Option<String>,
    /// The repository snapshot id (hex).
    pub snapshot: String,
    pub bytes: u64,
    pub new_bytes: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<i64>,
}

impl PointRecord {
    /// The tags of the record snapshot.
    pub fn tags(&self) -> BTreeMap<String, String> {
        let mut t = base_tags(&self.namespace, &self.policy, &self.name);
        t.insert(TAG_KIND.into(), KIND_RECORD.into());
        t.insert(TAG_RECORD.into(), serde_json::to_string(self).unwrap_or_default());
        t
    }

    /// The record a snapshot's tags hold, if it is one.
    pub fn from_tags(tags: &BTreeMap<String, String>) -> Option<Self> {
        if tags.get(TAG_KIND).map(String::as_str) != Some(KIND_RECORD) {
            return None;
        }
        serde_json::from_str(tags.get(TAG_RECORD)?).ok()
    }
}

/// Whether a snapshot's tags say it belongs to restore point `point` of namespace
/// `namespace` (`None`: of any namespace). A point's name is unique within its namespace
/// only, and one location may hold several namespaces' points (teams given one bucket):
/// whatever finds a point's data by name finds it by namespace too.
pub fn of_point(tags: &BTreeMap<String, String>, namespace: Option<&str>, point: &str) -> bool {
    tags.get(TAG_POINT).is_some_and(|p| p == point) && namespace.is_none_or(|ns| of_namespace(tags, ns))
}

/// Whether a snapshot's tags say it was taken by a policy of namespace `namespace`.
pub fn of_namespace(tags: &BTreeMap<String, String>, namespace: &str) -> bool {
    tags.get(TAG_NAMESPACE).is_some_and(|n| n == namespace)
}

/// Tags every snapshot of a run carries.
pub fn base_tags(namespace: &str, policy: &str, point: &str) -> BTreeMap<String, String> {
    [(TAG_NAMESPACE, namespace), (TAG_POLICY, policy), (TAG_POINT, point)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The tag that finds the previous backup of a claim (the parent of the next).
pub fn volume_key(namespace: &str, pvc: &str) -> String {
    format!("{TAG_PVC}={namespace}/{pvc}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_round_trips_through_its_tags_and_volumes_are_not_records() {
        let r = PointRecord {
            name: "db-202601010000".into(),
            namespace: "shop".into(),
            policy: "db".into(),
            volumes: vec![RecordVolume { pvc: "data-db-0".into(), snapshot: "ab".into(), ..Default::default() }],
            ..Default::default()
        };
        let tags = r.tags();
        assert_eq!(PointRecord::from_tags(&tags), Some(r));
        let mut v = base_tags("shop", "db", "db-202601010000");
        v.insert(TAG_KIND.into(), KIND_VOLUME.into());
        assert_eq!(PointRecord::from_tags(&v), None);
    }
}
