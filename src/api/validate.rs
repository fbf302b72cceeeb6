//! The pure `validate` step: the CRDs' CEL rules (evaluated here exactly as the API server
//! evaluates them) plus the checks CEL cannot express. Controllers call it before acting
//! and report failures as a `Degraded` condition with reason `InvalidSpec`.

use super::field::{FieldError, go_quote};
use super::schedule::{Schedule, go_duration};
use super::{BackupLocation, BackupPolicy, RestorePlan, RestorePoint};
use kube::core::cel::{ValidationError, Validator};
use kube::{CustomResourceExt, ResourceExt};
use serde::Serialize;
use serde_json::Value;

/// Validation of a whole object, optionally as an update of `old`.
pub trait Validate: CustomResourceExt + Serialize + Sized {
    /// Checks CEL cannot express. `self` has passed schema and CEL validation.
    fn semantic_errors(&self) -> Vec<FieldError> {
        Vec::new()
    }

    /// Every rule: CEL rules first, then the semantic checks if the CEL rules pass.
    fn validate(&self, old: Option<&Self>) -> Vec<FieldError> {
        let object = serde_json::to_value(self).unwrap_or(Value::Null);
        let old = old.and_then(|o| serde_json::to_value(o).ok());
        let errors = cel_errors(&schema_of::<Self>(), &object, old.as_ref());
        if errors.is_empty() { self.semantic_errors() } else { errors }
    }
}

/// The `openAPIV3Schema` of a kind's CRD. Generated once per kind and kept: generating
/// it (schemars and the structural rewrite) took about a quarter of the operator's CPU
/// when every reconcile validated its object (`make bench-operator`).
pub fn schema_of<K: CustomResourceExt>() -> std::sync::Arc<Value> {
    type Schemas = std::sync::Mutex<std::collections::HashMap<&'static str, std::sync::Arc<Value>>>;
    static SCHEMAS: std::sync::OnceLock<Schemas> = std::sync::OnceLock::new();
    let schemas = SCHEMAS.get_or_init(Default::default);
    if let Some(s) = schemas.lock().unwrap_or_else(|e| e.into_inner()).get(K::crd_name()) {
        return s.clone();
    }
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null);
    schemas
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(K::crd_name())
        .or_insert(std::sync::Arc::new(schema))
        .clone()
}

/// Evaluates a schema's CEL rules against an object, with API-server-style errors.
pub fn cel_errors(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<FieldError> {
    match Validator::new().validate(schema, object, old) {
        Ok(()) => Vec::new(),
        Err(errors) => errors.iter().map(|e| from_cel(e, object)).collect(),
    }
}

/// The API server shows the value for scalar fields and omits it for objects and lists.
fn from_cel(e: &ValidationError, object: &Value) -> FieldError {
    let field = e.field_path.trim_start_matches('.').to_string();
    let value = lookup(object, &field).filter(|v| !v.is_object() && !v.is_array()).cloned();
    FieldError::invalid(field, value, e.message.clone())
}

/// Finds `spec.locations[1].name` in a JSON value.
pub fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    let mut cur = value;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (name, indexes) = part.split_once('[').map_or((part, ""), |(n, rest)| (n, rest));
        if !name.is_empty() {
            cur = cur.get(name)?;
        }
        for idx in indexes.split('[').filter(|s| !s.is_empty()) {
            cur = cur.get(idx.trim_end_matches(']').parse::<usize>().ok()?)?;
        }
    }
    Some(cur)
}

fn invalid_str(field: &str, value: &str, detail: impl Into<String>) -> FieldError {
    FieldError::invalid(field, Some(Value::String(value.into())), detail)
}

fn check_schedule(field: &str, expr: &str, tz: &str, errors: &mut Vec<FieldError>) -> Option<Schedule> {
    // A bad time zone is reported once, on spec.timeZone, by the caller.
    super::schedule::parse_time_zone(tz).ok()?;
    Schedule::parse(expr, tz).map_err(|e| errors.push(invalid_str(field, expr, e))).ok()
}

