//! Validation of JSON values against a CRD's `openAPIV3Schema` the way kube-apiserver
//! does it: the same checks, in the same order, with the same messages, plus
//! defaulting and unknown-field detection (pruning).

use crate::api::field::{FieldError, FieldErrorKind, child, go_quote, go_value, index};
use serde_json::{Map, Value};

/// Fields every object has that a CRD schema does not describe.
const ROOT_IMPLICIT: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Validates `value` against `schema`. `path` is the field path of `value` (empty for a
/// whole object); it prefixes every error.
pub fn validate(schema: &Value, value: &Value, path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(schema, value, path, path.is_empty(), &mut errors);
    errors
}

fn walk(schema: &Value, value: &Value, path: &str, root: bool, errors: &mut Vec<FieldError>) {
    let Some(s) = schema.as_object() else { return };
    if value.is_null() {
        if !flag(s, "nullable")
            && let Some(t) = s.get("type").and_then(Value::as_str)
        {
            errors.push(type_error(path, t, value));
        }
        return;
    }
    if flag(s, "x-kubernetes-int-or-string") {
        if !(value.is_i64() || value.is_u64() || value.is_string()) {
            // apiextensions converts the flag to `type: [integer, string]` (validation.go).
            errors.push(type_error(path, "integer,string", value));
        }
        return;
    }
    if let Some(t) = s.get("type").and_then(Value::as_str)
        && !type_matches(t, value)
    {
        errors.push(type_error(path, t, value));
        return;
    }
    if let Some(allowed) = s.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list = allowed.iter().map(go_value).collect::<Vec<_>>().join(", ");
        errors.push(FieldError {
            kind: FieldErrorKind::NotSupported,
            field: path.to_string(),
            value: Some(value.clone()),
            detail: format!("supported values: {list}"),
        });
    }
    match value {
        Value::String(text) => check_string(s, text, path, errors),
        Value::Number(_) => check_number(s, value, path, errors),
        Value::Array(items) => check_array(s, items, path, errors),
        Value::Object(fields) => {
            if flag(s, "x-kubernetes-embedded-resource") {
                check_embedded(fields, path, errors);
            }
            check_object(s, fields, path, root, errors)
        }
        Value::Bool(_) | Value::Null => {}
    }
}

fn flag(s: &Map<String, Value>, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The JSON type name the API server reports for a value.
pub fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(t: &str, value: &Value) -> bool {
    match t {
        "number" => value.is_number(),
        other => json_type(value) == other,
    }
}

fn type_error(path: &str, expected: &str, value: &Value) -> FieldError {
    let actual = json_type(value);
    FieldError {
        kind: FieldErrorKind::TypeInvalid,
        field: path.to_string(),
        value: Some(Value::String(actual.into())),
        detail: format!("{} in body must be of type {expected}: {}", body(path), go_quote(actual)),
    }
}

/// The name go-openapi uses in "… in body …" messages.
fn body(path: &str) -> &str {
    if path.is_empty() { "body" } else { path }
}

fn check_string(s: &Map<String, Value>, text: &str, path: &str, errors: &mut Vec<FieldError>) {
    let chars = text.chars().count() as u64;
    // go-openapi reports only the first failing string rule.
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
        && chars > max
    {
        let unit = if max == 1 { "byte" } else { "bytes" };
        errors.push(FieldError {
            kind: FieldErrorKind::TooLong,
            field: path.into(),
            value: None,
            detail: format!("may not be more than {max} {unit}"),
        });
        return;
    }
    if let Some(min) = s.get("minLength").and_then(Value::as_u64)
        && chars < min
    {
        let detail = format!("{} in body should be at least {min} chars long", body(path));
        errors.push(FieldError::invalid(path, Some(Value::String(text.into())), detail));
        return;
    }
    if let Some(pattern) = s.get("pattern").and_then(Value::as_str)
        && !pattern_matches(pattern, text)
    {
        let detail = format!("{} in body should match '{pattern}'", body(path));
        errors.push(FieldError::invalid(path, Some(Value::String(text.into())), detail));
        return;
    }
    if s.get("format").and_then(Value::as_str) == Some("date-time") && text.parse::<jiff::Timestamp>().is_err() {
        errors.push(FieldError {
            kind: FieldErrorKind::TypeInvalid,
            field: path.into(),
            value: Some(Value::String(text.into())),
            detail: format!("{} in body must be of type date-time: {}", body(path), go_quote(text)),
        });
    }
}

fn pattern_matches(pattern: &str, text: &str) -> bool {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CACHE: OnceLock<Mutex<HashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    let re = cache.entry(pattern.to_string()).or_insert_with(|| regex::Regex::new(pattern).ok());
    // A pattern the server could not compile was rejected with the CRD; treat it as matching.
    re.as_ref().is_none_or(|re| re.is_match(text))
}

/// Formats a schema bound the way Go prints a float64 (`1`, not `1.0`).
pub fn go_number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        Some(f) => format!("{f}"),
        None => v.to_string(),
    }
}

