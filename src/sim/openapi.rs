//! The OpenAPI v3 documents `kubectl` fetches before `apply`: an index of group versions
//! and, per group version, the schemas of its kinds.

use super::Server;
use super::api::{Reply, Req, ok};
use super::errors::{ApiError, ApiResult};
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// The schemas of the built-in kinds, from k8s-openapi's types (the upstream OpenAPI
/// definitions, descriptions included), as `components/schemas` entries: every
/// definition by name, and the definition name of each served (group, kind).
struct Builtin {
    definitions: Map<String, Value>,
    kinds: Vec<(&'static str, &'static str, String)>,
}

static BUILTIN: LazyLock<Builtin> = LazyLock::new(|| {
    use k8s_openapi::api::{
        apps, authentication, authorization, batch, coordination, core, events, policy, rbac, storage,
    };
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiext;
    let mut generator = schemars::generate::SchemaSettings::openapi3().into_generator();
    let mut kinds = Vec::new();
    macro_rules! kinds {
        ($($group:literal $kind:literal => $t:ty),* $(,)?) => {$(
            generator.subschema_for::<$t>();
            kinds.push(($group, $kind, <$t as schemars::JsonSchema>::schema_name().to_string()));
        )*};
    }
    kinds!(
        "" "ConfigMap" => core::v1::ConfigMap,
        "" "Endpoints" => core::v1::Endpoints,
        "" "Event" => core::v1::Event,
        "" "Namespace" => core::v1::Namespace,
        "" "Node" => core::v1::Node,
        "" "PersistentVolumeClaim" => core::v1::PersistentVolumeClaim,
        "" "PersistentVolume" => core::v1::PersistentVolume,
        "" "Pod" => core::v1::Pod,
        "" "Secret" => core::v1::Secret,
        "" "ServiceAccount" => core::v1::ServiceAccount,
        "" "Service" => core::v1::Service,
        "apps" "ControllerRevision" => apps::v1::ControllerRevision,
        "apps" "StatefulSet" => apps::v1::StatefulSet,
        "apps" "Deployment" => apps::v1::Deployment,
        "apps" "ReplicaSet" => apps::v1::ReplicaSet,
        "batch" "Job" => batch::v1::Job,
        "batch" "CronJob" => batch::v1::CronJob,
        "coordination.k8s.io" "Lease" => coordination::v1::Lease,
        "events.k8s.io" "Event" => events::v1::Event,
        "storage.k8s.io" "StorageClass" => storage::v1::StorageClass,
        "apiextensions.k8s.io" "CustomResourceDefinition" => apiext::CustomResourceDefinition,
        "rbac.authorization.k8s.io" "ClusterRole" => rbac::v1::ClusterRole,
        "rbac.authorization.k8s.io" "ClusterRoleBinding" => rbac::v1::ClusterRoleBinding,
        "rbac.authorization.k8s.io" "Role" => rbac::v1::Role,
        "rbac.authorization.k8s.io" "RoleBinding" => rbac::v1::RoleBinding,
        "policy" "PodDisruptionBudget" => policy::v1::PodDisruptionBudget,
        "authorization.k8s.io" "LocalSubjectAccessReview" => authorization::v1::LocalSubjectAccessReview,
        "authorization.k8s.io" "SelfSubjectAccessReview" => authorization::v1::SelfSubjectAccessReview,
        "authorization.k8s.io" "SelfSubjectRulesReview" => authorization::v1::SelfSubjectRulesReview,
        "authorization.k8s.io" "SubjectAccessReview" => authorization::v1::SubjectAccessReview,
        "authentication.k8s.io" "SelfSubjectReview" => authentication::v1::SelfSubjectReview,
        "authentication.k8s.io" "TokenReview" => authentication::v1::TokenReview,
        "authentication.k8s.io" "TokenRequest" => authentication::v1::TokenRequest,
        "autoscaling" "Scale" => k8s_openapi::api::autoscaling::v1::Scale,
    );
    let mut definitions = generator.take_definitions(true);
    for (group, kind, name) in &kinds {
        if let Some(d) = definitions.get_mut(name) {
            d["x-kubernetes-group-version-kind"] = json!([{"group": group, "kind": kind, "version": "v1"}]);
        }
    }
    Builtin { definitions, kinds }
});

