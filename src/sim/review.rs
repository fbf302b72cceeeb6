//! Questions asked by creating an object: the access reviews (`kubectl auth can-i`), the
//! identity reviews (`kubectl auth whoami`, TokenReview) and TokenRequest (`kubectl
//! create token`). The answer is the created object's status; nothing is stored.
//!
//! Followed from kubernetes/kubernetes: pkg/registry/authorization/*/rest.go (each
//! review's Create), pkg/apis/authorization/validation/validation.go (what is refused),
//! pkg/registry/authentication/{tokenreview,selfsubjectreview}/storage.go,
//! pkg/registry/core/serviceaccount/storage/token.go and
//! pkg/apis/authentication/validation/validation.go (TokenRequest).

use super::api::{Reply, Req, Target, ok};
use super::errors::{ApiError, ApiResult, Cause, render_value};
use super::rbac::{self, Attributes, User};
use super::{Server, write};
use serde_json::{Value, json};

/// `POST` of a review kind.
/// `me` is who asks (impersonation applied).
pub fn create(server: &Server, req: &Req, t: &Target, me: &User) -> ApiResult<Reply> {
    let obj = write::decode(req, &t.rt)?;
    write::check_kind(&t.rt, &obj)?;
    let spec = obj["spec"].clone();
    let status = match t.rt.kind.as_str() {
        "SelfSubjectAccessReview" => {
            validate_access(t, &obj, false)?;
            access_status(server, me, &spec)
        }
        "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            validate_access(t, &obj, true)?;
            let user = User {
                name: spec["user"].as_str().unwrap_or_default().into(),
                uid: spec["uid"].as_str().unwrap_or_default().into(),
                groups: strings(&spec["groups"]),
            };
            access_status(server, &user, &spec)
        }
        "SelfSubjectRulesReview" => {
            let ns = spec["namespace"].as_str().unwrap_or_default();
            if ns.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            let (resource, non_resource) = if server.rbac() {
                rbac::rules_for(&server.store(), me, ns)
            } else {
                // AlwaysAllow lists everything.
                (
                    vec![json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]})],
                    vec![json!({"verbs": ["*"], "nonResourceURLs": ["*"]})],
                )
            };
            json!({"resourceRules": resource, "nonResourceRules": non_resource, "incomplete": false})
        }
        "SelfSubjectReview" => json!({"userInfo": user_info(me)}),
        "TokenReview" => {
            let token = spec["token"].as_str().unwrap_or_default();
            let wanted = strings(&spec["audiences"]);
            match rbac::token_user(&server.store(), token) {
                Some((user, audiences)) if wanted.is_empty() || wanted.iter().any(|a| audiences.contains(a)) => {
                    let audiences = if wanted.is_empty() { audiences } else { wanted };
                    json!({"authenticated": true, "user": user_info(&user), "audiences": audiences})
                }
                _ => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
            }
        }
        other => return Err(ApiError::internal(format!("{other} is not a review"))),
    };
    let mut out = obj;
    out["apiVersion"] = json!(t.rt.api_version());
    out["kind"] = json!(t.rt.kind);
    if !out["metadata"].is_object() {
        out["metadata"] = json!({});
    }
    if t.rt.kind == "LocalSubjectAccessReview" {
        out["metadata"]["namespace"] = json!(t.namespace);
    }
    out["status"] = status;
    Ok(ok(201, out))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
}

fn user_info(u: &User) -> Value {
    let mut v = json!({"username": u.name, "groups": u.groups});
    if !u.uid.is_empty() {
        v["uid"] = json!(u.uid);
    }
    v
}