fn check_number(s: &Map<String, Value>, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    let Some(n) = value.as_f64() else { return };
    let bound = |key: &str| s.get(key).filter(|b| b.is_number());
    let exclusive = |key: &str| flag(s, key);
    let fail = |errors: &mut Vec<FieldError>, what: String| {
        errors.push(FieldError::invalid(path, Some(value.clone()), format!("{} in body should be {what}", body(path))));
    };
    if let Some(m) = bound("multipleOf").and_then(Value::as_f64)
        && m != 0.0
        && (n / m).fract() != 0.0
    {
        return fail(errors, format!("a multiple of {}", go_number(&Value::from(m))));
    }
    if let Some(max) = bound("maximum") {
        let limit = max.as_f64().unwrap_or(f64::MAX);
        if exclusive("exclusiveMaximum") && n >= limit {
            return fail(errors, format!("less than {}", go_number(max)));
        }
        if n > limit {
            return fail(errors, format!("less than or equal to {}", go_number(max)));
        }
    }
    if let Some(min) = bound("minimum") {
        let limit = min.as_f64().unwrap_or(f64::MIN);
        if exclusive("exclusiveMinimum") && n <= limit {
            return fail(errors, format!("greater than {}", go_number(min)));
        }
        if n < limit {
            fail(errors, format!("greater than or equal to {}", go_number(min)));
        }
    }
}

fn check_array(s: &Map<String, Value>, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    let len = items.len() as u64;
    if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
        && len > max
    {
        errors.push(FieldError {
            kind: FieldErrorKind::TooMany,
            field: path.into(),
            value: Some(Value::from(len)),
            detail: format!("must have at most {max} items"),
        });
    }
    if let Some(min) = s.get("minItems").and_then(Value::as_u64)
        && len < min
    {
        let detail = format!("{} in body should have at least {min} items", body(path));
        errors.push(FieldError::invalid(path, Some(Value::from(len)), detail));
    }
    if let Some(item_schema) = s.get("items") {
        for (i, item) in items.iter().enumerate() {
            walk(item_schema, item, &index(path, i), false, errors);
        }
    }
    check_list_type(s, items, path, errors);
}

/// `x-kubernetes-list-type: set | map` uniqueness.
fn check_list_type(s: &Map<String, Value>, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    let keyed = |item: &Value| -> Option<Value> {
        match s.get("x-kubernetes-list-type").and_then(Value::as_str)? {
            "set" => Some(item.clone()),
            "map" => {
                let keys = s.get("x-kubernetes-list-map-keys")?.as_array()?;
                let mut key = Map::new();
                for k in keys.iter().filter_map(Value::as_str) {
                    key.insert(k.into(), item.get(k).cloned().unwrap_or(Value::Null));
                }
                Some(Value::Object(key))
            }
            _ => None,
        }
    };
    let mut seen: Vec<Value> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(key) = keyed(item) else { return };
        if seen.contains(&key) {
            errors.push(FieldError::duplicate(index(path, i), key));
        } else {
            seen.push(key);
        }
    }
}

