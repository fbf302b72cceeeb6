//! Types shared by several kinds, and the schema patterns they use.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kubernetes duration (`90s`, `15m`, `1h30m`): Go's `time.ParseDuration` syntax, no sign.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// A DNS-1123 label: names of Secrets, locations, hooks, namespaces.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A DNS-1123 subdomain: names of most Kubernetes objects.
pub const DNS_SUBDOMAIN_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

pub use kube::core::Duration;

/// A key in a Secret in the same namespace as the object that refers to it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret, in the same namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
    /// Key within the Secret's `data`.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A whole Secret in the same namespace as the object that refers to it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret, in the same namespace.
    #[schemars(length(min = 1, max = 253), regex(pattern = DNS_SUBDOMAIN_PATTERN))]
    pub name: String,
}

/// What to do when a hook fails or times out.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnError {
    /// Abort the operation (for a backup: no restore point is recorded) and report it.
    #[default]
    Fail,
    /// Record a warning Event and carry on.
    Continue,
}

/// A command run inside a running container (`kubectl exec`), for example a database
/// checkpoint before a snapshot, or a health query after a restore.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    /// Name of the hook, used in Events and status.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// Container to run the command in; defaults to the Pod's first container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub container: Option<String>,
    /// Command and arguments, run without a shell (use `["sh", "-c", "..."]` for one).
    #[schemars(length(min = 1, max = 64))]
    pub command: Vec<String>,
    /// How long the command may run before it counts as failed.
    #[serde(default = "default_hook_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: Duration,
    /// What a failure (non-zero exit or timeout) does: `Fail` or `Continue`.
    #[serde(default)]
    pub on_error: OnError,
}

fn default_hook_timeout() -> Duration {
    std::time::Duration::from_secs(60).into()
}

/// Status conditions as a list keyed by `type` (`Ready`, `Progressing`, `Degraded`).
pub type Conditions = Vec<Condition>;

/// Condition types every Lifeline kind reports.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const PROGRESSING: &str = "Progressing";
    pub const DEGRADED: &str = "Degraded";
}
