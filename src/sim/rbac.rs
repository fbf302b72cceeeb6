//! Optional authentication and RBAC (`Options::rbac`), so that a component run under a
//! ServiceAccount with the Helm chart's own roles fails a test when a permission is
//! missing, as it would fail a user's install.
//!
//! Tokens are opaque strings (real ones are JWTs; clients do not look inside):
//! - the cluster's admin token (in the kubeconfig [`super::Cluster::kubeconfig`] writes)
//!   authenticates user `kubernetes-admin` in group `system:masters`, allowed everything;
//! - `sim-sa:<namespace>:<name>:<uid>` authenticates ServiceAccount `<name>`, as long as
//!   that ServiceAccount (with that uid) exists. Pods get such a token in their projected
//!   volume and in the kubeconfig the kubelet gives their processes;
//!   [`super::Cluster::service_account_kubeconfig`] writes one for tests.
//!
//! Authorization follows the RBAC authorizer: ClusterRoleBindings, then the RoleBindings
//! of the request's namespace, their subjects (User, Group, ServiceAccount) and the rules
//! of the roles they bind (apiGroups, resources with subresources, resourceNames, verbs,
//! nonResourceURLs, `*`). Discovery, OpenAPI, `/version` and health checks are open to
//! any authenticated user (the `system:discovery` and `system:public-info-viewer` roles).
//! Not simulated: privilege-escalation checks on writing roles and bindings,
//! impersonation, aggregated ClusterRoles.

use super::api::{Req, Target};
use super::errors::{ApiError, ApiResult};
use super::store::Store;
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "sim-admin-token";

/// Who is asking.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

/// The token a ServiceAccount authenticates with.
pub fn service_account_token(store: &Store, ns: &str, name: &str) -> Option<String> {
    let sa = store.get("/serviceaccounts", ns, name)?;
    Some(format!("sim-sa:{ns}:{name}:{}", sa["metadata"]["uid"].as_str().unwrap_or_default()))
}

fn unauthorized() -> ApiError {
    ApiError::status(401, "Unauthorized", "Unauthorized", None)
}

pub fn authenticate(store: &Store, authorization: &str) -> ApiResult<User> {
    let token = authorization.strip_prefix("Bearer ").map(str::trim).ok_or_else(unauthorized)?;
    if token == ADMIN_TOKEN {
        return Ok(User {
            name: "kubernetes-admin".into(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        });
    }
    let mut parts = token.strip_prefix("sim-sa:").ok_or_else(unauthorized)?.splitn(3, ':');
    let (ns, name, uid) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let sa = store.get("/serviceaccounts", ns, name).ok_or_else(unauthorized)?;
    if sa["metadata"]["uid"] != uid {
        return Err(unauthorized());
    }
    Ok(User {
        name: format!("system:serviceaccount:{ns}:{name}"),
        groups: vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
            "system:authenticated".into(),
        ],
    })
}

/// The RBAC verb of a request.
pub fn verb(req: &Req, t: &Target) -> &'static str {
    let watch = matches!(req.q("watch"), Some("true" | "1"));
    match (req.method.as_str(), t.name.is_some(), t.sub.as_deref()) {
        (_, _, Some("exec" | "attach" | "portforward")) => "create",
        ("GET" | "HEAD", false, _) if watch => "watch",
        ("GET" | "HEAD", false, _) => "list",
        ("GET" | "HEAD", true, _) if watch => "watch",
        ("GET" | "HEAD", true, _) => "get",
        ("POST", _, _) => "create",
        ("PUT", _, _) => "update",
        ("PATCH", _, _) => "patch",
        ("DELETE", false, _) => "deletecollection",
        ("DELETE", true, _) => "delete",
        _ => "get",
    }
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn rule_allows(rule: &Value, verb: &str, group: &str, resource: &str, name: Option<&str>) -> bool {
    let verbs = strs(&rule["verbs"]);
    let groups = strs(&rule["apiGroups"]);
    let resources = strs(&rule["resources"]);
    let names = strs(&rule["resourceNames"]);
    let (base, sub) = resource.split_once('/').map_or((resource, None), |(b, s)| (b, Some(s)));
    let resource_ok = resources.iter().any(|r| {
        *r == "*"
            || *r == resource
            || sub.is_some_and(|s| *r == format!("*/{s}"))
            || (sub.is_none() && *r == base && !r.contains('/'))
    });
    (verbs.contains(&"*") || verbs.contains(&verb))
        && (groups.contains(&"*") || groups.contains(&group))
        && resource_ok
        && (names.is_empty() || name.is_some_and(|n| names.contains(&n)))
}

