//! Writes: create, update, patch, delete, with admission (built-in rules, CRD schema and
//! CEL), generation, managedFields, finalizers and preconditions.

use super::api::{Reply, Req, Target, ok, present};
use super::custom::{self, FieldValidation};
use super::errors::{ApiError, ApiResult, Cause};
use super::managed;
use super::registry::ResType;
use super::store::Store;
use super::{Server, builtin, meta, patch};
use serde_json::{Value, json};

/// Decodes a request body as JSON, with the server's message for malformed input.
pub(super) fn decode(req: &Req, rt: &ResType) -> ApiResult<Value> {
    serde_json::from_slice(&req.body).map_err(|e| {
        let text = String::from_utf8_lossy(&req.body);
        let snippet: String = text.chars().take(30).collect();
        let why = if e.is_eof() { "unexpected end of JSON input".to_string() } else { e.to_string() };
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): couldn't get version/kind; json parse error: {why} ({snippet} ...)",
            rt.kind
        ))
    })
}

pub(super) fn check_kind(rt: &ResType, obj: &Value) -> ApiResult<()> {
    let kind = obj["kind"].as_str().unwrap_or_default();
    let av = obj["apiVersion"].as_str().unwrap_or_default();
    if kind.is_empty() && av.is_empty() {
        return Ok(());
    }
    if kind != rt.kind || (!av.is_empty() && av != rt.api_version()) {
        let v = av.rsplit_once('/').map_or(av, |(_, v)| v);
        let internal = if rt.group.is_empty() { "core" } else { rt.group.split('.').next().unwrap_or_default() };
        return Err(ApiError::bad_request(format!(
            "{kind} in version {v:?} cannot be handled as a {}: converting ({v}.{kind}) to ({internal}.{}): unknown conversion",
            rt.kind, rt.kind
        )));
    }
    Ok(())
}

/// Whether anything but metadata and status changed (what bumps `generation`).
fn has_spec_change(old: &Value, new: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(m) = v.as_object_mut() {
            m.remove("metadata");
            m.remove("status");
            m.remove("apiVersion");
            m.remove("kind");
        }
        v
    };
    strip(old) != strip(new)
}

/// Runs kind-specific and schema admission; returns warnings.
fn admit(
    store: &Store,
    rt: &ResType,
    obj: &mut Value,
    old: Option<&Value>,
    fv: FieldValidation,
    status_only: bool,
    duplicates: &[String],
) -> ApiResult<Vec<String>> {
    let mut warnings = Vec::new();
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let mut causes = Vec::new();
    let q = crate::api::field::go_quote;
    let mut problems: Vec<String> = Vec::new();
    if rt.is_custom() {
        problems.extend(custom::unknown_fields(rt, obj).iter().map(|f| format!("unknown field {}", q(f))));
    } else if rt.kind != "Event" {
        // (Events are checked by their own rules: the two APIs share one storage shape.)
        let unknown = super::openapi::drop_unknown_builtin_fields(&rt.group, &rt.kind, obj);
        problems.extend(unknown.iter().map(|f| format!("unknown field {}", q(f))));
    }
    problems.extend(duplicates.iter().map(|f| format!("duplicate field {}", q(f))));
    if !problems.is_empty() {
        match fv {
            FieldValidation::Strict => {
                return Err(ApiError::bad_request(format!(
                    "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
                    rt.kind,
                    rt.version,
                    rt.kind,
                    problems.join(", ")
                )));
            }
            FieldValidation::Warn => warnings.extend(problems),
            FieldValidation::Ignore => {}
        }
    }
    if rt.is_custom() {
        custom::prune_and_default(rt, obj);
        causes.extend(if status_only { custom::validate_status(rt, obj, old) } else { custom::validate(rt, obj, old) });
    } else {
        builtin::default(rt, obj);
        causes.extend(builtin::validate(store, rt, obj, old));
    }
    causes.extend(meta::validate(&obj["metadata"], rt.kind == "Namespace"));
    if !causes.is_empty() {
        let kind = rt.kind.clone();
        // Events are validated as the one internal type whichever API they came through.
        let core;
        let rt = if rt.kind == "Event" {
            core = store.find("", "v1", "events").expect("events");
            &*core
        } else {
            rt
        };
        return Err(ApiError::invalid(rt, &kind, &name, causes));
    }
    Ok(warnings)
}

