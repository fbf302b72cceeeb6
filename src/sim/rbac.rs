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
//! - a TokenRequest (`kubectl create token`) returns a JWT shaped as the real server's
//!   (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `kubernetes.io`), signed with the
//!   cluster's own key (HMAC-SHA256). It authenticates while it has not expired, its
//!   audiences include the API server's, and the ServiceAccount still has that uid.
//!
//! Impersonation (`kubectl --as`, `--as-group`) follows apiserver
//! `pkg/endpoints/filters/impersonation.go`: the requester needs `impersonate` on
//! `users`, `groups` or `serviceaccounts`; a ServiceAccount user gets its groups, and
//! `system:authenticated` is added unless given.
//!
//! Authorization follows the RBAC authorizer: ClusterRoleBindings, then the RoleBindings
//! of the request's namespace, their subjects (User, Group, ServiceAccount) and the rules
//! of the roles they bind (apiGroups, resources with subresources, resourceNames, verbs,
//! nonResourceURLs, `*`). Discovery, OpenAPI, `/version` and health checks are open to
//! any authenticated user (the `system:discovery` and `system:public-info-viewer` roles).
//! The decision's reason is the RBAC authorizer's (`RBAC: allowed by ClusterRoleBinding
//! "b" of ClusterRole "r" to Group "g"`, plugin/pkg/auth/authorizer/rbac/rbac.go and
//! pkg/registry/rbac/validation/rule.go); members of `system:masters` are allowed by the
//! privileged-group authorizer first, with no reason. Not simulated: privilege-escalation
//! checks on writing roles and bindings, aggregated ClusterRoles.

use super::api::{Req, Target};
use super::errors::{ApiError, ApiResult};
use super::store::Store;
use serde_json::{Value, json};

pub const ADMIN_TOKEN: &str = "sim-admin-token";
/// The API server's audience: tokens must be meant for it.
pub const API_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// Who is asking.
#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl User {
    pub fn admin() -> Self {
        User {
            name: "kubernetes-admin".into(),
            uid: String::new(),
            groups: vec!["system:masters".into(), "system:authenticated".into()],
        }
    }

    fn service_account(ns: &str, name: &str, uid: &str) -> Self {
        User {
            name: format!("system:serviceaccount:{ns}:{name}"),
            uid: uid.into(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        }
    }

    fn privileged(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// What a request (or an access review) asks to do.
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub verb: String,
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub namespace: String,
    /// A non-resource request's path (`/healthz`); resource fields are empty then.
    pub path: Option<String>,
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
    token_user(store, token).map(|(u, _)| u).ok_or_else(unauthorized)
}

/// The user a token authenticates, and the audiences it was issued for.
pub fn token_user(store: &Store, token: &str) -> Option<(User, Vec<String>)> {
    if token == ADMIN_TOKEN {
        return Some((User::admin(), vec![API_AUDIENCE.into()]));
    }
    let (ns, name, uid, audiences) = match token.strip_prefix("sim-sa:") {
        Some(rest) => {
            let mut parts = rest.splitn(3, ':');
            let (ns, name, uid) = (parts.next()?, parts.next()?, parts.next()?);
            (ns.to_string(), name.to_string(), uid.to_string(), vec![API_AUDIENCE.to_string()])
        }
        None => {
            let claims = verify_jwt(&store.token_key, token)?;
            let now = jiff::Timestamp::now().as_second();
            if claims["exp"].as_i64()? <= now || claims["nbf"].as_i64().unwrap_or(0) > now {
                return None;
            }
            let k = &claims["kubernetes.io"];
            let audiences: Vec<String> =
                claims["aud"].as_array()?.iter().filter_map(|a| a.as_str().map(String::from)).collect();
            (
                k["namespace"].as_str()?.to_string(),
                k["serviceaccount"]["name"].as_str()?.to_string(),
                k["serviceaccount"]["uid"].as_str()?.to_string(),
                audiences,
            )
        }
    };
    if !audiences.iter().any(|a| a == API_AUDIENCE) {
        return None;
    }
    let sa = store.get("/serviceaccounts", &ns, &name)?;
    if sa["metadata"]["uid"] != uid.as_str() {
        return None;
    }
    Some((User::service_account(&ns, &name, &uid), audiences))
}

/// A signed service-account JWT with the real server's claims.
pub fn issue_token(key: &[u8], sa: &Value, audiences: &[String], expiration_seconds: i64) -> (String, i64) {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    let ns = sa["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = sa["metadata"]["name"].as_str().unwrap_or_default();
    let now = jiff::Timestamp::now().as_second();
    let exp = now + expiration_seconds;
    let header = json!({"alg": "HS256", "kid": b64(&blake3::hash(key).as_bytes()[..12])});
    let claims = json!({
        "aud": audiences, "exp": exp, "iat": now, "nbf": now,
        "iss": API_AUDIENCE,
        "jti": uuid_like(key, now),
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": name, "uid": sa["metadata"]["uid"]}},
        "sub": format!("system:serviceaccount:{ns}:{name}"),
    });
    let signing = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
    let tag = aws_lc_rs::hmac::sign(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key), signing.as_bytes());
    (format!("{signing}.{}", b64(tag.as_ref())), exp)
}

fn uuid_like(key: &[u8], now: i64) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let h = blake3::keyed_hash(blake3::hash(key).as_bytes(), format!("{now}/{n}").as_bytes()).to_hex();
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn verify_jwt(key: &[u8], token: &str) -> Option<Value> {
    use base64::Engine;
    let (signing, sig) = token.rsplit_once('.')?;
    let (_, claims) = signing.split_once('.')?;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let sig = b64.decode(sig).ok()?;
    aws_lc_rs::hmac::verify(&aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key), signing.as_bytes(), &sig)
        .ok()?;
    serde_json::from_slice(&b64.decode(claims).ok()?).ok()
}

