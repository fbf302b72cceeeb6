//! What happens to a Lifeline manifest on its way into the cluster, in the API server's
//! order: strict decoding (unknown fields), defaulting, OpenAPI schema validation, CEL
//! rules (skipped after blocking schema errors, as the server does), and then our own
//! semantic checks, which a controller would otherwise report as `Degraded`.
//! `lifeline validate` runs it on files, so bad manifests fail in CI rather than in the
//! cluster.

use crate::api::{self, FieldError, Validate, field, validate::schema_of};
use crate::schema::openapi;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt;

/// Why a manifest was refused.
#[derive(Debug)]
pub enum Rejection {
    /// Not a Lifeline kind.
    UnknownKind { api_version: String, kind: String },
    /// Fields the schema does not have (`kubectl apply` is strict by default: 400).
    UnknownFields { kind: String, fields: Vec<String> },
    /// Schema, CEL or semantic errors (422).
    Invalid { kind: String, name: String, errors: Vec<FieldError> },
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownKind { api_version, kind } => {
                write!(
                    f,
                    "{kind} in {api_version:?} is not a Lifeline kind (expected apiVersion {})",
                    api::names::API_VERSION
                )
            }
            Self::UnknownFields { kind, fields } => {
                let list: Vec<String> =
                    fields.iter().map(|p| format!("unknown field {}", field::go_quote(p))).collect();
                write!(
                    f,
                    "{kind} in version \"v1alpha1\" cannot be handled as a {kind}: strict decoding error: {}",
                    list.join(", ")
                )
            }
            Self::Invalid { kind, name, errors } => {
                write!(
                    f,
                    "{kind}.{} {} is invalid: {}",
                    api::names::GROUP,
                    field::go_quote(name),
                    field::summarize(errors)
                )
            }
        }
    }
}

impl std::error::Error for Rejection {}

impl Rejection {
    /// The field errors, if the rejection has any.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            Self::Invalid { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// Admits a manifest as `kubectl apply` plus our controllers would: returns the object
/// with defaults applied, or why it was refused. `old` is the stored object for an update.
pub fn admit(doc: &Value, old: Option<&Value>) -> Result<Value, Rejection> {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default().to_string();
    let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or_default().to_string();
    if api_version != api::names::API_VERSION {
        return Err(Rejection::UnknownKind { api_version, kind });
    }
    match kind.as_str() {
        "BackupLocation" => admit_as::<api::BackupLocation>(doc, old),
        "BackupPolicy" => admit_as::<api::BackupPolicy>(doc, old),
        "RestorePoint" => admit_as::<api::RestorePoint>(doc, old),
        "RestorePlan" => admit_as::<api::RestorePlan>(doc, old),
        _ => Err(Rejection::UnknownKind { api_version, kind }),
    }
}

fn admit_as<K: Validate + DeserializeOwned>(doc: &Value, old: Option<&Value>) -> Result<Value, Rejection> {
    let kind = K::crd().spec.names.kind;
    let name = doc.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default().to_string();
    let invalid = |errors: Vec<FieldError>| Rejection::Invalid { kind: kind.clone(), name: name.clone(), errors };
    let schema = schema_of::<K>();

    let unknown = openapi::unknown_fields(&schema, doc);
    if !unknown.is_empty() {
        return Err(Rejection::UnknownFields { kind, fields: unknown });
    }
    let mut object = doc.clone();
    openapi::apply_defaults(&schema, &mut object);
    let old = old.map(|o| {
        let mut o = o.clone();
        openapi::apply_defaults(&schema, &mut o);
        o
    });

    let errors = schema_and_cel_errors(&schema, &object, old.as_ref(), metadata_errors(&object));
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    let typed: K = serde_json::from_value(object.clone())
        .map_err(|e| invalid(vec![FieldError::invalid("", None, format!("cannot be decoded: {e}"))]))?;
    let errors = typed.semantic_errors();
    if errors.is_empty() { Ok(object) } else { Err(invalid(errors)) }
}

/// The API server's schema step followed by its CEL step: `errors` (found earlier) plus
/// the schema's errors; CEL rules run only when none of them blocks them, otherwise a
/// root error says some rules were not checked.
pub fn schema_and_cel_errors(
    schema: &Value,
    object: &Value,
    old: Option<&Value>,
    mut errors: Vec<FieldError>,
) -> Vec<FieldError> {
    errors.extend(openapi::validate(schema, object, ""));
    if errors.iter().any(|e| e.kind.blocks_cel()) {
        errors.insert(
            0,
            FieldError::invalid(
                "",
                Some(Value::Null),
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ),
        );
    } else {
        errors.extend(api::validate::cel_errors(schema, object, old));
    }
    errors
}

/// `metadata.name` rules the API server applies to custom objects.
fn metadata_errors(object: &Value) -> Vec<FieldError> {
    let name = object.pointer("/metadata/name").and_then(Value::as_str);
    let generate = object.pointer("/metadata/generateName").and_then(Value::as_str);
    match (name, generate) {
        (None, None) => vec![FieldError::required("metadata.name", "name or generateName is required")],
        (Some(n), _) if !is_dns_subdomain(n) => vec![FieldError::invalid(
            "metadata.name",
            Some(Value::String(n.into())),
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        )],
        _ => Vec::new(),
    }
}

/// An RFC 1123 subdomain, at most 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            let bytes = label.as_bytes();
            !bytes.is_empty()
                && bytes.iter().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
                && bytes[0] != b'-'
                && bytes[bytes.len() - 1] != b'-'
        })
}