/// Keys given twice in a create or replace body (patches are decoded elsewhere).
fn body_duplicates(req: &Req) -> Vec<String> {
    if req.method == "PATCH" || req.body.is_empty() { Vec::new() } else { custom::duplicate_fields(&req.body) }
}

fn now() -> String {
    meta::now()
}

/// A new object's namespace must exist and not be terminating.
fn check_namespace(store: &Store, t: &Target, name: &str) -> ApiResult<()> {
    let Some(ns) = &t.namespace else { return Ok(()) };
    let nsrt = store.find("", "v1", "namespaces").expect("namespaces");
    match store.get(&nsrt.key(), "", ns) {
        None => Err(ApiError::not_found(&nsrt, ns)),
        Some(n) if n["metadata"].get("deletionTimestamp").is_some() => Err(ApiError::status(
            403,
            "Forbidden",
            format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                t.rt.qualified()
            ),
            Some(json!({"name": name, "kind": t.rt.plural, "causes": [{
                "reason": "NamespaceTerminating", "field": "metadata.namespace",
                "message": format!("namespace {ns} is being terminated"),
            }]})),
        )),
        Some(_) => Ok(()),
    }
}

/// A built-in object is decoded into Go types, where a JSON `null` is no value: it is
/// not stored (an embedded template's `creationTimestamp: null`, which clients send,
/// would otherwise make two equal templates differ).
fn drop_nulls(rt: &ResType, obj: &mut Value) {
    fn go(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.retain(|_, x| !x.is_null());
                m.values_mut().for_each(go);
            }
            Value::Array(a) => a.iter_mut().for_each(go),
            _ => {}
        }
    }
    if !rt.is_custom() {
        go(obj);
    }
}

pub fn dry_run(req: &Req) -> bool {
    req.q("dryRun") == Some("All")
}

/// The media type of server-side apply.
pub const APPLY_PATCH: &str = "application/apply-patch+yaml";

