//! `BackupLocation`: one object-storage location (a bucket and prefix in one region).

use super::common::{Conditions, DURATION_PATTERN, Duration, SecretKeyRef, SecretRef};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Where restore points are stored. A repository lives at the URL; several policies may
/// share one location and deduplicate against each other. Locations are referred to by
/// name from BackupPolicies and RestorePlans in the same namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "lifeline.io",
    version = "v1alpha1",
    kind = "BackupLocation",
    namespaced,
    status = "BackupLocationStatus",
    shortname = "bloc",
    category = "lifeline",
    derive = "PartialEq",
    doc = "An object-storage location holding a Lifeline repository.",
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(name = "Access", type_ = "string", json_path = ".spec.accessMode"),
    printcolumn(name = "Reachable", type_ = "boolean", json_path = ".status.reachable"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Reason", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].reason"),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.region", priority = 1),
    printcolumn(name = "Last Check", type_ = "date", json_path = ".status.lastCheckTime", priority = 1),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(has(self.tls) && has(self.tls.caBundle) && self.tls.insecureSkipVerify)").message("tls.caBundle and tls.insecureSkipVerify are mutually exclusive").field_path(".tls"))]
#[x_kube(validation = Rule::new("!has(self.endpoint) || self.url.startsWith('s3://')").message("endpoint applies to s3:// locations only").field_path(".endpoint"))]
#[x_kube(validation = Rule::new("!has(self.forcePathStyle) || self.url.startsWith('s3://')").message("forcePathStyle applies to s3:// locations only").field_path(".forcePathStyle"))]
pub struct BackupLocationSpec {
    /// Where the repository lives: `s3://bucket/prefix`, `gs://bucket/prefix`,
    /// `az://container/prefix` or `file:///absolute/path`. Immutable: point a new
    /// BackupLocation at a new URL instead.
    #[schemars(length(min = 8, max = 1024))]
    #[x_kube(validation = Rule::new("self.matches('^(s3|gs|az)://[a-z0-9][-a-z0-9._]*[a-z0-9](/.*)?$') || self.matches('^file:///.+$')").message("must be s3://BUCKET[/PREFIX], gs://BUCKET[/PREFIX], az://CONTAINER[/PREFIX] or file:///PATH"))]
    #[x_kube(validation = Rule::new("self == oldSelf").message("url is immutable: create a new BackupLocation for a new URL"))]
    pub url: String,

    /// Endpoint of an S3-compatible service (`https://minio.example:9000`), when not AWS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512))]
    #[x_kube(validation = Rule::new("self.matches('^https?://[^/]+/?$')").message("must be http(s)://HOST[:PORT]"))]
    pub endpoint: Option<String>,

    /// Region of the bucket (`eu-central-1`). Also used to tell locations apart in status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub region: Option<String>,

    /// Use path-style S3 requests (`https://endpoint/bucket/key`); most S3-compatible
    /// servers need this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_path_style: Option<bool>,

    /// Secret with the provider's credentials as environment-style keys:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` (and optional `AWS_SESSION_TOKEN`) for S3;
    /// `GOOGLE_SERVICE_ACCOUNT_KEY` for GCS; `AZURE_STORAGE_ACCOUNT_NAME` and
    /// `AZURE_STORAGE_ACCOUNT_KEY` for Azure. Without it, the data-mover Pods use their
    /// own workload identity, and the operator its own only where its `ambientCredentials`
    /// setting lists this namespace; elsewhere the operator's requests go unsigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<SecretRef>,

    /// Secret key holding the repository passphrase. With it, this cluster lists the
    /// restore points stored here (catalog sync: they appear as RestorePoint objects, also
    /// in a standby cluster that has only this location) and may create the repository.
    /// Without it the location is only checked for reachability, and the policies writing
    /// here open it with their own key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_secret: Option<SecretKeyRef>,

    /// TLS settings for the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsOptions>,

    /// Object-lock immutability. When set, Lifeline checks that the bucket has object lock
    /// with at least this default retention, and never tries to delete data younger than it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub immutability: Option<Immutability>,

    /// `ReadWrite` (the default), or `ReadOnly` for a location this cluster may only
    /// restore from, such as the primary site's location seen from a standby cluster.
    #[serde(default)]
    pub access_mode: AccessMode,

    /// How often reachability is checked.
    #[serde(default = "default_check_interval")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub check_interval: Duration,
}

fn default_check_interval() -> Duration {
    std::time::Duration::from_secs(300).into()
}

/// TLS settings for an object-storage endpoint.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsOptions {
    /// A PEM bundle of CA certificates to trust, from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<SecretKeyRef>,
    /// Skip certificate verification. For tests only: it makes the encryption in transit
    /// worthless against an active attacker.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// Object-lock (WORM) settings of the bucket behind a location.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Immutability {
    /// Minimum retention of every object, in days. Prune never deletes objects younger
    /// than this; retention rules shorter than it are rejected.
    #[schemars(range(min = 1, max = 36500))]
    pub retention_days: i32,
    /// Object-lock mode the bucket is expected to use.
    #[serde(default)]
    pub mode: ObjectLockMode,
}

/// S3 Object Lock mode.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ObjectLockMode {
    /// Users with a special permission can shorten retention.
    #[default]
    Governance,
    /// Nobody, not even the account root, can delete before retention ends.
    Compliance,
}

/// Whether this cluster may write to a location.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AccessMode {
    /// Backups, replication and prune may write here.
    #[default]
    ReadWrite,
    /// Only restores and verification read from here; nothing is ever written or deleted.
    ReadOnly,
}

/// Observed state of a location.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackupLocationStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Progressing` and `Degraded` conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Conditions,
    /// Whether the last check reached the location with the given credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable: Option<bool>,
    /// When the location was last checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<Time>,
    /// Whether a Lifeline repository exists at the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_initialized: Option<bool>,
    /// Identifier of the repository at the URL (changes if the bucket is replaced).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<String>,
    /// Round-trip time of the last check, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<i64>,
    /// Human-readable detail of the last check, naming what failed and what to do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Fencing markers found at the location (the newest per policy): a policy of this
    /// namespace fenced by another cluster stands down here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub fences: Vec<FenceRecord>,
}

/// A fencing marker: another cluster took over a policy's workload.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct FenceRecord {
    /// Namespace of the BackupPolicy whose workload was taken over.
    pub namespace: String,
    /// Name of that BackupPolicy.
    pub policy: String,
    /// Grows with every takeover; the highest wins.
    pub epoch: i64,
    /// The cluster that took over.
    pub cluster_id: String,
    /// When (RFC 3339).
    pub time: String,
    /// `namespace/name` of the RestorePlan that took over.
    pub plan: String,
}