fn subject_matches(s: &Value, user: &User, binding_ns: &str) -> bool {
    match s["kind"].as_str() {
        Some("User") => s["name"] == user.name.as_str(),
        Some("Group") => user.groups.iter().any(|g| s["name"] == g.as_str()),
        Some("ServiceAccount") => {
            let ns = s["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(binding_ns);
            user.name == format!("system:serviceaccount:{ns}:{}", s["name"].as_str().unwrap_or_default())
        }
        _ => false,
    }
}

/// The rules a user has in a namespace (`None`: cluster-wide rules only).
fn rules(store: &Store, user: &User, ns: Option<&str>) -> Vec<Value> {
    let mut out = Vec::new();
    let role_rules = |kind: &str, name: &str, role_ns: &str| -> Vec<Value> {
        let obj = if kind == "ClusterRole" {
            store.get("rbac.authorization.k8s.io/clusterroles", "", name)
        } else {
            store.get("rbac.authorization.k8s.io/roles", role_ns, name)
        };
        obj.and_then(|o| o["rules"].as_array().cloned()).unwrap_or_default()
    };
    for b in store.list("rbac.authorization.k8s.io/clusterrolebindings", None) {
        if b["subjects"].as_array().is_some_and(|s| s.iter().any(|s| subject_matches(s, user, ""))) {
            out.extend(role_rules("ClusterRole", b["roleRef"]["name"].as_str().unwrap_or_default(), ""));
        }
    }
    if let Some(ns) = ns {
        for b in store.list("rbac.authorization.k8s.io/rolebindings", Some(ns)) {
            if b["subjects"].as_array().is_some_and(|s| s.iter().any(|s| subject_matches(s, user, ns))) {
                let kind = b["roleRef"]["kind"].as_str().unwrap_or("Role");
                out.extend(role_rules(kind, b["roleRef"]["name"].as_str().unwrap_or_default(), ns));
            }
        }
    }
    out
}

/// Whether `user` may make a resource request; the real 403 otherwise.
pub fn authorize(store: &Store, user: &User, req: &Req, t: &Target) -> ApiResult<()> {
    if user.groups.iter().any(|g| g == "system:masters") {
        return Ok(());
    }
    let verb = verb(req, t);
    let resource = match &t.sub {
        Some(s) => format!("{}/{s}", t.rt.plural),
        None => t.rt.plural.clone(),
    };
    let name = t.name.as_deref();
    let ns = if t.rt.namespaced { t.namespace.as_deref() } else { None };
    if rules(store, user, ns).iter().any(|r| rule_allows(r, verb, &t.rt.group, &resource, name)) {
        return Ok(());
    }
    let what = match name {
        Some(n) => format!("{} {n:?}", t.rt.qualified()),
        None => t.rt.qualified(),
    };
    let scope = match ns {
        Some(ns) => format!("in the namespace {ns:?}"),
        None => "at the cluster scope".into(),
    };
    let mut details = json!({"kind": t.rt.plural});
    if let Some(n) = name {
        details["name"] = json!(n);
    }
    if !t.rt.group.is_empty() {
        details["group"] = json!(t.rt.group);
    }
    Err(ApiError::status(
        403,
        "Forbidden",
        format!(
            "{what} is forbidden: User {:?} cannot {verb} resource {resource:?} in API group {:?} {scope}",
            user.name, t.rt.group
        ),
        Some(details),
    ))
}

/// The default ClusterRoles and the binding of `system:masters`, as a new cluster has them.
pub fn bootstrap_objects() -> Vec<(&'static str, Value)> {
    let all =
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, {"nonResourceURLs": ["*"], "verbs": ["*"]}]);
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    let everyday = json!([
        {"apiGroups": [""], "resources": ["pods", "pods/log", "pods/status", "services", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "configmaps", "serviceaccounts", "events", "replicationcontrollers", "limitranges", "resourcequotas", "namespaces", "namespaces/status"], "verbs": read},
        {"apiGroups": ["apps"], "resources": ["statefulsets", "statefulsets/scale", "statefulsets/status", "deployments", "deployments/scale", "deployments/status", "replicasets", "daemonsets", "controllerrevisions"], "verbs": read},
        {"apiGroups": ["batch"], "resources": ["jobs", "jobs/status", "cronjobs", "cronjobs/status"], "verbs": read},
        {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets", "poddisruptionbudgets/status"], "verbs": read},
        {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": read},
        {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshots"], "verbs": read},
    ]);
    let mut edit = everyday.as_array().cloned().unwrap_or_default();
    edit.extend(
        serde_json::from_value::<Vec<Value>>(json!([
            {"apiGroups": [""], "resources": ["pods", "pods/exec", "pods/attach", "services", "endpoints", "persistentvolumeclaims", "configmaps", "secrets", "serviceaccounts", "replicationcontrollers"], "verbs": write},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": read},
            {"apiGroups": ["apps"], "resources": ["statefulsets", "statefulsets/scale", "deployments", "deployments/scale", "replicasets", "daemonsets"], "verbs": write},
            {"apiGroups": ["batch"], "resources": ["jobs", "cronjobs"], "verbs": write},
            {"apiGroups": ["policy"], "resources": ["poddisruptionbudgets"], "verbs": write},
            {"apiGroups": ["snapshot.storage.k8s.io"], "resources": ["volumesnapshots"], "verbs": write},
        ]))
        .unwrap_or_default(),
    );
    let mut admin = edit.clone();
    admin.push(json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"], "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]}));
    let labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
    let role = |name: &str, rules: Value| json!({"metadata": {"name": name, "labels": labels, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}, "rules": rules});
    vec![
        ("clusterroles", role("cluster-admin", all)),
        ("clusterroles", role("admin", json!(admin))),
        ("clusterroles", role("edit", json!(edit))),
        ("clusterroles", role("view", everyday)),
        (
            "clusterrolebindings",
            json!({"metadata": {"name": "cluster-admin", "labels": labels, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
                   "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
                   "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:masters"}]}),
        ),
    ]
}