/// `ValidateCreateOptions`, `ValidateUpdateOptions`, `ValidatePatchOptions` of
/// apimachinery `pkg/apis/meta/v1/validation/validation.go`: the query options of a
/// write, refused together as a 422 on `<kind>.meta.k8s.io ""`; the field validation
/// asked for.
pub fn validate_options(req: &Req, kind: &str, patch_type: Option<&str>) -> ApiResult<FieldValidation> {
    let mut causes = Vec::new();
    let fm = req.q("fieldManager").unwrap_or("");
    match patch_type {
        // kubectl defaults it; controllers have to set it.
        Some(APPLY_PATCH) if fm.is_empty() => {
            causes.push(Cause::required("fieldManager", "is required for apply patch"))
        }
        Some(pt) if pt != APPLY_PATCH && req.q("force").is_some() => {
            causes.push(Cause::forbidden("force", "may not be specified for non-apply patch"))
        }
        _ => {}
    }
    if fm.len() > 128 {
        causes.push(Cause::new("FieldValueTooLong", "fieldManager", "Too long: may not be more than 128 bytes"));
    }
    for (i, c) in fm.chars().enumerate() {
        if c.is_control() {
            causes.push(Cause::invalid(
                "fieldManager",
                &json!(fm),
                &format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
        }
    }
    causes.extend(dry_run_cause(req.q("dryRun")));
    let fv = FieldValidation::parse(req.q("fieldValidation"), kind);
    if let Err(e) = &fv {
        let c = &e.body["details"]["causes"][0];
        causes.push(Cause::new("FieldValueNotSupported", "fieldValidation", c["message"].as_str().unwrap_or_default()));
    }
    if !causes.is_empty() {
        return Err(ApiError::invalid_in("meta.k8s.io", kind, "", causes));
    }
    fv
}

/// `ValidateDryRun`: only `All` (the value printed as the list it is).
fn dry_run_cause(v: Option<&str>) -> Option<Cause> {
    let v = v?;
    (v != "All").then(|| Cause::not_supported("dryRun", &format!("[{}]", crate::api::field::go_quote(v)), &["All"]))
}

pub fn create(server: &Server, req: &Req, t: &Target) -> ApiResult<Reply> {
    let fv = validate_options(req, "CreateOptions", None)?;
    let obj = decode(req, &t.rt)?;
    let mut store = server.store();
    let (obj, warnings) = create_in(&mut store, req, t, obj, fv)?;
    Ok(Reply::Json { code: 201, body: present(&t.rt, &obj), warnings })
}

/// The create path, shared with server-side apply of a new object.
pub fn create_in(
    store: &mut Store,
    req: &Req,
    t: &Target,
    mut obj: Value,
    fv: FieldValidation,
) -> ApiResult<(Value, Vec<String>)> {
    check_kind(&t.rt, &obj)?;
    if !obj.is_object() {
        return Err(ApiError::bad_request("the object provided is not an object"));
    }
    drop_nulls(&t.rt, &mut obj);
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    let body_ns = obj["metadata"]["namespace"].as_str().map(String::from);
    if let (Some(b), Some(ns)) = (&body_ns, &t.namespace)
        && !b.is_empty()
        && b != ns
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if obj["metadata"].get("resourceVersion").is_some_and(|v| !v.as_str().unwrap_or_default().is_empty()) {
        return Err(ApiError::internal("resourceVersion should not be set on objects to be created"));
    }
    let mut name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if name.is_empty() {
        if let Some(g) = obj["metadata"]["generateName"].as_str().filter(|g| !g.is_empty()) {
            name = format!("{g}{}", meta::random_suffix());
            obj["metadata"]["name"] = json!(name);
        } else {
            return Err(ApiError::invalid(
                &t.rt,
                &t.rt.kind.clone(),
                "",
                vec![Cause::required("metadata.name", "name or generateName is required")],
            ));
        }
    }
    if let Some(ns) = &t.namespace {
        obj["metadata"]["namespace"] = json!(ns);
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    check_namespace(store, t, &name)?;
    if t.rt.group == "events.k8s.io" {
        obj = super::events::to_core(&obj);
    }
    obj["apiVersion"] = json!(t.rt.storage_api_version());
    obj["kind"] = json!(t.rt.kind);
    if t.rt.status
        && let Some(m) = obj.as_object_mut()
    {
        // Status is set by controllers through the subresource, not on create.
        if t.rt.is_custom() || !matches!(t.rt.kind.as_str(), "PersistentVolume" | "Node") {
            m.remove("status");
        }
    }
    // The uid comes first: defaulting may use it (a Job's generated selector).
    obj["metadata"]["uid"] = json!(meta::new_uid());
    let warnings = admit(store, &t.rt, &mut obj, None, fv, false, &body_duplicates(req))?;
    let ns = t.namespace.clone().unwrap_or_default();
    if store.get(&t.rt.key(), &ns, &name).is_some() {
        return Err(ApiError::already_exists(&t.rt, &name));
    }
    if !t.rt.is_custom() {
        builtin::admit_create(store, &t.rt, &mut obj)?;
    }
    let m = obj["metadata"].as_object_mut().expect("metadata");
    m.insert("creationTimestamp".into(), json!(now()));
    m.remove("deletionTimestamp");
    m.remove("managedFields");
    if t.rt.generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    builtin::on_create(&t.rt, &mut obj);
    managed::record_write(&t.rt, None, &mut obj, &req.manager(), None);
    if dry_run(req) {
        // Nothing is stored, so there is no resourceVersion (registry/generic/registry/
        // dryrun.go copies the object as it would have been created).
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("resourceVersion");
        }
        return Ok((obj, warnings));
    }
    let stored = store.put(&t.rt.key(), obj);
    Ok((stored, warnings))
}

pub fn update(server: &Server, req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    let fv = validate_options(req, "UpdateOptions", None)?;
    let obj = decode(req, &t.rt)?;
    if t.sub.as_deref() == Some("scale") {
        return update_scale(server, req, t, name, obj);
    }
    check_kind(&t.rt, &obj)?;
    let body_name = obj["metadata"]["name"].as_str().unwrap_or_default();
    if body_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let mut store = server.store();
    let (obj, warnings, code) = update_in(&mut store, req, t, name, obj, fv, "Update")?;
    Ok(Reply::Json { code, body: present(&t.rt, &obj), warnings })
}

/// Replaces an object (PUT, and the end of every patch). Returns the stored object.
#[allow(clippy::too_many_arguments)]
pub fn update_in(
    store: &mut Store,
    req: &Req,
    t: &Target,
    name: &str,
    mut obj: Value,
    fv: FieldValidation,
    operation: &str,
) -> ApiResult<(Value, Vec<String>, u16)> {
    let ns = t.namespace.clone().unwrap_or_default();
    let Some(old) = store.get(&t.rt.key(), &ns, name).cloned() else {
        return Err(ApiError::not_found(&t.rt, name));
    };
    drop_nulls(&t.rt, &mut obj);
    let status_sub = t.sub.as_deref() == Some("status");
    if !obj["metadata"].is_object() {
        obj["metadata"] = json!({});
    }
    match obj["metadata"]["resourceVersion"].as_str().filter(|s| !s.is_empty()) {
        Some(rv) => {
            let _ = super::api::parse_rv(rv).map_err(|_| {
                ApiError::internal(format!(
                    "strconv.ParseUint: parsing {}: invalid syntax",
                    crate::api::field::go_quote(rv)
                ))
            })?;
            if Some(rv) != old["metadata"]["resourceVersion"].as_str() {
                return Err(ApiError::conflict(&t.rt, name));
            }
        }
        None if t.rt.is_custom() && operation == "Update" => {
            // This one check names the resource, not the kind, on the real server.
            return Err(ApiError::invalid(
                &t.rt,
                &t.rt.plural.clone(),
                name,
                vec![Cause::invalid("metadata.resourceVersion", &json!(0), "must be specified for an update")],
            ));
        }
        None => {}
    }
    if let Some(uid) = obj["metadata"]["uid"].as_str().filter(|u| !u.is_empty())
        && Some(uid) != old["metadata"]["uid"].as_str()
    {
        return Err(ApiError::conflict_msg(
            &t.rt,
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                old["metadata"]["uid"].as_str().unwrap_or_default()
            ),
        ));
    }
    if t.rt.group == "events.k8s.io" {
        obj = super::events::to_core(&obj);
    }
    obj["apiVersion"] = json!(t.rt.storage_api_version());
    obj["kind"] = json!(t.rt.kind);
    // The ephemeralcontainers subresource changes that list only, and only by adding
    // (core validation ValidatePodEphemeralContainersUpdate).
    if t.sub.as_deref() == Some("ephemeralcontainers") {
        let wanted = obj["spec"]["ephemeralContainers"].as_array().cloned().unwrap_or_default();
        let before = old["spec"]["ephemeralContainers"].as_array().cloned().unwrap_or_default();
        let mut causes = Vec::new();
        for e in &before {
            let n = e["name"].as_str().unwrap_or_default();
            match wanted.iter().find(|w| w["name"] == n) {
                None => causes.push(Cause::forbidden(
                    "spec.ephemeralContainers",
                    &format!("existing ephemeral containers {n:?} may not be removed"),
                )),
                Some(w) if w != e => causes.push(Cause::forbidden(
                    "spec.ephemeralContainers",
                    &format!("existing ephemeral containers {n:?} may not be changed"),
                )),
                Some(_) => {}
            }
        }
        let mut names: Vec<String> = ["containers", "initContainers"]
            .iter()
            .flat_map(|k| old["spec"][*k].as_array().cloned().unwrap_or_default())
            .filter_map(|c| c["name"].as_str().map(String::from))
            .collect();
        for (i, e) in wanted.iter().enumerate() {
            let n = e["name"].as_str().unwrap_or_default();
            if n.is_empty() {
                causes.push(Cause::required(format!("spec.ephemeralContainers[{i}].name"), ""));
            } else if names.iter().any(|x| x == n) {
                causes.push(Cause::new(
                    "FieldValueDuplicate",
                    format!("spec.ephemeralContainers[{i}].name"),
                    format!("Duplicate value: {}", crate::api::field::go_quote(n)),
                ));
            }
            names.push(n.to_string());
            if e["image"].as_str().is_none_or(str::is_empty) {
                causes.push(Cause::required(format!("spec.ephemeralContainers[{i}].image"), ""));
            }
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(&t.rt, &t.rt.kind, name, causes));
        }
        let mut next = old.clone();
        next["spec"]["ephemeralContainers"] = json!(wanted);
        if operation == "Apply" {
            next["metadata"]["managedFields"] = obj["metadata"]["managedFields"].clone();
        }
        obj = next;
    } else if t.rt.status {
        if status_sub {
            let status = obj.get("status").cloned();
            let mut next = old.clone();
            match status {
                Some(s) => next["status"] = s,
                None => {
                    next.as_object_mut().expect("object").remove("status");
                }
            }
            // Labels, annotations and finalizers are not changed through status either;
            // an apply's own managedFields are.
            if operation == "Apply" {
                next["metadata"]["managedFields"] = obj["metadata"]["managedFields"].clone();
            }
            obj = next;
        } else {
            match old.get("status") {
                Some(s) => obj["status"] = s.clone(),
                None => {
                    obj.as_object_mut().expect("object").remove("status");
                }
            }
        }
    }
    // Server-owned metadata is kept from the stored object.
    for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation", "namespace"]
    {
        match old["metadata"].get(k) {
            Some(v) => obj["metadata"][k] = v.clone(),
            None => {
                obj["metadata"].as_object_mut().expect("metadata").remove(k);
            }
        }
    }
    obj["metadata"]["name"] = json!(name);
    if obj["metadata"].get("managedFields").is_none()
        && let Some(mf) = old["metadata"].get("managedFields")
    {
        obj["metadata"]["managedFields"] = mf.clone();
    }
    if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("resourceVersion");
    }
    let warnings = admit(store, &t.rt, &mut obj, Some(&old), fv, status_sub, &body_duplicates(req))?;
    if !t.rt.is_custom() && !status_sub {
        builtin::admit_update(store, &t.rt, &old, &mut obj)?;
    }
    builtin::on_update(&t.rt, &old, &mut obj);
    // No new finalizers once deletion started.
    if old["metadata"].get("deletionTimestamp").is_some() {
        let before: Vec<&Value> =
            old["metadata"]["finalizers"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
        let added: Vec<String> = obj["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| !before.contains(f))
            .map(|f| format!("{f}"))
            .collect();
        if !added.is_empty() {
            let kind = t.rt.kind.clone();
            let cause = Cause::forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    added.join(", ")
                ),
            );
            return Err(ApiError::invalid(
                &t.rt,
                &kind,
                name,
                // The real server reports this twice (two validation passes each find it).
                vec![cause.clone(), cause],
            ));
        }
    }
    if t.rt.generation && has_spec_change(&old, &obj) {
        let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
        obj["metadata"]["generation"] = json!(g);
    }
    let mut cmp_old = old.clone();
    cmp_old["metadata"].as_object_mut().expect("metadata").remove("resourceVersion");
    if operation == "Update" {
        managed::record_write(&t.rt, Some(&old), &mut obj, &req.manager(), t.sub.as_deref());
    }
    if without_times(&obj) == without_times(&cmp_old) {
        return Ok((old, warnings, 200));
    }
    if dry_run(req) {
        // Nothing is written: the object keeps the stored resourceVersion
        // (registry/generic/registry/dryrun.go GuaranteedUpdate).
        obj["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"].clone();
        return Ok((obj, warnings, 200));
    }
    let finalizers_empty = obj["metadata"]["finalizers"].as_array().is_none_or(|a| a.is_empty());
    // A graceful deletion still running (a Pod being stopped) ends with its own delete.
    let graceful = obj["metadata"]["deletionGracePeriodSeconds"].as_i64().is_some_and(|g| g > 0);
    if obj["metadata"].get("deletionTimestamp").is_some() && finalizers_empty && t.rt.kind != "Namespace" && !graceful {
        let gone = store.put(&t.rt.key(), obj);
        store.remove(&t.rt.key(), &ns, name);
        return Ok((gone, warnings, 200));
    }
    Ok((store.put(&t.rt.key(), obj), warnings, 200))
}

