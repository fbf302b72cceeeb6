//! `BackupPolicy`: what to protect, how often, how consistently, where to, for how long.

use super::common::{
    Conditions, DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN, DURATION_PATTERN, Duration, Hook, SecretKeyRef,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Protection for a set of stateful workloads: every `schedule` tick, a consistent group of
/// CSI snapshots of the selected volumes is taken and shipped, deduplicated and encrypted,
/// to the primary location, then replicated to the other locations on their own cadence.
/// Each run is recorded as a RestorePoint.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lifeline.io",
    version = "v1alpha1",
    kind = "BackupPolicy",
    namespaced,
    status = "BackupPolicyStatus",
    shortname = "bp",
    category = "lifeline",
    derive = "PartialEq",
    doc = "Protection of stateful workloads: schedule, consistency, locations and retention.",
    printcolumn(name = "Schedule", type_ = "string", json_path = ".spec.schedule"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Last Backup", type_ = "date", json_path = ".status.lastBackup.completionTime"),
    printcolumn(name = "RPO", type_ = "string", json_path = ".status.achievedRpo"),
    printcolumn(name = "Target RPO", type_ = "string", json_path = ".spec.rpo"),
    printcolumn(name = "Next Run", type_ = "date", json_path = ".status.nextRun", priority = 1),
    printcolumn(name = "Ratio", type_ = "string", json_path = ".status.backupRatio", priority = 1),
    printcolumn(name = "Suspended", type_ = "boolean", json_path = ".spec.suspend", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.locations.filter(l, l.role == 'Primary').size() == 1").message("exactly one location must have role Primary").field_path(".locations"))]
pub struct BackupPolicySpec {
    /// The workloads and volumes to protect.
    pub protect: ProtectionTarget,

    /// When to take a restore point, in cron syntax (`*/15 * * * *`: five fields, or a
    /// macro such as `@hourly`), evaluated in `timeZone`.
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,

    /// IANA time zone for every schedule of this policy (`Europe/Berlin`). Defaults to UTC.
    #[serde(default = "default_time_zone")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: String,

    /// Recovery point objective: the most data, in time, the owner accepts to lose. The
    /// policy is Degraded while the newest restore point is older than this. It must not
    /// be shorter than the longest gap between two runs of `schedule`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub rpo: Option<Duration>,

    /// Crash-consistent snapshots, or application-consistent ones with hooks.
    #[serde(default)]
    pub consistency: Consistency,

    /// VolumeSnapshotClass for the CSI snapshots; defaults to the class marked default
    /// for each volume's driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub volume_snapshot_class_name: Option<String>,

    /// Where restore points go: exactly one `Primary` location, written by every run, and
    /// any number of `Replica` locations, each with its own cadence and retention.
    #[schemars(length(min = 1, max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub locations: Vec<PolicyLocation>,

    /// Client-side encryption. Data is encrypted before it leaves the cluster.
    pub encryption: Encryption,

    /// How many restore points to keep, unless a location overrides it.
    pub retention: Retention,

    /// Scheduled integrity checks of stored data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,

    /// Scheduled restore drills into a scratch namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill: Option<Drill>,

    /// Stop scheduling new runs. Runs in progress finish; retention still applies.
    #[serde(default)]
    pub suspend: bool,
}

fn default_time_zone() -> String {
    "UTC".into()
}

/// Which workloads and volumes a policy protects. All selections are unioned; at least
/// one must be given.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.statefulSets) > 0 || has(self.statefulSetSelector) || has(self.persistentVolumeClaimSelector)").message("select something to protect: statefulSets, statefulSetSelector or persistentVolumeClaimSelector"))]
pub struct ProtectionTarget {
    /// StatefulSets in the policy's namespace, by name. All PVCs of their
    /// `volumeClaimTemplates` are protected.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN)))]
    #[x_kube(merge_strategy = ListMerge::Set)]
    pub stateful_sets: Vec<String>,

    /// StatefulSets in the policy's namespace, by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stateful_set_selector: Option<LabelSelector>,

    /// Any further PVCs in the policy's namespace, by label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim_selector: Option<LabelSelector>,

    /// Also record the manifests of the protected StatefulSets (and the Services,
    /// ConfigMaps and Secrets their Pods reference) so a restore can recreate them.
    #[serde(default = "default_true")]
    pub capture_manifests: bool,
}

fn default_true() -> bool {
    true
}

/// How consistent the snapshots are.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.mode == 'Application' || (size(self.preHooks) == 0 && size(self.postHooks) == 0)").message("hooks run only in mode Application; set mode: Application or remove the hooks"))]
#[x_kube(validation = Rule::new("self.mode != 'Application' || size(self.preHooks) > 0").message("mode Application needs at least one preHook to quiesce the application").field_path(".preHooks"))]
pub struct Consistency {
    /// `Crash`: snapshots as after a power cut, which databases with a write-ahead log
    /// recover from. `Application`: `preHooks` run in every Pod of the protected
    /// StatefulSets before the snapshots and `postHooks` after them.
    #[serde(default)]
    pub mode: ConsistencyMode,

    /// Commands run in each Pod before the snapshots (a checkpoint, a flush, `fsfreeze`).
    /// If one fails with `onError: Fail`, no snapshot is taken and post hooks still run.
    #[serde(default)]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub pre_hooks: Vec<Hook>,

    /// Commands run in each Pod once the snapshots exist, whatever happened before.
    #[serde(default)]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub post_hooks: Vec<Hook>,
}

/// Snapshot consistency level.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConsistencyMode {
    /// Crash-consistent group snapshot, no hooks.
    #[default]
    Crash,
    /// Application-consistent: hooks quiesce the application around the snapshots.
    Application,
}

/// One location a policy writes to.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.role != 'Primary' || !has(self.schedule)").message("the primary location is written on every run of spec.schedule; schedule applies to replicas only").field_path(".schedule"))]
pub struct PolicyLocation {
    /// Name of a BackupLocation in the policy's namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,

    /// `Primary`: every run writes here first. `Replica`: restore points are copied here
    /// from the primary, uploading only what the replica lacks.
    #[serde(default)]
    pub role: LocationRole,

    /// Replication cadence of a replica (cron, in the policy's time zone): at each tick the
    /// newest restore point not yet here is copied. Omitted: after every run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub schedule: Option<String>,

    /// Retention at this location; defaults to the policy's `retention`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Retention>,
}

/// The role of a location in a policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LocationRole {
    /// Written by every run.
    Primary,
    /// Filled by replication from the primary.
    #[default]
    Replica,
}

/// Client-side encryption settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// Secret key holding the repository passphrase. It must open one of the key slots of
    /// every location's repository; a new repository is created with it.
    pub key_secret: SecretKeyRef,
}

