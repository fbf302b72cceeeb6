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
        "containers" | "initContainers" | "ephemeralContainers" | "volumes" | "env" | "imagePullSecrets" => &["name"],
        "volumeMounts" => &["mountPath"],
        "ports" => &["containerPort", "protocol"],
        "conditions" => &["type"],
        "ownerReferences" => &["uid"],
        "volumeDevices" => &["devicePath"],
        _ => return None,
    })
}

/// How a strategic merge patch merges a list.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchStrategy {
    Replace,
    /// Items identified by this key are merged one by one.
    MergeKeyed(String),
    /// Scalars, merged as a set.
    MergePrimitive,
}

/// How a list merges and is owned (`x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq)]
pub enum ListType {
    /// Owned and replaced as a whole (the default for custom resources).
    Atomic,
    /// Scalars, owned one by one (`v:<value>`).
    Set,
    /// Items identified by these keys (`k:{...}`), owned and merged one by one.
    Map(Vec<String>),
}

/// The schema a value is read with, for managedFields and server-side apply
/// (structured-merge-diff's type information).
#[derive(Debug, Clone, Copy)]
pub enum Schema<'a> {
    /// Built-in kinds and every object's `metadata` (ObjectMeta): the Go type at this
    /// place (a message of the embedded protobuf descriptors) and the field it was
    /// reached through, whose `+listType`/`+patchStrategy` markers say how lists merge.
    /// Unknown types fall back to associative lists known by field name.
    Builtin(Typed),
    /// A node of a custom resource's structural schema; `None` where the schema says
    /// nothing (under `x-kubernetes-preserve-unknown-fields`): maps are granular and
    /// lists atomic there, as structured-merge-diff treats untyped values.
    Crd(Option<&'a Value>),
}

/// A built-in field's `+patchStrategy=merge`, with its `+patchMergeKey` if it has one.
fn merge_strategy(m: &Value) -> Option<Option<&str>> {
    m["patchStrategy"].as_str().filter(|s| s.split(',').any(|x| x == "merge")).map(|_| m["patchMergeKey"].as_str())
}

/// Where a built-in value is: its message, and the (message, field number) it is in.
#[derive(Debug, Clone, Copy, Default)]
pub struct Typed {
    msg: Option<usize>,
    via: Option<(usize, u32)>,
}

impl Typed {
    fn object_meta() -> Self {
        Typed { msg: super::protobuf::message_index("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta"), via: None }
    }

    fn markers(&self) -> &'static Value {
        match self.via {
            Some((m, f)) => super::protobuf::field_markers(m, f),
            None => &Value::Null,
        }
    }
}

impl<'a> Schema<'a> {
    /// The schema of an object of a type: its CRD's `openAPIV3Schema`, or the Go type of
    /// a built-in kind.
    pub fn for_type(rt: &'a super::registry::ResType) -> Self {
        match super::custom::schema(rt) {
            s if s.is_object() => Schema::Crd(Some(s)),
            _ => Schema::Builtin(Typed { msg: super::protobuf::kind_index(&rt.api_version(), &rt.kind), via: None }),
        }
    }

    /// How a strategic merge patch merges this field (its `+patchStrategy` and
    /// `+patchMergeKey`; known lists by field name where the type is not known).
    pub fn patch_strategy(self, field: &str) -> PatchStrategy {
        match self {
            Schema::Builtin(t) if t.via.is_some() => match merge_strategy(t.markers()) {
                Some(Some(k)) => PatchStrategy::MergeKeyed(k.to_string()),
                Some(None) => PatchStrategy::MergePrimitive,
                None => PatchStrategy::Replace,
            },
            _ => match list_keys(field) {
                Some(keys) => PatchStrategy::MergeKeyed(keys[0].to_string()),
                None if field == "finalizers" => PatchStrategy::MergePrimitive,
                None => PatchStrategy::Replace,
            },
        }
    }

    pub fn field(self, name: &str, root: bool) -> Self {
        match self {
            Schema::Builtin(t) => match t.msg.and_then(|m| super::protobuf::field_of(m, name).map(|f| (m, f))) {
                Some((m, (number, child))) => Schema::Builtin(Typed { msg: child, via: Some((m, number)) }),
                None if root && name == "metadata" => Schema::Builtin(Typed::object_meta()),
                None => Schema::Builtin(Typed::default()),
            },
            Schema::Crd(_) if root && name == "metadata" => Schema::Builtin(Typed::object_meta()),
            Schema::Crd(node) => Schema::Crd(node.and_then(|n| {
                n["properties"].get(name).or_else(|| n.get("additionalProperties").filter(|a| a.is_object()))
            })),
        }
    }

