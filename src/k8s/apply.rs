//! The one way controllers write to the API: server-side apply with a field manager per
//! controller, forcing conflicts (the controller owns the fields it sets), with
//! `apiVersion` and `kind` always present.

use kube::api::{Api, DeleteParams, Patch, PatchParams, PropagationPolicy};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::fmt::Debug;

/// The field manager of one controller (`lifeline-policy`).
pub fn manager(controller: &str) -> String {
    format!("{}-{controller}", crate::api::names::FIELD_MANAGER)
}

/// Applies `obj` (a full intent: every field this controller owns).
pub async fn apply<K>(api: &Api<K>, controller: &str, obj: &Value) -> Result<K, kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    api.patch(&name, &PatchParams::apply(&manager(controller)).force(), &Patch::Apply(obj)).await
}

/// Sets a StatefulSet's `spec.replicas` (a merge patch: only that field, by `controller`'s
/// field manager). Scaling is an act on someone else's object, not an intent this
/// controller owns, so it is not an apply.
pub async fn scale(
    api: &Api<k8s_openapi::api::apps::v1::StatefulSet>,
    name: &str,
    replicas: i32,
    controller: &str,
) -> Result<k8s_openapi::api::apps::v1::StatefulSet, kube::Error> {
    let pp = PatchParams { field_manager: Some(manager(controller)), ..Default::default() };
    api.patch(name, &pp, &Patch::Merge(serde_json::json!({"spec": {"replicas": replicas}}))).await
}

/// Applies the status of an object of a kind with a status subresource.
pub async fn apply_status<K>(
    api: &Api<K>,
    controller: &str,
    name: &str,
    status: &impl Serialize,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "metadata": {"name": name},
        "status": status,
    });
    api.patch_status(name, &PatchParams::apply(&manager(controller)).force(), &Patch::Apply(&body)).await
}

/// Records a restore point's presence at one location (an entry of `status.locations`).
/// Each location's entry has a field manager of its own, whichever controller writes it
/// (the run, replication, retention, catalog sync): server-side apply removes what a
/// manager stops applying, so one manager for several entries would drop the others.
pub async fn apply_presence(
    api: &Api<crate::api::RestorePoint>,
    point: &str,
    location: &str,
    present: bool,
    time: Option<jiff::Timestamp>,
    message: Option<&str>,
) -> Result<(), kube::Error> {
    let mut entry = serde_json::json!({"name": location, "present": present});
    if let Some(t) = time {
        entry["time"] = serde_json::json!(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t));
    }
    if let Some(m) = message {
        entry["message"] = serde_json::json!(m);
    }
    let controller = format!("presence-{}", crate::k8s::truncate_label(location));
    apply_status(api, &controller, point, &serde_json::json!({"locations": [entry]})).await.map(|_| ())
}

/// Deletes an object in the background (its dependents follow), tolerating its absence.
pub async fn delete<K>(api: &Api<K>, name: &str) -> Result<(), kube::Error>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let dp = DeleteParams { propagation_policy: Some(PropagationPolicy::Background), ..Default::default() };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(e) if super::is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// An owner reference to `owner` for a child (controller: true; no blocking deletion, so
/// deleting the owner never waits on a child).
pub fn owner_ref<K: Resource<DynamicType = ()>>(owner: &K) -> Value {
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "name": owner.name_any(),
        "uid": owner.uid().unwrap_or_default(),
        "controller": true,
    })
}
