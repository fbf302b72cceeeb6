//! Types shared by several kinds, and the schema patterns they use.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A Kubernetes duration (`90s`, `15m`, `1h30m`): Go's `time.ParseDuration` syntax, no sign.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";
/// A DNS-1123 label: names of Secrets, locations, hooks, namespaces.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// Whether `s` matches [`DNS_LABEL_PATTERN`] in at most 63 characters (a namespace name,
/// among others).
pub fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dns_label_is_what_its_pattern_and_length_say() {
        let pattern = regex::Regex::new(DNS_LABEL_PATTERN).unwrap();
        let long = "a".repeat(64);
        for s in ["a", "a-b", "0a", "kube-system", "-a", "a-", "A", "a.b", "a_b", "", &long[..63], &long] {
            assert_eq!(is_dns_label(s), s.len() <= 63 && pattern.is_match(s), "{s:?}");
        }
    }
}