/// The user a request acts as: the authenticated one, or whom it impersonates if it may.
pub fn impersonate(store: &Store, rbac: bool, real: User, req: &Req) -> ApiResult<User> {
    if req.impersonate_user.is_empty() {
        if !req.impersonate_groups.is_empty() {
            return Err(ApiError::internal(format!(
                "requested groups {:?} without impersonating a user",
                req.impersonate_groups
            )));
        }
        return Ok(real);
    }
    let name = req.impersonate_user.clone();
    let sa = name.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':'));
    let mut checks: Vec<Attributes> = Vec::new();
    let check = |resource: &str, name: &str, namespace: &str| Attributes {
        verb: "impersonate".into(),
        resource: resource.into(),
        name: name.into(),
        namespace: namespace.into(),
        ..Default::default()
    };
    match sa {
        Some((ns, n)) => checks.push(check("serviceaccounts", n, ns)),
        None => checks.push(check("users", &name, "")),
    }
    for g in &req.impersonate_groups {
        checks.push(check("groups", g, ""));
    }
    if rbac && let Some(c) = checks.iter().find(|c| !decide(store, &real, c).0) {
        return Err(forbidden(&real, c, &c.resource));
    }
    let mut groups = req.impersonate_groups.clone();
    if let Some((ns, _)) = sa
        && groups.is_empty()
    {
        groups = vec!["system:serviceaccounts".into(), format!("system:serviceaccounts:{ns}")];
    }
    if !groups.iter().any(|g| g == "system:authenticated" || g == "system:unauthenticated") {
        groups.push("system:authenticated".into());
    }
    Ok(User { name, uid: String::new(), groups })
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

