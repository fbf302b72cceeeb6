//! Request routing, discovery, and reads (get, list, tables) of the simulated API server.

use super::errors::{ApiError, ApiResult, Cause};
use super::registry::ResType;
use super::selector::{FieldSelector, LabelSelector, selectable_fields};
use super::store::Store;
use super::{Server, write};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// An HTTP request, reduced to what the API server looks at.
#[derive(Debug, Clone, Default)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub content_type: String,
    pub accept: String,
    pub user_agent: String,
    /// The `Authorization` header.
    pub authorization: String,
    /// `Impersonate-User` and `Impersonate-Group` headers (`kubectl --as`, `--as-group`).
    pub impersonate_user: String,
    pub impersonate_groups: Vec<String>,
    pub body: bytes::Bytes,
}

impl Req {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    /// The field manager a write is recorded under.
    pub fn manager(&self) -> String {
        if let Some(m) = self.q("fieldManager") {
            return m.to_string();
        }
        // The real server derives it from the User-Agent's program name.
        let ua = self.user_agent.split('/').next().unwrap_or_default();
        if ua.is_empty() { "unknown".into() } else { ua.to_string() }
    }
}

/// What a request produces.
pub enum Reply {
    Json { code: u16, body: Value, warnings: Vec<String> },
    Text { code: u16, body: String, content_type: &'static str },
    Watch(super::watch::WatchReq),
}

impl From<ApiError> for Reply {
    fn from(e: ApiError) -> Self {
        match e.text {
            Some(t) => Reply::Text { code: e.code, body: t.to_string(), content_type: "text/plain; charset=utf-8" },
            None => Reply::Json { code: e.code, body: e.body, warnings: Vec::new() },
        }
    }
}

pub fn ok(code: u16, body: Value) -> Reply {
    Reply::Json { code, body, warnings: Vec::new() }
}

/// Where a resource request points.
#[derive(Debug, Clone)]
pub struct Target {
    pub rt: Arc<ResType>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub fn handle(server: &Server, req: Req) -> Reply {
    match route(server, &req) {
        Ok(r) => r,
        Err(e) => e.into(),
    }
}

fn route(server: &Server, req: &Req) -> ApiResult<Reply> {
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).collect();
    let user = server.user(req)?;
    match segs.as_slice() {
        ["version"] => return Ok(ok(200, version())),
        ["healthz"] | ["livez"] | ["readyz"] => {
            return Ok(Reply::Text { code: 200, body: "ok".into(), content_type: "text/plain; charset=utf-8" });
        }
        ["api"] => {
            return Ok(ok(
                200,
                json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
            ));
        }
        ["apis"] => return Ok(ok(200, group_list(&server.store()))),
        ["openapi", rest @ ..] => return super::openapi::serve(server, rest, req),
        _ => {}
    }
    let (group, version, rest) = match segs.as_slice() {
        ["api", "v1", rest @ ..] => ("", "v1", rest),
        ["apis", g] => {
            let store = server.store();
            return if store.group_known(g) {
                Ok(ok(200, group_doc(&store, g)))
            } else {
                Err(ApiError::page_not_found())
            };
        }
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::page_not_found()),
    };
    let target = {
        let store = server.store();
        if !store.types.iter().any(|t| t.group == group && t.version == version) {
            // A built-in group answers for its unknown versions; a custom group's unknown
            // version has no handler at all.
            let builtin_group = store.types.iter().any(|t| t.group == group && !t.is_custom());
            return Err(if builtin_group && !group.is_empty() {
                ApiError::no_resource()
            } else {
                ApiError::page_not_found()
            });
        }
        if rest.is_empty() {
            return Ok(ok(200, resource_list(&store, group, version)));
        }
        parse_target(&store, group, version, rest)?
    };
    if let Some(sub) = &target.sub
        && !target.rt.has_sub(sub)
    {
        return Err(ApiError::no_resource());
    }
    server.authorize(&user, req, &target)?;
    dispatch(server, req, target, &user)
}

fn parse_target(store: &Store, group: &str, version: &str, rest: &[&str]) -> ApiResult<Target> {
    let find = |plural: &str| store.find(group, version, plural).ok_or_else(ApiError::no_resource);
    let (namespace, rest) = match rest {
        ["namespaces", ns, r, tail @ ..]
            // `/api/v1/namespaces/{name}/status|finalize` are the Namespace's own subresources.
            if !(group.is_empty() && matches!(*r, "status" | "finalize")) =>
        {
            let rt = find(r)?;
            if rt.namespaced {
                let mut t = vec![*r];
                t.extend_from_slice(tail);
                (Some(ns.to_string()), t)
            } else {
                return Err(ApiError::no_resource());
            }
        }
        other => (None, other.to_vec()),
    };
    let rt = find(rest[0])?;
    if rest.len() > 3 {
        return Err(ApiError::no_resource());
    }
    Ok(Target { rt, namespace, name: rest.get(1).map(|s| s.to_string()), sub: rest.get(2).map(|s| s.to_string()) })
}

