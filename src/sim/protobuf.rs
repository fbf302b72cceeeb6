//! Protobuf request bodies. kubectl's typed commands (`create namespace`, `create
//! configmap`, `create token`, `auth can-i`, …) send built-in kinds as
//! `application/vnd.kubernetes.protobuf` and do not fall back to JSON, so the server
//! turns such a body into the JSON object a JSON client would have sent.
//!
//! The decoder is descriptor-driven: `proto/k8s.binpb` is the compiled descriptor set
//! of the upstream `generated.proto` files (kubernetes/api, kubernetes/apimachinery;
//! `scripts/gen-k8s-descriptors.sh` rebuilds it), read with `prost-reflect`. No field
//! numbers are written by hand. The generated crates with Rust types (`k8s-pb`) carry
//! no JSON mapping, so they would need a hand-written conversion per kind; here one
//! mapping covers every kind, the way Go's types marshal to JSON:
//!
//! - The envelope (apimachinery `pkg/runtime/serializer/protobuf/protobuf.go`): the
//!   prefix `k8s\0`, then a `runtime.Unknown` whose `typeMeta` names the kind and whose
//!   `raw` is the object's message. `apiVersion` and `kind` come from the envelope.
//! - Field names are the proto names, which go-to-protobuf takes from the JSON tags.
//! - Go's `omitempty`: an empty string, `false`, `0`, empty bytes, lists and maps are
//!   left out; a nested struct is always written (`"status": {}`), as Go does.
//!   A pointer field explicitly set to its zero value (`replicas: 0`) cannot be told
//!   from a plain field at its zero value in the wire format and is left out too.
//! - Types with their own encoding (apimachinery): `meta/v1.Time` (whole seconds,
//!   RFC 3339; `time_proto.go`), `MicroTime` (microseconds), `Duration` (Go's
//!   duration string), `resource.Quantity` (its string), `intstr.IntOrString` (a number
//!   or a string by `type`), `runtime.RawExtension` and `meta/v1.FieldsV1` (embedded
//!   JSON), the `ExtraValue`/`Verbs` string-list wrappers (a JSON array), and `bytes`
//!   (base64, as Go's `[]byte`).

use base64::Engine;
use prost_reflect::{DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, ReflectMessage, Value as PValue};
use serde_json::{Map, Value, json};
use std::sync::LazyLock;

/// The media type of protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";
const PREFIX: &[u8] = b"k8s\0";
const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(include_bytes!("proto/k8s.binpb").as_ref()).expect("the embedded descriptor set is valid")
});

/// The messages of the pool by index (types the apply machinery walks, see `managed`),
/// and the index of each full name (looked up on every field of every write).
static MESSAGES: LazyLock<Vec<MessageDescriptor>> = LazyLock::new(|| POOL.all_messages().collect());
static INDEX: LazyLock<std::collections::HashMap<String, usize>> =
    LazyLock::new(|| MESSAGES.iter().enumerate().map(|(i, m)| (m.full_name().to_string(), i)).collect());

/// The `+listType`, `+listMapKey`, `+patchMergeKey`, `+patchStrategy`, `+mapType` and
/// `+structType` markers of the same files, by message and field
/// (`scripts/k8s-list-types.py` writes it).
static MARKERS: LazyLock<Value> = LazyLock::new(|| {
    serde_json::from_str(include_str!("proto/k8s-lists.json")).expect("the embedded marker table is valid")
});

/// The message index of a built-in kind (`apps/v1`, `Deployment`).
pub fn kind_index(api_version: &str, kind: &str) -> Option<usize> {
    message_index(kind_message(api_version, kind)?.full_name())
}

/// The message index of a type by its full name.
pub fn message_index(full_name: &str) -> Option<usize> {
    INDEX.get(full_name).copied()
}

/// A field of a message: its number and the message its values are (a list's items, a
/// map's values), if they are messages.
pub fn field_of(msg: usize, name: &str) -> Option<(u32, Option<usize>)> {
    let f = MESSAGES.get(msg)?.get_field_by_name(name)?;
    let value_kind = if f.is_map() {
        f.kind().as_message().and_then(|entry| entry.get_field_by_name("value")).map(|v| v.kind())
    } else {
        Some(f.kind())
    };
    let child = match value_kind {
        Some(prost_reflect::Kind::Message(m)) => message_index(m.full_name()),
        _ => None,
    };
    Some((f.number(), child))
}

