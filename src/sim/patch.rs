//! The patch types: JSON merge patch (RFC 7386), JSON patch (RFC 6902, with `test`), and
//! strategic merge patch (merge keys for the built-in types' lists, `$patch`,
//! `$setElementOrder`, `$retainKeys`, `$deleteFromPrimitiveList`).

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

/// RFC 6902.
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
        let path = op["path"].as_str().ok_or(JsonPatchError::Apply)?;
        match op["op"].as_str().unwrap_or_default() {
            "add" => add(target, path, op.get("value").cloned().ok_or(JsonPatchError::Apply)?)?,
            "remove" => {
                remove(target, path)?;
            }
            "replace" => {
                let v = op.get("value").cloned().ok_or(JsonPatchError::Apply)?;
                let slot = target.pointer_mut(path).ok_or(JsonPatchError::Apply)?;
                *slot = v;
            }
            "move" => {
                let from = op["from"].as_str().ok_or(JsonPatchError::Apply)?;
                let v = remove(target, from)?;
                add(target, path, v)?;
            }
            "copy" => {
                let from = op["from"].as_str().ok_or(JsonPatchError::Apply)?;
                let v = target.pointer(from).cloned().ok_or(JsonPatchError::Apply)?;
                add(target, path, v)?;
            }
            "test" => {
                // A missing member tests equal to null (the real server's json-patch
                // library does this; kube-runtime's finalizer helper relies on it).
                let v = target.pointer(path).unwrap_or(&Value::Null);
                if v != op.get("value").unwrap_or(&Value::Null) {
                    return Err(JsonPatchError::Apply);
                }
            }
            _ => return Err(JsonPatchError::Apply),
        }
    }
    Ok(())
}

fn split(path: &str) -> Result<(String, String), JsonPatchError> {
    let i = path.rfind('/').ok_or(JsonPatchError::Apply)?;
    Ok((path[..i].to_string(), path[i + 1..].replace("~1", "/").replace("~0", "~")))
}

fn add(target: &mut Value, path: &str, v: Value) -> Result<(), JsonPatchError> {
    if path.is_empty() {
        *target = v;
        return Ok(());
    }
    let (parent, last) = split(path)?;
    match target.pointer_mut(&parent).ok_or(JsonPatchError::Apply)? {
        Value::Object(m) => {
            m.insert(last, v);
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(v);
            } else {
                let i: usize = last.parse().map_err(|_| JsonPatchError::Apply)?;
                if i > a.len() {
                    return Err(JsonPatchError::Apply);
                }
                a.insert(i, v);
            }
        }
        _ => return Err(JsonPatchError::Apply),
    }
    Ok(())
}

fn remove(target: &mut Value, path: &str) -> Result<Value, JsonPatchError> {
    let (parent, last) = split(path)?;
    match target.pointer_mut(&parent).ok_or(JsonPatchError::Apply)? {
        Value::Object(m) => m.remove(&last).ok_or(JsonPatchError::Apply),
        Value::Array(a) => {
            let i: usize = last.parse().map_err(|_| JsonPatchError::Apply)?;
            if i >= a.len() {
                return Err(JsonPatchError::Apply);
            }
            Ok(a.remove(i))
        }
        _ => Err(JsonPatchError::Apply),
    }
}

/// The strategic-merge key of a list: the first of its associative keys
/// (`containerPort` for ports, whose apply identity also includes the protocol).
fn merge_key(field: &str) -> Option<&'static str> {
    super::managed::list_keys(field).map(|keys| keys[0])
}

/// Lists whose primitive items merge as a set.
fn primitive_merge(field: &str) -> bool {
    matches!(field, "finalizers")
}

/// Strategic merge patch.
pub fn strategic(target: &mut Value, patch: &Value) {
    strategic_map(target, patch)
}

fn strategic_map(target: &mut Value, patch: &Value) {
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
        match v {
            Value::Array(items) => {
                let current = t.entry(k.clone()).or_insert(Value::Array(Vec::new()));
                merge_list(k, current, items);
                if let Some(order) = p.get(&format!("$setElementOrder/{k}")).and_then(Value::as_array) {
                    reorder(k, current, order);
                }
            }
            Value::Object(_) => strategic_map(t.entry(k.clone()).or_insert(Value::Null), v),
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
            reorder(field, current, order);
        }
    }
    if let (Some(keep), Some(t)) = (retain, target.as_object_mut()) {
        t.retain(|k, _| keep.contains(k));
    }
}

fn merge_list(field: &str, current: &mut Value, items: &[Value]) {
    let is_replace = |i: &Value| i.get("$patch").and_then(Value::as_str) == Some("replace");
    if items.iter().any(is_replace) {
        *current = Value::Array(items.iter().filter(|i| !is_replace(i)).cloned().collect());
        return;
    }
    if let Some(key) = merge_key(field) {
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
                Some(i) => strategic_map(&mut list[i], item),
                None => {
                    let mut clean = Value::Null;
                    strategic_map(&mut clean, item);
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
    } else if primitive_merge(field) {
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

fn reorder(field: &str, current: &mut Value, order: &[Value]) {
    let Some(list) = current.as_array_mut() else { return };
    let key = merge_key(field);
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