fn dispatch(server: &Server, req: &Req, t: Target, user: &super::rbac::User) -> ApiResult<Reply> {
    let transcoded;
    let req = if super::protobuf::is_protobuf(&req.content_type) && !req.body.is_empty() {
        transcoded = from_protobuf(req, &t)?;
        &transcoded
    } else {
        req
    };
    let watch = matches!(req.q("watch"), Some("true" | "1"));
    if super::registry::is_review(&t.rt.plural) {
        return match (req.method.as_str(), &t.name) {
            ("POST", None) => super::review::create(server, req, &t, user),
            _ => Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource".to_string(),
            )),
        };
    }
    // A verb the resource does not serve has no route (namespaces and services have
    // no deletecollection).
    if t.sub.is_none() {
        let verb = match (req.method.as_str(), t.name.is_some()) {
            ("GET", false) if watch => "watch",
            ("GET", false) => "list",
            ("GET", true) => "get",
            ("POST", false) => "create",
            ("PUT", true) => "update",
            ("PATCH", true) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "",
        };
        if !verb.is_empty() && !t.rt.verbs.contains(&verb) {
            return Err(ApiError::method_not_allowed(
                "the server does not allow this method on the requested resource".to_string(),
            ));
        }
    }
    match (req.method.as_str(), &t.name, t.sub.as_deref()) {
        ("POST", Some(name), Some("token")) => super::review::token(server, req, &t, name),
        ("GET", None, _) if watch => super::watch::start(server, req, &t),
        ("GET", None, _) => list(server, req, &t),
        ("GET", Some(name), Some("log")) => super::kubelet_api::logs(server, req, &t, name),
        ("GET" | "POST", Some(name), Some("exec")) => super::kubelet_api::exec(server, req, &t, name),
        ("GET", Some(name), Some("scale")) => write::get_scale(server, &t, name),
        ("GET", Some(name), _) => get(server, req, &t, name),
        ("POST", None, None) => write::create(server, req, &t),
        ("PUT", Some(name), _) => write::update(server, req, &t, name),
        ("PATCH", Some(name), _) => {
            server.authorize_create_by_patch(user, req, &t)?;
            write::patch(server, req, &t, name)
        }
        ("DELETE", Some(name), None) => write::delete(server, req, &t, name),
        ("DELETE", None, None) => write::delete_collection(server, req, &t),
        _ => Err(ApiError::method_not_allowed(
            "the server does not allow this method on the requested resource".to_string(),
        )),
    }
}

/// A protobuf body, as the JSON body a JSON client would have sent. Custom resources
/// have no protobuf encoding (apiextensions-apiserver serves JSON, YAML and CBOR only).
fn from_protobuf(req: &Req, t: &Target) -> ApiResult<Req> {
    if t.rt.is_custom() || !matches!(req.method.as_str(), "POST" | "PUT" | "DELETE") {
        return Err(ApiError::status(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml{}",
                if t.rt.is_custom() { "" } else { ", application/vnd.kubernetes.protobuf" }
            ),
            None,
        ));
    }
    let obj = super::protobuf::decode(&req.body).map_err(|why| {
        // handlers/create.go transformDecodeError
        ApiError::bad_request(format!("the object provided is unrecognized (must be of type {}): {why}", t.rt.kind))
    })?;
    Ok(Req { content_type: "application/json".into(), body: obj.to_string().into(), ..req.clone() })
}

fn version() -> Value {
    json!({
        "major": "1", "minor": "33", "emulationMajor": "1", "emulationMinor": "33",
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0-lifeline-sim", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
        "compiler": "gc", "platform": "linux/amd64",
    })
}

fn groups(store: &Store) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for t in &store.types {
        if t.group.is_empty() {
            continue;
        }
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) => {
                if !vs.contains(&t.version) {
                    vs.push(t.version.clone());
                }
            }
            None => out.push((t.group.clone(), vec![t.version.clone()])),
        }
    }
    out
}

fn group_json(g: &str, versions: &[String]) -> Value {
    json!({
        "name": g,
        "versions": versions.iter().map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v})).collect::<Vec<_>>(),
        "preferredVersion": {"groupVersion": format!("{g}/{}", versions[0]), "version": versions[0]},
    })
}

