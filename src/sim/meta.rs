//! Object metadata rules of the real API server: names, labels, annotations, owner
//! references, with its messages.

use super::errors::Cause;
use serde_json::Value;
use std::sync::LazyLock;

static DNS1123_SUBDOMAIN: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$").unwrap());
static DNS1123_LABEL: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$").unwrap());
static NAME_PART: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").unwrap());

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

/// Errors of a name checked against a length limit and a pattern.
fn pattern_errors(s: &str, max: usize, re: &regex::Regex, msg: &str) -> Vec<String> {
    let mut out = Vec::new();
    if s.len() > max {
        out.push(format!("must be no more than {max} characters"));
    }
    if !re.is_match(s) {
        out.push(msg.into());
    }
    out
}

pub fn subdomain_errors(s: &str) -> Vec<String> {
    pattern_errors(s, 253, &DNS1123_SUBDOMAIN, SUBDOMAIN_MSG)
}

pub fn dns_label_errors(s: &str) -> Vec<String> {
    pattern_errors(s, 63, &DNS1123_LABEL, LABEL_MSG)
}

/// A label or annotation key: `[prefix/]name`.
pub fn qualified_name_errors(s: &str) -> Vec<String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let mut out = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".into());
        } else {
            out.extend(subdomain_errors(p).into_iter().map(|e| format!("prefix part {e}")));
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".into());
    } else {
        if name.len() > 63 {
            out.push("name part must be no more than 63 characters".into());
        }
        if !NAME_PART.is_match(name) {
            out.push(NAME_PART_MSG.into());
        }
    }
    out
}

pub fn label_value_errors(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    if v.len() > 63 {
        out.push("must be no more than 63 characters".into());
    }
    if !v.is_empty() && !NAME_PART.is_match(v) {
        out.push(LABEL_VALUE_MSG.into());
    }
    out
}

/// Checks the user-settable metadata of an object about to be stored.
pub fn validate(meta: &Value, namespace_kind: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = meta["name"].as_str().unwrap_or_default();
    if !name.is_empty() {
        let errs = if namespace_kind { dns_label_errors(name) } else { subdomain_errors(name) };
        for e in errs {
            causes.push(Cause::invalid("metadata.name", &Value::String(name.into()), &e));
        }
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (k, v) in labels {
            for e in qualified_name_errors(k) {
                causes.push(Cause::invalid("metadata.labels", &Value::String(k.clone()), &e));
            }
            let v = v.as_str().unwrap_or_default();
            for e in label_value_errors(v) {
                causes.push(Cause::invalid("metadata.labels".to_string(), &Value::String(v.into()), &e));
            }
        }
    }
    if let Some(ann) = meta["annotations"].as_object() {
        for k in ann.keys() {
            for e in qualified_name_errors(&k.to_lowercase()) {
                causes.push(Cause::invalid("metadata.annotations", &Value::String(k.clone()), &e));
            }
        }
    }
    causes.extend(owner_reference_errors(&meta["ownerReferences"]));
    causes
}

fn owner_reference_errors(refs: &Value) -> Vec<Cause> {
    let Some(refs) = refs.as_array() else { return Vec::new() };
    let mut causes = Vec::new();
    for r in refs {
        for (field, detail) in [
            ("uid", "must not be empty"),
            ("apiVersion", "version must not be empty"),
            ("kind", "must not be empty"),
            ("name", "must not be empty"),
        ] {
            if r[field].as_str().unwrap_or_default().is_empty() {
                causes.push(Cause::invalid(
                    format!("metadata.ownerReferences.{field}"),
                    &Value::String(String::new()),
                    detail,
                ));
            }
        }
    }
    let controllers: Vec<&Value> = refs.iter().filter(|r| r["controller"].as_bool() == Some(true)).collect();
    if controllers.len() > 1 {
        let names: Vec<String> = controllers
            .iter()
            .map(|r| format!("{}/{}", r["kind"].as_str().unwrap_or_default(), r["name"].as_str().unwrap_or_default()))
            .collect();
        causes.push(Cause::new(
            "FieldValueInvalid",
            "metadata.ownerReferences",
            format!(
                "Invalid value: {}: Only one reference can have Controller set to true. Found \"true\" in references for {}",
                go_json(&Value::Array(refs.clone()), &["apiVersion", "kind", "name", "uid", "controller", "blockOwnerDeletion"]),
                names.join(" and ")
            ),
        ));
    }
    causes
}

/// JSON of a list of objects with keys in Go struct order (as `%v` of a typed value).
fn go_json(v: &Value, order: &[&str]) -> String {
    match v {
        Value::Array(items) => format!("[{}]", items.iter().map(|i| go_json(i, order)).collect::<Vec<_>>().join(",")),
        Value::Object(m) => {
            let parts: Vec<String> = order
                .iter()
                .filter_map(|k| m.get(*k).map(|x| format!("{}:{}", Value::String(k.to_string()), x)))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// RFC 3339 now, second precision (as metadata timestamps are).
pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn new_uid() -> String {
    let b: [u8; 16] = rand_bytes();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

pub use crate::repo::crypto::random_bytes as rand_bytes;

/// Five characters as `generateName` appends.
pub fn random_suffix() -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    rand_bytes::<5>().iter().map(|b| ALPHA[*b as usize % ALPHA.len()] as char).collect()
}
