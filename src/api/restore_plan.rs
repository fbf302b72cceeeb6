//! `RestorePlan`: what to recover, from where, into what, and how (restore, failover,
//! warm standby, drill, failback), with measured RPO and RTO.

use super::common::{
    Conditions, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, Duration, Hook, SecretKeyRef,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A recovery. Applied in the cluster that should run the workloads (the standby cluster
/// for a failover). A plan runs once per `metadata.generation` (or `trigger.runToken`),
/// so re-applying it from Git does not start a second restore.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lifeline.io",
    version = "v1alpha1",
    kind = "RestorePlan",
    namespaced,
    status = "RestorePlanStatus",
    shortname = "rplan",
    category = "lifeline",
    derive = "PartialEq",
    doc = "Recovery of protected workloads: restore, failover, warm standby, drill or failback.",
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Point", type_ = "string", json_path = ".status.restoredPoint.name"),
    printcolumn(name = "RPO", type_ = "string", json_path = ".status.rpo"),
    printcolumn(name = "RTO", type_ = "string", json_path = ".status.rto.total"),
    printcolumn(name = "Target", type_ = "string", json_path = ".spec.target.namespace", priority = 1),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.trigger.type != 'HeartbeatLoss' || self.mode in ['Failover', 'WarmStandby']").message("trigger type HeartbeatLoss is for modes Failover and WarmStandby").field_path(".trigger.type"))]
#[x_kube(validation = Rule::new("!has(self.failover) || self.mode in ['Failover', 'WarmStandby', 'Failback']").message("failover settings apply to modes Failover, WarmStandby and Failback only").field_path(".failover"))]
#[x_kube(validation = Rule::new("!has(self.failover) || !has(self.failover.promote) || !self.failover.promote || self.mode == 'WarmStandby'").message("promote applies to mode WarmStandby only: a Failover plan fails over when it is applied").field_path(".failover.promote"))]
#[x_kube(validation = Rule::new("self.mode != 'Drill' || !has(self.target) || !has(self.target.__namespace__) || !(self.target.__namespace__ in ['kube-system', 'kube-public', 'kube-node-lease', 'default'])").message("a drill's scratch namespace is created and deleted by the drill: it cannot be a system namespace").field_path(".target.namespace"))]
#[x_kube(validation = Rule::new("!has(self.drill) || self.mode == 'Drill'").message("drill settings apply to mode Drill only").field_path(".drill"))]
pub struct RestorePlanSpec {
    /// `Restore`: a one-shot restore. `Failover`: fence the primary where reachable,
    /// restore, then start the workloads here. `WarmStandby`: keep restoring each new
    /// restore point with the workloads scaled to zero, so failover only scales up.
    /// `Drill`: restore into a scratch namespace, check, measure, clean up. `Failback`:
    /// return the workloads to the original site. Immutable.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self == oldSelf").message("mode is immutable: create a new RestorePlan"))]
    pub mode: RestoreMode,

    /// Where the restore points come from.
    pub source: RestoreSource,

    /// Which restore point to restore.
    #[serde(default)]
    pub point_in_time: PointInTime,

    /// Where to restore to, and how to map storage.
    #[serde(default)]
    pub target: RestoreTarget,

    /// StatefulSets to recreate and the order to start them in. Empty: every StatefulSet
    /// recorded in the restore point, all in one group.
    #[serde(default)]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub workloads: Vec<WorkloadRestore>,

    /// Restore only these PVCs (by their name in the source namespace). Empty: all.
    #[serde(default)]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub volumes: Vec<String>,

    /// Restore only these paths inside each restored volume (relative to the volume's
    /// root, such as `uploads/2026`), with what is under them. Empty: everything.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 4096)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub paths: Vec<String>,

    /// What starts the plan.
    #[serde(default)]
    pub trigger: Trigger,

    /// Fencing and promotion settings for `Failover`, `WarmStandby` and `Failback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover: Option<FailoverOptions>,

    /// Settings for mode `Drill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<DrillOptions>,

    /// Commands run in the restored Pods once all workloads are ready. A failing hook with
    /// `onError: Fail` fails the plan (the workloads stay up for inspection).
    #[serde(default)]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub post_restore_hooks: Vec<Hook>,
}

impl RestorePlan {
    /// The namespace whose restore points the plan restores: `spec.source.namespace`,
    /// else the plan's own.
    pub fn source_namespace(&self) -> String {
        self.spec.source.namespace.clone().unwrap_or_else(|| kube::ResourceExt::namespace(self).unwrap_or_default())
    }
}

/// How a plan recovers.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RestoreMode {
    /// One-shot restore.
    #[default]
    Restore,
    /// Fence the primary, restore, start here.
    Failover,
    /// Continuously pre-restore each new restore point, workloads at zero replicas.
    WarmStandby,
    /// Restore into a scratch namespace, check, measure RTO, clean up.
    Drill,
    /// Return workloads to the original site.
    Failback,
}

/// The restore points a plan draws from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreSource {
    /// BackupLocations (in the plan's namespace) to read from, tried in order: the first
    /// reachable one holding the chosen restore point is used.
    #[schemars(length(min = 1, max = 8), inner(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub locations: Vec<String>,
    /// Name of the BackupPolicy that wrote the restore points.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub policy: String,
    /// Namespace the policy ran in; defaults to the plan's namespace. Another namespace's
    /// restore points need a grant on the plan's namespace (see `target.namespace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
    /// Identifier of the cluster the policy ran in (the `kube-system` namespace uid, or
    /// the operator's `--cluster-id`); needed when several clusters share a location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub cluster_id: Option<String>,
}

