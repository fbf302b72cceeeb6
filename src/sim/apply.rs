//! Server-side apply: the applied configuration is merged into the live object, fields
//! another manager owns with a different value are conflicts (unless forced), and fields
//! this manager stopped applying are removed when no one else owns them.

use super::api::{Reply, Req, Target, present};
use super::errors::{ApiError, ApiResult};
use super::managed::{self, Path, Schema};
use super::{Server, meta, write};
use serde_json::{Value, json};
use std::collections::BTreeSet;

pub fn apply(server: &Server, req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    let fv = write::validate_options(req, "PatchOptions", Some(write::APPLY_PATCH))?;
    let manager = req.q("fieldManager").unwrap_or_default().to_string();
    let mut force = req.q("force") == Some("true");
    let text = String::from_utf8_lossy(&req.body);
    let body: Value = serde_json::from_str(&text)
        .or_else(|_| serde_saphyr::from_str(&text))
        .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
    let (av, kind) = (body["apiVersion"].as_str().unwrap_or_default(), body["kind"].as_str().unwrap_or_default());
    if av.is_empty() || kind.is_empty() {
        let (g, v) = av.rsplit_once('/').unwrap_or(("", av));
        return Err(ApiError::bad_request(format!("invalid object type: {g}/{v}, Kind={kind}")));
    }
    // The server checks the name of the merged object (handlers/patch.go `checkName` after
    // the apply): an applied configuration without a name keeps the live object's, and
    // names nothing when there is no live object.
    let body_name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let name_error = |n: &str| {
        ApiError::bad_request(format!("the name of the object ({n}) does not match the name on the URL ({name})"))
    };
    if !body_name.is_empty() && body_name != name {
        return Err(name_error(&body_name));
    }
    let api_version = t.rt.api_version();
    let sub = t.sub.as_deref();
    let ns = t.namespace.clone().unwrap_or_default();
    let schema = Schema::for_type(&t.rt);
    // The applied configuration must be a valid typed object: no duplicate keys
    // (fieldmanager/internal/structuredmerge.go; not a Status error, so a 500).
    managed::merge(&mut Value::Null, &body, schema).map_err(|e| {
        let (g, v) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let gvk =
            if g.is_empty() { format!("/{v}, Kind={}", t.rt.kind) } else { format!("{g}/{v}, Kind={}", t.rt.kind) };
        ApiError::internal(format!("failed to create typed patch object ({ns}/{name}; {gvk}): {e}"))
    })?;
    let mut store = server.store();
    let applied: BTreeSet<Path> = managed::applied_paths(&scoped(&body, sub), schema);
    let Some(live) = store.get(&t.rt.key(), &ns, name).cloned() else {
        if sub.is_some() {
            return Err(ApiError::not_found(&t.rt, name));
        }
        if body_name.is_empty() {
            return Err(name_error(""));
        }
        let (mut obj, warnings) = write::create_in(&mut store, req, t, body, fv)?;
        obj["metadata"]["managedFields"] = json!([entry(&manager, &api_version, sub, &applied)]);
        let key = t.rt.key();
        let stored = if write::dry_run(req) { obj } else { store.put(&key, obj) };
        return Ok(Reply::Json { code: 201, body: present(&t.rt, &stored), warnings });
    };
    let mut entries: Vec<Value> = live["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    let is_mine =
        |e: &Value| e["manager"] == manager.as_str() && e["operation"] == "Apply" && e["subresource"].as_str() == sub;
    // Conflicts: fields others own whose value this apply changes.
    let mut conflicts: Vec<(String, String, Path)> = Vec::new();
    for e in entries.iter().filter(|e| !is_mine(e) && e["subresource"].as_str() == sub) {
        let theirs = managed::from_fields(&e["fieldsV1"]);
        for p in theirs.intersection(&applied) {
            if p.last().is_some_and(|l| l == ".") {
                continue;
            }
            if managed::value_at(&live, p, schema) != managed::value_at(&body, p, schema) {
                let who = e["manager"].as_str().unwrap_or_default().to_string();
                // Update managers are named with the version they wrote through.
                let how = if e["operation"] == "Update" {
                    format!(" using {}", e["apiVersion"].as_str().unwrap_or_default())
                } else {
                    String::new()
                };
                conflicts.push((who, how, p.clone()));
            }
        }
    }
    // kubectl moving from client-side to server-side apply (apimachinery
    // `managedfields/internal/lastappliedmanager.go`): conflicts on fields the
    // last-applied annotation set, still at those values, do not count.
    if !conflicts.is_empty() && !force && manager == "kubectl" {
        let last = live["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .as_str()
            .and_then(|a| serde_json::from_str::<Value>(a).ok())
            .filter(|l| l["apiVersion"] == api_version.as_str());
        if let Some(last) = last {
            let allowed: BTreeSet<Path> = managed::paths(&last, schema)
                .into_iter()
                .filter(|p| {
                    let here = managed::value_at(&live, p, schema);
                    here.is_some() && here == managed::value_at(&last, p, schema)
                })
                .collect();
            if conflicts.iter().all(|(_, _, p)| allowed.contains(p)) {
                // Applied with force: the fields move to kubectl.
                force = true;
            } else {
                conflicts.retain(|(_, _, p)| !allowed.contains(p));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    // Forced: the fields move to this manager.
    for e in entries.iter_mut().filter(|e| !is_mine(e)) {
        let mut set = managed::from_fields(&e["fieldsV1"]);
        let before = set.len();
        set.retain(|p| !conflicts.iter().any(|(_, _, c)| c == p));
        if set.len() != before {
            e["fieldsV1"] = managed::to_fields(&set);
        }
    }
    entries.retain(|e| e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty()));
    let previous: BTreeSet<Path> =
        entries.iter().find(|e| is_mine(e)).map(|e| managed::from_fields(&e["fieldsV1"])).unwrap_or_default();
    let others: BTreeSet<Path> =
        entries.iter().filter(|e| !is_mine(e)).flat_map(|e| managed::from_fields(&e["fieldsV1"])).collect();
    let mut merged = present(&t.rt, &live);
    managed::merge(&mut merged, &body, schema).map_err(ApiError::internal)?;
    // Fields this manager stopped applying go, unless another manager owns them (or
    // something inside them); a map's own `.` goes with its last field.
    for p in previous.difference(&applied) {
        let base: Vec<String> = p.iter().filter(|t| *t != ".").cloned().collect();
        let owned_by_others = others.iter().any(|o| o.starts_with(&base));
        let map_itself = p.last().is_some_and(|l| l == ".") && base.last().is_some_and(|l| l.starts_with("f:"));
        if !owned_by_others && !map_itself {
            managed::remove_path(&mut merged, &base, schema);
        }
    }
    merged["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"].clone();
    let unchanged_entry =
        entries.iter().find(|e| is_mine(e)).map(|e| managed::from_fields(&e["fieldsV1"])) == Some(applied.clone());
    entries.retain(|e| !is_mine(e));
    let mut mine = entry(&manager, &api_version, sub, &applied);
    // An apply that changes nothing records no time.
    let changes = {
        let mut a = merged.clone();
        let mut b = present(&t.rt, &live);
        a["metadata"].as_object_mut().map(|m| m.remove("managedFields"));
        b["metadata"].as_object_mut().map(|m| m.remove("managedFields"));
        a != b
    };
    if !changes && !unchanged_entry {
        mine.as_object_mut().map(|m| m.remove("time"));
    }
    if !changes && unchanged_entry {
        return Ok(Reply::Json { code: 200, body: present(&t.rt, &live), warnings: vec![] });
    }
    entries.push(mine);
    merged["metadata"]["managedFields"] = json!(entries);
    let (obj, warnings, _) = write::update_in(&mut store, req, t, name, merged, fv, "Apply")?;
    Ok(Reply::Json { code: 200, body: present(&t.rt, &obj), warnings })
}

/// What an apply to a subresource may set.
fn scoped(body: &Value, sub: Option<&str>) -> Value {
    match sub {
        Some("status") => json!({"status": body.get("status").cloned().unwrap_or(Value::Null)}),
        _ => {
            let mut b = body.clone();
            if let Some(m) = b.as_object_mut() {
                m.remove("status");
            }
            b
        }
    }
}

fn entry(manager: &str, api_version: &str, sub: Option<&str>, set: &BTreeSet<Path>) -> Value {
    let mut e = json!({
        "manager": manager, "operation": "Apply", "apiVersion": api_version, "time": meta::now(),
        "fieldsType": "FieldsV1", "fieldsV1": managed::to_fields(set),
    });
    if let Some(s) = sub {
        e["subresource"] = json!(s);
    }
    e
}

fn conflict_error(conflicts: &[(String, String, Path)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(who, how, p)| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {who:?}{how}"), "field": managed::render_path(p)}))
        .collect();
    let mut by: Vec<(String, Vec<String>)> = Vec::new();
    for (who, how, p) in conflicts {
        let key = format!("{who:?}{how}");
        match by.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => v.push(managed::render_path(p)),
            None => by.push((key, vec![managed::render_path(p)])),
        }
    }
    let n = conflicts.len();
    let message = if n == 1 {
        format!("Apply failed with 1 conflict: conflict with {}: {}", by[0].0, by[0].1[0])
    } else {
        let mut m = format!("Apply failed with {n} conflicts: ");
        let parts: Vec<String> = by
            .iter()
            .map(|(k, paths)| {
                let mut ps = paths.clone();
                ps.sort();
                format!("conflicts with {k}:\n{}", ps.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n"))
            })
            .collect();
        m.push_str(&parts.join("\n"));
        m
    };
    ApiError::status(409, "Conflict", message, Some(json!({"causes": causes})))
}