/// Which restore points to keep: the union of all rules (as `restic forget`). A point is
/// kept if any rule keeps it; the newest point is always kept.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("(has(self.keepLast) && self.keepLast > 0) || (has(self.hourly) && self.hourly > 0) || (has(self.daily) && self.daily > 0) || (has(self.weekly) && self.weekly > 0) || (has(self.monthly) && self.monthly > 0) || (has(self.yearly) && self.yearly > 0) || has(self.within)").message("retention keeps nothing: set keepLast, hourly, daily, weekly, monthly, yearly or within"))]
pub struct Retention {
    /// Keep the newest N restore points.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub keep_last: Option<i32>,
    /// Keep the newest point of each of the last N hours that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub hourly: Option<i32>,
    /// Keep the newest point of each of the last N days that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub daily: Option<i32>,
    /// Keep the newest point of each of the last N ISO weeks that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub weekly: Option<i32>,
    /// Keep the newest point of each of the last N months that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub monthly: Option<i32>,
    /// Keep the newest point of each of the last N years that have one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub yearly: Option<i32>,
    /// Keep every point younger than this (`168h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub within: Option<Duration>,
}

/// Scheduled verification: stored data is re-read, decrypted and re-hashed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    /// When to verify (cron, in the policy's time zone).
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// Share of stored data read back on each run, in percent; 100 reads everything.
    #[serde(default = "default_sample_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub sample_percent: i32,
}

fn default_sample_percent() -> i32 {
    10
}