/// Which restore point to use.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type != 'Named' || has(self.restorePoint)").message("type Named needs restorePoint").field_path(".restorePoint"))]
#[x_kube(validation = Rule::new("self.type == 'Named' || !has(self.restorePoint)").message("restorePoint is only used with type Named").field_path(".restorePoint"))]
#[x_kube(validation = Rule::new("self.type != 'Before' || has(self.before)").message("type Before needs before").field_path(".before"))]
#[x_kube(validation = Rule::new("self.type == 'Before' || !has(self.before)").message("before is only used with type Before").field_path(".before"))]
pub struct PointInTime {
    /// `Latest`: the newest complete restore point. `Named`: `restorePoint`. `Before`: the
    /// newest one taken at or before `before`.
    #[serde(default, rename = "type")]
    pub type_: PointSelector,
    /// Name of the restore point, for type `Named`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub restore_point: Option<String>,
    /// RFC 3339 time, for type `Before` (`2026-11-20T08:00:00Z`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<Time>,
}

/// How a restore point is chosen.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PointSelector {
    /// The newest complete restore point.
    #[default]
    Latest,
    /// A restore point by name.
    Named,
    /// The newest restore point at or before a time.
    Before,
}

/// Where restored objects go.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoreTarget {
    /// Namespace to restore into; defaults to the plan's namespace (a drill's: a scratch
    /// namespace, `<namespace>-drill`). Another namespace needs a grant from a cluster
    /// administrator (its annotation `lifeline.io/restore-from`, or the operator's
    /// `--grant`); a missing one is created only under the operator's `--grant`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub namespace: Option<String>,
    /// StorageClass renames, applied to restored PVCs and to the StatefulSets'
    /// `volumeClaimTemplates` alike.
    #[serde(default)]
    #[schemars(length(max = 32))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["from".into()]))]
    pub storage_class_mapping: Vec<StorageClassMapping>,
}

/// One StorageClass rename.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct StorageClassMapping {
    /// StorageClass name in the source cluster.
    #[schemars(length(min = 1, max = 253))]
    pub from: String,
    /// StorageClass name to use here.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub to: String,
}

/// One StatefulSet to recreate.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadRestore {
    /// StatefulSet name in the restore point.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Start group: all workloads of group 0 are started and ready before group 1 starts,
    /// and so on.
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub start_order: i32,
    /// Replicas to start with; defaults to the recorded count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    /// When the workload counts as ready.
    #[serde(default)]
    pub readiness: Readiness,
}

/// A readiness gate for one workload.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Readiness {
    /// How long to wait for all replicas to be Ready (and `check` to pass).
    #[serde(default = "default_readiness_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Duration,
    /// A command that must also succeed in each Pod before the next group starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Hook>,
}

impl Default for Readiness {
    fn default() -> Self {
        Self { timeout: default_readiness_timeout(), check: None }
    }
}

fn default_readiness_timeout() -> Duration {
    std::time::Duration::from_secs(600).into()
}

/// What starts a plan.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.type == 'HeartbeatLoss' || !has(self.heartbeat)").message("heartbeat settings apply to trigger type HeartbeatLoss only").field_path(".heartbeat"))]
pub struct Trigger {
    /// `Manual`: the plan runs when applied (and again when `runToken` changes).
    /// `HeartbeatLoss`: it runs when the primary site's heartbeat, written to the source
    /// locations by its operator, is older than `heartbeat.timeout`.
    #[serde(default, rename = "type")]
    pub type_: TriggerType,
    /// Change this value to run the plan again without changing anything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub run_token: Option<String>,
    /// When the disaster was detected, for a manual trigger: lets the status split the
    /// RTO into detection, decision and execution time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detected_at: Option<Time>,
    /// Settings for `HeartbeatLoss`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatTrigger>,
}