    pub fn items(self) -> Self {
        match self {
            // A repeated field's message is already its items' type.
            Schema::Builtin(t) => Schema::Builtin(Typed { msg: t.msg, via: None }),
            Schema::Crd(node) => Schema::Crd(node.and_then(|n| n.get("items"))),
        }
    }

    /// The list type of field `field` (this schema being the list's own node).
    pub fn list_type(self, field: &str) -> ListType {
        match self {
            Schema::Builtin(t) if t.via.is_some() => {
                // kube-openapi schemaconv: `+listType`, else a `merge` patch strategy makes
                // the list associative on its patch merge key (a set without one).
                let m = t.markers();
                let keys = |v: &Value| -> Vec<String> {
                    v.as_array().into_iter().flatten().filter_map(|k| k.as_str().map(String::from)).collect()
                };
                match m["listType"].as_str() {
                    Some("map") => ListType::Map(keys(&m["listMapKeys"])),
                    Some("set") => ListType::Set,
                    Some(_) => ListType::Atomic,
                    None => match merge_strategy(m) {
                        Some(Some(k)) => ListType::Map(vec![k.to_string()]),
                        Some(None) => ListType::Set,
                        None => ListType::Atomic,
                    },
                }
            }
            Schema::Builtin(_) => match list_keys(field) {
                Some(keys) => ListType::Map(keys.iter().map(|k| k.to_string()).collect()),
                None if field == "finalizers" => ListType::Set,
                None => ListType::Atomic,
            },
            Schema::Crd(node) => match node.and_then(|n| n["x-kubernetes-list-type"].as_str()) {
                Some("map") => ListType::Map(
                    node.and_then(|n| n["x-kubernetes-list-map-keys"].as_array())
                        .map(|ks| ks.iter().filter_map(|k| k.as_str().map(String::from)).collect())
                        .unwrap_or_default(),
                ),
                Some("set") => ListType::Set,
                _ => ListType::Atomic,
            },
        }
    }

    /// Whether a map is owned as a whole (`x-kubernetes-map-type: atomic`, or a
    /// built-in `+structType=atomic` selector).
    fn atomic_map(self, field: &str, m: &Map<String, Value>) -> bool {
        match self {
            Schema::Builtin(t) if t.via.is_some() => {
                let mk = t.markers();
                mk["mapType"] == "atomic"
                    || mk["structType"] == "atomic"
                    || t.msg.is_some_and(super::protobuf::message_atomic)
            }
            Schema::Builtin(_) => atomic(field, m),
            Schema::Crd(node) => node.is_some_and(|n| n["x-kubernetes-map-type"] == "atomic"),
        }
    }
}

/// The `k:{...}` token of an item (keys in order, as structured-merge-diff sorts them).
fn item_token(item: &Value, keys: &[String]) -> Option<String> {
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    key_token(item, &keys)
}

/// Whether a `k:{...}` token names these key values (compared as JSON, whatever the
/// order of the keys in the token).
fn token_is(token: &str, want: &Value) -> bool {
    token.strip_prefix("k:").and_then(|t| serde_json::from_str::<Value>(t).ok()).is_some_and(|v| v == *want)
}