/// The checks of `ValidateSubjectAccessReview`, `ValidateSelfSubjectAccessReview` and
/// `ValidateLocalSubjectAccessReview` (validation.go, v1.36).
fn validate_access(t: &Target, obj: &Value, subject: bool) -> ApiResult<()> {
    let spec = &obj["spec"];
    let res = &spec["resourceAttributes"];
    let non = &spec["nonResourceAttributes"];
    let mut causes = Vec::new();
    if res.is_object() == non.is_object() {
        causes.push(Cause::invalid(
            "spec",
            non,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    }
    if subject && spec["user"].as_str().unwrap_or_default().is_empty() && strings(&spec["groups"]).is_empty() {
        causes.push(Cause::invalid("spec.user", &json!(""), "at least one of user or group must be specified"));
    }
    let mut meta = obj["metadata"].as_object().cloned().unwrap_or_default();
    meta.remove("managedFields");
    let local = t.rt.kind == "LocalSubjectAccessReview";
    if local {
        meta.remove("namespace");
    }
    meta.retain(|_, v| !(v.is_null() || v.as_str() == Some("") || v.as_object().is_some_and(|o| o.is_empty())));
    if !meta.is_empty() {
        let detail = if local { "must be empty except for namespace" } else { "must be empty" };
        causes.push(Cause::new(
            "FieldValueInvalid",
            "metadata",
            format!("Invalid value: {}: {detail}", render_value(&obj["metadata"])),
        ));
    }
    if local {
        let ns = t.namespace.as_deref().unwrap_or_default();
        let meta_ns = obj["metadata"]["namespace"].as_str().unwrap_or(ns);
        if meta_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        if res.is_object() && res["namespace"].as_str().unwrap_or_default() != ns {
            causes.push(Cause::invalid(
                "spec.resourceAttributes.namespace",
                &res["namespace"],
                "must match metadata.namespace",
            ));
        }
        if non.is_object() {
            causes.push(Cause::invalid("spec.nonResourceAttributes", non, "disallowed on this kind of request"));
        }
    }
    if causes.is_empty() { Ok(()) } else { Err(ApiError::invalid(&t.rt, &t.rt.kind, "", causes)) }
}

/// A review's answer: `allowed`, and the authorizer's reason.
fn access_status(server: &Server, user: &User, spec: &Value) -> Value {
    let res = &spec["resourceAttributes"];
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let a = if res.is_object() {
        Attributes {
            verb: s(&res["verb"]),
            group: s(&res["group"]),
            resource: s(&res["resource"]),
            subresource: s(&res["subresource"]),
            name: s(&res["name"]),
            namespace: s(&res["namespace"]),
            path: None,
        }
    } else {
        let non = &spec["nonResourceAttributes"];
        Attributes { verb: s(&non["verb"]), path: Some(s(&non["path"])), ..Default::default() }
    };
    let (allowed, reason) = if server.rbac() { rbac::decide(&server.store(), user, &a) } else { (true, String::new()) };
    let mut status = json!({"allowed": allowed});
    if !reason.is_empty() {
        status["reason"] = json!(reason);
    }
    status
}

/// `POST serviceaccounts/{name}/token`: a TokenRequest answered with a signed token.
pub fn token(server: &Server, req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    let mut obj = if req.body.is_empty() {
        json!({})
    } else {
        serde_json::from_slice(&req.body)
            .map_err(|e| ApiError::bad_request(format!("error decoding TokenRequest: {e}")))?
    };
    let kind = obj["kind"].as_str().unwrap_or("TokenRequest");
    if kind != "TokenRequest" {
        return Err(ApiError::bad_request(format!("not a TokenRequest: {kind}")));
    }
    let ns = t.namespace.clone().unwrap_or_default();
    let store = server.store();
    let sa = store.get("/serviceaccounts", &ns, name).cloned().ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    let spec = &mut obj["spec"];
    if spec["expirationSeconds"].is_null() {
        spec["expirationSeconds"] = json!(3600);
    }
    let exp = spec["expirationSeconds"].as_i64().unwrap_or(0);
    let mut causes = Vec::new();
    if exp < 600 {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(exp),
            "may not specify a duration less than 10 minutes",
        ));
    }
    if exp > 1 << 32 {
        causes.push(Cause::invalid(
            "spec.expirationSeconds",
            &json!(exp),
            "may not specify a duration larger than 2^32 seconds",
        ));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_in("authentication.k8s.io", "TokenRequest", "", causes));
    }
    let mut audiences = strings(&spec["audiences"]);
    if audiences.is_empty() {
        audiences = vec![rbac::API_AUDIENCE.to_string()];
        spec["audiences"] = json!(audiences);
    }
    let (token, expires) = rbac::issue_token(&store.token_key, &sa, &audiences, exp);
    let at = |secs: i64| jiff::Timestamp::from_second(secs).map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
    obj["apiVersion"] = json!("authentication.k8s.io/v1");
    obj["kind"] = json!("TokenRequest");
    obj["metadata"] =
        json!({"name": name, "namespace": ns, "creationTimestamp": at(jiff::Timestamp::now().as_second()).ok()});
    obj["status"] = json!({"token": token, "expirationTimestamp": at(expires).ok()});
    Ok(ok(201, obj))
}