/// `validateEmbeddedResource` (apiextensions-apiserver `schema/objectmeta/validation.go`):
/// an embedded object needs a non-empty `apiVersion` and `kind`.
fn check_embedded(fields: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    for key in ["apiVersion", "kind"] {
        let at = child(path, key);
        match fields.get(key) {
            None => errors.push(FieldError::required(at, "")),
            Some(Value::String(v)) if v.is_empty() => {
                errors.push(FieldError::invalid(at, Some(Value::String(String::new())), "must not be empty"))
            }
            Some(Value::String(v)) if key == "apiVersion" && v.matches('/').count() > 1 => errors.push(FieldError::invalid(
                at,
                Some(Value::String(v.clone())),
                format!("unexpected GroupVersion string: {v}"),
            )),
            Some(Value::String(v)) if key == "kind" && !dns1035_label(&v.to_lowercase()) => {
                errors.push(FieldError::invalid(
                    at,
                    Some(Value::String(v.clone())),
                    "may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                ))
            }
            Some(Value::String(_)) => {}
            Some(other) => errors.push(FieldError::invalid(at, Some(other.clone()), "must be a string")),
        }
    }
}

fn dns1035_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_lowercase()
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[b.len() - 1] != b'-'
}

fn check_object(
    s: &Map<String, Value>,
    fields: &Map<String, Value>,
    path: &str,
    root: bool,
    errors: &mut Vec<FieldError>,
) {
    if let Some(required) = s.get("required").and_then(Value::as_array) {
        for name in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(name) {
                errors.push(FieldError::required(child(path, name), ""));
            }
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    let additional = s.get("additionalProperties").filter(|a| a.is_object());
    for (name, v) in fields {
        if root && ROOT_IMPLICIT.contains(&name.as_str()) {
            continue;
        }
        let sub = props.and_then(|p| p.get(name)).or(additional);
        if let Some(sub) = sub {
            walk(sub, v, &child(path, name), false, errors);
        }
    }
}

/// Fills in schema `default`s for missing fields (and for `null` in non-nullable ones),
/// as the API server does on create and update.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    let Some(s) = schema.as_object() else { return };
    match value {
        Value::Object(fields) => {
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    let missing = match fields.get(name) {
                        None => true,
                        Some(Value::Null) => !sub.get("nullable").and_then(Value::as_bool).unwrap_or(false),
                        Some(_) => false,
                    };
                    if missing && let Some(default) = sub.get("default") {
                        fields.insert(name.clone(), default.clone());
                    }
                }
                for (name, v) in fields.iter_mut() {
                    if let Some(sub) = props.get(name) {
                        apply_defaults(sub, v);
                    }
                }
            } else if let Some(sub) = s.get("additionalProperties").filter(|a| a.is_object()) {
                for v in fields.values_mut() {
                    apply_defaults(sub, v);
                }
            }
        }
        Value::Array(items) => {
            if let Some(sub) = s.get("items") {
                for item in items {
                    apply_defaults(sub, item);
                }
            }
        }
        _ => {}
    }
}

/// Paths of fields the schema does not know (what the API server would prune, or reject
/// with `fieldValidation=Strict`), sorted. `metadata` is not inspected.
pub fn unknown_fields(schema: &Value, value: &Value) -> Vec<String> {
    let mut copy = value.clone();
    let mut out = Vec::new();
    prune_at(&mut copy, Some(schema), "", true, false, &mut out);
    out.sort();
    out
}

/// Removes the fields [`unknown_fields`] reports.
pub fn prune(schema: &Value, value: &mut Value) {
    prune_at(value, Some(schema), "", true, false, &mut Vec::new());
}