/// The `v:<json>` token of a set item.
fn set_token(item: &Value) -> String {
    format!("v:{item}")
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
pub fn paths(v: &Value, schema: Schema) -> BTreeSet<Path> {
    let mut out = BTreeSet::new();
    walk(v, &mut Vec::new(), schema, &mut out);
    out
}

fn walk(v: &Value, path: &mut Vec<String>, schema: Schema, out: &mut BTreeSet<Path>) {
    let Value::Object(m) = v else { return };
    for (k, child) in m {
        if ignored(path, k) {
            continue;
        }
        let cs = schema.field(k, path.is_empty());
        path.push(format!("f:{k}"));
        let nested = match child {
            Value::Object(c) => !c.is_empty() && !cs.atomic_map(k, c),
            Value::Array(a) => !a.is_empty() && cs.list_type(k) != ListType::Atomic,
            _ => false,
        };
        if nested {
            // The map or list itself is owned, except the top-level metadata.
            if !(path.len() == 1 && k == "metadata") {
                let mut p = path.clone();
                p.push(".".into());
                out.insert(p);
            }
            match child {
                Value::Array(items) => walk_list(items, path, cs, k, out),
                _ => walk(child, path, cs, out),
            }
        } else {
            out.insert(path.clone());
        }
        path.pop();
    }
}

fn walk_list(items: &[Value], path: &mut Vec<String>, schema: Schema, field: &str, out: &mut BTreeSet<Path>) {
    match schema.list_type(field) {
        ListType::Map(keys) => {
            for item in items {
                let Some(tok) = item_token(item, &keys) else { continue };
                path.push(tok);
                let mut p = path.clone();
                p.push(".".into());
                out.insert(p);
                walk(item, path, schema.items(), out);
                path.pop();
            }
        }
        ListType::Set => {
            for item in items {
                let mut p = path.clone();
                p.push(set_token(item));
                out.insert(p);
            }
        }
        ListType::Atomic => {}
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
pub fn applied_paths(v: &Value, schema: Schema) -> BTreeSet<Path> {
    paths(v, schema)
        .into_iter()
        .filter(|p| {
            let n = p.len();
            !(n >= 2 && p[n - 1] == "." && p[n - 2].starts_with("f:"))
        })
        .collect()
}

/// Paths whose value differs between `old` and `new` (added or changed leaves, and the
/// `.` of maps that appear), plus the paths that were removed.
pub fn changed(old: &Value, new: &Value, schema: Schema) -> (BTreeSet<Path>, BTreeSet<Path>) {
    let (po, pn) = (paths(old, schema), paths(new, schema));
    let mut changed = BTreeSet::new();
    for p in &pn {
        if !po.contains(p) || value_at(old, p, schema) != value_at(new, p, schema) {
            changed.insert(p.clone());
        }
    }
    let removed = po.difference(&pn).cloned().collect();
    (changed, removed)
}

/// The value a path designates (maps and list items only by their `.`: compare leaves).
pub fn value_at<'a>(v: &'a Value, p: &Path, schema: Schema) -> Option<&'a Value> {
    let mut cur = v;
    let mut field: Option<&str> = None;
    let mut schema = schema;
    let mut root = true;
    for tok in p {
        if tok == "." {
            // Presence of the map or item itself: equal whenever both exist.
            return Some(&Value::Null);
        }
        if let Some(name) = tok.strip_prefix("f:") {
            cur = cur.get(name)?;
            schema = schema.field(name, root);
            field = Some(name);
        } else if let Some(k) = tok.strip_prefix("k:") {
            let ListType::Map(keys) = schema.list_type(field?) else { return None };
            let want: Value = serde_json::from_str(k).ok()?;
            cur = cur.as_array()?.iter().find(|i| item_token(i, &keys).is_some_and(|t| token_is(&t, &want)))?;
            schema = schema.items();
            field = None;
        } else if let Some(item) = tok.strip_prefix("v:") {
            let want: Value = serde_json::from_str(item).ok()?;
            cur = cur.as_array()?.iter().find(|i| **i == want)?;
            field = None;
        }
        root = false;
    }
    Some(cur)
}

/// Removes what a path designates: a field, a keyed item or a set value. A list left
/// empty goes too (custom resources drop nulls of non-nullable fields).
pub fn remove_path(v: &mut Value, p: &Path, schema: Schema) {
    let p: Path = p.iter().filter(|t| *t != ".").cloned().collect();
    if remove_one(v, &p, schema) {
        remove_path(v, &p[..p.len() - 1].to_vec(), schema);
    }
}

/// Removes one path's target; true when that emptied the list it was in.
fn remove_one(v: &mut Value, p: &[String], schema: Schema) -> bool {
    let Some((last, parents)) = p.split_last() else { return false };
    let mut cur = v;
    let mut schema = schema;
    let mut field: Option<String> = None;
    for (i, tok) in parents.iter().enumerate() {
        if let Some(name) = tok.strip_prefix("f:") {
            schema = schema.field(name, i == 0);
            field = Some(name.to_string());
            let Some(next) = cur.get_mut(name) else { return false };
            cur = next;
        } else if let Some(k) = tok.strip_prefix("k:") {
            let ListType::Map(keys) = field.as_deref().map_or(ListType::Atomic, |f| schema.list_type(f)) else {
                return false;
            };
            let Ok(want) = serde_json::from_str::<Value>(k) else { return false };
            let Some(next) = cur
                .as_array_mut()
                .and_then(|a| a.iter_mut().find(|i| item_token(i, &keys).is_some_and(|t| token_is(&t, &want))))
            else {
                return false;
            };
            cur = next;
            schema = schema.items();
            field = None;
        } else {
            return false;
        }
    }
    if let Some(n) = last.strip_prefix("f:") {
        if let Some(m) = cur.as_object_mut() {
            m.remove(n);
        }
        return false;
    }
    let Some(a) = cur.as_array_mut() else { return false };
    let before = a.len();
    if let Some(k) = last.strip_prefix("k:") {
        let ListType::Map(keys) = field.as_deref().map_or(ListType::Atomic, |f| schema.list_type(f)) else {
            return false;
        };
        let Ok(want) = serde_json::from_str::<Value>(k) else { return false };
        a.retain(|i| item_token(i, &keys).is_none_or(|t| !token_is(&t, &want)));
    } else if let Some(item) = last.strip_prefix("v:") {
        let Ok(want) = serde_json::from_str::<Value>(item) else { return false };
        a.retain(|i| *i != want);
    }
    a.is_empty() && before > 0
}

/// A path as structured-merge-diff prints it (`fieldpath/element.go`):
/// `.spec.routes[name="web"].port`, `.spec.ports[containerPort=80,protocol="TCP"]`,
/// `.metadata.finalizers[="a"]`.
pub fn render_path(p: &Path) -> String {
    p.iter()
        .filter(|t| *t != ".")
        .map(|t| {
            if let Some(n) = t.strip_prefix("f:") {
                format!(".{n}")
            } else if let Some(k) = t.strip_prefix("k:") {
                let keys: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
                let parts: Vec<String> = keys.iter().map(|(n, v)| format!("{n}={}", smd_string(v))).collect();
                format!("[{}]", parts.join(","))
            } else if let Some(v) = t.strip_prefix("v:") {
                format!("[={}]", serde_json::from_str::<Value>(v).map(|v| smd_string(&v)).unwrap_or_default())
            } else {
                t.clone()
            }
        })
        .collect()
}

/// `value.ToString` of structured-merge-diff: strings quoted, numbers and bools bare.
fn smd_string(v: &Value) -> String {
    match v {
        Value::String(s) => crate::api::field::go_quote(s),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// The merge of server-side apply (structured-merge-diff `typed/merge.go`): maps field
/// by field, associative lists item by item and sets value by value in the merged
/// order of `visitListItems`, anything atomic replaced. Errors name duplicate keys in
/// the applied configuration.
pub fn merge(target: &mut Value, applied: &Value, schema: Schema) -> Result<(), String> {
    merge_at(target, applied, schema, "", None, true)
}

fn merge_at(
    target: &mut Value,
    applied: &Value,
    schema: Schema,
    at: &str,
    field: Option<&str>,
    root: bool,
) -> Result<(), String> {
    match applied {
        Value::Object(p) if !field.is_some_and(|f| schema.atomic_map(f, p)) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            let t = target.as_object_mut().expect("object");
            for (k, v) in p {
                let cs = schema.field(k, root);
                let here = format!("{at}.{k}");
                match v {
                    Value::Null => {
                        t.remove(k);
                    }
                    Value::Object(_) | Value::Array(_) => {
                        merge_at(t.entry(k.clone()).or_insert(Value::Null), v, cs, &here, Some(k), false)?
                    }
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
            Ok(())
        }
        Value::Array(rhs) => {
            let lt = field.map_or(ListType::Atomic, |f| schema.list_type(f));
            let lhs: Vec<Value> = target.as_array().cloned().unwrap_or_default();
            if lt == ListType::Atomic || (lhs.is_empty() && rhs.is_empty()) {
                *target = applied.clone();
                return Ok(());
            }
            let token = |i: &Value| match &lt {
                ListType::Map(keys) => item_token(i, keys),
                _ => Some(set_token(i)),
            };
            let mut seen = BTreeSet::new();
            for r in rhs {
                if let Some(t) = token(r)
                    && !seen.insert(t.clone())
                {
                    return Err(format!("{at}: duplicate entries for key {}", render_path(&vec![t])));
                }
            }
            *target = Value::Array(merge_list(&lhs, rhs, token, |l, r| {
                let mut out = l.clone();
                if matches!(lt, ListType::Map(_)) {
                    merge_at(&mut out, r, schema.items(), at, None, false).map(|_| out)
                } else {
                    Ok(r.clone())
                }
            })?);
            Ok(())
        }
        _ => {
            *target = applied.clone();
            Ok(())
        }
    }
}

/// `visitListItems`: items both sides have are merged in the applied order, live-only
/// items keep their places, new items follow the item before them.
fn merge_list(
    lhs: &[Value],
    rhs: &[Value],
    token: impl Fn(&Value) -> Option<String>,
    mut merge_item: impl FnMut(&Value, &Value) -> Result<Value, String>,
) -> Result<Vec<Value>, String> {
    let lt: Vec<Option<String>> = lhs.iter().map(&token).collect();
    let rt: Vec<Option<String>> = rhs.iter().map(&token).collect();
    let in_rhs = |t: &Option<String>| t.is_some() && rt.contains(t);
    let in_lhs = |t: &Option<String>| t.is_some() && lt.contains(t);
    let mut shared: std::collections::VecDeque<&Option<String>> = rt.iter().filter(|t| in_lhs(t)).collect();
    let mut next_shared = shared.pop_front();
    let mut merged: BTreeSet<String> = BTreeSet::new();
    let mut out = Vec::new();
    let (mut li, mut ri) = (0, 0);
    let find_l = |t: &Option<String>| lt.iter().position(|x| x == t).map(|i| &lhs[i]);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len() && ri < rhs.len() {
            if lt[li].is_some() && lt[li] == rt[ri] {
                merged.insert(lt[li].clone().unwrap_or_default());
                out.push(merge_item(&lhs[li], &rhs[ri])?);
                li += 1;
                ri += 1;
                next_shared = shared.pop_front();
                continue;
            }
            if in_rhs(&lt[li]) && next_shared.is_some_and(|n| *n != lt[li]) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            if !in_rhs(&lt[li]) {
                out.push(lhs[li].clone());
                li += 1;
                continue;
            } else if lt[li].as_ref().is_some_and(|t| merged.contains(t)) {
                li += 1;
            }
        }
        if ri < rhs.len() {
            let t = &rt[ri];
            if let Some(t) = t {
                merged.insert(t.clone());
            }
            let item = match find_l(t).filter(|_| t.is_some()) {
                Some(l) => merge_item(l, &rhs[ri])?,
                None => merge_item(&Value::Null, &rhs[ri])?,
            };
            out.push(item);
            ri += 1;
            if next_shared.is_some_and(|n| n == t) {
                next_shared = shared.pop_front();
            }
        }
    }
    Ok(out)
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
struct Writer<'a> {
    /// How the object's fields merge (`Schema::for_type`).
    schema: Schema<'a>,
    manager: &'a str,
    /// `Update` or `Apply`.
    operation: &'a str,
    api_version: &'a str,
    /// `status` for writes through the status subresource.
    subresource: Option<&'a str>,
}

/// Records an Update by `manager` of an object of type `rt` (`old` is `None` on create),
/// through `subresource` if given, in `new`'s managedFields.
pub fn record_write(
    rt: &super::registry::ResType,
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: Option<&str>,
) {
    let w = Writer {
        schema: Schema::for_type(rt),
        manager,
        operation: "Update",
        api_version: &rt.api_version(),
        subresource,
    };
    record_update(old, new, &w, &super::meta::now());
}

/// Records an Update-style write (`old` is `None` on create) in `new`'s managedFields.
fn record_update(old: Option<&Value>, new: &mut Value, w: &Writer, now: &str) {
    let mut entries: Vec<Value> =
        old.and_then(|o| o["metadata"]["managedFields"].as_array().cloned()).unwrap_or_default();
    let empty = json!({});
    let schema = w.schema;
    let (changed, removed) = changed(old.unwrap_or(&empty), &strip(new), schema);
    if changed.is_empty() && removed.is_empty() && old.is_some() {
        if !entries.is_empty() {
            new["metadata"]["managedFields"] = json!(entries);
        }
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
    let live = paths(&strip(new), schema);
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
    // No manager left owning anything: the list is not written at all.
    if entries.is_empty() {
        if let Some(m) = new["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        new["metadata"]["managedFields"] = json!(entries);
    }
}

/// The object without its managedFields (they are not fields of the object).
fn strip(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v["metadata"].as_object_mut() {
        m.remove("managedFields");
    }
    v
}