/// Scheduled restore drills: the newest restore point is restored into a scratch
/// namespace, the workloads are started, the checks run, the RTO is measured, and the
/// namespace is removed. Each drill is recorded as a RestorePlan in mode `Drill`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.targetNamespace) || !(self.targetNamespace in ['kube-system', 'kube-public', 'kube-node-lease', 'default'])").message("a drill's scratch namespace is created and deleted by the drill: it cannot be a system namespace").field_path(".targetNamespace"))]
pub struct Drill {
    /// When to drill (cron, in the policy's time zone).
    #[schemars(length(min = 1, max = 128))]
    pub schedule: String,
    /// Scratch namespace the drill restores into; created and deleted by the drill. It
    /// must not be the policy's own namespace, a system namespace, or any namespace that
    /// exists and was not made by a drill. Defaults to `<namespace>-drill`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub target_namespace: Option<String>,
    /// Time budget: a drill that is not ready with its checks passed within this fails,
    /// and its measured RTO is reported against it.
    #[serde(default = "default_drill_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Duration,
    /// Commands run in the restored Pods once they are ready (for example a query that
    /// proves the data is there). Every check must pass.
    #[serde(default)]
    #[schemars(length(max = 8))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub checks: Vec<Hook>,
    /// Keep the scratch namespace after a failed drill, for inspection.
    #[serde(default)]
    pub keep_on_failure: bool,
}

fn default_drill_timeout() -> Duration {
    std::time::Duration::from_secs(30 * 60).into()
}

/// Observed state of a policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupPolicyStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Conditions,
    /// The newest completed run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_backup: Option<LastBackup>,
    /// When the next scheduled run starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<Time>,
    /// The schedule slot of the newest run started by the schedule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<Time>,
    /// Slots that passed without a run (the operator was down, or a run was still going);
    /// only the latest missed slot is run, once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub missed_runs: Option<i64>,
    /// Age of the newest restore point when status was last computed: the data that
    /// would be lost if the site failed then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub achieved_rpo: Option<Duration>,
    /// Bytes of the protected volumes' contents at the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protected_bytes: Option<i64>,
    /// Bytes stored at the primary location for all kept restore points of this policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<i64>,
    /// `storedBytes / protectedBytes`, as a decimal string (`0.37`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_ratio: Option<String>,
    /// Replication state per location.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub locations: Vec<LocationReplication>,
    /// Result of the newest verification (over all locations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verification: Option<CheckResult>,
    /// The schedule slot of the newest verification started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verification_schedule_time: Option<Time>,
    /// When the next scheduled verification starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_verification: Option<Time>,
    /// Result of the newest drill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<DrillResult>,
    /// The schedule slot of the newest drill started (recorded as a RestorePlan in mode
    /// `Drill`, named `<policy>-drill-<slot>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill_schedule_time: Option<Time>,
    /// When the next scheduled drill starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_drill: Option<Time>,
}

/// Summary of the newest completed run.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LastBackup {
    /// Name of the RestorePoint.
    pub restore_point: String,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<Time>,
    /// When the run completed at the primary location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_time: Option<Time>,
    /// New bytes the run stored (after deduplication and compression).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_bytes: Option<i64>,
}

/// Replication state of one location.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LocationReplication {
    /// BackupLocation name.
    pub name: String,
    /// The location's role.
    pub role: LocationRole,
    /// `InSync`, `Lagging`, `Failing` or `Pending`.
    pub state: ReplicationState,
    /// The newest restore point present at this location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_restore_point: Option<String>,
    /// When that restore point arrived here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// What went wrong, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Pruning of the data retention forgot at this location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<MaintenanceState>,
    /// Scheduled verification of the data stored at this location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<MaintenanceState>,
}

/// A maintenance task at one location, carried out by a mover Job: a prune (after
/// retention forgot restore points there: marks the data no restore point needs and
/// deletes what an earlier prune marked once its grace period has passed) or a
/// verification (stored data read back, decrypted and re-hashed).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MaintenanceState {
    /// Whether the task is due (and waits for a mover slot).
    #[serde(default)]
    pub due: bool,
    /// The Job running it now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// When it last finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_time: Option<Time>,
    /// Whether it last succeeded (for a verification: found nothing damaged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub succeeded: Option<bool>,
    /// What it last did, or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Replication state of a location.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplicationState {
    /// Holds the newest restore point its cadence calls for.
    InSync,
    /// A copy is due or running.
    Lagging,
    /// The last copy failed; see `message`.
    Failing,
    /// Nothing copied yet.
    Pending,
}

/// Outcome of a verification.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CheckResult {
    /// When it finished.
    pub time: Time,
    /// Whether every checked chunk decrypted and hashed correctly.
    pub passed: bool,
    /// Bytes read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_bytes: Option<i64>,
    /// Affected restore points and files, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Outcome of a drill.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DrillResult {
    /// The RestorePlan that ran the drill.
    pub restore_plan: String,
    /// When it finished.
    pub time: Time,
    /// Whether the workloads became ready and every check passed within the timeout.
    pub passed: bool,
    /// Measured recovery time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rto: Option<Duration>,
    /// What failed, if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
