//! Events: the core `v1` and `events.k8s.io/v1` APIs serve the same stored objects, as
//! on the real server, where both are views of one internal type. Objects are stored in
//! the core shape; the events.k8s.io view renames the fields on the way in and out.

use super::errors::Cause;
use serde_json::{Map, Value, json};

/// `(core v1 name, events.k8s.io/v1 name)` of the fields that differ.
const RENAMES: [(&str, &str); 7] = [
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("reportingComponent", "reportingController"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
];

fn rename(obj: &Value, from_v1: bool) -> Value {
    let Some(m) = obj.as_object() else { return obj.clone() };
    let mut out = Map::new();
    for (k, v) in m {
        let name = RENAMES
            .iter()
            .find_map(|(core, v1)| {
                if from_v1 && k == v1 {
                    Some(*core)
                } else if !from_v1 && k == core {
                    Some(*v1)
                } else {
                    None
                }
            })
            .unwrap_or(k);
        out.insert(name.to_string(), v.clone());
    }
    Value::Object(out)
}

/// An events.k8s.io/v1 body in the stored (core) shape.
pub fn to_core(v1: &Value) -> Value {
    let mut o = rename(v1, true);
    o["apiVersion"] = json!("v1");
    o["kind"] = json!("Event");
    o
}

/// A stored Event as events.k8s.io/v1 serializes it.
pub fn to_v1(core: &Value) -> Value {
    let mut o = rename(core, false);
    if let Some(m) = o.as_object_mut() {
        // Omitted when empty in events.k8s.io/v1, always present in core v1.
        for k in ["reportingController", "reportingInstance"] {
            if m.get(k).is_some_and(|v| v.as_str() == Some("")) {
                m.remove(k);
            }
        }
        if m.get("deprecatedCount").is_some_and(|v| v.as_i64() == Some(0)) {
            m.remove("deprecatedCount");
        }
        for k in ["deprecatedSource", "regarding"] {
            m.entry(k).or_insert_with(|| json!({}));
        }
    }
    o
}

/// The keys a core v1 Event always serializes (non-pointer structs and strings without
/// `omitempty`), filled in as the real server does.
pub fn canonical(core: &mut Value) {
    let Some(m) = core.as_object_mut() else { return };
    for (k, v) in [
        ("involvedObject", json!({})),
        ("source", json!({})),
        ("firstTimestamp", Value::Null),
        ("lastTimestamp", Value::Null),
        ("eventTime", Value::Null),
        ("reportingComponent", json!("")),
        ("reportingInstance", json!("")),
    ] {
        m.entry(k).or_insert(v);
    }
    if m.get("count").is_some_and(|c| c.as_i64() == Some(0)) {
        m.remove("count");
    }
}

fn text<'a>(e: &'a Value, k: &str) -> &'a str {
    e[k].as_str().unwrap_or_default()
}

fn set(e: &Value, k: &str) -> bool {
    !e[k].is_null() && e[k] != json!("") && e[k] != json!({}) && e[k] != json!(0)
}

/// Validation of an Event in the core shape. `strict` is a create through events.k8s.io:
/// the new-style fields are required and the deprecated ones must be unset.
pub fn validate(e: &Value, strict: bool, old: Option<&Value>) -> Vec<Cause> {
    let mut c = Vec::new();
    let ns = e["metadata"]["namespace"].as_str().unwrap_or_default();
    let io_ns = e["involvedObject"]["namespace"].as_str().unwrap_or_default();
    let mismatch = || Cause::invalid("involvedObject.namespace", &json!(io_ns), "does not match event.namespace");
    let controller_field = if strict { "reportingController" } else { "reportingComponent" };
    if !set(e, "eventTime") {
        if io_ns.is_empty() {
            if !ns.is_empty() && ns != "default" {
                c.push(mismatch());
            }
        } else if io_ns != ns {
            c.push(mismatch());
        }
    } else {
        if io_ns.is_empty() && ns != "default" && ns != "kube-system" {
            c.push(mismatch());
        }
        if text(e, "reportingComponent").is_empty() {
            c.push(Cause::required(controller_field, ""));
        }
        if text(e, "reportingInstance").is_empty() {
            c.push(Cause::required("reportingInstance", ""));
        } else if text(e, "reportingInstance").len() > 128 {
            c.push(Cause::invalid("reportingInstance", &json!(""), "can have at most 128 characters"));
        }
        if text(e, "action").is_empty() {
            c.push(Cause::required("action", ""));
        } else if text(e, "action").len() > 128 {
            c.push(Cause::invalid("action", &json!(""), "can have at most 128 characters"));
        }
        if text(e, "reason").is_empty() {
            c.push(Cause::required("reason", ""));
        } else if text(e, "reason").len() > 128 {
            c.push(Cause::invalid("reason", &json!(""), "can have at most 128 characters"));
        }
        if text(e, "message").len() > 1024 {
            c.push(Cause::invalid("message", &json!(""), "can have at most 1024 characters"));
        }
    }
    if strict && old.is_none() {
        if !set(e, "eventTime") {
            c.push(Cause::required("eventTime", ""));
        }
        let t = text(e, "type");
        if t != "Normal" && t != "Warning" {
            c.push(Cause::invalid("type", &json!(""), &format!("has invalid value: {t}")));
        }
        for (k, name) in [("firstTimestamp", "firstTimestamp"), ("lastTimestamp", "lastTimestamp"), ("count", "count")]
        {
            if set(e, k) {
                c.push(Cause::invalid(name, &json!(""), "needs to be unset"));
            }
        }
        if set(&e["source"], "component") || set(&e["source"], "host") {
            c.push(Cause::invalid("source", &json!(""), "needs to be unset"));
        }
    }
    c
}
