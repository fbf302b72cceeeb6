//! Custom objects and CustomResourceDefinitions: schema validation with pruning and
//! defaulting, CEL rules, and what the apiextensions server does to a new CRD.

use super::errors::{ApiError, Cause};
use super::registry::ResType;
use crate::api::field::{FieldError, go_quote};
use crate::schema::openapi;
use serde_json::{Value, json};

/// How unknown and duplicate fields are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(v: Option<&str>, options_kind: &str) -> Result<Self, ApiError> {
        match v.unwrap_or("") {
            "" | "Warn" => Ok(Self::Warn),
            "Ignore" => Ok(Self::Ignore),
            "Strict" => Ok(Self::Strict),
            other => Err(ApiError::status(
                422,
                "Invalid",
                format!(
                    "{options_kind}.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: {}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"",
                    go_quote(other)
                ),
                Some(json!({"kind": options_kind, "group": "meta.k8s.io", "causes": [{
                    "reason": "FieldValueNotSupported", "field": "fieldValidation",
                    "message": format!("Unsupported value: {}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"", go_quote(other)),
                }]})),
            )),
        }
    }
}

/// The `openAPIV3Schema` of the version a type serves (null for built-in kinds).
pub fn schema(rt: &ResType) -> &Value {
    static NONE: Value = Value::Null;
    let Some(crd) = &rt.crd else { return &NONE };
    crd["spec"]["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == rt.version.as_str())
        .map_or(&NONE, |v| &v["schema"]["openAPIV3Schema"])
}

/// Unknown fields of a custom object, including under `metadata`.
pub fn unknown_fields(rt: &ResType, obj: &Value) -> Vec<String> {
    let with_meta = with_metadata(schema(rt));
    let mut out = openapi::unknown_fields(&with_meta, obj);
    // The shared checker leaves the implicit root fields alone; ObjectMeta is closed.
    if let Some(meta) = with_meta.pointer("/properties/metadata") {
        out.extend(openapi::unknown_fields(meta, &obj["metadata"]).into_iter().map(|f| format!("metadata.{f}")));
    }
    out.sort();
    out.dedup();
    out
}

/// The schema with `metadata` described as ObjectMeta, for unknown-field detection.
fn with_metadata(schema: &Value) -> Value {
    let mut s = schema.clone();
    let meta = json!({"type": "object", "properties": {
        "name": {"type": "string"}, "generateName": {"type": "string"}, "namespace": {"type": "string"},
        "uid": {"type": "string"}, "resourceVersion": {"type": "string"}, "generation": {"type": "integer"},
        "creationTimestamp": {"type": "string"}, "deletionTimestamp": {"type": "string"},
        "deletionGracePeriodSeconds": {"type": "integer"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        "ownerReferences": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "finalizers": {"type": "array", "items": {"type": "string"}},
        "managedFields": {"type": "array", "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
        "selfLink": {"type": "string"},
    }});
    if let Some(props) = s.get_mut("properties").and_then(Value::as_object_mut) {
        props.insert("metadata".into(), meta);
        props.entry("apiVersion").or_insert(json!({"type": "string"}));
        props.entry("kind").or_insert(json!({"type": "string"}));
    }
    s
}

/// Prunes unknown fields (keeping metadata and the type fields), applies defaults.
pub fn prune_and_default(rt: &ResType, obj: &mut Value) {
    let schema = schema(rt);
    let meta = obj.get("metadata").cloned();
    let (api_version, kind) = (obj.get("apiVersion").cloned(), obj.get("kind").cloned());
    openapi::prune(schema, obj);
    openapi::apply_defaults(schema, obj);
    if let Some(m) = obj.as_object_mut() {
        if let Some(meta) = meta {
            m.insert("metadata".into(), meta);
        }
        if let Some(a) = api_version {
            m.insert("apiVersion".into(), a);
        }
        if let Some(k) = kind {
            m.insert("kind".into(), k);
        }
    }
}

/// Schema and CEL errors of a custom object (after pruning and defaulting).
pub fn validate(rt: &ResType, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    crate::admission::schema_and_cel_errors(schema(rt), obj, old, Vec::new()).iter().map(to_cause).collect()
}

/// Validation of a write through `/status`: the status against its own schema (messages
/// name fields relative to it, as the real server's do), fields reported under `status`.
pub fn validate_status(rt: &ResType, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let schema = schema(rt);
    let Some(sub) = schema.pointer("/properties/status") else { return Vec::new() };
    let status = obj.get("status").cloned().unwrap_or(Value::Null);
    if status.is_null() {
        return Vec::new();
    }
    let old_status = old.and_then(|o| o.get("status")).filter(|s| !s.is_null());
    crate::admission::schema_and_cel_errors(sub, &status, old_status, Vec::new())
        .into_iter()
        .map(|mut e| {
            if !e.field.is_empty() {
                e.field = format!("status.{}", e.field);
            }
            to_cause(&e)
        })
        .collect()
}

pub fn to_cause(e: &FieldError) -> Cause {
    Cause::new(e.kind.reason(), e.path(), e.message())
}

/// What the apiextensions server fills in on a new CRD.
pub fn default_crd(crd: &mut Value) {
    let spec = &mut crd["spec"];
    if spec.get("conversion").is_none() {
        spec["conversion"] = json!({"strategy": "None"});
    }
    let kind = spec["names"]["kind"].as_str().unwrap_or_default().to_string();
    if spec["names"].get("listKind").is_none() {
        spec["names"]["listKind"] = json!(format!("{kind}List"));
    }
    if spec["names"].get("singular").is_none() {
        spec["names"]["singular"] = json!(kind.to_lowercase());
    }
    let stored: Vec<Value> = spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["storage"].as_bool() == Some(true))
        .map(|v| v["name"].clone())
        .collect();
    crd["status"] = json!({
        "acceptedNames": {"kind": "", "plural": ""},
        "conditions": [],
        "storedVersions": stored,
    });
}

/// Structural problems of a CRD, as 422 causes.
pub fn crd_errors(crd: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or_default();
    let plural = spec["names"]["plural"].as_str().unwrap_or_default();
    let name = crd["metadata"]["name"].as_str().unwrap_or_default();
    if name != format!("{plural}.{group}") {
        causes.push(Cause::invalid("metadata.name", &json!(name), "must be spec.names.plural+\".\"+spec.group"));
    }
    if spec["names"]["kind"].as_str().unwrap_or_default().is_empty() {
        causes.push(Cause::required("spec.names.kind", ""));
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        causes.push(Cause::required("spec.versions", "must have exactly one version marked as storage version"));
    }
    if versions.iter().filter(|v| v["storage"].as_bool() == Some(true)).count() != 1 && !versions.is_empty() {
        causes.push(Cause::invalid(
            "spec.versions",
            &Value::Null,
            "must have exactly one version marked as storage version",
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        let s = &v["schema"]["openAPIV3Schema"];
        if s.is_null() {
            causes.push(Cause::required(format!("spec.versions[{i}].schema.openAPIV3Schema"), "schemas are required"));
            continue;
        }
        for e in crate::schema::structural::check(s) {
            causes.push(Cause::new("FieldValueInvalid", format!("spec.versions[{i}].schema.openAPIV3Schema"), e));
        }
    }
    causes
}

/// The paths of keys that occur twice in one JSON object of `body` (the last one wins
/// when decoding, as in Go), named as strict decoding names them.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
    use std::cell::RefCell;
    struct Walk<'a> {
        path: String,
        out: &'a RefCell<Vec<String>>,
    }
    impl<'de> DeserializeSeed<'de> for Walk<'_> {
        type Value = ();
        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(self)
        }
    }
    impl<'de> Visitor<'de> for Walk<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("JSON")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(k) = m.next_key::<String>()? {
                let p = if self.path.is_empty() { k.clone() } else { format!("{}.{k}", self.path) };
                if !seen.insert(k) {
                    self.out.borrow_mut().push(p.clone());
                }
                m.next_value_seed(Walk { path: p, out: self.out })?;
            }
            Ok(())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<(), A::Error> {
            let mut i = 0;
            while s.next_element_seed(Walk { path: format!("{}[{i}]", self.path), out: self.out })?.is_some() {
                i += 1;
            }
            Ok(())
        }
        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
    }
    let out = RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = Walk { path: String::new(), out: &out }.deserialize(&mut de);
    out.into_inner()
}
