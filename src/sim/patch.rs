//! The patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902, with `test`), and
//! strategic merge patch (merge keys for the built-in types' lists, `$patch`,
//! `$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList`).

use super::managed::{PatchStrategy, Schema};
use serde_json::{Map, Value};

/// RFC 7386.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let t = target.as_object_mut().expect("object");
    for (k, v) in p {
        if v.is_null() {
            t.remove(k);
        } else {
            merge(t.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

/// Why a JSON patch failed: a malformed document (400) or an operation that could not be
/// applied (422).
#[derive(Debug)]
pub enum JsonPatchError {
    Decode(String),
    Apply,
}

/// RFC 6902, as the real server applies it (`gopkg.in/evanphx/json-patch.v4`
/// `patch.go`): paths are resolved by `findObject` (every segment but the last must lead
/// to an object or array; the root itself cannot be added to or removed), array indexes
/// may be negative (counted from the end), a missing `value` is null, `replace` of a
/// missing object member adds it, `copy` of a missing member copies null, and `test`
/// compares scalars by their JSON text.
pub fn json_patch(target: &mut Value, ops: &Value) -> Result<(), JsonPatchError> {
    let Some(ops) = ops.as_array() else {
        let what = match ops {
            Value::Object(_) => "object",
            Value::String(_) => "string",
            Value::Number(_) => "number",
            Value::Bool(_) => "bool",
            _ => "null",
        };
        return Err(JsonPatchError::Decode(format!(
            "json: cannot unmarshal {what} into Go value of type []handlers.jsonPatchOp"
        )));
    };
    for op in ops {
        apply_op(target, op).ok_or(JsonPatchError::Apply)?;
    }
    Ok(())
}

fn apply_op(doc: &mut Value, op: &Value) -> Option<()> {
    let kind = op["op"].as_str()?;
    let path = || op["path"].as_str();
    let value = || op.get("value").cloned().unwrap_or(Value::Null);
    match kind {
        "add" => {
            let (con, key) = find_object(doc, path()?)?;
            container_add(con, &key, value())
        }
        "remove" => {
            let (con, key) = find_object(doc, path()?)?;
            container_remove(con, &key).map(|_| ())
        }
        "replace" => {
            let p = path()?;
            if p.is_empty() {
                let v = value();
                if !(v.is_object() || v.is_array()) {
                    return None;
                }
                *doc = v;
                return Some(());
            }
            let (con, key) = find_object(doc, p)?;
            match con {
                Value::Object(m) => {
                    m.insert(key, value());
                }
                Value::Array(a) => {
                    let i = array_index(a.len(), &key)?;
                    a[i] = value();
                }
                _ => return None,
            }
            Some(())
        }
        "move" => {
            let (con, key) = find_object(doc, op["from"].as_str()?)?;
            let v = container_remove(con, &key)?;
            let (con, key) = find_object(doc, path()?)?;
            container_add(con, &key, v)
        }
        "copy" => {
            let (con, key) = find_object(doc, op["from"].as_str()?)?;
            let v = container_get(con, &key)?.cloned().unwrap_or(Value::Null);
            let (con, key) = find_object(doc, path()?)?;
            container_add(con, &key, v)
        }
        "test" => {
            let p = path()?;
            let want = op.get("value").unwrap_or(&Value::Null);
            let have = if p.is_empty() {
                Some(&*doc)
            } else {
                let (con, key) = find_object(doc, p)?;
                container_get(con, &key)?
            };
            match have.filter(|h| !h.is_null()) {
                // A missing (or null) member equals a missing or null value.
                None => want.is_null().then_some(()),
                Some(h) => json_equal(h, want).then_some(()),
            }
        }
        _ => None,
    }
}

/// `findObject`: the container the last segment of `path` is in, and that segment.
fn find_object<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let split: Vec<&str> = path.split('/').collect();
    if split.len() < 2 {
        return None;
    }
    let key = decode_key(split[split.len() - 1]);
    let mut cur = doc;
    for part in &split[1..split.len() - 1] {
        let part = decode_key(part);
        cur = match cur {
            Value::Object(m) => m.get_mut(&part)?,
            Value::Array(a) => {
                let i = array_index(a.len(), &part)?;
                &mut a[i]
            }
            _ => return None,
        };
        if !(cur.is_object() || cur.is_array()) {
            return None;
        }
    }
    Some((cur, key))
}

fn decode_key(k: &str) -> String {
    k.replace("~1", "/").replace("~0", "~")
}

/// Go's `strconv.Atoi`: an optional sign, then decimal digits.
fn atoi(s: &str) -> Option<i64> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// An existing element's index; negative ones count from the end.
fn array_index(len: usize, key: &str) -> Option<usize> {
    let len = len as i64;
    let mut i = atoi(key)?;
    if i < 0 {
        if i < -len {
            return None;
        }
        i += len;
    }
    (i < len).then_some(i as usize)
}

fn container_get<'a>(con: &'a Value, key: &str) -> Option<Option<&'a Value>> {
    match con {
        Value::Object(m) => Some(m.get(key)),
        Value::Array(a) => Some(Some(&a[array_index(a.len(), key)?])),
        _ => None,
    }
}