/// What starts a plan.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TriggerType {
    /// Applied by a person or a pipeline.
    #[default]
    Manual,
    /// The primary site stopped writing heartbeats.
    HeartbeatLoss,
}

/// Automatic failover on heartbeat loss.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatTrigger {
    /// Heartbeat age after which the primary counts as lost.
    #[serde(default = "default_heartbeat_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Duration,
    /// Extra wait after the loss is detected before acting, to ride out short outages;
    /// counted as decision time in the RTO.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub decision_delay: Option<Duration>,
}

fn default_heartbeat_timeout() -> Duration {
    std::time::Duration::from_secs(300).into()
}

/// Fencing of the old primary.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FailoverOptions {
    /// Scale the source StatefulSets to zero first when the source cluster is reachable,
    /// so two sites never write at once.
    #[serde(default = "default_fence")]
    pub fence_source: bool,
    /// Secret key holding a kubeconfig for the source cluster, used for fencing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_kubeconfig: Option<SecretKeyRef>,
    /// The oldest data a failover may promote: a restore point older than this (at the
    /// moment of the decision) is refused, and the plan waits with a `Degraded`
    /// condition (reason `DataTooOld`) until a newer one arrives or `force` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub max_data_age: Option<Duration>,
    /// Promote even a restore point older than `maxDataAge`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub force: bool,
    /// `WarmStandby`: set to true to promote the standby now (fence the primary, bring
    /// the volumes to the newest restore point, scale the workloads up in order).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub promote: bool,
}

fn default_fence() -> bool {
    true
}

impl Default for FailoverOptions {
    fn default() -> Self {
        Self { fence_source: true, source_kubeconfig: None, max_data_age: None, force: false, promote: false }
    }
}

/// Settings of a drill.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillOptions {
    /// Time budget; a drill not ready with its checks passed within this fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Option<Duration>,
    /// Keep the scratch namespace after a failed drill, for inspection.
    #[serde(default)]
    pub keep_on_failure: bool,
}

/// The steps of a plan.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PlanPhase {
    /// Waiting for its trigger.
    #[default]
    Pending,
    /// Choosing the restore point and location.
    Resolving,
    /// Scaling down the source workloads.
    Fencing,
    /// Recreating PVCs and filling them from object storage.
    RestoringVolumes,
    /// Recreating StatefulSets and waiting for their readiness gates.
    StartingWorkloads,
    /// Running post-restore hooks or drill checks.
    Verifying,
    /// Warm standby: volumes current, workloads at zero, waiting for a failover.
    Standby,
    /// Removing the scratch namespace of a drill.
    CleaningUp,
    /// Done; see `rpo` and `rto`.
    Completed,
    /// Failed; see conditions.
    Failed,
}

/// Observed state of a plan.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestorePlanStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Conditions,
    /// Current step.
    #[serde(default)]
    pub phase: PlanPhase,
    /// The `trigger.runToken` of the run this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_token: Option<String>,
    /// The restore point being (or that was) restored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored_point: Option<RestoredPoint>,
    /// Per-volume progress.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["pvc".into()]))]
    pub volumes: Vec<VolumeProgress>,
    /// Per-workload readiness.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub workloads: Vec<WorkloadProgress>,
    /// Data lost: the age of the restored point at the moment of failure (detection time,
    /// or the trigger time when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpo: Option<Duration>,
    /// Measured recovery time and its parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<Rto>,
    /// When execution started (to the microsecond: the RTO is measured from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<MicroTime>,
    /// When the current step started (its timeouts count from here).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_start_time: Option<Time>,
    /// When the workloads were ready and checks passed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// Human-readable detail, naming the blocker while waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// What a failover did to keep the old primary from writing again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing: Option<FencingStatus>,
    /// Trigger `HeartbeatLoss`: the primary's heartbeat as seen at each source location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<HeartbeatStatus>,
    /// `WarmStandby`: what the standby holds and how far behind it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<StandbyStatus>,
    /// `Failback`: the steps of handing the workload back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failback: Option<FailbackStatus>,
}

