//! `RestorePoint`: the record of one backup run, and the run's resumable state machine.

use super::common::{Conditions, Duration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One backup run of a policy. Created by the operator (or by `kubectl lifeline backup`
/// for an on-demand run); its spec never changes, its status tracks the run and then
/// records what was captured and where it is stored.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lifeline.io",
    version = "v1alpha1",
    kind = "RestorePoint",
    namespaced,
    status = "RestorePointStatus",
    shortname = "rpt",
    category = "lifeline",
    derive = "PartialEq",
    doc = "The record of one backup run: volumes, manifests, locations and verification.",
    printcolumn(name = "Policy", type_ = "string", json_path = ".spec.policy"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Volumes", type_ = "integer", json_path = ".status.volumeCount"),
    printcolumn(name = "New Bytes", type_ = "integer", json_path = ".status.newBytes"),
    printcolumn(name = "Completed", type_ = "date", json_path = ".status.completionTime"),
    printcolumn(name = "Trigger", type_ = "string", json_path = ".spec.trigger", priority = 1),
    printcolumn(name = "Protected Bytes", type_ = "integer", json_path = ".status.protectedBytes", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable: a RestorePoint records a run that happened"))]
pub struct RestorePointSpec {
    /// Name of the BackupPolicy, in the same namespace, that this run belongs to.
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// What started the run.
    #[serde(default)]
    pub trigger: RunTrigger,
    /// The schedule tick (or request time) this run is for. Together with the policy it
    /// identifies the run, so a restarted operator never starts it twice.
    pub scheduled_time: Time,
    /// Who requested an on-demand run (user or ServiceAccount), for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub requested_by: Option<String>,
}

/// What started a run.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunTrigger {
    /// A tick of the policy's schedule.
    #[default]
    Schedule,
    /// An on-demand request.
    Manual,
}

/// The steps of a backup run, in order. The run resumes at its recorded phase after an
/// operator restart; every child it creates has a name derived from the RestorePoint.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RunPhase {
    /// Accepted, not started.
    #[default]
    Pending,
    /// Running the pre-snapshot hooks.
    Quiescing,
    /// Taking the group of CSI snapshots.
    Snapshotting,
    /// Running the post-snapshot hooks.
    Resuming,
    /// Data movers are shipping the snapshots to the primary location.
    Uploading,
    /// Stored at the primary; copies to replicas follow their cadence.
    Completed,
    /// The run failed; see conditions and `message`. Snapshots were released.
    Failed,
}

/// Observed state of a run and what it captured.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestorePointStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (stored and usable), `Progressing` and `Degraded` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Conditions,
    /// Current step of the run.
    #[serde(default)]
    pub phase: RunPhase,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the current step started; every step has a deadline counted from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_start_time: Option<Time>,
    /// The VolumeGroupSnapshot of this run, when its volumes were snapshotted as one
    /// group; empty when each volume got its own VolumeSnapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_snapshot: Option<String>,
    /// Whether the run's snapshots, clone claims and Jobs have all been removed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cleaned_up: bool,
    /// When the data was stored at the primary location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Number of volumes captured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_count: Option<i32>,
    /// Per-volume records and progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["pvc".into()]))]
    pub volumes: Vec<VolumeRecord>,
    /// Kubernetes objects captured with the data.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub manifests: Vec<ManifestRecord>,
    /// Presence of this restore point at each location.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub locations: Vec<PointLocation>,
    /// Sum of the volumes' content sizes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_bytes: Option<i64>,
    /// Bytes this run added to the primary repository (after dedup and compression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_bytes: Option<i64>,
    /// Overall progress while uploading.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// Result of the newest verification of this restore point.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<PointVerification>,
    /// Attempts made by the current step (retries after transient errors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Human-readable detail of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One captured volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeRecord {
    /// PersistentVolumeClaim name.
    pub pvc: String,
    /// StatefulSet the claim belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set: Option<String>,
    /// `Filesystem` or `Block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mode: Option<String>,
    /// Requested capacity of the claim, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_bytes: Option<i64>,
    /// StorageClass of the claim.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class_name: Option<String>,
    /// VolumeSnapshot taken for this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_name: Option<String>,
    /// CSI snapshot handle of that snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_handle: Option<String>,
    /// Bytes of content read (updated from the mover's log while it runs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_done: Option<i64>,
    /// Content size of the volume; while its mover runs, the size found so far.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<i64>,
    /// Bytes this volume added to the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_new: Option<i64>,
    /// Identifier of the volume's snapshot inside the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_snapshot: Option<String>,
    /// Done when the volume is stored at the primary location.
    #[serde(default)]
    pub done: bool,
}

/// One captured Kubernetes object.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRecord {
    /// `apiVersion` of the object.
    pub api_version: String,
    /// `kind` of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
}

/// Presence of a restore point at one location.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PointLocation {
    /// BackupLocation name.
    pub name: String,
    /// Whether the complete restore point is stored there.
    pub present: bool,
    /// When it arrived there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Time>,
    /// Why it is not there, if it should be.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Progress of a long step.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Bytes processed so far.
    pub bytes_done: i64,
    /// Bytes to process in all.
    pub bytes_total: i64,
    /// Estimated time left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta: Option<Duration>,
}

/// Result of verifying one restore point.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PointVerification {
    /// When it finished.
    pub time: Time,
    /// Location that was read.
    pub location: String,
    /// Whether every checked chunk decrypted and hashed correctly.
    pub passed: bool,
    /// Share of the data read back, in percent.
    pub sample_percent: i32,
    /// Files affected by bad data, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