/// `RuleAllows` of plugin/pkg/auth/authorizer/rbac/rbac.go.
fn rule_allows(rule: &Value, a: &Attributes) -> bool {
    let verbs = strs(&rule["verbs"]);
    if !(verbs.contains(&"*") || verbs.contains(&a.verb.as_str())) {
        return false;
    }
    if let Some(path) = &a.path {
        // NonResourceURLMatches: exact, or a prefix ending in `*`.
        return strs(&rule["nonResourceURLs"])
            .iter()
            .any(|u| *u == "*" || *u == path || u.strip_suffix('*').is_some_and(|prefix| path.starts_with(prefix)));
    }
    let groups = strs(&rule["apiGroups"]);
    let resources = strs(&rule["resources"]);
    let names = strs(&rule["resourceNames"]);
    let combined =
        if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let resource_ok = resources
        .iter()
        .any(|r| *r == "*" || *r == combined || (!a.subresource.is_empty() && *r == format!("*/{}", a.subresource)));
    (groups.contains(&"*") || groups.contains(&a.group.as_str()))
        && resource_ok
        && (names.is_empty() || (!a.name.is_empty() && names.contains(&a.name.as_str())))
}

/// `describeSubject` of pkg/registry/rbac/validation/rule.go.
fn describe_subject(s: &Value, binding_ns: &str) -> String {
    let kind = s["kind"].as_str().unwrap_or_default();
    let name = s["name"].as_str().unwrap_or_default();
    if kind == "ServiceAccount" {
        let ns = s["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(binding_ns);
        return format!("{kind} {:?}", format!("{name}/{ns}"));
    }
    format!("{kind} {name:?}")
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

/// Visits the rules a user has in a namespace (cluster-wide ones only for `""`), each
/// with the description of the binding that grants it, until `visit` returns false
/// (`VisitRulesFor` of pkg/registry/rbac/validation/rule.go).
fn visit_rules(store: &Store, user: &User, ns: &str, mut visit: impl FnMut(&dyn Fn() -> String, &Value) -> bool) {
    let role_rules = |kind: &str, name: &str, role_ns: &str| -> Vec<Value> {
        let obj = if kind == "ClusterRole" {
            store.get("rbac.authorization.k8s.io/clusterroles", "", name)
        } else {
            store.get("rbac.authorization.k8s.io/roles", role_ns, name)
        };
        obj.and_then(|o| o["rules"].as_array().cloned()).unwrap_or_default()
    };
    for b in store.list("rbac.authorization.k8s.io/clusterrolebindings", None) {
        let Some(subject) = b["subjects"].as_array().and_then(|s| s.iter().find(|s| subject_matches(s, user, "")))
        else {
            continue;
        };
        let role = b["roleRef"]["name"].as_str().unwrap_or_default();
        let describe = || {
            format!(
                "ClusterRoleBinding {:?} of ClusterRole {role:?} to {}",
                b["metadata"]["name"].as_str().unwrap_or_default(),
                describe_subject(subject, "")
            )
        };
        for r in role_rules("ClusterRole", role, "") {
            if !visit(&describe, &r) {
                return;
            }
        }
    }
    if ns.is_empty() {
        return;
    }
    for b in store.list("rbac.authorization.k8s.io/rolebindings", Some(ns)) {
        let Some(subject) = b["subjects"].as_array().and_then(|s| s.iter().find(|s| subject_matches(s, user, ns)))
        else {
            continue;
        };
        let kind = b["roleRef"]["kind"].as_str().unwrap_or("Role");
        let role = b["roleRef"]["name"].as_str().unwrap_or_default();
        let describe = || {
            format!(
                "RoleBinding {:?} of {kind} {role:?} to {}",
                format!("{}/{ns}", b["metadata"]["name"].as_str().unwrap_or_default()),
                describe_subject(subject, ns)
            )
        };
        for r in role_rules(kind, role, ns) {
            if !visit(&describe, &r) {
                return;
            }
        }
    }
}

/// Whether a user may do something, and the authorizer's reason.
pub fn decide(store: &Store, user: &User, a: &Attributes) -> (bool, String) {
    if user.privileged() {
        return (true, String::new());
    }
    let mut reason = None;
    visit_rules(store, user, &a.namespace, |describe, rule| {
        if rule_allows(rule, a) {
            reason = Some(format!("RBAC: allowed by {}", describe()));
            return false;
        }
        true
    });
    match reason {
        Some(r) => (true, r),
        None => (false, String::new()),
    }
}

/// The rules a user has in a namespace (`RulesFor`), as SelfSubjectRulesReview lists them:
/// resource rules and non-resource rules. Privileged users have everything.
pub fn rules_for(store: &Store, user: &User, ns: &str) -> (Vec<Value>, Vec<Value>) {
    let mut resource = Vec::new();
    let mut non_resource = Vec::new();
    if user.privileged() {
        resource.push(json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}));
        non_resource.push(json!({"verbs": ["*"], "nonResourceURLs": ["*"]}));
    }
    visit_rules(store, user, ns, |_, r| {
        if r["resources"].as_array().is_some_and(|a| !a.is_empty()) {
            let mut rule = json!({"verbs": r["verbs"]});
            for k in ["apiGroups", "resources", "resourceNames"] {
                if r[k].as_array().is_some_and(|a| !a.is_empty()) {
                    rule[k] = r[k].clone();
                }
            }
            resource.push(rule);
        }
        if r["nonResourceURLs"].as_array().is_some_and(|a| !a.is_empty()) {
            non_resource.push(json!({"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}));
        }
        true
    });
    (resource, non_resource)
}

/// The real 403 for a request `user` may not make (`qualified`: `plural.group`), as the
/// apiserver's `responsewriters.forbiddenMessage` words it.
fn forbidden(user: &User, a: &Attributes, qualified: &str) -> ApiError {
    let resource =
        if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let what = if a.name.is_empty() { qualified.to_string() } else { format!("{qualified} {:?}", a.name) };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", a.namespace)
    };
    let mut details = json!({"kind": a.resource});
    if !a.name.is_empty() {
        details["name"] = json!(a.name);
    }
    if !a.group.is_empty() {
        details["group"] = json!(a.group);
    }
    ApiError::status(
        403,
        "Forbidden",
        format!(
            "{what} is forbidden: User {:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            user.name, a.verb, a.group
        ),
        Some(details),
    )
}

/// Whether `user` may `verb` the target (a patch that would create its object needs
/// `create` as well: handlers/patch.go `createAuthorizerAttributes`).
pub fn authorize_verb(store: &Store, user: &User, verb: &str, t: &Target) -> ApiResult<()> {
    let name = t.name.as_deref();
    let ns = if t.rt.namespaced { t.namespace.as_deref() } else { None };
    let a = Attributes {
        verb: verb.into(),
        group: t.rt.group.clone(),
        resource: t.rt.plural.clone(),
        subresource: t.sub.clone().unwrap_or_default(),
        name: name.unwrap_or_default().into(),
        namespace: ns.unwrap_or_default().into(),
        path: None,
    };
    if decide(store, user, &a).0 {
        return Ok(());
    }
    Err(forbidden(user, &a, &t.rt.qualified()))
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
    let binding = |name: &str, groups: &[&str]| {
        let subjects: Vec<Value> = groups
            .iter()
            .map(|g| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g}))
            .collect();
        json!({"metadata": {"name": name, "labels": labels, "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
               "subjects": subjects})
    };
    // plugin/pkg/auth/authorizer/rbac/bootstrappolicy/policy.go
    let basic_user = json!([
        {"apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
        {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"], "verbs": ["create"]},
    ]);
    let discovery = json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]);
    let public_info =
        json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"], "verbs": ["get"]}]);
    vec![
        ("clusterroles", role("system:basic-user", basic_user)),
        ("clusterroles", role("system:discovery", discovery)),
        ("clusterroles", role("system:public-info-viewer", public_info)),
        ("clusterrolebindings", binding("system:basic-user", &["system:authenticated"])),
        ("clusterrolebindings", binding("system:discovery", &["system:authenticated"])),
        (
            "clusterrolebindings",
            binding("system:public-info-viewer", &["system:authenticated", "system:unauthenticated"]),
        ),
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