/// managedFields timestamps do not make a change.
fn without_times(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(mf) = v["metadata"]["managedFields"].as_array_mut() {
        for e in mf {
            if let Some(m) = e.as_object_mut() {
                m.remove("time");
            }
        }
    }
    v
}

pub fn patch(server: &Server, req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    let ct = req.content_type.split(';').next().unwrap_or_default().trim();
    if ct == APPLY_PATCH {
        return super::apply::apply(server, req, t, name);
    }
    let known =
        ["application/json-patch+json", "application/merge-patch+json", "application/strategic-merge-patch+json"];
    if !known.contains(&ct) {
        return Err(ApiError::unsupported_media());
    }
    let fv = validate_options(req, "PatchOptions", Some(ct))?;
    if ct == "application/strategic-merge-patch+json" && t.rt.is_custom() {
        return Err(ApiError::patch_type_not_accepted(
            "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
        ));
    }
    let body: Value =
        serde_json::from_slice(&req.body).map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
    let mut store = server.store();
    let ns = t.namespace.clone().unwrap_or_default();
    let Some(current) = store.get(&t.rt.key(), &ns, name).cloned() else {
        return Err(ApiError::not_found(&t.rt, name));
    };
    let scale = t.sub.as_deref() == Some("scale");
    let mut next = if scale { scale_of(&current) } else { present(&t.rt, &current) };
    match ct {
        "application/json-patch+json" => patch::json_patch(&mut next, &body).map_err(|e| match e {
            patch::JsonPatchError::Decode(m) => ApiError::bad_request(format!("error decoding patch: {m}")),
            patch::JsonPatchError::Apply => ApiError::status(
                422,
                "Invalid",
                "the server rejected our request due to an error in our request",
                Some(json!({})),
            ),
        })?,
        "application/merge-patch+json" => patch::merge(&mut next, &body),
        _ => patch::strategic(&mut next, &body, managed::Schema::for_type(&t.rt)),
    }
    // A patch without a resourceVersion applies to whatever is current.
    if body["metadata"].get("resourceVersion").is_none() && ct != "application/json-patch+json"
        || ct == "application/json-patch+json"
            && next["metadata"]["resourceVersion"] == current["metadata"]["resourceVersion"]
    {
        next["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"].clone();
    }
    if scale {
        drop(store);
        return update_scale(server, req, t, name, next);
    }
    let next_name = next["metadata"]["name"].as_str().unwrap_or_default().to_string();
    if next_name != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({next_name}) does not match the name on the URL ({name})"
        )));
    }
    let (obj, warnings, code) = update_in(&mut store, req, t, name, next, fv, "Update")?;
    Ok(Reply::Json { code, body: present(&t.rt, &obj), warnings })
}