fn group_list(store: &Store) -> Value {
    let groups: Vec<Value> = groups(store).iter().map(|(g, vs)| group_json(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

fn group_doc(store: &Store, g: &str) -> Value {
    let vs = groups(store).into_iter().find(|(n, _)| n == g).map(|(_, v)| v).unwrap_or_default();
    let mut doc = group_json(g, &vs);
    doc["kind"] = json!("APIGroup");
    doc["apiVersion"] = json!("v1");
    doc
}

fn resource_list(store: &Store, group: &str, version: &str) -> Value {
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    let resources: Vec<Value> =
        store.types.iter().filter(|t| t.group == group && t.version == version).flat_map(|t| t.discovery()).collect();
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}

/// An object as the API returns it: with `kind` and `apiVersion` of the requested version.
pub fn present(rt: &ResType, obj: &Value) -> Value {
    let mut o = if rt.group == "events.k8s.io" { super::events::to_v1(obj) } else { obj.clone() };
    o["apiVersion"] = json!(rt.api_version());
    o["kind"] = json!(rt.kind);
    o
}

fn get(server: &Server, req: &Req, t: &Target, name: &str) -> ApiResult<Reply> {
    let store = server.store();
    let ns = t.namespace.as_deref().unwrap_or("");
    let obj = store.get(&t.rt.key(), ns, name).ok_or_else(|| ApiError::not_found(&t.rt, name))?;
    let obj = present(&t.rt, obj);
    if wants_table(req) {
        return Ok(ok(200, super::table::table(&t.rt, &[obj], None, req)));
    }
    Ok(ok(200, obj))
}

fn wants_table(req: &Req) -> bool {
    req.accept.contains("as=Table")
}

/// A continue token: the list's resourceVersion and the key to start after.
fn encode_continue(rv: u64, start: &str) -> String {
    use base64::Engine;
    let j = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": format!("{start}\u{0}")});
    base64::engine::general_purpose::URL_SAFE.encode(j.to_string())
}

fn decode_continue(token: &str) -> ApiResult<(u64, String)> {
    use base64::Engine;
    let bad = |why: String| ApiError::bad_request(format!("invalid continue token: {why}"));
    let raw = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token))
        .map_err(|_| {
            // Where Go's decoder gives up: the first byte outside the alphabet, else the
            // start of a trailing quantum too short to decode.
            let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'=';
            let at = token.bytes().position(|c| !ok(c)).unwrap_or(token.len() / 4 * 4);
            bad(format!("continue key is not valid: illegal base64 data at input byte {at}"))
        })?;
    let j: Value = serde_json::from_slice(&raw).map_err(|e| bad(format!("continue key is not valid: {e}")))?;
    let rv = j["rv"].as_u64().ok_or_else(|| bad("continue key is not valid: missing rv".into()))?;
    let start = j["start"].as_str().unwrap_or_default().trim_end_matches('\u{0}').to_string();
    Ok((rv, start))
}

pub fn parse_selectors(req: &Req, rt: &ResType) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(req.q("labelSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
    let fields = FieldSelector::parse(req.q("fieldSelector").unwrap_or(""), selectable_fields(&rt.kind))
        .map_err(ApiError::bad_request)?;
    Ok((labels, fields))
}

pub fn parse_rv(s: &str) -> ApiResult<u64> {
    s.parse::<u64>().map_err(|_| {
        ApiError::status(
            500,
            "InternalError",
            format!("strconv.ParseUint: parsing {}: invalid syntax", crate::api::field::go_quote(s)),
            Some(json!({"causes": [{"message": format!("strconv.ParseUint: parsing {}: invalid syntax", crate::api::field::go_quote(s))}]})),
        )
    })
}

/// `ValidateListOptions` (apimachinery pkg/apis/meta/internalversion/validation):
/// a 422 on `ListOptions.meta.k8s.io`.
fn validate_list_options(req: &Req) -> ApiResult<()> {
    let mut causes = Vec::new();
    let rv = req.q("resourceVersion").unwrap_or("");
    if let Some(m) = req.q("resourceVersionMatch").filter(|m| !m.is_empty()) {
        if rv.is_empty() {
            causes.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if req.q("continue").is_some_and(|c| !c.is_empty()) {
            causes.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if m != "Exact" && m != "NotOlderThan" {
            let value = crate::api::field::go_quote(m);
            causes.push(Cause::not_supported("resourceVersionMatch", &value, &["Exact", "NotOlderThan", ""]));
        }
        if m == "Exact" && rv == "0" {
            causes.push(Cause::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if req.q("sendInitialEvents").is_some() {
        causes.push(Cause::forbidden("sendInitialEvents", "sendInitialEvents is forbidden for list"));
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid_in("meta.k8s.io", "ListOptions", "", causes))
}

/// Lists follow the real server's resource-version semantics (apiserver
/// `pkg/storage/cacher`, `pkg/storage/etcd3/store.go` GetList): no resourceVersion is the
/// latest state; `0` is any state (the watch cache: `limit` ignored); `N` with
/// `NotOlderThan` (or no match) is a state at least as new as N; `N` with `Exact` is the
/// state at N (410 Expired once compacted away); a continue token is the state at the
/// first page's resourceVersion, so a paged list is one consistent snapshot.
fn list(server: &Server, req: &Req, t: &Target) -> ApiResult<Reply> {
    validate_list_options(req)?;
    let (labels, fields) = parse_selectors(req, &t.rt)?;
    let store = server.store();
    let rv_param = req.q("resourceVersion").unwrap_or("");
    let exact = req.q("resourceVersionMatch") == Some("Exact");
    let mut at: Option<u64> = None;
    if !rv_param.is_empty() {
        let rv = parse_rv(rv_param)?;
        if rv > store.rv {
            // storage/errors.go NewTooLargeResourceVersionError: the watch cache gives up
            // (retry after 1 s) on a state it has not reached; an exact read is etcd's
            // future-revision error (no retry hint).
            let mut details =
                json!({"causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]});
            if !exact {
                details["retryAfterSeconds"] = json!(1);
            }
            return Err(ApiError::status(
                504,
                "Timeout",
                format!("Timeout: Too large resource version: {rv}, current: {}", store.rv),
                Some(details),
            ));
        }
        if exact {
            if rv < store.compacted {
                return Err(ApiError::status(
                    410,
                    "Expired",
                    format!("too old resource version: {rv} ({})", store.compacted),
                    None,
                ));
            }
            at = Some(rv);
        }
    }
    let limit: usize = req.q("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
    let start = match req.q("continue").filter(|c| !c.is_empty()) {
        Some(c) => {
            let (rv, start) = decode_continue(c)?;
            if rv < store.compacted {
                return Err(ApiError::status(
                    410,
                    "Expired",
                    "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    None,
                ));
            }
            at = Some(rv);
            Some(start)
        }
        None => None,
    };
    let list_rv = at.unwrap_or(store.rv);
    // resourceVersion=0 is served from the watch cache, which ignores limit.
    let limit = if rv_param == "0" && start.is_none() { 0 } else { limit };
    let snapshot: Vec<Value> = match at.filter(|rv| *rv < store.rv) {
        Some(rv) => store.list_at(&t.rt.key(), t.namespace.as_deref(), rv).unwrap_or_default(),
        None => store.list(&t.rt.key(), t.namespace.as_deref()).cloned().collect(),
    };
    let mut items = Vec::new();
    let mut next: Option<String> = None;
    let mut remaining = 0usize;
    let mut scanned_past_limit = false;
    for obj in &snapshot {
        let key = format!(
            "{}/{}",
            obj["metadata"]["namespace"].as_str().unwrap_or_default(),
            obj["metadata"]["name"].as_str().unwrap_or_default()
        );
        if let Some(s) = &start
            && key.as_str() <= s.as_str()
        {
            continue;
        }
        if limit > 0 && items.len() == limit {
            scanned_past_limit = true;
            remaining += 1;
            continue;
        }
        if !labels.matches(&obj["metadata"]["labels"]) || !fields.matches(obj) {
            continue;
        }
        items.push(obj.clone());
        if limit > 0 && items.len() == limit {
            next = Some(key);
        }
    }
    let custom = t.rt.is_custom();
    let selective = !labels.is_empty() || !fields.is_empty();
    let mut meta = json!({"resourceVersion": list_rv.to_string()});
    if scanned_past_limit {
        if let Some(k) = &next {
            meta["continue"] = json!(encode_continue(list_rv, k));
        }
        if !selective {
            meta["remainingItemCount"] = json!(remaining);
        }
    } else if custom {
        meta["continue"] = json!("");
    }
    let items: Vec<Value> = items
        .iter()
        .map(|o| {
            if custom {
                present(&t.rt, o)
            } else {
                let mut o = present(&t.rt, o);
                if let Some(m) = o.as_object_mut() {
                    m.remove("kind");
                    m.remove("apiVersion");
                }
                o
            }
        })
        .collect();
    if wants_table(req) {
        let full: Vec<Value> = items.iter().map(|o| present(&t.rt, o)).collect();
        return Ok(ok(200, super::table::table(&t.rt, &full, Some(meta), req)));
    }
    let list_kind = format!("{}List", t.rt.kind);
    Ok(ok(200, json!({"kind": list_kind, "apiVersion": t.rt.api_version(), "metadata": meta, "items": items})))
}