/// The steps of a failback, in order: PreSync (the original site's volumes brought to the
/// newest point in place while the workload still runs at the other site), Quiescing
/// (the other site's StatefulSets scaled to zero), FinalBackup (one last restore point
/// taken there), Fencing, FinalSync (only what the final point changed), Resuming (the
/// original policies resumed, the StatefulSets scaled up here).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FailbackStatus {
    /// The current step.
    pub step: String,
    /// When the workload at the other site was stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quiesced: Option<Time>,
    /// When the final backup was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_backup_requested: Option<Time>,
    /// The restore point taken at the other site after its workload stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_point: Option<String>,
    /// Bytes the first pass (PreSync) wrote here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_sync_bytes: Option<i64>,
    /// Bytes the final pass wrote here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_sync_bytes: Option<i64>,
}

/// The primary's heartbeat as a standby sees it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatStatus {
    /// Per source location.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["location".into()]))]
    pub locations: Vec<HeartbeatSeen>,
    /// The newest heartbeat's own time (the primary's clock): its last sign of life.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_beat: Option<MicroTime>,
    /// When every location was found silent (cleared when a heartbeat comes back before
    /// the decision).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_detected: Option<MicroTime>,
}

/// The primary's heartbeat at one location.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HeartbeatSeen {
    /// BackupLocation name.
    pub location: String,
    /// `Alive` (a new heartbeat within the timeout), `Silent` (none for longer),
    /// `NoHeartbeat` (none of this policy there yet) or `Unreachable`.
    pub state: String,
    /// Cluster that wrote the newest heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    /// Its epoch: heartbeats count up; a standby decides on epochs it sees advance by its
    /// own clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// When this epoch was first seen here (the standby's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<Time>,
    /// The heartbeat's own time (the primary's clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<MicroTime>,
    /// Why the location could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// What a warm standby holds.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StandbyStatus {
    /// The restore point the standby volumes hold (complete and checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point: Option<String>,
    /// When that restore point was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub point_time: Option<Time>,
    /// Age of the held point: how much a failover now would lose (updated when it has
    /// drifted by a quarter, or by 30 s at least).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag: Option<Duration>,
    /// Refreshes done (the first fill included).
    #[serde(default)]
    pub refreshes: i64,
    /// When the last refresh finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_time: Option<Time>,
    /// Bytes the last refresh wrote to the standby volumes (only what differed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_bytes: Option<i64>,
    /// How long the last refresh took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh_duration: Option<Duration>,
    /// When the refresh in progress started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_started: Option<MicroTime>,
    /// When the promotion started (execution of the failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promoted: Option<Time>,
}

/// Fencing of the old primary during a failover.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FencingStatus {
    /// What happened in the source cluster: its policy suspended and StatefulSets scaled
    /// to zero, or why that was skipped (unreachable, no kubeconfig, not asked for).
    pub source: String,
    /// The epoch of the fencing markers written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
    /// Per location: where the marker was written, or why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub markers: Vec<String>,
}

/// The restore point a plan uses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RestoredPoint {
    /// Restore point name.
    pub name: String,
    /// When it was taken.
    pub time: Time,
    /// Location it is read from.
    pub location: String,
}

/// Restore progress of one volume.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeProgress {
    /// PVC name in the target namespace.
    pub pvc: String,
    /// Bytes written so far.
    pub bytes_done: i64,
    /// Bytes to write.
    pub bytes_total: i64,
    /// Whether the volume is complete and verified.
    #[serde(default)]
    pub done: bool,
    /// The restore point's volume (its PVC name in the source namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Files restored and checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<i64>,
    /// Digest of what the volume holds, as read back after the restore and found equal
    /// to the restore point's (BLAKE3 over each file's path, size and chunk ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Restore Jobs retried after a transient failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Bytes the last restore actually wrote to the volume (a restore into an existing
    /// volume writes only what differs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub written: Option<i64>,
}

/// Readiness of one restored workload.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadProgress {
    /// StatefulSet name.
    pub name: String,
    /// Desired replicas.
    pub replicas: i32,
    /// Ready replicas.
    pub ready_replicas: i32,
    /// Whether its readiness gate passed.
    #[serde(default)]
    pub ready: bool,
}

/// Recovery time, split as the product brief defines it: RTO = detection + decision +
/// execution.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Rto {
    /// From the failure (last heartbeat) to its detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection: Option<Duration>,
    /// From detection to the start of execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Duration>,
    /// From the start of execution to ready workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<Duration>,
    /// Sum of the known parts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<Duration>,
}
