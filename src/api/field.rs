//! Field-level validation errors, rendered the way kube-apiserver renders them
//! (`spec.size: Invalid value: 0: spec.size in body should be greater than or equal to 1`),
//! so a message from our own `validate` step reads like one from `kubectl apply`.

use serde_json::Value;
use std::fmt;

/// The error types of Kubernetes' `field.ErrorType`, with their `reason` strings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorKind {
    Invalid,
    TypeInvalid,
    NotSupported,
    Required,
    Duplicate,
    TooMany,
    TooLong,
    Forbidden,
}

impl FieldErrorKind {
    /// The `details.causes[].reason` the API server reports.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Invalid => "FieldValueInvalid",
            Self::TypeInvalid => "FieldValueTypeInvalid",
            Self::NotSupported => "FieldValueNotSupported",
            Self::Required => "FieldValueRequired",
            Self::Duplicate => "FieldValueDuplicate",
            Self::TooMany => "FieldValueTooMany",
            Self::TooLong => "FieldValueTooLong",
            Self::Forbidden => "FieldValueForbidden",
        }
    }

    /// Errors after which the API server does not evaluate CEL rules
    /// (apiextensions-apiserver `hasBlockingErr`).
    pub fn blocks_cel(self) -> bool {
        matches!(self, Self::NotSupported | Self::Required | Self::TooLong | Self::TooMany | Self::TypeInvalid)
    }
}

/// One problem with one field. `field` is a path such as `spec.locations[1].name`;
/// an empty path renders as `<nil>`, like the API server's root errors.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorKind,
    pub field: String,
    /// The offending value; `None` renders without a value (objects, lists, missing fields).
    pub value: Option<Value>,
    pub detail: String,
}

impl FieldError {
    pub fn invalid(field: impl Into<String>, value: Option<Value>, detail: impl Into<String>) -> Self {
        Self { kind: FieldErrorKind::Invalid, field: field.into(), value, detail: detail.into() }
    }

    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind: FieldErrorKind::Required, field: field.into(), value: None, detail: detail.into() }
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self { kind: FieldErrorKind::Forbidden, field: field.into(), value: None, detail: detail.into() }
    }

    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self { kind: FieldErrorKind::Duplicate, field: field.into(), value: Some(value), detail: String::new() }
    }

    /// The message without the field path, as in `details.causes[].message`.
    pub fn message(&self) -> String {
        let head = match self.kind {
            FieldErrorKind::Invalid | FieldErrorKind::TypeInvalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::Forbidden => "Forbidden",
        };
        let mut out = head.to_string();
        if let Some(v) = &self.value {
            out.push_str(": ");
            out.push_str(&go_value(v));
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }

    /// The path as the API server prints it (`<nil>` for the root).
    pub fn path(&self) -> &str {
        if self.field.is_empty() { "<nil>" } else { &self.field }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path(), self.message())
    }
}

impl std::error::Error for FieldError {}

/// Renders a value the way Go's `%#v`-ish field errors do for JSON data:
/// strings quoted, numbers and booleans bare, `null` for null.
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => "null".into(),
        Value::Object(map) => {
            let fields: Vec<String> = map.iter().map(|(k, v)| format!("{}:{}", go_quote(k), go_value(v))).collect();
            format!("map[string]interface {{}}{{{}}}", fields.join(", "))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(go_value).collect();
            format!("[]interface {{}}{{{}}}", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// Go's `%q` for the strings we meet in manifests.
pub fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Renders a list of errors as one line, like a 422 `Status` message does.
pub fn summarize(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => format!("[{}]", many.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// Appends `.name` or `[i]` to a path.
pub fn child(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}
