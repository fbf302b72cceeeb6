//! The rules kube-apiserver applies before it accepts a CRD schema: a *structural*
//! schema (every node typed, no value-dependent structure), only the keywords
//! `JSONSchemaProps` knows, list-type extensions used correctly, defaults that are valid
//! and pruned, and CEL rules that compile and are attached where they can be evaluated.

use kube::core::cel;
use serde_json::{Map, Value};

/// Keywords a CRD's `JSONSchemaProps` accepts (apiextensions.k8s.io/v1).
const KNOWN: &[&str] = &[
    "id",
    "$schema",
    "$ref",
    "description",
    "type",
    "format",
    "title",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "enum",
    "maxProperties",
    "minProperties",
    "required",
    "items",
    "allOf",
    "oneOf",
    "anyOf",
    "not",
    "properties",
    "additionalProperties",
    "patternProperties",
    "dependencies",
    "additionalItems",
    "definitions",
    "externalDocs",
    "example",
    "nullable",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

/// Keywords the API server forbids in CRD schemas even though the type has them.
const FORBIDDEN: &[&str] =
    &["$ref", "$schema", "id", "definitions", "patternProperties", "dependencies", "additionalItems"];

const TYPES: &[&str] = &["object", "array", "string", "integer", "number", "boolean"];

/// Checks one `openAPIV3Schema`; returns every violation as `path: problem`.
pub fn check(schema: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    if schema.get("type").and_then(Value::as_str) != Some("object") {
        problems.push("openAPIV3Schema.type: Required value: must be object".into());
    }
    node(schema, "openAPIV3Schema", Ctx::default(), &mut problems);
    problems.extend(cel_problems(schema));
    problems
}

#[derive(Clone, Copy, Default)]
struct Ctx {
    /// Under `items` of a list that is not `x-kubernetes-list-type: map`, where `oldSelf`
    /// cannot be correlated.
    uncorrelatable: bool,
}

fn node(schema: &Value, path: &str, ctx: Ctx, problems: &mut Vec<String>) {
    let Some(s) = schema.as_object() else {
        problems.push(format!("{path}: must be a schema object"));
        return;
    };
    keywords(s, path, problems);
    typed(s, path, problems);
    enums(s, path, problems);
    list_type(s, path, problems);
    junctors(s, path, problems);
    if let Some(default) = s.get("default") {
        check_default(schema, default, path, problems);
    }
    if ctx.uncorrelatable && has_transition_rule(s) {
        problems.push(format!(
            "{path}.x-kubernetes-validations: Invalid value: oldSelf cannot be used here: the list above is not x-kubernetes-list-type: map"
        ));
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        if s.get("additionalProperties").is_some_and(|a| a != &Value::Bool(false)) {
            problems.push(format!("{path}: additionalProperties and properties are mutually exclusive"));
        }
        for (name, sub) in props {
            node(sub, &format!("{path}.properties[{name}]"), ctx, problems);
        }
    }
    if let Some(sub) = s.get("additionalProperties").filter(|a| a.is_object()) {
        node(sub, &format!("{path}.additionalProperties"), ctx, problems);
    }
    if let Some(items) = s.get("items") {
        if items.is_array() {
            problems.push(format!("{path}.items: must be a schema, not a list of schemas"));
        } else {
            let keyed = s.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("map");
            let inner = Ctx { uncorrelatable: ctx.uncorrelatable || !keyed };
            node(items, &format!("{path}.items"), inner, problems);
        }
    }
}

fn keywords(s: &Map<String, Value>, path: &str, problems: &mut Vec<String>) {
    for key in s.keys() {
        if !KNOWN.contains(&key.as_str()) {
            problems.push(format!("{path}: unknown keyword {key:?}"));
        } else if FORBIDDEN.contains(&key.as_str()) {
            problems.push(format!("{path}.{key}: Forbidden: {key} is not supported"));
        }
    }
    if s.get("uniqueItems") == Some(&Value::Bool(true)) {
        problems.push(format!(
            "{path}.uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"
        ));
    }
}

fn typed(s: &Map<String, Value>, path: &str, problems: &mut Vec<String>) {
    let exempt = s.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match s.get("type") {
        Some(Value::String(t)) if TYPES.contains(&t.as_str()) => {}
        Some(other) => problems.push(format!("{path}.type: Unsupported value: {other}")),
        None if exempt => {}
        None => problems.push(format!("{path}.type: Required value: must not be empty for specified object fields")),
    }
    if s.contains_key("x-kubernetes-int-or-string") && s.contains_key("type") {
        problems.push(format!("{path}.type: Forbidden: must be empty if x-kubernetes-int-or-string is true"));
    }
    let t = s.get("type").and_then(Value::as_str);
    if s.contains_key("properties") && t.is_some_and(|t| t != "object") {
        problems.push(format!("{path}: properties on a node of type {}", t.unwrap_or_default()));
    }
    if s.contains_key("items") && t != Some("array") {
        problems.push(format!("{path}.items: must only be used with type array"));
    }
    if t == Some("array") && !s.contains_key("items") {
        problems.push(format!("{path}.items: Required value: must be specified for type array"));
    }
}

/// Enum values must all have the node's type (an untagged or mixed Rust enum gives a
/// node with values of several types, or none).
fn enums(s: &Map<String, Value>, path: &str, problems: &mut Vec<String>) {
    let Some(values) = s.get("enum") else { return };
    let Some(values) = values.as_array() else {
        problems.push(format!("{path}.enum: must be a list"));
        return;
    };
    let t = s.get("type").and_then(Value::as_str);
    for v in values {
        let vt = super::openapi::json_type(v);
        let ok = match t {
            Some("number") => v.is_number(),
            Some(t) => vt == t || (v.is_null() && s.get("nullable") == Some(&Value::Bool(true))),
            None => false,
        };
        if !ok {
            problems.push(format!("{path}.enum: Invalid value: {v}: value of type {vt} on a node of type {t:?}"));
        }
    }
}

fn list_type(s: &Map<String, Value>, path: &str, problems: &mut Vec<String>) {
    let lt = s.get("x-kubernetes-list-type").and_then(Value::as_str);
    let keys = s.get("x-kubernetes-list-map-keys");
    match lt {
        None if keys.is_some() => {
            problems.push(format!("{path}.x-kubernetes-list-map-keys: Forbidden: requires x-kubernetes-list-type: map"))
        }
        None | Some("atomic") => {}
        Some("set") => {
            let item_type = s.get("items").and_then(|i| i.get("type")).and_then(Value::as_str);
            if matches!(item_type, Some("object") | Some("array")) {
                problems
                    .push(format!("{path}.items.type: Invalid value: x-kubernetes-list-type set needs scalar items"));
            }
        }
        Some("map") => map_keys(s, keys, path, problems),
        Some(other) => problems.push(format!("{path}.x-kubernetes-list-type: Unsupported value: {other:?}")),
    }
}

fn map_keys(s: &Map<String, Value>, keys: Option<&Value>, path: &str, problems: &mut Vec<String>) {
    let Some(keys) = keys.and_then(Value::as_array).filter(|k| !k.is_empty()) else {
        problems
            .push(format!("{path}.x-kubernetes-list-map-keys: Required value: must not be empty for list-type map"));
        return;
    };
    let items = s.get("items").and_then(Value::as_object);
    let props = items.and_then(|i| i.get("properties")).and_then(Value::as_object);
    let required: Vec<&str> = items
        .and_then(|i| i.get("required"))
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for key in keys.iter().filter_map(Value::as_str) {
        let Some(prop) = props.and_then(|p| p.get(key)) else {
            problems.push(format!("{path}.x-kubernetes-list-map-keys: key {key:?} is not a property of the items"));
            continue;
        };
        if !required.contains(&key) && prop.get("default").is_none() {
            problems.push(format!("{path}.items.properties[{key}]: map key must be required or have a default"));
        }
        if !matches!(prop.get("type").and_then(Value::as_str), Some("string" | "integer" | "boolean")) {
            problems.push(format!("{path}.items.properties[{key}].type: map keys must be scalars"));
        }
    }
}

/// Value-dependent structure: `allOf`/`anyOf`/`oneOf`/`not` may only restrict, never
/// declare types, defaults or fields absent outside them.
fn junctors(s: &Map<String, Value>, path: &str, problems: &mut Vec<String>) {
    let outside = s.get("properties").and_then(Value::as_object);
    for key in ["allOf", "anyOf", "oneOf", "not"] {
        let Some(j) = s.get(key) else { continue };
        let branches: Vec<&Value> = match j {
            Value::Array(list) => list.iter().collect(),
            other => vec![other],
        };
        for (i, b) in branches.iter().enumerate() {
            let Some(b) = b.as_object() else { continue };
            for banned in ["type", "default", "nullable", "description", "additionalProperties"] {
                if b.contains_key(banned) {
                    problems.push(format!("{path}.{key}[{i}].{banned}: Forbidden: must be empty to be structural"));
                }
            }
            if let Some(props) = b.get("properties").and_then(Value::as_object) {
                for name in props.keys() {
                    if !outside.is_some_and(|o| o.contains_key(name)) {
                        problems.push(format!(
                            "{path}.{key}[{i}].properties[{name}]: Required value: must have a counterpart outside {key}"
                        ));
                    }
                }
            }
        }
    }
}

fn check_default(schema: &Value, default: &Value, path: &str, problems: &mut Vec<String>) {
    let mut node = schema.clone();
    if let Some(o) = node.as_object_mut() {
        o.remove("default");
    }
    for e in super::openapi::validate(&node, default, "") {
        problems.push(format!("{path}.default: Invalid value: {}", e.message()));
    }
    if !super::openapi::unknown_fields(&node, default).is_empty() {
        problems.push(format!("{path}.default: Invalid value: must not have unknown fields"));
    }
}

fn has_transition_rule(s: &Map<String, Value>) -> bool {
    s.get("x-kubernetes-validations").and_then(Value::as_array).is_some_and(|rules| {
        rules.iter().any(|r| r.get("rule").and_then(Value::as_str).is_some_and(|r| r.contains("oldSelf")))
    })
}

/// Every CEL rule compiles.
fn cel_problems(schema: &Value) -> Vec<String> {
    let compiled = cel::compile_schema(schema);
    let mut out = Vec::new();
    collect_compile_errors(&compiled, "openAPIV3Schema", &mut out);
    out
}

fn collect_compile_errors(c: &cel::CompiledSchema, path: &str, out: &mut Vec<String>) {
    for e in c.compilation_errors() {
        out.push(format!("{path}.x-kubernetes-validations: Invalid value: compilation failed: {e}"));
    }
    // The server also refuses rules over the cost budget, and unbounded lists and strings
    // make its estimate explode; kube-cel's analysis flags both. (Its scope check is not
    // used: it mistakes comprehension variables such as `l` in `filter(l, ...)` for free ones.)
    for rule in c.validations.iter().flatten() {
        for w in cel::estimate_rule_cost(&rule.rule.rule, c) {
            out.push(format!(
                "{path}.x-kubernetes-validations: Invalid value: {:?}: {} ({:?})",
                w.rule, w.message, w.kind
            ));
        }
    }
    for (name, sub) in &c.properties {
        collect_compile_errors(sub, &format!("{path}.properties[{name}]"), out);
    }
    if let Some(items) = &c.items {
        collect_compile_errors(items, &format!("{path}.items"), out);
    }
    if let Some(ap) = &c.additional_properties {
        collect_compile_errors(ap, &format!("{path}.additionalProperties"), out);
    }
}
