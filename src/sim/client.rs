//! How the simulated controllers write: through the same create/update/delete paths as
//! API requests (admission, defaults, managedFields under the controller's name), and
//! core v1 Events as client-go's legacy recorder writes them.

use super::api::{Req, Target};
use super::custom::FieldValidation;
use super::errors::ApiResult;
use super::meta;
use super::registry::ResType;
use super::store::Store;
use super::write::{self, Delete};
use serde_json::{Value, json};
use std::sync::Arc;

/// The field manager the real kube-controller-manager writes under.
pub const MANAGER: &str = "kube-controller-manager";

fn req(manager: &str) -> Req {
    Req { method: "POST".into(), user_agent: format!("{manager}/v1.36.2 (linux/amd64) kubernetes"), ..Req::default() }
}

pub fn rt(store: &Store, group: &str, plural: &str) -> Arc<ResType> {
    store.types.iter().find(|t| t.group == group && t.plural == plural).cloned().expect("built-in type")
}

fn target(rt: &Arc<ResType>, ns: &str, sub: Option<&str>) -> Target {
    Target { rt: rt.clone(), namespace: rt.namespaced.then(|| ns.to_string()), name: None, sub: sub.map(String::from) }
}

pub fn ns_name(obj: &Value) -> (String, String) {
    (
        obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string(),
        obj["metadata"]["name"].as_str().unwrap_or_default().to_string(),
    )
}

pub fn create(store: &mut Store, rt: &Arc<ResType>, obj: Value) -> ApiResult<Value> {
    let (ns, _) = ns_name(&obj);
    let (stored, _) = write::create_in(store, &req(MANAGER), &target(rt, &ns, None), obj, FieldValidation::Ignore)?;
    Ok(stored)
}

/// Replaces an object (or, with `sub`, its status) as read at `obj`'s resourceVersion.
pub fn update(store: &mut Store, rt: &Arc<ResType>, obj: Value, sub: Option<&str>) -> ApiResult<Value> {
    update_as(store, rt, obj, sub, MANAGER)
}

/// [`update`] under another field manager (the scheduler, the kubelet).
pub fn update_as(
    store: &mut Store,
    rt: &Arc<ResType>,
    obj: Value,
    sub: Option<&str>,
    manager: &str,
) -> ApiResult<Value> {
    let (ns, name) = ns_name(&obj);
    let t = target(rt, &ns, sub);
    let (stored, _, _) = write::update_in(store, &req(manager), &t, &name, obj, FieldValidation::Ignore, "Update")?;
    Ok(stored)
}

pub fn delete(store: &mut Store, rt: &ResType, ns: &str, name: &str) -> ApiResult<()> {
    write::delete_in(store, rt, ns, name, &Delete::default(), false).map(|_| ())
}

/// Removes one finalizer (the object goes away if it was the last one and it is being
/// deleted).
pub fn drop_finalizer(store: &mut Store, rt: &Arc<ResType>, obj: &Value, finalizer: &str) -> ApiResult<()> {
    let mut o = obj.clone();
    let Some(list) = o["metadata"]["finalizers"].as_array_mut() else { return Ok(()) };
    let before = list.len();
    list.retain(|f| f != finalizer);
    if list.len() == before {
        return Ok(());
    }
    update(store, rt, o, None).map(|_| ())
}

/// The controller owner reference to `owner`.
pub fn controller_ref(owner: &Value) -> Value {
    json!({
        "apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"], "controller": true, "blockOwnerDeletion": true,
    })
}

/// The uid of an object's controller, if it has one.
pub fn controller_uid(obj: &Value) -> Option<&str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"].as_bool() == Some(true))
        .and_then(|r| r["uid"].as_str())
}

/// Records a core v1 Event about `involved`, or bumps the count of the same event, as
/// client-go's legacy recorder and its correlator do.
pub fn event(store: &mut Store, involved: &Value, typ: &str, reason: &str, message: &str, component: &str) {
    let rt = rt(store, "", "events");
    let (ns, name) = ns_name(involved);
    let ns = if ns.is_empty() { "default".to_string() } else { ns };
    let uid = involved["metadata"]["uid"].clone();
    let now = meta::now();
    let same = store
        .list(&rt.key(), Some(&ns))
        .find(|e| {
            e["involvedObject"]["uid"] == uid
                && e["reason"] == reason
                && e["message"] == message
                && e["source"]["component"] == component
        })
        .cloned();
    if let Some(mut e) = same {
        e["count"] = json!(e["count"].as_i64().unwrap_or(1) + 1);
        e["lastTimestamp"] = json!(now);
        let _ = update(store, &rt, e, None);
        return;
    }
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut obj = json!({
        "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": ns},
        "involvedObject": {
            "kind": involved["kind"], "namespace": involved["metadata"]["namespace"], "name": name,
            "uid": uid, "apiVersion": involved["apiVersion"],
            "resourceVersion": involved["metadata"]["resourceVersion"],
        },
        "reason": reason, "message": message, "source": {"component": component},
        "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": typ,
        "reportingComponent": component, "reportingInstance": "",
    });
    if involved["metadata"]["namespace"].is_null()
        && let Some(m) = obj["involvedObject"].as_object_mut()
    {
        m.remove("namespace");
    }
    let _ = create(store, &rt, obj);
}