/// Drops the fields of a built-in object its Go type does not have (decoding into Go
/// structs drops them) and returns their paths (`spec.foo`, `spec.containers[0].bar`),
/// for strict field validation. Unknown kinds and open objects are left alone.
pub fn drop_unknown_builtin_fields(group: &str, kind: &str, obj: &mut Value) -> Vec<String> {
    let Some((_, _, name)) = BUILTIN.kinds.iter().find(|(g, k, _)| *g == group && *k == kind) else {
        return Vec::new();
    };
    let Some(schema) = BUILTIN.definitions.get(name) else { return Vec::new() };
    let mut out = Vec::new();
    prune_with(schema, obj, "", &mut out);
    out.sort();
    out
}

/// A schema with its `$ref` (bare or in `allOf`) followed.
fn resolve(schema: &Value) -> &Value {
    let r = schema["$ref"].as_str().or_else(|| schema["allOf"][0]["$ref"].as_str());
    match r.and_then(|r| r.strip_prefix("#/components/schemas/")).and_then(|n| BUILTIN.definitions.get(n)) {
        Some(d) => resolve(d),
        None => schema,
    }
}

fn prune_with(schema: &Value, v: &mut Value, path: &str, out: &mut Vec<String>) {
    let schema = resolve(schema);
    match v {
        Value::Object(m) => {
            if let Some(props) = schema["properties"].as_object() {
                let unknown: Vec<String> = m.keys().filter(|k| !props.contains_key(*k)).cloned().collect();
                for k in unknown {
                    m.remove(&k);
                    out.push(if path.is_empty() { k } else { format!("{path}.{k}") });
                }
                for (k, child) in m.iter_mut() {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    prune_with(&props[k], child, &p, out);
                }
            } else if let Some(items) = schema.get("additionalProperties").filter(|a| a.is_object()) {
                for (k, child) in m.iter_mut() {
                    prune_with(items, child, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(a) if schema["type"] == "array" => {
            for (i, item) in a.iter_mut().enumerate() {
                prune_with(&schema["items"], item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// The definitions `roots` need: themselves and everything they reference.
fn closure(defs: &Map<String, Value>, roots: &[String], prefix: &str) -> Map<String, Value> {
    fn refs(v: &Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(r) = m.get("$ref").and_then(Value::as_str).and_then(|r| r.strip_prefix(prefix)) {
                    out.push(r.to_string());
                }
                m.values().for_each(|x| refs(x, prefix, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, prefix, out)),
            _ => {}
        }
    }
    let mut out = Map::new();
    let mut todo: Vec<String> = roots.to_vec();
    while let Some(name) = todo.pop() {
        if out.contains_key(&name) {
            continue;
        }
        let Some(d) = defs.get(&name) else { continue };
        refs(d, prefix, &mut todo);
        out.insert(name, d.clone());
    }
    out
}

/// A v3 schema tree as a v2 one: references point into `#/definitions/`.
fn to_v2(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    let x = match (k.as_str(), x.as_str()) {
                        ("$ref", Some(r)) => json!(r.replace("#/components/schemas/", "#/definitions/")),
                        _ => to_v2(x),
                    };
                    (k.clone(), x)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(to_v2).collect()),
        other => other.clone(),
    }
}

pub fn serve(server: &Server, rest: &[&str], _req: &Req) -> ApiResult<Reply> {
    let store = server.store();
    let mut gvs: Vec<(String, String)> = Vec::new();
    for t in &store.types {
        let p =
            if t.group.is_empty() { format!("api/{}", t.version) } else { format!("apis/{}/{}", t.group, t.version) };
        if !gvs.iter().any(|(x, _)| *x == p) {
            gvs.push((p, t.api_version()));
        }
    }
    match rest {
        ["v2"] => {
            let mut definitions = Map::new();
            for (name, d) in &BUILTIN.definitions {
                definitions.insert(name.clone(), to_v2(d));
            }
            for t in store.types.iter().filter(|t| t.is_custom()) {
                let mut schema = super::custom::schema(t).clone();
                schema["x-kubernetes-group-version-kind"] =
                    json!([{"group": t.group, "kind": t.kind, "version": t.version}]);
                definitions.insert(format!("{}.{}.{}", reverse(&t.group), t.version, t.kind), schema);
            }
            Ok(ok(
                200,
                json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "definitions": definitions}),
            ))
        }
        ["v3"] => {
            let paths: serde_json::Map<String, Value> = gvs
                .iter()
                .map(|(p, _)| {
                    (p.clone(), json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(p, store.rv))}))
                })
                .collect();
            Ok(ok(200, json!({"paths": paths})))
        }
        ["v3", path @ ..] => {
            let p = path.join("/");
            let Some((_, api_version)) = gvs.iter().find(|(x, _)| *x == p) else {
                return Err(ApiError::page_not_found());
            };
            let mut schemas = serde_json::Map::new();
            let mut paths = serde_json::Map::new();
            for t in store.types.iter().filter(|t| t.api_version() == *api_version) {
                let prefix = if t.group.is_empty() {
                    "io.k8s.api.core.v1".to_string()
                } else {
                    let g = t.group.split('.').next().unwrap_or_default();
                    if t.is_custom() {
                        reverse(&t.group) + "." + &t.version
                    } else {
                        format!("io.k8s.api.{g}.{}", t.version)
                    }
                };
                let builtin = BUILTIN.kinds.iter().find(|(g, k, _)| *g == t.group && *k == t.kind);
                match (&t.crd, builtin) {
                    (None, Some((_, _, name))) => {
                        schemas.extend(closure(
                            &BUILTIN.definitions,
                            std::slice::from_ref(name),
                            "#/components/schemas/",
                        ));
                    }
                    _ => {
                        let mut schema = match &t.crd {
                            Some(_) => super::custom::schema(t).clone(),
                            None => json!({"type": "object"}),
                        };
                        schema["x-kubernetes-group-version-kind"] =
                            json!([{"group": t.group, "kind": t.kind, "version": t.version}]);
                        schemas.insert(format!("{prefix}.{}", t.kind), schema);
                    }
                }
                let base = if t.group.is_empty() {
                    format!("/api/{}", t.version)
                } else {
                    format!("/apis/{}/{}", t.group, t.version)
                };
                let item = if t.namespaced {
                    format!("{base}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
                } else {
                    format!("{base}/{}/{{name}}", t.plural)
                };
                // kubectl looks for `fieldValidation` on the kind's PATCH to use server-side
                // field validation instead of downloading the v2 document.
                let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
                let param =
                    |n: &str| json!({"name": n, "in": "query", "schema": {"type": "string", "uniqueItems": true}});
                let op = |params: Vec<Value>| json!({"x-kubernetes-group-version-kind": gvk, "parameters": params, "responses": {}});
                paths.insert(item, json!({
                    "get": op(vec![]), "put": op(vec![param("dryRun"), param("fieldManager"), param("fieldValidation")]),
                    "patch": op(vec![param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")]),
                    "delete": op(vec![param("dryRun")]),
                    "parameters": [{"name": "name", "in": "path", "required": true, "schema": {"type": "string"}}],
                }));
            }
            Ok(ok(
                200,
                json!({
                    "openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.0"},
                    "paths": paths, "components": {"schemas": schemas},
                }),
            ))
        }
        _ => Err(ApiError::page_not_found()),
    }
}

fn reverse(group: &str) -> String {
    group.split('.').rev().collect::<Vec<_>>().join(".")
}

fn hash(p: &str, rv: u64) -> String {
    let h = blake3::hash(format!("{p}:{rv}").as_bytes());
    h.to_hex()[..32].to_uppercase()
}
