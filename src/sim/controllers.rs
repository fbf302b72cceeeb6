//! The control-plane controllers of the `bare` profile: CRD establishing and cleanup,
//! namespace lifecycle (default ServiceAccount, root CA ConfigMap, termination), and the
//! garbage collector (background, foreground and orphan deletion).

use super::registry::{self, ResType};
use super::store::Store;
use super::write::{Delete, delete_in};
use super::{Controller, Server, meta};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

pub async fn run(server: Arc<Server>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    // The controllers depend only on the stored objects: nothing to do until they change.
    // (or a controller asked to be woken, as a Job's back-off does).
    let mut seen = 0;
    let mut state = super::workloads::State::default();
    loop {
        tick.tick().await;
        let mut store = server.store();
        let due = state.wake_at.is_some_and(|t| t <= std::time::Instant::now());
        if store.rv != seen || due {
            if due {
                state.wake_at = None;
            }
            // Changes made by this pass trigger another: controllers react to each other.
            seen = store.rv;
            crds(&mut store);
            namespaces(&mut store);
            if server.runs(Controller::GarbageCollector) {
                garbage_collect(&mut store);
            }
            if server.runs(Controller::Jobs) {
                super::workloads::jobs(&mut store, &mut state);
            }
            if server.runs(Controller::StatefulSets) {
                super::workloads::statefulsets(&mut store, &mut state);
            }
            if server.runs(Controller::Deployments) {
                super::deployments::deployments(&mut store, &mut state);
            }
            super::storage::protect(&mut store);
            if server.runs(Controller::Volumes) {
                super::storage::run(&mut store, &server.dir);
            }
            if server.runs(Controller::Snapshots) {
                super::snapshots::run(&mut store, &server.dir);
                super::groupsnapshots::run(&mut store, &server.dir);
            }
        }
        // Processes change state on their own: the kubelet looks at every tick.
        if server.runs(Controller::Kubelet) {
            server.kubelet().pass(&mut store);
        }
    }
}

