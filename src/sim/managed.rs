//! `metadata.managedFields`: which manager set which fields (FieldsV1), as the real
//! server tracks them for updates, patches and server-side apply.

use serde_json::{Map, Value, json};
use std::collections::BTreeSet;

/// A field path in FieldsV1 tokens (`f:spec`, `k:{"name":"a"}`, `.`).
pub type Path = Vec<String>;

/// Keys of associative lists of the built-in types, by field name: the identity of an
/// item for managedFields and server-side apply; the first is the strategic-merge key.
pub fn list_keys(field: &str) -> Option<&'static [&'static str]> {
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "env"
        | "volumeMounts"
        | "imagePullSecrets"
        | "volumeClaimTemplates" => &["name"],
        "ports" => &["containerPort", "protocol"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "volumeDevices" => &["devicePath"],
        _ => return None,
    })
}

fn key_token(item: &Value, keys: &[&str]) -> Option<String> {
    let mut m = Map::new();
    for k in keys {
        match item.get(*k) {
            Some(v) => {
                m.insert(k.to_string(), v.clone());
            }
            // `protocol` defaults to TCP for ports.
            None if *k == "protocol" => {
                m.insert(k.to_string(), json!("TCP"));
            }
            None => return None,
        }
    }
    Some(format!("k:{}", Value::Object(m)))
}

/// Top-level fields never tracked.
fn ignored(path: &[String], name: &str) -> bool {
    match path.len() {
        0 => matches!(name, "apiVersion" | "kind"),
        1 if path[0] == "f:metadata" => matches!(
            name,
            "name"
                | "namespace"
                | "uid"
                | "resourceVersion"
                | "generation"
                | "creationTimestamp"
                | "managedFields"
                | "selfLink"
                | "deletionTimestamp"
                | "deletionGracePeriodSeconds"
                | "generateName"
        ),
        _ => false,
    }
}

/// Every field path set in `v` (leaves, and `.` for maps and list items that are set).
pub fn paths(v: &Value) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), None, &mut out);
    out
}