impl Validate for BackupPolicy {
    fn semantic_errors(&self) -> Vec<FieldError> {
        let spec = &self.spec;
        let mut errors = Vec::new();
        if let Err(e) = super::schedule::parse_time_zone(&spec.time_zone) {
            errors.push(invalid_str("spec.timeZone", &spec.time_zone, e));
        }
        let tz = &spec.time_zone;
        let schedule = check_schedule("spec.schedule", &spec.schedule, tz, &mut errors);
        if let (Some(schedule), Some(rpo)) = (&schedule, &spec.rpo) {
            let rpo: std::time::Duration = (*rpo).into();
            if let Some(gap) = schedule.max_gap(jiff::Timestamp::now())
                && gap > rpo
            {
                errors.push(invalid_str(
                    "spec.rpo",
                    &go_duration(rpo),
                    format!(
                        "the schedule {} leaves up to {} between runs, so this RPO cannot be met; run more often or raise the RPO",
                        go_quote(&spec.schedule),
                        go_duration(gap)
                    ),
                ));
            }
        }
        for (i, loc) in spec.locations.iter().enumerate() {
            if let Some(expr) = &loc.schedule {
                check_schedule(&format!("spec.locations[{i}].schedule"), expr, tz, &mut errors);
            }
        }
        if let Some(v) = &spec.verification {
            check_schedule("spec.verification.schedule", &v.schedule, tz, &mut errors);
        }
        if let Some(d) = &spec.drill {
            check_schedule("spec.drill.schedule", &d.schedule, tz, &mut errors);
            let own = self.namespace();
            if let (Some(target), Some(own)) = (&d.target_namespace, own.as_deref())
                && target == own
            {
                errors.push(invalid_str(
                    "spec.drill.targetNamespace",
                    target,
                    "a drill restores into a scratch namespace that it deletes afterwards; it must not be the policy's own namespace",
                ));
            }
        }
        errors
    }
}

impl Validate for BackupLocation {
    fn semantic_errors(&self) -> Vec<FieldError> {
        let url = &self.spec.url;
        let mut errors = Vec::new();
        if let Err(e) = check_location_url(url) {
            errors.push(invalid_str("spec.url", url, e));
        }
        let interval: std::time::Duration = self.spec.check_interval.into();
        if interval < std::time::Duration::from_secs(10) {
            errors.push(invalid_str("spec.checkInterval", &go_duration(interval), "must be at least 10s"));
        }
        errors
    }
}

/// Bucket and path rules of each provider, beyond the scheme the CEL rule checks.
pub fn check_location_url(raw: &str) -> Result<(), String> {
    let url = url::Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    let bucket = url.host_str().unwrap_or_default();
    match url.scheme() {
        "s3" if !(3..=63).contains(&bucket.len()) || bucket.contains('_') || bucket.contains("..") => {
            Err("S3 bucket names are 3 to 63 characters of a-z, 0-9, '.' and '-'".into())
        }
        "gs" if !(3..=222).contains(&bucket.len()) => Err("GCS bucket names are 3 to 222 characters".into()),
        "az" if !(3..=63).contains(&bucket.len()) || bucket.contains('.') || bucket.contains('_') => {
            Err("Azure container names are 3 to 63 characters of a-z, 0-9 and '-'".into())
        }
        "file" if url.path_segments().into_iter().flatten().any(|s| s == "..") => {
            Err("file:// paths must be absolute and must not contain '..'".into())
        }
        "s3" | "gs" | "az" | "file" => Ok(()),
        other => Err(format!("unsupported scheme {other:?}")),
    }
}

impl Validate for RestorePlan {
    fn semantic_errors(&self) -> Vec<FieldError> {
        let spec = &self.spec;
        let mut errors = Vec::new();
        let own = self.namespace();
        let source_ns = spec.source.namespace.clone().or_else(|| own.clone());
        let target_ns = spec.target.namespace.clone().or_else(|| own.clone());
        if spec.mode == super::restore_plan::RestoreMode::Drill
            && let (Some(src), Some(dst)) = (&source_ns, &target_ns)
            && src == dst
        {
            let err = "a drill restores into a scratch namespace and deletes it afterwards; set spec.target.namespace to a namespace other than the source namespace";
            errors.push(match &spec.target.namespace {
                Some(t) => invalid_str("spec.target.namespace", t, err),
                None => FieldError::required("spec.target.namespace", err),
            });
        }
        errors
    }
}

impl Validate for RestorePoint {}