fn container_add(con: &mut Value, key: &str, v: Value) -> Option<()> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), v);
        }
        Value::Array(a) => {
            if key == "-" {
                a.push(v);
                return Some(());
            }
            let size = a.len() as i64 + 1;
            let mut i = atoi(key)?;
            if i >= size {
                return None;
            }
            if i < 0 {
                if i < -size {
                    return None;
                }
                i += size;
            }
            a.insert(i as usize, v);
        }
        _ => return None,
    }
    Some(())
}

fn container_remove(con: &mut Value, key: &str) -> Option<Value> {
    match con {
        Value::Object(m) => m.remove(key),
        Value::Array(a) => {
            let i = array_index(a.len(), key)?;
            Some(a.remove(i))
        }
        _ => None,
    }
}

/// `lazyNode.equal`: objects and arrays structurally, scalars by their compact JSON.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(v, w)| json_equal(v, w)),
        (Value::Object(_) | Value::Array(_), _) | (_, Value::Object(_) | Value::Array(_)) => false,
        _ => serde_json::to_string(a).ok() == serde_json::to_string(b).ok(),
    }
}

/// Strategic merge patch.
/// A strategic merge patch (apimachinery `util/strategicpatch`), merging each list as its
/// Go type's `+patchStrategy`/`+patchMergeKey` markers say (`schema`).
pub fn strategic(target: &mut Value, patch: &Value, schema: Schema) {
    strategic_map(target, patch, schema, true)
}

fn strategic_map(target: &mut Value, patch: &Value, schema: Schema, root: bool) {
    let Value::Object(p) = patch else {
        *target = patch.clone();
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        let mut clean = patch.clone();
        clean.as_object_mut().expect("object").remove("$patch");
        *target = clean;
        return;
    }
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    let retain: Option<Vec<String>> = p
        .get("$retainKeys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect());
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if let Some(field) = k.strip_prefix("$setElementOrder/") {
            let _ = field;
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let Some(list) = target.get_mut(field).and_then(Value::as_array_mut) {
                let remove: Vec<&Value> = v.as_array().map(|a| a.iter().collect()).unwrap_or_default();
                list.retain(|x| !remove.contains(&x));
            }
            continue;
        }
        let t = target.as_object_mut().expect("object");
        if v.is_null() {
            t.remove(k);
            continue;
        }
        if v.get("$patch").and_then(Value::as_str) == Some("delete") {
            t.remove(k);
            continue;
        }
        let cs = schema.field(k, root);
        match v {
            Value::Array(items) => {
                let current = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(k, current, items, cs);
                if let Some(order) = p.get(&format!("$setElementOrder/{k}")).and_then(Value::as_array) {
                    reorder(current, order, &cs.patch_strategy(k));
                }
            }
            Value::Object(_) => strategic_map(t.entry(k.clone()).or_insert(Value::Null), v, cs, false),
            _ => {
                t.insert(k.clone(), v.clone());
            }
        }
    }
    // Keys a patch sets an order for but does not otherwise mention.
    for (k, order) in p {
        if let Some(field) = k.strip_prefix("$setElementOrder/")
            && !p.contains_key(field)
            && let (Some(current), Some(order)) = (target.get_mut(field), order.as_array())
        {
            reorder(current, order, &schema.field(field, root).patch_strategy(field));
        }
    }
    if let (Some(keep), Some(t)) = (retain, target.as_object_mut()) {
        t.retain(|k, _| keep.contains(k));
    }
}