fn walk(v: &Value, path: &mut Vec<String>, field: Option<&str>, out: &mut BTreeSet<Path>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                if ignored(path, k) {
                    continue;
                }
                path.push(format!("f:{k}"));
                let nested = match child {
                    Value::Object(c) => !c.is_empty() && !atomic(k, c),
                    Value::Array(_) => list_keys(k).is_some(),
                    _ => false,
                };
                if nested {
                    // The map or list itself is owned, except the top-level metadata.
                    if !(path.len() == 1 && k == "metadata") {
                        let mut p = path.clone();
                        p.push(".".into());
                        out.insert(p);
                    }
                    walk(child, path, Some(k), out);
                } else {
                    out.insert(path.clone());
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            let Some(keys) = field.and_then(list_keys) else { return };
            for item in items {
                let Some(tok) = key_token(item, keys) else { continue };
                path.push(tok);
                let mut p = path.clone();
                p.push(".".into());
                out.insert(p);
                walk(item, path, None, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Structs the built-in schemas mark atomic (`+structType=atomic`): owned as a whole.
/// A label selector is one; a Service's `selector` (a plain string map) is not.
fn atomic(field: &str, m: &Map<String, Value>) -> bool {
    matches!(field, "selector" | "labelSelector" | "namespaceSelector")
        && (m.contains_key("matchLabels") || m.contains_key("matchExpressions"))
}

/// The fields an applied configuration sets: like [`paths`], but a map is owned through
/// its fields only (no `.`), while a list item is owned as an item too.
pub fn applied_paths(v: &Value) -> BTreeSet<Path> {
    paths(v)
        .into_iter()
        .filter(|p| {
            let n = p.len();
            !(n >= 2 && p[n - 1] == "." && p[n - 2].starts_with("f:"))
        })
        .collect()
}

/// Paths whose value differs between `old` and `new` (added or changed leaves, and the
/// `.` of maps that appear), plus the paths that were removed.
pub fn changed(old: &Value, new: &Value) -> (BTreeSet<Path>, BTreeSet<Path>) {
    let (po, pn) = (paths(old), paths(new));
    let mut changed = BTreeSet::new();
    for p in &pn {
        if !po.contains(p) || value_at(old, p) != value_at(new, p) {
            changed.insert(p.clone());
        }
    }
    let removed = po.difference(&pn).cloned().collect();
    (changed, removed)
}

/// The value a path designates (maps and list items only by their `.`: compare leaves).
pub fn value_at<'a>(v: &'a Value, p: &Path) -> Option<&'a Value> {
    let mut cur = v;
    let mut field: Option<&str> = None;
    for tok in p {
        if tok == "." {
            // Presence of the map or item itself: equal whenever both exist.
            return Some(&Value::Null);
        }
        if let Some(name) = tok.strip_prefix("f:") {
            cur = cur.get(name)?;
            field = Some(name);
        } else if let Some(k) = tok.strip_prefix("k:") {
            let keys = field.and_then(list_keys)?;
            let want: Value = serde_json::from_str(k).ok()?;
            cur = cur.as_array()?.iter().find(|i| key_token(i, keys).is_some_and(|t| t[2..] == want))?;
            field = None;
        }
    }
    Some(cur)
}

/// FieldsV1 tree from paths.
pub fn to_fields(paths: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for tok in p {
            cur = cur.entry(tok.clone()).or_insert_with(|| json!({})).as_object_mut().expect("object");
        }
    }
    Value::Object(root)
}

/// Paths from a FieldsV1 tree.
pub fn from_fields(v: &Value) -> BTreeSet<Path> {
    fn go(v: &Value, path: &mut Vec<String>, out: &mut BTreeSet<Path>) {
        let Some(m) = v.as_object() else { return };
        for (k, child) in m {
            path.push(k.clone());
            if child.as_object().is_none_or(|c| c.is_empty()) {
                out.insert(path.clone());
            } else {
                go(child, path, out);
            }
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    go(v, &mut Vec::new(), &mut out);
    out
}

/// Who writes, for managedFields.
#[derive(Debug, Clone)]
pub struct Writer<'a> {
    pub manager: &'a str,
    /// `Update` or `Apply`.
    pub operation: &'a str,
    pub api_version: &'a str,
    /// `status` for writes through the status subresource.
    pub subresource: Option<&'a str>,
}

/// Records an Update-style write (`old` is `None` on create) in `new`'s managedFields.
pub fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer, now: &str) {
    let mut entries: Vec<Value> =
        old.and_then(|o| o["metadata"]["managedFields"].as_array().cloned()).unwrap_or_default();
    let empty = json!({});
    let (changed, removed) = changed(old.unwrap_or(&empty), &strip(new));
    if changed.is_empty() && removed.is_empty() && old.is_some() {
        new["metadata"]["managedFields"] = json!(entries);
        return;
    }
    let sub = w.subresource.unwrap_or("");
    let mut mine: BTreeSet<Path> = BTreeSet::new();
    for e in entries.iter_mut() {
        let same = e["manager"] == w.manager
            && e["operation"] == w.operation
            && e["subresource"].as_str().unwrap_or("") == sub
            && e["apiVersion"] == w.api_version;
        let mut set = from_fields(&e["fieldsV1"]);
        if same {
            mine = set;
            continue;
        }
        let before = set.len();
        set.retain(|p| !changed.contains(p) && !removed.contains(p));
        if set.len() != before {
            e["fieldsV1"] = to_fields(&set);
        }
    }
    entries.retain(|e| {
        !(e["manager"] == w.manager
            && e["operation"] == w.operation
            && e["subresource"].as_str().unwrap_or("") == sub
            && e["apiVersion"] == w.api_version)
            && e["fieldsV1"].as_object().is_some_and(|m| !m.is_empty())
    });
    mine.retain(|p| !removed.contains(p));
    mine.extend(changed);
    // A map whose every field is gone is no longer owned as a map either.
    let live = paths(&strip(new));
    mine.retain(|p| live.contains(p));
    if !mine.is_empty() {
        let mut e = json!({
            "manager": w.manager, "operation": w.operation, "apiVersion": w.api_version,
            "time": now, "fieldsType": "FieldsV1", "fieldsV1": to_fields(&mine),
        });
        if let Some(s) = w.subresource {
            e["subresource"] = json!(s);
        }
        entries.push(e);
    }
    new["metadata"]["managedFields"] = json!(entries);
}

/// The object without its managedFields (they are not fields of the object).
fn strip(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    v
}