/// The pruning algorithm of apiextensions-apiserver (`schema/pruning/algorithm.go`):
/// fields a schema does not describe go, except under
/// `x-kubernetes-preserve-unknown-fields`, where only the typed properties inside are
/// pruned (`skipPrune`); `apiVersion`, `kind` and `metadata` of the object itself and of
/// `x-kubernetes-embedded-resource` objects are left to the ObjectMeta rules.
fn prune_at(value: &mut Value, schema: Option<&Value>, path: &str, embedded: bool, skip: bool, out: &mut Vec<String>) {
    let s = schema.and_then(Value::as_object);
    let embedded = embedded || s.is_some_and(|s| flag(s, "x-kubernetes-embedded-resource"));
    let preserve = skip || s.is_some_and(|s| flag(s, "x-kubernetes-preserve-unknown-fields"));
    match value {
        Value::Object(fields) => {
            let props = s.and_then(|s| s.get("properties")).and_then(Value::as_object);
            let additional = s.and_then(|s| s.get("additionalProperties"));
            let mut unknown = Vec::new();
            for (k, v) in fields.iter_mut() {
                if embedded && ROOT_IMPLICIT.contains(&k.as_str()) {
                    continue;
                }
                let sub = props.and_then(|p| p.get(k)).or(additional.filter(|a| a.is_object()));
                match sub {
                    Some(sub) => prune_at(v, Some(sub), &child(path, k), false, false, out),
                    None if preserve || matches!(additional, Some(Value::Bool(true))) => {}
                    None => unknown.push(k.clone()),
                }
            }
            for k in unknown {
                fields.remove(&k);
                out.push(child(path, &k));
            }
        }
        Value::Array(items) => {
            let sub = s.and_then(|s| s.get("items"));
            for (i, item) in items.iter_mut().enumerate() {
                // Items of a preserved list stay preserved, their typed properties
                // pruned (skipPrune); with no item schema there is nothing to prune.
                if sub.is_none() && preserve {
                    continue;
                }
                prune_at(item, sub, &index(path, i), false, preserve, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    //! Expected messages are those recorded from kube-apiserver v1.36 for the same schema.
    use super::*;
    use serde_json::json;

    fn gadget() -> Value {
        json!({"type": "object", "properties": {"spec": {
            "type": "object", "required": ["size", "owner"],
            "properties": {
                "size": {"type": "integer", "minimum": 1, "maximum": 10},
                "color": {"type": "string", "enum": ["red", "green", "blue"], "default": "red"},
                "owner": {"type": "string", "minLength": 2, "pattern": "^[a-z]+$"},
                "tags": {"type": "array", "maxItems": 2, "items": {"type": "string"}},
                "mode": {"type": "string", "default": "fast"}
            }
        }}})
    }

    fn errors(spec: Value) -> Vec<String> {
        let mut out: Vec<String> =
            validate(&gadget(), &json!({"spec": spec}), "").iter().map(ToString::to_string).collect();
        out.sort();
        out
    }

    #[test]
    fn messages_match_the_api_server() {
        let table = [
            (
                json!({"size": "big", "owner": "ann"}),
                vec![r#"spec.size: Invalid value: "string": spec.size in body must be of type integer: "string""#],
            ),
            (
                json!({"size": 2, "owner": "ann", "color": "purple"}),
                vec![r#"spec.color: Unsupported value: "purple": supported values: "red", "green", "blue""#],
            ),
            (
                json!({"size": 0, "owner": "ann"}),
                vec!["spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1"],
            ),
            (
                json!({"size": 11, "owner": "ann"}),
                vec!["spec.size: Invalid value: 11: spec.size in body should be less than or equal to 10"],
            ),
            (
                json!({"size": 2, "owner": "A", "tags": ["a", "b", "c"]}),
                vec![
                    r#"spec.owner: Invalid value: "A": spec.owner in body should be at least 2 chars long"#,
                    "spec.tags: Too many: 3: must have at most 2 items",
                ],
            ),
            (json!({}), vec!["spec.owner: Required value", "spec.size: Required value"]),
            (
                json!({"size": 2, "owner": "Ann"}),
                vec![r#"spec.owner: Invalid value: "Ann": spec.owner in body should match '^[a-z]+$'"#],
            ),
        ];
        for (spec, want) in table {
            assert_eq!(errors(spec.clone()), want, "for {spec}");
        }
    }

    #[test]
    fn blocking_errors_are_the_ones_the_server_blocks_cel_on() {
        let kinds = |spec: Value| validate(&gadget(), &json!({"spec": spec}), "").iter().any(|e| e.kind.blocks_cel());
        assert!(kinds(json!({"size": "big", "owner": "ann"})));
        assert!(kinds(json!({"owner": "ann"})));
        assert!(!kinds(json!({"size": 0, "owner": "ann"})), "a minimum violation does not block CEL");
    }

    #[test]
    fn defaults_fill_missing_fields_only() {
        let mut obj = json!({"spec": {"size": 2, "owner": "ann", "color": "blue"}});
        apply_defaults(&gadget(), &mut obj);
        assert_eq!(obj["spec"]["color"], "blue");
        assert_eq!(obj["spec"]["mode"], "fast");
    }

    #[test]
    fn unknown_fields_are_found_and_pruned() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "Gadget", "metadata": {"name": "g"}, "extraTop": 1,
            "spec": {"size": 2, "owner": "ann", "bogus": true, "nested": {"a": 1}}});
        assert_eq!(unknown_fields(&gadget(), &obj), vec!["extraTop", "spec.bogus", "spec.nested"]);
        prune(&gadget(), &mut obj);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "Gadget", "metadata": {"name": "g"}, "spec": {"size": 2, "owner": "ann"}})
        );
    }

    #[test]
    fn list_type_duplicates() {
        let schema = json!({"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
            "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}, "v": {"type": "integer"}}}});
        let errs = validate(&schema, &json!([{"name": "a", "v": 1}, {"name": "a", "v": 2}]), "spec.l");
        assert_eq!(
            errs.iter().map(ToString::to_string).collect::<Vec<_>>(),
            vec![r#"spec.l[1]: Duplicate value: map[string]interface {}{"name":"a"}"#]
        );
    }

    /// apiextensions-apiserver `schema/pruning/algorithm.go`: under
    /// x-kubernetes-preserve-unknown-fields unknown fields stay, typed ones are still
    /// pruned inside; embedded resources keep apiVersion, kind and metadata.
    #[test]
    fn preserved_subtrees_still_prune_their_typed_properties() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                "typed": {"type": "object", "properties": {"a": {"type": "integer"}}}}},
            "list": {"type": "array", "x-kubernetes-preserve-unknown-fields": true,
                     "items": {"type": "object", "properties": {"t": {"type": "object", "properties": {"x": {"type": "string"}}}}}},
            "inner": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}}}}}});
        let obj = json!({"spec": {
            "free": {"anything": 1, "typed": {"a": 1, "b": 2}},
            "list": [{"extra": true, "t": {"x": "y", "z": 1}}],
            "inner": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "n"}, "spec": {}, "junk": 1},
            "stray": 1}});
        assert_eq!(
            unknown_fields(&schema, &obj),
            ["spec.free.typed.b", "spec.inner.junk", "spec.list[0].t.z", "spec.stray"]
        );
        let mut pruned = obj.clone();
        prune(&schema, &mut pruned);
        assert_eq!(pruned["spec"]["free"], json!({"anything": 1, "typed": {"a": 1}}));
        assert_eq!(pruned["spec"]["inner"]["metadata"], json!({"name": "n"}));
    }

    /// `validateEmbeddedResource` and the int-or-string type (`type: [integer, string]`).
    #[test]
    fn embedded_resources_need_api_version_and_kind_and_int_or_string_is_two_types() {
        let schema = json!({"type": "object", "properties": {
            "inner": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true},
            "port": {"x-kubernetes-int-or-string": true}}});
        let messages =
            |v: Value| -> Vec<String> { validate(&schema, &v, "spec").iter().map(|e| e.to_string()).collect() };
        assert_eq!(
            messages(json!({"inner": {"kind": "Bad_Kind"}, "port": true})),
            [
                "spec.inner.apiVersion: Required value",
                "spec.inner.kind: Invalid value: \"Bad_Kind\": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')",
                "spec.port: Invalid value: \"boolean\": spec.port in body must be of type integer,string: \"boolean\"",
            ]
        );
        assert!(messages(json!({"inner": {"apiVersion": "v1", "kind": "Pod"}, "port": "http"})).is_empty());
    }
}
