//! The OpenAPI v3 documents `kubectl` fetches before `apply`: an index of group versions
//! and, per group version, the schemas of its kinds.

use super::Server;
use super::api::{Reply, Req, ok};
use super::errors::{ApiError, ApiResult};
use serde_json::{Value, json};

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
        ["v2"] => Ok(ok(
            200,
            json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.33.0"}, "paths": {}, "definitions": {}}),
        )),
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
                let mut schema = match &t.crd {
                    Some(_) => super::custom::schema(t),
                    None => json!({"type": "object"}),
                };
                schema["x-kubernetes-group-version-kind"] =
                    json!([{"group": t.group, "kind": t.kind, "version": t.version}]);
                schemas.insert(format!("{prefix}.{}", t.kind), schema);
                if t.kind == "StatefulSet" {
                    schemas.insert(
                        format!("{prefix}.StatefulSetSpec"),
                        json!({"type": "object", "required": ["selector", "template"]}),
                    );
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
