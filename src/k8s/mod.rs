//! Typed helpers every controller shares: the one server-side-apply path, conditions,
//! Events, the CSI snapshot kinds, pod exec with a deadline, and leader election.

pub mod apply;
pub mod conditions;
pub mod events;
pub mod exec;
pub mod snapshot;

/// Label on every mover Job, so the cap on concurrent movers counts them.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Value of [`LABEL_COMPONENT`] on mover Jobs and their Pods.
pub const COMPONENT_MOVER: &str = "mover";
/// Annotation on a RestorePoint that catalog sync created from a location: it records a
/// run that happened elsewhere (or before), so no backup is run for it.
pub const ANNOTATION_CATALOG: &str = "lifeline.io/catalog-location";
/// On a RestorePoint the catalog brought from another namespace (one an administrator
/// granted): the namespace whose policy took it.
pub const ANNOTATION_SOURCE_NAMESPACE: &str = "lifeline.io/source-namespace";
/// Annotation naming the volume index of a child object within its run.
pub const LABEL_VOLUME: &str = "lifeline.io/volume";

/// Labels Lifeline puts on an object it creates for a policy (a maintenance Job, a drill
/// plan). Never tracking labels of Argo CD or Helm: children are linked by these labels
/// and owner references only.
pub fn policy_labels(policy: &str) -> std::collections::BTreeMap<String, String> {
    use crate::api::names::*;
    [(LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()), (LABEL_POLICY.to_string(), truncate_label(policy))]
        .into_iter()
        .collect()
}

/// Labels Lifeline puts on a child of a run: the policy's, and the run's.
pub fn child_labels(policy: &str, point: &str) -> std::collections::BTreeMap<String, String> {
    let mut l = policy_labels(policy);
    l.insert(crate::api::names::LABEL_RESTORE_POINT.to_string(), truncate_label(point));
    l
}

/// Metadata that describes one cluster's copy of an object, not the object.
const CLUSTER_METADATA: [&str; 10] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "ownerReferences",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "finalizers",
];

/// Removes one cluster's identity of an object from its metadata (uid, resourceVersion,
/// managedFields, owner references, finalizers, …).
pub fn strip_cluster_metadata(meta: &mut serde_json::Map<String, serde_json::Value>) {
    for k in CLUSTER_METADATA {
        meta.remove(k);
    }
}

/// An object without one cluster's identity: [`strip_cluster_metadata`] and no status.
pub fn without_cluster_state(mut v: serde_json::Value) -> serde_json::Value {
    if let Some(m) = v["metadata"].as_object_mut() {
        strip_cluster_metadata(m);
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    v
}

/// Label values are at most 63 characters.
pub fn truncate_label(v: &str) -> String {
    if v.len() <= 63 {
        return v.to_string();
    }
    let h = blake3::hash(v.as_bytes()).to_hex();
    format!("{}-{}", v[..52].trim_end_matches(['-', '.', '_']), &h[..10])
}

/// Is this a "not found" answer from the API server?
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Is this a conflict (409) answer from the API server?
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// Bytes of a resource quantity (`20Gi`, `1.5G`, `512`); `None` for forms it does not
/// know (milli-units and exponents never describe storage sizes).
pub fn quantity_bytes(q: &str) -> Option<u64> {
    let q = q.trim();
    let split = q.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(q.len());
    let (num, unit) = q.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mult: f64 = match unit {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0f64.powi(4),
        _ => return None,
    };
    Some((n * mult) as u64)
}

/// Who asked for an operation an annotation requests: the annotation
/// `lifeline.io/requested-by` if set, else the field manager that last set `annotation`
/// (`kubectl-annotate`, a controller's name): the API records no user in the object
/// itself.
pub fn requester(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    annotation: &str,
) -> Option<String> {
    if let Some(v) = meta.annotations.as_ref().and_then(|a| a.get(crate::api::names::ANNOTATION_REQUESTED_BY)) {
        return Some(v.clone());
    }
    let key = format!("f:{annotation}");
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| m.fields_v1.as_ref().is_some_and(|f| f.0.to_string().contains(&key)))
        .max_by_key(|m| m.time.as_ref().map(|t| t.0))
        .and_then(|m| m.manager.clone())
}

/// apimachinery `util/duration.HumanDuration`: `45s`, `3m20s`, `25m`, `5h10m`, `3d4h`.
pub fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".into();
    }
    if secs < 0 {
        return "0s".into();
    }
    if secs < 120 {
        return format!("{secs}s");
    }
    let minutes = secs / 60;
    if minutes < 10 {
        let s = secs % 60;
        return if s == 0 { format!("{minutes}m") } else { format!("{minutes}m{s}s") };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = secs / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 { format!("{hours}h") } else { format!("{hours}h{m}m") };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 { format!("{}d", hours / 24) } else { format!("{}d{h}h", hours / 24) };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        return if dy == 0 { format!("{}y", hours / 24 / 365) } else { format!("{}y{dy}d", hours / 24 / 365) };
    }
    format!("{}y", hours / 24 / 365)
}