/// DeleteOptions from the body (or the query), as the real server reads them, checked
/// by `ValidateDeleteOptions` (apimachinery `pkg/apis/meta/v1/validation`).
fn delete_options(req: &Req) -> ApiResult<(Delete, bool)> {
    let body: Value = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
    let policy =
        body["propagationPolicy"].as_str().map(String::from).or_else(|| req.q("propagationPolicy").map(String::from));
    let orphan =
        body["orphanDependents"].as_bool().or_else(|| req.q("orphanDependents").and_then(|v| v.parse::<bool>().ok()));
    let dry: Option<String> = body["dryRun"]
        .as_array()
        .and_then(|a| a.first())
        .and_then(Value::as_str)
        .map(String::from)
        .or_else(|| req.q("dryRun").map(String::from));
    let mut causes = Vec::new();
    if let (Some(_), Some(p)) = (orphan, &policy) {
        causes.push(Cause::invalid(
            "propagationPolicy",
            &json!(p),
            "orphanDependents and deletionPropagation cannot be both set",
        ));
    }
    if let Some(p) = &policy
        && !matches!(p.as_str(), "Foreground" | "Background" | "Orphan")
    {
        let value = crate::api::field::go_quote(p);
        causes.push(Cause::not_supported("propagationPolicy", &value, &["Foreground", "Background", "Orphan", "nil"]));
    }
    causes.extend(dry_run_cause(dry.as_deref()));
    if !causes.is_empty() {
        return Err(ApiError::invalid_in("meta.k8s.io", "DeleteOptions", "", causes));
    }
    let opts = Delete {
        uid: body["preconditions"]["uid"].as_str().map(String::from),
        rv: body["preconditions"]["resourceVersion"].as_str().map(String::from),
        // orphanDependents=false is Background in effect (shouldOrphanDependents).
        policy: policy.or_else(|| orphan.map(|o| if o { "Orphan".into() } else { "Background".into() })),
        grace: body["gracePeriodSeconds"].as_i64().or_else(|| req.q("gracePeriodSeconds").and_then(|g| g.parse().ok())),
    };
    Ok((opts, dry.as_deref() == Some("All")))
}

