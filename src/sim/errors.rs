//! `Status` error bodies, shaped as kube-apiserver shapes them.

use super::registry::ResType;
use serde_json::{Value, json};

/// An API error: an HTTP code and a `Status` body (or plain text for unknown paths).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: u16,
    pub body: Value,
    /// Plain-text body (the mux's `404 page not found`).
    pub text: Option<&'static str>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn status(code: u16, reason: &str, message: impl Into<String>, details: Option<Value>) -> Self {
        let mut body = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message.into(), "reason": reason, "code": code,
        });
        if let Some(d) = details {
            body["details"] = d;
        }
        Self { code, body, text: None }
    }

    /// 500 as storage errors come out: no reason, no details.
    pub fn internal(message: impl Into<String>) -> Self {
        let mut e = Self::status(500, "", message, None);
        e.body.as_object_mut().expect("object").remove("reason");
        e
    }

    /// The mux's answer for a path no handler serves.
    pub fn page_not_found() -> Self {
        Self { code: 404, body: Value::Null, text: Some("404 page not found\n") }
    }

    pub fn no_resource() -> Self {
        Self::status(404, "NotFound", "the server could not find the requested resource", Some(json!({})))
    }

    pub fn not_found(rt: &ResType, name: &str) -> Self {
        Self::status(404, "NotFound", format!("{} \"{name}\" not found", rt.qualified()), Some(details(rt, name)))
    }

    pub fn already_exists(rt: &ResType, name: &str) -> Self {
        Self::status(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.qualified()),
            Some(details(rt, name)),
        )
    }

    /// 409 for a stale resourceVersion.
    pub fn conflict(rt: &ResType, name: &str) -> Self {
        Self::conflict_msg(
            rt,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn conflict_msg(rt: &ResType, name: &str, why: &str) -> Self {
        Self::status(
            409,
            "Conflict",
            format!("Operation cannot be fulfilled on {} \"{name}\": {why}", rt.qualified()),
            Some(details(rt, name)),
        )
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::status(400, "BadRequest", message, None)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::status(405, "MethodNotAllowed", message, Some(json!({})))
    }

    /// 415 for a media type the server does not decode at all.
    pub fn unsupported_media() -> Self {
        Self::status(415, "UnsupportedMediaType", "415: Unsupported Media Type", Some(json!({})))
    }

    /// 415 for a patch type this resource does not take (strategic merge of a custom object).
    pub fn patch_type_not_accepted(accepted: &str) -> Self {
        Self::status(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
            None,
        )
    }

    /// 422 with one cause per field error; `kind` is the object's kind.
    pub fn invalid(rt: &ResType, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        Self::invalid_in(&rt.group, kind, name, causes)
    }

    /// 422 for a kind of group `group` (`ListOptions` of `meta.k8s.io`, …).
    pub fn invalid_in(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> Self {
        let mut causes = causes;
        causes.sort_by(|a, b| (&a.field, &a.message).cmp(&(&b.field, &b.message)));
        // Like Go's error aggregate, the message lists each distinct error once.
        let mut rendered: Vec<String> = Vec::new();
        for r in causes.iter().map(Cause::render) {
            if !rendered.contains(&r) {
                rendered.push(r);
            }
        }
        let list = if rendered.len() == 1 { rendered[0].clone() } else { format!("[{}]", rendered.join(", ")) };
        let gk = if group.is_empty() { kind.to_string() } else { format!("{kind}.{}", group) };
        let mut d = json!({"name": name, "kind": kind, "causes": causes.iter().map(Cause::json).collect::<Vec<_>>()});
        if !group.is_empty() {
            d["group"] = json!(group);
        }
        if name.is_empty() {
            d.as_object_mut().unwrap().remove("name");
        }
        Self::status(422, "Invalid", format!("{gk} \"{name}\" is invalid: {list}"), Some(d))
    }
}

/// One field error.
#[derive(Debug, Clone)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, ...
    pub reason: String,
    pub field: String,
    /// Message without the field: `Invalid value: 0: ...`.
    pub message: String,
}

impl Cause {
    pub fn new(reason: &str, field: impl Into<String>, message: impl Into<String>) -> Self {
        Self { reason: reason.into(), field: field.into(), message: message.into() }
    }
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let m = if detail.is_empty() { "Required value".to_string() } else { format!("Required value: {detail}") };
        Self::new("FieldValueRequired", field, m)
    }
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self::new("FieldValueInvalid", field, format!("Invalid value: {}: {detail}", render_value(value)))
    }
    /// `field.NotSupported`: `value` as the real server renders it (a quoted string, or
    /// a JSON list), then the supported values quoted.
    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| crate::api::field::go_quote(s)).collect();
        Self::new(
            "FieldValueNotSupported",
            field,
            format!("Unsupported value: {value}: supported values: {}", list.join(", ")),
        )
    }
    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self::new("FieldValueForbidden", field, format!("Forbidden: {detail}"))
    }
    fn render(&self) -> String {
        if self.field.is_empty() { self.message.clone() } else { format!("{}: {}", self.field, self.message) }
    }
    fn json(&self) -> Value {
        json!({"reason": self.reason, "message": self.message, "field": self.field})
    }
}

/// A value as Go's `%#v`-ish rendering in field errors: strings quoted, others as JSON.
pub fn render_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// `details` of an error about one object: name, resource (as `kind`) and group.
fn details(rt: &ResType, name: &str) -> Value {
    let mut d = json!({"name": name, "kind": rt.plural});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    d
}