/// The markers of a field (`{}` when it has none).
pub fn field_markers(msg: usize, number: u32) -> &'static Value {
    static NONE: Value = Value::Null;
    let Some(m) = MESSAGES.get(msg) else { return &NONE };
    let Some(f) = m.get_field(number) else { return &NONE };
    &MARKERS[m.full_name()]["fields"][f.name()]
}

/// Whether a message is `+structType=atomic` (owned and replaced as a whole).
pub fn message_atomic(msg: usize) -> bool {
    MESSAGES.get(msg).is_some_and(|m| MARKERS[m.full_name()]["atomic"] == true)
}

/// Whether a `Content-Type` names the protobuf encoding.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(MEDIA_TYPE)
}

/// Decodes an enveloped protobuf object into JSON, with Go's messages for bad input.
pub fn decode(body: &[u8]) -> Result<Value, String> {
    if body.is_empty() {
        return Err("empty data".into());
    }
    if !body.starts_with(PREFIX) {
        return Err(format!(
            "provided data does not appear to be a protobuf message, expected prefix {}",
            go_bytes(PREFIX)
        ));
    }
    if body.len() == PREFIX.len() {
        return Err("empty body".into());
    }
    let unknown = message("k8s.io.apimachinery.pkg.runtime.Unknown")?;
    let env = DynamicMessage::decode(unknown, &body[PREFIX.len()..]).map_err(|e| e.to_string())?;
    let type_meta = field_message(&env, "typeMeta");
    let api_version = type_meta.as_ref().map(|m| field_string(m, "apiVersion")).unwrap_or_default();
    let kind = type_meta.as_ref().map(|m| field_string(m, "kind")).unwrap_or_default();
    let raw = match env.get_field_by_name("raw").as_deref() {
        Some(PValue::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let desc = kind_message(&api_version, &kind).ok_or_else(|| {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", &api_version));
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        format!("no kind {kind:?} is registered for version {gv:?} in scheme \"pkg/api/legacyscheme/scheme.go:30\"")
    })?;
    let msg = DynamicMessage::decode(desc, raw).map_err(|e| e.to_string())?;
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("apiVersion".into(), json!(api_version));
    if let Value::Object(fields) = to_json(&msg) {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

fn message(name: &str) -> Result<MessageDescriptor, String> {
    POOL.get_message_by_name(name).ok_or_else(|| format!("no descriptor for {name}"))
}

/// The message of a kind: `k8s.io.api.<package>.<version>.<Kind>`, where the package is
/// the group's directory in kubernetes/api; meta kinds (DeleteOptions, …) in any group.
fn kind_message(api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let package = match group {
        "" => "core",
        "rbac.authorization.k8s.io" => "rbac",
        g => g.split('.').next().unwrap_or(g),
    };
    POOL.get_message_by_name(&format!("k8s.io.api.{package}.{version}.{kind}")).or_else(|| match kind {
        "DeleteOptions" | "ListOptions" | "GetOptions" | "CreateOptions" | "UpdateOptions" | "PatchOptions"
        | "Status" => POOL.get_message_by_name(&format!("{META}.{kind}")),
        _ => None,
    })
}

fn field_message(m: &DynamicMessage, name: &str) -> Option<DynamicMessage> {
    match m.get_field_by_name(name).as_deref() {
        Some(PValue::Message(x)) if m.has_field_by_name(name) => Some(x.clone()),
        _ => None,
    }
}

fn field_string(m: &DynamicMessage, name: &str) -> String {
    match m.get_field_by_name(name).as_deref() {
        Some(PValue::String(s)) => s.clone(),
        _ => String::new(),
    }
}

fn field_i64(m: &DynamicMessage, name: &str) -> i64 {
    match m.get_field_by_name(name).as_deref() {
        Some(PValue::I64(v)) => *v,
        Some(PValue::I32(v)) => i64::from(*v),
        _ => 0,
    }
}

/// Embedded Go structs (`json:""`): their fields are the parent's in JSON, but a field of
/// their own in protobuf. Found with `json:""` in kubernetes/api `*/types.go`.
const INLINE: &[(&str, &str)] = &[
    ("k8s.io.api.core.v1.Volume", "volumeSource"),
    ("k8s.io.api.core.v1.PersistentVolumeSpec", "persistentVolumeSource"),
    ("k8s.io.api.core.v1.SecretProjection", "localObjectReference"),
    ("k8s.io.api.core.v1.ConfigMapVolumeSource", "localObjectReference"),
    ("k8s.io.api.core.v1.ConfigMapProjection", "localObjectReference"),
    ("k8s.io.api.core.v1.ConfigMapKeySelector", "localObjectReference"),
    ("k8s.io.api.core.v1.SecretKeySelector", "localObjectReference"),
    ("k8s.io.api.core.v1.ConfigMapEnvSource", "localObjectReference"),
    ("k8s.io.api.core.v1.SecretEnvSource", "localObjectReference"),
    ("k8s.io.api.core.v1.Probe", "handler"),
    ("k8s.io.api.core.v1.EphemeralContainer", "ephemeralContainerCommon"),
];

/// A message as Go's JSON encoding writes the type it was generated from.
fn to_json(m: &DynamicMessage) -> Value {
    let desc = m.descriptor();
    let name = desc.full_name();
    if let Some(special) = special(name, m) {
        return special;
    }
    let mut out = Map::new();
    for (field, value) in m.fields() {
        if let PValue::Message(inner) = value
            && INLINE.contains(&(name, field.name()))
        {
            if let Value::Object(fields) = to_json(inner) {
                out.extend(fields);
            }
            continue;
        }
        let v = match value {
            PValue::List(items) => {
                if items.is_empty() {
                    continue;
                }
                Value::Array(items.iter().map(scalar_or_message).collect())
            }
            PValue::Map(entries) => {
                if entries.is_empty() {
                    continue;
                }
                let mut obj = Map::new();
                for (k, v) in entries {
                    let key = match k {
                        MapKey::String(s) => s.clone(),
                        MapKey::Bool(b) => b.to_string(),
                        MapKey::I32(n) => n.to_string(),
                        MapKey::I64(n) => n.to_string(),
                        MapKey::U32(n) => n.to_string(),
                        MapKey::U64(n) => n.to_string(),
                    };
                    obj.insert(key, scalar_or_message(v));
                }
                Value::Object(obj)
            }
            PValue::Message(inner) => {
                let v = to_json(inner);
                if v.is_null() {
                    continue;
                }
                v
            }
            other => {
                let v = scalar_or_message(other);
                if is_zero(&v) {
                    continue;
                }
                v
            }
        };
        out.insert(field.name().to_string(), v);
    }
    Value::Object(out)
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(_) => false,
    }
}

fn scalar_or_message(v: &PValue) -> Value {
    match v {
        PValue::Bool(b) => json!(b),
        PValue::I32(n) => json!(n),
        PValue::I64(n) => json!(n),
        PValue::U32(n) => json!(n),
        PValue::U64(n) => json!(n),
        PValue::F32(n) => json!(n),
        PValue::F64(n) => json!(n),
        PValue::String(s) => json!(s),
        PValue::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        PValue::EnumNumber(n) => json!(n),
        PValue::Message(m) => to_json(m),
        PValue::List(items) => Value::Array(items.iter().map(scalar_or_message).collect()),
        PValue::Map(_) => Value::Null,
    }
}

/// The types whose JSON is not their fields (see the module comment).
fn special(name: &str, m: &DynamicMessage) -> Option<Value> {
    let raw_json = |field: &str| match m.get_field_by_name(field).as_deref() {
        Some(PValue::Bytes(b)) if !b.is_empty() => {
            Some(serde_json::from_slice::<Value>(b).ok().or_else(|| decode(b).ok()).unwrap_or(Value::Null))
        }
        _ => Some(Value::Null),
    };
    Some(match name.strip_prefix("k8s.io.apimachinery.pkg.")? {
        "apis.meta.v1.Time" => {
            // An empty message is the zero time, which Go writes as null.
            if m.fields().next().is_none() {
                return Some(Value::Null);
            }
            let ts = jiff::Timestamp::from_second(field_i64(m, "seconds")).ok()?;
            json!(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        }
        "apis.meta.v1.MicroTime" => {
            if m.fields().next().is_none() {
                return Some(Value::Null);
            }
            let nanos = i32::try_from(field_i64(m, "nanos")).unwrap_or(0) / 1000 * 1000;
            let ts = jiff::Timestamp::new(field_i64(m, "seconds"), nanos).ok()?;
            json!(ts.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string())
        }
        "apis.meta.v1.Duration" => json!(go_duration(field_i64(m, "duration"))),
        "api.resource.Quantity" => json!(field_string(m, "string")),
        "util.intstr.IntOrString" => {
            if field_i64(m, "type") == 1 {
                json!(field_string(m, "strVal"))
            } else {
                json!(field_i64(m, "intVal"))
            }
        }
        "runtime.RawExtension" => raw_json("raw")?,
        "apis.meta.v1.FieldsV1" => raw_json("Raw")?,
        "apis.meta.v1.Verbs" => list_items(m),
        _ => return None,
    })
    .or_else(|| name.ends_with(".ExtraValue").then(|| list_items(m)))
}

fn list_items(m: &DynamicMessage) -> Value {
    match m.get_field_by_name("items").as_deref() {
        Some(PValue::List(items)) => Value::Array(items.iter().map(scalar_or_message).collect()),
        _ => json!([]),
    }
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    // `value` in units of 10^digits, printed with its fraction trimmed.
    let frac = |value: u64, digits: u32| {
        let unit = 10u64.pow(digits);
        let (whole, rest) = (value / unit, value % unit);
        if rest == 0 {
            whole.to_string()
        } else {
            let f = format!("{rest:0width$}", width = digits as usize);
            format!("{whole}.{}", f.trim_end_matches('0'))
        }
    };
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", frac(n, 3));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", frac(n, 6));
    }
    let secs = n / 1_000_000_000;
    let sub = n % 1_000_000_000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let s = frac(s * 1_000_000_000 + sub, 9);
    match (h, m) {
        (0, 0) => format!("{sign}{s}s"),
        (0, m) => format!("{sign}{m}m{s}s"),
        (h, m) => format!("{sign}{h}h{m}m{s}s"),
    }
}

/// Go's `%v` of a byte slice: `[107 56 115 0]`.
fn go_bytes(b: &[u8]) -> String {
    let parts: Vec<String> = b.iter().map(u8::to_string).collect();
    format!("[{}]", parts.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::prost::Message;

    /// Encodes a JSON-shaped object of a kind the way Go's protobuf serializer does,
    /// for tests: fields set through reflection, wrapped in the envelope.
    fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
        let mut env = DynamicMessage::new(message("k8s.io.apimachinery.pkg.runtime.Unknown").unwrap());
        let mut tm = DynamicMessage::new(message("k8s.io.apimachinery.pkg.runtime.TypeMeta").unwrap());
        tm.set_field_by_name("apiVersion", PValue::String(api_version.into()));
        tm.set_field_by_name("kind", PValue::String(kind.into()));
        env.set_field_by_name("typeMeta", PValue::Message(tm));
        env.set_field_by_name("raw", PValue::Bytes(raw.into()));
        let mut out = PREFIX.to_vec();
        out.extend(env.encode_to_vec());
        out
    }

    #[test]
    fn embedded_structs_are_inlined() {
        let mut vol = DynamicMessage::new(message("k8s.io.api.core.v1.Volume").unwrap());
        vol.set_field_by_name("name", PValue::String("v".into()));
        let mut src = DynamicMessage::new(message("k8s.io.api.core.v1.VolumeSource").unwrap());
        src.set_field_by_name(
            "emptyDir",
            PValue::Message(DynamicMessage::new(message("k8s.io.api.core.v1.EmptyDirVolumeSource").unwrap())),
        );
        vol.set_field_by_name("volumeSource", PValue::Message(src));
        assert_eq!(to_json(&vol), json!({"name": "v", "emptyDir": {}}));
    }

    #[test]
    fn durations_print_as_go_does() {
        assert_eq!(go_duration(0), "0s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
        assert_eq!(go_duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(go_duration(60_000_000_000), "1m0s");
        assert_eq!(go_duration(-2_000), "-2µs");
    }

    #[test]
    fn a_configmap_decodes_with_go_json_conventions() {
        let cm = message("k8s.io.api.core.v1.ConfigMap").unwrap();
        let mut m = DynamicMessage::new(cm);
        let mut meta = DynamicMessage::new(message(&format!("{META}.ObjectMeta")).unwrap());
        meta.set_field_by_name("name", PValue::String("c".into()));
        // Go writes non-pointer fields even when empty; they must not appear in JSON.
        meta.set_field_by_name("namespace", PValue::String(String::new()));
        meta.set_field_by_name(
            "creationTimestamp",
            PValue::Message(DynamicMessage::new(message(&format!("{META}.Time")).unwrap())),
        );
        m.set_field_by_name("metadata", PValue::Message(meta));
        let mut data = std::collections::HashMap::new();
        data.insert(MapKey::String("a".into()), PValue::String("1".into()));
        m.set_field_by_name("data", PValue::Map(data));
        let mut bin = std::collections::HashMap::new();
        bin.insert(MapKey::String("b".into()), PValue::Bytes(b"\x00\x01".to_vec().into()));
        m.set_field_by_name("binaryData", PValue::Map(bin));
        let got = decode(&envelope("v1", "ConfigMap", m.encode_to_vec())).unwrap();
        assert_eq!(
            got,
            json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": "c"},
                   "data": {"a": "1"}, "binaryData": {"b": "AAE="}})
        );
    }

    #[test]
    fn special_types_and_bad_input() {
        let svc = message("k8s.io.api.core.v1.ServicePort").unwrap();
        let mut port = DynamicMessage::new(svc);
        let mut target = DynamicMessage::new(message("k8s.io.apimachinery.pkg.util.intstr.IntOrString").unwrap());
        target.set_field_by_name("type", PValue::I64(1));
        target.set_field_by_name("strVal", PValue::String("http".into()));
        port.set_field_by_name("targetPort", PValue::Message(target));
        port.set_field_by_name("port", PValue::I32(80));
        assert_eq!(to_json(&port), json!({"port": 80, "targetPort": "http"}));

        let mut time = DynamicMessage::new(message(&format!("{META}.Time")).unwrap());
        time.set_field_by_name("seconds", PValue::I64(1_700_000_000));
        assert_eq!(to_json(&time), json!("2023-11-14T22:13:20Z"));

        assert_eq!(decode(b"").unwrap_err(), "empty data");
        assert_eq!(
            decode(b"{\"kind\":1}").unwrap_err(),
            "provided data does not appear to be a protobuf message, expected prefix [107 56 115 0]"
        );
        assert!(decode(&envelope("v1", "Nope", vec![])).unwrap_err().starts_with("no kind \"Nope\" is registered"));
    }

    #[test]
    fn every_served_builtin_kind_has_a_message() {
        for (av, kind) in [
            ("v1", "Namespace"),
            ("v1", "Secret"),
            ("v1", "ServiceAccount"),
            ("v1", "Service"),
            ("v1", "PersistentVolumeClaim"),
            ("apps/v1", "Deployment"),
            ("apps/v1", "StatefulSet"),
            ("batch/v1", "Job"),
            ("batch/v1", "CronJob"),
            ("rbac.authorization.k8s.io/v1", "RoleBinding"),
            ("authentication.k8s.io/v1", "TokenRequest"),
            ("authorization.k8s.io/v1", "SelfSubjectAccessReview"),
            ("coordination.k8s.io/v1", "Lease"),
            ("policy/v1", "PodDisruptionBudget"),
            ("storage.k8s.io/v1", "StorageClass"),
            ("autoscaling/v1", "Scale"),
            ("v1", "DeleteOptions"),
        ] {
            assert!(kind_message(av, kind).is_some(), "{av} {kind}");
        }
    }
}