pub fn delete(server: &Server, req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    let (opts, dry) = delete_options(req)?;
    let mut store = server.store();
    let (code, body) = delete_in(&mut store, &t.rt, t.namespace.as_deref().unwrap_or(""), name, &opts, dry)?;
    Ok(ok(code, body))
}

/// Options of a delete, for in-process callers too.
#[derive(Debug, Default, Clone)]
pub struct Delete {
    pub uid: Option<String>,
    pub rv: Option<String>,
    pub policy: Option<String>,
    /// `gracePeriodSeconds`: how long a running Pod gets to stop.
    pub grace: Option<i64>,
}

/// The finalizers a delete leaves on an object for the garbage collector (apiserver
/// `registry/generic/registry/store.go` `deletionFinalizersForGarbageCollection`): an
/// explicit policy wins, then an `orphan` or `foregroundDeletion` finalizer already
/// there, then the type's default (batch/v1 Jobs orphan their Pods,
/// `pkg/registry/batch/job/strategy.go`). The list only changes when the set does.
fn gc_finalizers(rt: &ResType, existing: &[Value], policy: Option<&str>) -> Vec<Value> {
    let first = existing.iter().find_map(|f| match f.as_str() {
        Some(x @ ("orphan" | "foregroundDeletion")) => Some(x),
        _ => None,
    });
    let default_orphan = rt.group == "batch" && rt.kind == "Job";
    let (orphan, foreground) = match policy {
        Some("Orphan") => (true, false),
        Some("Foreground") => (false, true),
        Some(_) => (false, false),
        None => match first {
            Some("orphan") => (true, false),
            Some("foregroundDeletion") => (false, true),
            _ => (default_orphan, false),
        },
    };
    let mut next: Vec<Value> =
        existing.iter().filter(|f| !matches!(f.as_str(), Some("orphan" | "foregroundDeletion"))).cloned().collect();
    if orphan {
        next.push(json!("orphan"));
    }
    if foreground {
        next.push(json!("foregroundDeletion"));
    }
    let set = |v: &[Value]| v.iter().map(|x| x.to_string()).collect::<std::collections::BTreeSet<_>>();
    if set(&next) == set(existing) { existing.to_vec() } else { next }
}