pub fn crds(store: &mut Store) {
    let rt = super::client::rt(store, "apiextensions.k8s.io", "customresourcedefinitions");
    let all: Vec<Value> = store.list(&rt.key(), None).cloned().collect();
    for crd in all {
        let name = crd["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if crd["metadata"].get("deletionTimestamp").is_some() {
            let types = registry::from_crd(&crd);
            for t in &types {
                store.drop_resource(&t.key());
            }
            let group = crd["spec"]["group"].clone();
            let plural = crd["spec"]["names"]["plural"].clone();
            store.types.retain(|t| !(t.is_custom() && json!(t.group) == group && json!(t.plural) == plural));
            let mut c = crd.clone();
            if let Some(f) = c["metadata"]["finalizers"].as_array_mut() {
                f.retain(|x| x != "customresourcecleanup.apiextensions.k8s.io");
            }
            if c["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty()) {
                store.remove(&rt.key(), "", &name);
            } else if c != crd {
                store.put(&rt.key(), c);
            }
            continue;
        }
        let established = crd["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["type"] == "Established" && c["status"] == "True"));
        if !established {
            let mut c = crd.clone();
            let now = meta::now();
            c["status"]["acceptedNames"] = c["spec"]["names"].clone();
            c["status"]["conditions"] = json!([
                {"type": "NamesAccepted", "status": "True", "lastTransitionTime": now, "reason": "NoConflicts", "message": "no conflicts found"},
                {"type": "Established", "status": "True", "lastTransitionTime": now, "reason": "InitialNamesAccepted", "message": "the initial names have been accepted"},
            ]);
            let stored = store.put(&rt.key(), c);
            register(store, &stored);
        } else if !store.types.iter().any(|t| {
            t.crd.as_ref().is_some_and(|c| {
                c["metadata"]["uid"] == crd["metadata"]["uid"]
                    && c["metadata"]["generation"] == crd["metadata"]["generation"]
            })
        }) {
            register(store, &crd);
        }
    }
}

fn register(store: &mut Store, crd: &Value) {
    let group = crd["spec"]["group"].as_str().unwrap_or_default().to_string();
    let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or_default().to_string();
    store.types.retain(|t| !(t.is_custom() && t.group == group && t.plural == plural));
    store.types.extend(registry::from_crd(crd));
}

fn namespaces(store: &mut Store) {
    let ns_rt = super::client::rt(store, "", "namespaces");
    let sa_rt = super::client::rt(store, "", "serviceaccounts");
    let cm_rt = super::client::rt(store, "", "configmaps");
    // Names only: this runs after every change, and only a terminating namespace is needed whole.
    let all: Vec<(String, bool)> = store
        .list(&ns_rt.key(), None)
        .map(|ns| {
            (
                ns["metadata"]["name"].as_str().unwrap_or_default().to_string(),
                ns["metadata"].get("deletionTimestamp").is_some(),
            )
        })
        .collect();
    for (name, terminating) in all {
        if terminating {
            if let Some(ns) = store.get(&ns_rt.key(), "", &name).cloned() {
                terminate(store, &ns_rt, &ns, &name);
            }
            continue;
        }
        if store.get(&sa_rt.key(), &name, "default").is_none() {
            put_new(
                store,
                &sa_rt,
                json!({"metadata": {"name": "default", "namespace": name}}),
                "kube-controller-manager",
            );
        }
        if store.get(&cm_rt.key(), &name, "kube-root-ca.crt").is_none() {
            let ca = store.ca_pem.clone().unwrap_or_else(|| {
                "-----BEGIN CERTIFICATE-----\nMIIBlifelinesimulatedclusterrootca\n-----END CERTIFICATE-----\n".into()
            });
            put_new(
                store,
                &cm_rt,
                json!({"metadata": {"name": "kube-root-ca.crt", "namespace": name, "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}},
                       "data": {"ca.crt": ca}}),
                "kube-controller-manager",
            );
        }
    }
}

/// Creates an object as a controller does (server-set metadata, managedFields).
pub fn put_new(store: &mut Store, rt: &ResType, mut obj: Value, manager: &str) -> Value {
    obj["apiVersion"] = json!(rt.api_version());
    obj["kind"] = json!(rt.kind);
    obj["metadata"]["uid"] = json!(meta::new_uid());
    obj["metadata"]["creationTimestamp"] = json!(meta::now());
    if rt.generation {
        obj["metadata"]["generation"] = json!(1);
    }
    super::managed::record_write(rt, None, &mut obj, manager, None);
    store.put(&rt.key(), obj)
}

fn terminate(store: &mut Store, ns_rt: &ResType, ns: &Value, name: &str) {
    let content = store.in_namespace(name);
    let mut finalizers: Vec<String> = Vec::new();
    let mut remaining: Vec<String> = Vec::new();
    for (res, obj) in &content {
        let Some(rt) = store.types.iter().find(|t| t.key() == *res).cloned() else { continue };
        let oname = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
        if obj["metadata"].get("deletionTimestamp").is_none() {
            // The namespace deleter deletes with propagationPolicy=Background.
            let opts = Delete { policy: Some("Background".into()), ..Default::default() };
            let _ = delete_in(store, &rt, name, &oname, &opts, false);
        }
        if let Some(o) = store.get(res, name, &oname) {
            remaining.push(format!("{}.{}", rt.plural, rt.group));
            for f in o["metadata"]["finalizers"].as_array().into_iter().flatten() {
                finalizers.push(f.as_str().unwrap_or_default().to_string());
            }
        }
    }
    let now = meta::now();
    let mut conditions = vec![
        json!({"type": "NamespaceDeletionDiscoveryFailure", "status": "False", "lastTransitionTime": now, "reason": "ResourcesDiscovered", "message": "All resources successfully discovered"}),
        json!({"type": "NamespaceDeletionGroupVersionParsingFailure", "status": "False", "lastTransitionTime": now, "reason": "ParsedGroupVersions", "message": "All legacy kube types successfully parsed"}),
        json!({"type": "NamespaceDeletionContentFailure", "status": "False", "lastTransitionTime": now, "reason": "ContentDeleted", "message": "All content successfully deleted, may be waiting on finalization"}),
    ];
    if remaining.is_empty() {
        store.remove(&ns_rt.key(), "", name);
        return;
    }
    remaining.sort();
    remaining.dedup();
    let counts = |items: &[String], verb: &str| -> String {
        let mut uniq: Vec<&String> = items.iter().collect();
        uniq.sort();
        uniq.dedup();
        uniq.iter()
            .map(|u| format!("{u} {verb} {} resource instances", items.iter().filter(|x| x == u).count()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    conditions.push(json!({"type": "NamespaceContentRemaining", "status": "True", "lastTransitionTime": now, "reason": "SomeResourcesRemain", "message": format!("Some resources are remaining: {}", counts(&remaining, "has"))}));
    if !finalizers.is_empty() {
        conditions.push(json!({"type": "NamespaceFinalizersRemaining", "status": "True", "lastTransitionTime": now, "reason": "SomeFinalizersRemain", "message": format!("Some content in the namespace has finalizers remaining: {}", counts(&finalizers, "in"))}));
    }
    let old_conds = ns["status"]["conditions"].clone();
    let same = old_conds.as_array().is_some_and(|o| {
        o.len() == conditions.len()
            && o.iter().zip(&conditions).all(|(a, b)| a["type"] == b["type"] && a["message"] == b["message"])
    });
    if !same {
        let mut n = ns.clone();
        n["status"]["conditions"] = json!(conditions);
        store.put(&ns_rt.key(), n);
    }
}

/// What the garbage collector's patch does to a dependent of an orphaning owner
/// (kube-controller-manager `garbagecollector/patch.go`): the owner's reference goes,
/// and the list with it when it was the last (an empty list is not written); the fields
/// are no longer anyone's in managedFields.
fn drop_owner_ref(store: &mut Store, res: &str, dependent: &Value, owner_uid: &str) {
    let Some(rt) = store.types.iter().find(|t| t.key() == res).cloned() else { return };
    let mut d = dependent.clone();
    if let Some(rs) = d["metadata"]["ownerReferences"].as_array_mut() {
        rs.retain(|x| x["uid"] != owner_uid);
        if rs.is_empty() {
            d["metadata"].as_object_mut().map(|m| m.remove("ownerReferences"));
        }
    }
    super::managed::record_write(&rt, Some(dependent), &mut d, "kube-controller-manager", None);
    store.put(res, d);
}

/// How the garbage collector deletes an object whose owners are gone
/// (`attemptToDeleteItem`): by the policy its own finalizers ask for, else Background.
fn gc_delete(obj: &Value) -> Delete {
    let fins = obj["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
    let policy = if fins.contains(&json!("orphan")) {
        "Orphan"
    } else if fins.contains(&json!("foregroundDeletion")) {
        "Foreground"
    } else {
        "Background"
    };
    Delete { policy: Some(policy.into()), ..Default::default() }
}

/// Whether `o`'s owner references name `uid`.
fn owned_by(o: &Value, uid: &str) -> bool {
    o["metadata"]["ownerReferences"].as_array().is_some_and(|rs| rs.iter().any(|r| r["uid"] == uid))
}

/// The objects (resource, current copy) whose owner references name `uid`.
fn dependents_of(store: &Store, uid: &str) -> Vec<(String, Value)> {
    store.all().filter(|(_, o)| owned_by(o, uid)).map(|(r, o)| (r.clone(), o.clone())).collect()
}

/// One pass of the garbage collector. It runs under the store's lock after every change,
/// so it reads the objects in place and copies only those it acts on (a copy of every
/// object per pass held every API request for milliseconds with a few thousand objects).
fn garbage_collect(store: &mut Store) {
    // One scan: every uid, the objects with owners (not being deleted), and the objects
    // being deleted (as they were before this pass deleted anything).
    let mut uids: HashSet<&str> = HashSet::new();
    let mut owned: Vec<(&String, &Value)> = Vec::new();
    let mut deleting: Vec<(&String, &Value)> = Vec::new();
    for (res, o) in store.all() {
        let Some(m) = o.get("metadata") else { continue };
        if let Some(uid) = m.get("uid").and_then(Value::as_str) {
            uids.insert(uid);
        }
        if m.get("deletionTimestamp").is_some() {
            deleting.push((res, o));
        } else if m.get("ownerReferences").and_then(Value::as_array).is_some_and(|rs| !rs.is_empty()) {
            owned.push((res, o));
        }
    }
    // Dependents all of whose owners are gone.
    let orphans: Vec<(String, String, String, Delete)> = owned
        .into_iter()
        .filter(|(_, o)| {
            let mut refs = o["metadata"]["ownerReferences"].as_array().into_iter().flatten();
            refs.all(|r| !uids.contains(r["uid"].as_str().unwrap_or_default()))
        })
        .map(|(res, o)| {
            let m = &o["metadata"];
            let ns = m["namespace"].as_str().unwrap_or_default().to_string();
            (res.clone(), ns, m["name"].as_str().unwrap_or_default().to_string(), gc_delete(o))
        })
        .collect();
    let deleting: Vec<(String, Value)> = deleting.into_iter().map(|(r, o)| (r.clone(), o.clone())).collect();
    for (res, ns, name, opts) in &orphans {
        let Some(rt) = store.types.iter().find(|t| t.key() == *res).cloned() else { continue };
        let _ = delete_in(store, &rt, ns, name, opts, false);
    }
    // Owners being deleted in the foreground or orphaning their dependents.
    for (res, owner) in &deleting {
        let fins: Vec<String> = owner["metadata"]["finalizers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f.as_str().map(String::from))
            .collect();
        let uid = owner["metadata"]["uid"].as_str().unwrap_or_default();
        let dependents = dependents_of(store, uid);
        let Some(rt) = store.types.iter().find(|t| t.key() == *res).cloned() else { continue };
        let drop_finalizer = |store: &mut Store, f: &str| {
            let ns = owner["metadata"]["namespace"].as_str().unwrap_or_default();
            let name = owner["metadata"]["name"].as_str().unwrap_or_default();
            if let Some(mut o) = store.get(&rt.key(), ns, name).cloned() {
                if let Some(list) = o["metadata"]["finalizers"].as_array_mut() {
                    list.retain(|x| x != f);
                }
                if o["metadata"]["finalizers"].as_array().is_none_or(|l| l.is_empty()) {
                    store.put(&rt.key(), o);
                    store.remove(&rt.key(), ns, name);
                } else {
                    store.put(&rt.key(), o);
                }
            }
        };
        if fins.iter().any(|f| f == "orphan") {
            for (r, d) in dependents {
                drop_owner_ref(store, &r, &d, uid);
            }
            drop_finalizer(store, "orphan");
        } else if fins.iter().any(|f| f == "foregroundDeletion") {
            let mut blocking = false;
            for (r, d) in &dependents {
                let Some(drt) = store.types.iter().find(|t| t.key() == *r).cloned() else { continue };
                let ns = d["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
                let name = d["metadata"]["name"].as_str().unwrap_or_default().to_string();
                if d["metadata"].get("deletionTimestamp").is_none() {
                    // garbagecollector.go attemptToDeleteItem: a dependent with
                    // dependents of its own is deleted in the foreground too; one
                    // without, by its own finalizers' policy (Background by default).
                    let duid = d["metadata"]["uid"].as_str().unwrap_or_default();
                    let has_dependents = store.all().any(|(_, o)| owned_by(o, duid));
                    let fins = d["metadata"]["finalizers"].as_array().cloned().unwrap_or_default();
                    let policy = if has_dependents || fins.contains(&json!("foregroundDeletion")) {
                        "Foreground"
                    } else if fins.contains(&json!("orphan")) {
                        "Orphan"
                    } else {
                        "Background"
                    };
                    let opts = Delete { policy: Some(policy.into()), ..Default::default() };
                    let _ = delete_in(store, &drt, &ns, &name, &opts, false);
                }
                if store.get(r, &ns, &name).is_some()
                    && d["metadata"]["ownerReferences"].as_array().is_some_and(|rs| {
                        rs.iter().any(|x| x["uid"] == uid && x["blockOwnerDeletion"].as_bool() == Some(true))
                    })
                {
                    blocking = true;
                }
            }
            if !blocking {
                drop_finalizer(store, "foregroundDeletion");
            }
        }
    }
}