fn merge_list(field: &str, current: &mut Value, items: &[Value], schema: Schema) {
    let is_replace = |i: &Value| i.get("$patch").and_then(Value::as_str) == Some("replace");
    if items.iter().any(is_replace) {
        *current = Value::Array(items.iter().filter(|i| !is_replace(i)).cloned().collect());
        return;
    }
    let strategy = schema.patch_strategy(field);
    if let PatchStrategy::MergeKeyed(key) = &strategy {
        let key = key.as_str();
        if !current.is_array() {
            *current = Value::Array(Vec::new());
        }
        let original: Vec<Value> = current.as_array().cloned().unwrap_or_default();
        let list = current.as_array_mut().expect("array");
        for item in items {
            let id = item.get(key);
            let pos = list.iter().position(|x| x.get(key) == id && id.is_some());
            if item.get("$patch").and_then(Value::as_str) == Some("delete") {
                if let Some(i) = pos {
                    list.remove(i);
                }
                continue;
            }
            match pos {
                Some(i) => strategic_map(&mut list[i], item, schema.items(), false),
                None => {
                    let mut clean = Value::Null;
                    strategic_map(&mut clean, item, schema.items(), false);
                    list.push(clean);
                }
            }
        }
        // The order: the patch's items in patch order, with the items only the server has
        // slotted in by their live order (apimachinery's normalizeElementOrder).
        let patch_ids: Vec<&Value> = items.iter().filter_map(|i| i.get(key)).collect();
        let live_pos = |x: &Value| original.iter().position(|o| o.get(key).is_some() && o.get(key) == x.get(key));
        let (mut patched, server_only): (Vec<Value>, Vec<Value>) =
            list.drain(..).partition(|x| x.get(key).is_some_and(|id| patch_ids.contains(&id)));
        patched.sort_by_key(|x| patch_ids.iter().position(|id| Some(*id) == x.get(key)));
        let (mut l, mut r) = (server_only.into_iter().peekable(), patched.into_iter().peekable());
        loop {
            let take_left = match (l.peek(), r.peek()) {
                (Some(a), Some(b)) => matches!((live_pos(a), live_pos(b)), (Some(i), Some(j)) if i < j),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            let next = if take_left { l.next() } else { r.next() };
            list.extend(next);
        }
    } else if strategy == PatchStrategy::MergePrimitive {
        let list = current.as_array_mut().expect("array");
        for item in items {
            if !list.contains(item) {
                list.push(item.clone());
            }
        }
    } else {
        *current = Value::Array(items.to_vec());
    }
}

fn reorder(current: &mut Value, order: &[Value], strategy: &PatchStrategy) {
    let Some(list) = current.as_array_mut() else { return };
    let key = match strategy {
        PatchStrategy::MergeKeyed(k) => Some(k.as_str()),
        _ => None,
    };
    let pos = |x: &Value| {
        order.iter().position(|o| match key {
            Some(k) => o.get(k) == x.get(k),
            None => o == x,
        })
    };
    let mut indexed: Vec<(usize, Value)> = list.drain(..).enumerate().collect();
    indexed.sort_by_key(|(i, x)| (pos(x).unwrap_or(usize::MAX), *i));
    list.extend(indexed.into_iter().map(|(_, x)| x));
}

#[cfg(test)]
mod json_patch_tests {
    //! Cases from the behaviour of `gopkg.in/evanphx/json-patch.v4` (`patch.go`), the
    //! library the real server applies JSON patches with.
    use super::json_patch;
    use serde_json::{Value, json};

    fn run(doc: Value, ops: Value) -> Option<Value> {
        let mut d = doc;
        json_patch(&mut d, &ops).ok().map(|_| d)
    }

    #[test]
    fn arrays_take_negative_indexes_and_reject_out_of_range() {
        let doc = json!({"a": [1, 2, 3]});
        assert_eq!(
            run(doc.clone(), json!([{"op": "add", "path": "/a/-1", "value": 9}])),
            Some(json!({"a": [1, 2, 3, 9]}))
        );
        assert_eq!(
            run(doc.clone(), json!([{"op": "add", "path": "/a/3", "value": 9}])),
            Some(json!({"a": [1, 2, 3, 9]}))
        );
        assert_eq!(run(doc.clone(), json!([{"op": "add", "path": "/a/4", "value": 9}])), None);
        assert_eq!(run(doc.clone(), json!([{"op": "remove", "path": "/a/-1"}])), Some(json!({"a": [1, 2]})));
        assert_eq!(
            run(doc.clone(), json!([{"op": "replace", "path": "/a/-3", "value": 0}])),
            Some(json!({"a": [0, 2, 3]}))
        );
        assert_eq!(run(doc.clone(), json!([{"op": "remove", "path": "/a/3"}])), None);
        assert_eq!(run(doc, json!([{"op": "add", "path": "/a/x", "value": 9}])), None);
    }

    #[test]
    fn replace_of_a_missing_member_adds_it_and_missing_values_are_null() {
        let doc = json!({"a": 1});
        assert_eq!(
            run(doc.clone(), json!([{"op": "replace", "path": "/b", "value": 2}])),
            Some(json!({"a": 1, "b": 2}))
        );
        assert_eq!(run(doc.clone(), json!([{"op": "add", "path": "/b"}])), Some(json!({"a": 1, "b": null})));
        assert_eq!(
            run(doc.clone(), json!([{"op": "copy", "from": "/zz", "path": "/c"}])),
            Some(json!({"a": 1, "c": null}))
        );
        // The root cannot be added to or removed; it can be replaced by an object or array.
        assert_eq!(run(doc.clone(), json!([{"op": "add", "path": "", "value": {}}])), None);
        assert_eq!(run(doc.clone(), json!([{"op": "remove", "path": ""}])), None);
        assert_eq!(run(doc.clone(), json!([{"op": "replace", "path": "", "value": {"x": 1}}])), Some(json!({"x": 1})));
        assert_eq!(run(doc, json!([{"op": "replace", "path": "", "value": 3}])), None);
    }

    #[test]
    fn move_copy_and_test() {
        let doc = json!({"a": {"b": 1}, "l": [1, 2]});
        assert_eq!(
            run(doc.clone(), json!([{"op": "move", "from": "/a/b", "path": "/c"}])),
            Some(json!({"a": {}, "c": 1, "l": [1, 2]}))
        );
        // Into its own child: the source is gone when the destination is looked up.
        assert_eq!(run(doc.clone(), json!([{"op": "move", "from": "/a", "path": "/a/x"}])), None);
        assert_eq!(run(doc.clone(), json!([{"op": "move", "from": "/nope", "path": "/c"}])), None);
        assert_eq!(
            run(doc.clone(), json!([{"op": "copy", "from": "/l", "path": "/l/0"}])),
            Some(json!({"a": {"b": 1}, "l": [[1, 2], 1, 2]}))
        );
        assert!(run(doc.clone(), json!([{"op": "test", "path": "/a", "value": {"b": 1}}])).is_some());
        assert!(
            run(doc.clone(), json!([{"op": "test", "path": "/a/b", "value": 1.0}])).is_none(),
            "1 and 1.0 differ as text"
        );
        assert!(run(doc.clone(), json!([{"op": "test", "path": "/missing", "value": null}])).is_some());
        assert!(run(doc.clone(), json!([{"op": "test", "path": "/missing", "value": 0}])).is_none());
        assert!(run(doc.clone(), json!([{"op": "test", "path": "", "value": {"a": {"b": 1}, "l": [1, 2]}}])).is_some());
        assert!(run(doc.clone(), json!([{"op": "test", "path": "/l/5", "value": null}])).is_none());
        assert!(run(doc, json!([{"op": "frobnicate", "path": "/a"}])).is_none());
    }
}