/// Deletes (or starts deleting) an object; returns the reply code and body.
pub fn delete_in(
    store: &mut Store,
    rt: &ResType,
    ns: &str,
    name: &str,
    o: &Delete,
    dry: bool,
) -> ApiResult<(u16, Value)> {
    let Some(old) = store.get(&rt.key(), ns, name).cloned() else {
        return Err(ApiError::not_found(rt, name));
    };
    let precondition = |what: &str, want: &str, have: &str, tail: &str| {
        ApiError::status(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the {what} in the precondition ({want}) does not match the {what} in record ({have}). {tail}",
                rt.kind
            ),
            Some(json!({"name": name, "kind": rt.kind})),
        )
    };
    if let Some(uid) = &o.uid {
        let have = old["metadata"]["uid"].as_str().unwrap_or_default();
        if uid != have {
            return Err(precondition("UID", uid, have, "The object might have been deleted and then recreated"));
        }
    }
    if let Some(rv) = &o.rv {
        let have = old["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        if rv != have {
            return Err(precondition("ResourceVersion", rv, have, "The object might have been modified"));
        }
    }
    let mut obj = old.clone();
    let mut finalizers: Vec<Value> = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    let deleting = obj["metadata"].get("deletionTimestamp").is_some();
    finalizers = gc_finalizers(rt, &finalizers, o.policy.as_deref());
    // A Pod running on a node is deleted gracefully: the kubelet stops its containers
    // and then removes it (a Pod never scheduled, or finished, goes at once).
    if rt.kind == "Pod" && !dry {
        let on_node = obj["spec"]["nodeName"].as_str().is_some_and(|n| !n.is_empty());
        let finished = matches!(obj["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        let grace =
            o.grace.unwrap_or_else(|| obj["spec"]["terminationGracePeriodSeconds"].as_i64().unwrap_or(30)).max(0);
        let current = obj["metadata"]["deletionGracePeriodSeconds"].as_i64();
        if on_node && !finished && grace > 0 && current.is_none_or(|c| grace < c) {
            let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
            obj["metadata"]["deletionTimestamp"] = json!(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            obj["metadata"]["finalizers"] = json!(finalizers);
            if finalizers.is_empty() {
                obj["metadata"].as_object_mut().expect("metadata").remove("finalizers");
            }
            let stored = store.put(&rt.key(), obj);
            return Ok((200, present(rt, &stored)));
        }
        if on_node && !finished && deleting && grace > 0 {
            return Ok((200, present(rt, &old)));
        }
    }
    if rt.kind == "Namespace" {
        if !deleting {
            obj["metadata"]["deletionTimestamp"] = json!(now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            obj["status"]["phase"] = json!("Terminating");
            if dry {
                return Ok((200, present(rt, &obj)));
            }
            obj = store.put(&rt.key(), obj);
        }
        return Ok((200, present(rt, &obj)));
    }
    if rt.kind == "CustomResourceDefinition" && !deleting {
        if !finalizers.contains(&json!("customresourcecleanup.apiextensions.k8s.io")) {
            finalizers.push(json!("customresourcecleanup.apiextensions.k8s.io"));
        }
        if let Some(conds) = obj["status"]["conditions"].as_array_mut() {
            conds.push(json!({"type": "Terminating", "status": "True", "lastTransitionTime": now(), "reason": "InstanceDeletionPending", "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon"}));
        }
    }
    if !finalizers.is_empty() {
        if deleting && obj["metadata"]["finalizers"].as_array().is_some_and(|f| *f == finalizers) {
            return Ok((200, present(rt, &old)));
        }
        obj["metadata"]["finalizers"] = json!(finalizers);
        if !deleting {
            obj["metadata"]["deletionTimestamp"] = json!(now());
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            if rt.generation {
                let g = obj["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                obj["metadata"]["generation"] = json!(g);
            }
        }
        if dry {
            return Ok((200, present(rt, &obj)));
        }
        let stored = store.put(&rt.key(), obj);
        return Ok((200, present(rt, &stored)));
    }
    if dry {
        return Ok((200, success(rt, name, &old)));
    }
    store.remove(&rt.key(), ns, name);
    Ok((200, success(rt, name, &old)))
}

fn success(rt: &ResType, name: &str, old: &Value) -> Value {
    let mut d = json!({"name": name, "kind": rt.plural, "uid": old["metadata"]["uid"]});
    if !rt.group.is_empty() {
        d["group"] = json!(rt.group);
    }
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": d})
}

pub fn delete_collection(server: &Server, req: &Req, t: &Target) -> ApiResult<Reply> {
    let (labels, fields) = super::api::parse_selectors(req, &t.rt)?;
    let (opts, dry) = delete_options(req)?;
    let mut store = server.store();
    let names: Vec<(String, String)> = store
        .list(&t.rt.key(), t.namespace.as_deref())
        .filter(|o| labels.matches(&o["metadata"]["labels"]) && fields.matches(o))
        .map(|o| {
            (
                o["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
                o["metadata"]["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let mut items = Vec::new();
    for (ns, name) in names {
        let before = store.get(&t.rt.key(), &ns, &name).cloned();
        delete_in(&mut store, &t.rt, &ns, &name, &opts, dry)?;
        if let Some(b) = before {
            items.push(b);
        }
    }
    let items: Vec<Value> = items
        .into_iter()
        .map(|mut o| {
            if let Some(m) = o.as_object_mut()
                && !t.rt.is_custom()
            {
                m.remove("kind");
                m.remove("apiVersion");
            }
            o
        })
        .collect();
    Ok(ok(
        200,
        json!({"kind": format!("{}List", t.rt.kind), "apiVersion": t.rt.api_version(), "metadata": {"resourceVersion": store.rv.to_string()}, "items": items}),
    ))
}

/// `autoscaling/v1` Scale of a workload.
pub fn get_scale(server: &Server, t: &Target, name: &str) -> ApiResult<Reply> {
    let store = server.store();
    let ns = t.namespace.clone().unwrap_or_default();
    let obj = store.get(&t.rt.key(), &ns, name).ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    Ok(ok(200, scale_of(obj)))
}

fn scale_of(obj: &Value) -> Value {
    let sel = super::selector_string(&obj["spec"]["selector"]);
    json!({
        "kind": "Scale", "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"],
            "uid": obj["metadata"]["uid"], "resourceVersion": obj["metadata"]["resourceVersion"],
            "creationTimestamp": obj["metadata"]["creationTimestamp"],
        },
        "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": sel},
    })
}

fn update_scale(server: &Server, req: &Req, t: &Target, name: &str, body: Value) -> ApiResult<Reply> {
    let mut store = server.store();
    let ns = t.namespace.clone().unwrap_or_default();
    let Some(mut obj) = store.get(&t.rt.key(), &ns, name).cloned() else {
        return Err(ApiError::not_found(&t.rt, name));
    };
    obj["spec"]["replicas"] = body["spec"]["replicas"].clone();
    let main = Target { sub: None, ..t.clone() };
    let (stored, _, _) = update_in(&mut store, req, &main, name, obj, FieldValidation::Ignore, "Update")?;
    Ok(ok(200, scale_of(&stored)))
}
