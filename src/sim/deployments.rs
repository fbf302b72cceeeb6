//! The Deployment and ReplicaSet controllers, after kube-controller-manager's
//! (`pkg/controller/deployment`, `pkg/controller/replicaset`), simplified where the
//! outcome a client sees is the same:
//!
//! - A Deployment owns one ReplicaSet per Pod template, named `<deployment>-<hash>` and
//!   labelled `pod-template-hash`; the `deployment.kubernetes.io/revision` annotation
//!   counts templates (on the ReplicaSet and on the Deployment).
//! - `RollingUpdate`: the new ReplicaSet is scaled to the desired count, and the old ones
//!   to zero once the new one's Pods are available (no surge arithmetic: the rollout is
//!   one step up, one step down). `Recreate`: old ReplicaSets go to zero first, the new
//!   one is scaled up when their Pods are gone. `paused` stops both.
//! - Old ReplicaSets at zero beyond `revisionHistoryLimit` are deleted, oldest first.
//! - Status: replicas, updated, ready, available and unavailable counts, and the
//!   `Available` and `Progressing` conditions with the real reasons and messages, which is
//!   what `kubectl rollout status` waits on.
//! - A ReplicaSet creates Pods (`generateName: <rs>-`) and deletes the excess (not yet
//!   running ones first, then the newest), with `SuccessfulCreate`/`SuccessfulDelete`
//!   events, and counts replicas, ready and available Pods.

use super::client::{self, controller_ref, controller_uid, ns_name};
use super::store::Store;
use super::workloads::{State, deleting, owned_pods, running_and_ready, template_hash, terminal};
use serde_json::{Value, json};

const REVISION: &str = "deployment.kubernetes.io/revision";
const HASH: &str = "pod-template-hash";

pub fn deployments(store: &mut Store, state: &mut State) {
    let rt = client::rt(store, "apps", "deployments");
    let all: Vec<Value> = store.list(&rt.key(), None).cloned().collect();
    for d in all {
        if !deleting(&d) {
            deployment_pass(store, &d);
        }
    }
    let rs_rt = client::rt(store, "apps", "replicasets");
    let all: Vec<Value> = store.list(&rs_rt.key(), None).cloned().collect();
    for rs in all {
        if !deleting(&rs) {
            replicaset_pass(store, state, &rs);
        }
    }
}

fn revision_of(obj: &Value) -> i64 {
    obj["metadata"]["annotations"][REVISION].as_str().and_then(|r| r.parse().ok()).unwrap_or(0)
}

fn replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

/// `maxSurge`/`maxUnavailable`: a count, or a percentage of `of` (surge rounds up,
/// unavailability down, as `intstr.GetScaledValueFromIntOrPercent` is used there).
fn scaled(v: &Value, of: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            if round_up { (pct * of + 99) / 100 } else { pct * of / 100 }
        }
        _ => 0,
    }
}

fn deployment_pass(store: &mut Store, d: &Value) {
    let rs_rt = client::rt(store, "apps", "replicasets");
    let (ns, name) = ns_name(d);
    let uid = d["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let desired = replicas(d);
    let owned: Vec<Value> =
        store.list(&rs_rt.key(), Some(&ns)).filter(|r| controller_uid(r) == Some(&uid)).cloned().collect();
    let hash = template_hash(&d["spec"]["template"], d["status"]["collisionCount"].as_i64().unwrap_or(0));
    let paused = d["spec"]["paused"].as_bool() == Some(true);
    let recreate = d["spec"]["strategy"]["type"] == "Recreate";
    let max_revision = owned.iter().map(revision_of).max().unwrap_or(0);
    let mut new_rs = owned.iter().find(|r| r["metadata"]["labels"][HASH] == hash.as_str()).cloned();
    let old: Vec<Value> = owned.iter().filter(|r| r["metadata"]["labels"][HASH] != hash.as_str()).cloned().collect();
    let old_pods_left = old.iter().any(|r| r["status"]["replicas"].as_i64().unwrap_or(0) > 0);
    let max_surge = scaled(&d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], desired, true);
    let mut created = None;
    if !paused {
        match &new_rs {
            None if !(recreate && old_pods_left) => {
                let rs_name = format!("{name}-{hash}");
                let mut tmpl = d["spec"]["template"].clone();
                tmpl["metadata"]["labels"][HASH] = json!(hash);
                let mut labels = d["spec"]["template"]["metadata"]["labels"].clone();
                if !labels.is_object() {
                    labels = json!({});
                }
                labels[HASH] = json!(hash);
                let mut selector = d["spec"]["selector"].clone();
                selector["matchLabels"][HASH] = json!(hash);
                let revision = (max_revision + 1).to_string();
                let rs = json!({
                    "metadata": {
                        "name": rs_name, "namespace": ns, "labels": labels,
                        "annotations": {
                            "deployment.kubernetes.io/desired-replicas": desired.to_string(),
                            "deployment.kubernetes.io/max-replicas": (desired + max_surge).to_string(),
                            REVISION: revision,
                        },
                        "ownerReferences": [controller_ref(d)],
                    },
                    "spec": {"replicas": desired, "minReadySeconds": d["spec"]["minReadySeconds"], "selector": selector, "template": tmpl},
                });
                if client::create(store, &rs_rt, rs).is_ok() {
                    client::event(
                        store,
                        d,
                        "Normal",
                        "ScalingReplicaSet",
                        &format!("Scaled up replica set {rs_name} from 0 to {desired}"),
                        "deployment-controller",
                    );
                    created = Some(rs_name);
                    new_rs = store.get(&rs_rt.key(), &ns, &format!("{name}-{hash}")).cloned();
                }
            }
            Some(rs) => {
                let mut next = rs.clone();
                let mut changed = false;
                let from = replicas(rs);
                if from != desired && !(recreate && old_pods_left) {
                    next["spec"]["replicas"] = json!(desired);
                    changed = true;
                }
                // A template rolled back to becomes the newest revision again.
                if revision_of(rs) < max_revision {
                    next["metadata"]["annotations"][REVISION] = json!((max_revision + 1).to_string());
                    changed = true;
                }
                if changed && let Ok(stored) = client::update(store, &rs_rt, next, None) {
                    if from != desired && stored["spec"]["replicas"] == desired {
                        let how = if desired > from { "up" } else { "down" };
                        let rs_name = rs["metadata"]["name"].as_str().unwrap_or_default();
                        client::event(
                            store,
                            d,
                            "Normal",
                            "ScalingReplicaSet",
                            &format!("Scaled {how} replica set {rs_name} from {from} to {desired}"),
                            "deployment-controller",
                        );
                    }
                    new_rs = Some(stored);
                }
            }
            None => {}
        }
        // Old ReplicaSets go to zero: at once for Recreate, once the new one is
        // available for RollingUpdate.
        let new_available = new_rs.as_ref().map_or(0, |r| r["status"]["availableReplicas"].as_i64().unwrap_or(0));
        if recreate || new_available >= desired {
            for rs in old.iter().filter(|r| replicas(r) > 0) {
                let from = replicas(rs);
                let mut next = rs.clone();
                next["spec"]["replicas"] = json!(0);
                if client::update(store, &rs_rt, next, None).is_ok() {
                    let rs_name = rs["metadata"]["name"].as_str().unwrap_or_default();
                    client::event(
                        store,
                        d,
                        "Normal",
                        "ScalingReplicaSet",
                        &format!("Scaled down replica set {rs_name} from {from} to 0"),
                        "deployment-controller",
                    );
                }
            }
        }
        // History beyond revisionHistoryLimit goes, oldest first.
        let limit = d["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0) as usize;
        let mut idle: Vec<&Value> = old
            .iter()
            .filter(|r| replicas(r) == 0 && r["status"]["replicas"].as_i64().unwrap_or(0) == 0 && !deleting(r))
            .collect();
        idle.sort_by_key(|r| revision_of(r));
        let excess = idle.len().saturating_sub(limit);
        for rs in idle.into_iter().take(excess) {
            let (rns, rname) = ns_name(rs);
            let _ = client::delete(store, &rs_rt, &rns, &rname);
        }
    }
    deployment_status(store, d, new_rs.as_ref(), created.as_deref());
}

/// Sets a Deployment condition (they carry `lastUpdateTime` as well).
fn set_condition(status: &mut Value, previous: &Value, typ: &str, st: &str, reason: &str, message: &str) {
    let now = super::meta::now();
    let old = previous["conditions"].as_array().and_then(|cs| cs.iter().find(|c| c["type"] == typ)).cloned();
    let c = match old {
        Some(o) if o["status"] == st && o["reason"] == reason && o["message"] == message => o,
        Some(o) if o["status"] == st => json!({"type": typ, "status": st, "lastUpdateTime": now,
            "lastTransitionTime": o["lastTransitionTime"], "reason": reason, "message": message}),
        _ => json!({"type": typ, "status": st, "lastUpdateTime": now, "lastTransitionTime": now,
            "reason": reason, "message": message}),
    };
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    status["conditions"].as_array_mut().expect("array").push(c);
}

fn deployment_status(store: &mut Store, d: &Value, new_rs: Option<&Value>, created: Option<&str>) {
    let rt = client::rt(store, "apps", "deployments");
    let rs_rt = client::rt(store, "apps", "replicasets");
    let (ns, name) = ns_name(d);
    let uid = d["metadata"]["uid"].as_str().unwrap_or_default();
    let owned: Vec<Value> =
        store.list(&rs_rt.key(), Some(&ns)).filter(|r| controller_uid(r) == Some(uid)).cloned().collect();
    let sum = |f: &str| owned.iter().map(|r| r["status"][f].as_i64().unwrap_or(0)).sum::<i64>();
    let desired = replicas(d);
    let total = sum("replicas");
    let ready = sum("readyReplicas");
    let available = sum("availableReplicas");
    let new_name = new_rs.and_then(|r| r["metadata"]["name"].as_str()).unwrap_or_default().to_string();
    let updated = new_rs
        .and_then(|r| owned.iter().find(|o| o["metadata"]["name"] == r["metadata"]["name"]))
        .map_or(0, |r| r["status"]["replicas"].as_i64().unwrap_or(0));
    let max_unavailable = if d["spec"]["strategy"]["type"] == "Recreate" {
        0
    } else {
        scaled(&d["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"], desired, false)
    };
    let previous = &d["status"];
    let mut status = json!({"observedGeneration": d["metadata"]["generation"]});
    for (k, v) in [
        ("replicas", total),
        ("updatedReplicas", updated),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("unavailableReplicas", (total.max(desired) - available).max(0)),
    ] {
        if v != 0 {
            status[k] = json!(v);
        }
    }
    if let Some(c) = previous.get("collisionCount") {
        status["collisionCount"] = c.clone();
    }
    if available >= desired - max_unavailable {
        set_condition(
            &mut status,
            previous,
            "Available",
            "True",
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
        );
    } else {
        set_condition(
            &mut status,
            previous,
            "Available",
            "False",
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
        );
    }
    let complete = updated == desired && total == desired && available >= desired && !new_name.is_empty();
    if d["spec"]["paused"].as_bool() == Some(true) {
        set_condition(&mut status, previous, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused");
    } else if let Some(rs) = created {
        set_condition(
            &mut status,
            previous,
            "Progressing",
            "True",
            "NewReplicaSetCreated",
            &format!("Created new replica set {rs:?}"),
        );
    } else if complete {
        set_condition(
            &mut status,
            previous,
            "Progressing",
            "True",
            "NewReplicaSetAvailable",
            &format!("ReplicaSet {new_name:?} has successfully progressed."),
        );
    } else if !new_name.is_empty() {
        set_condition(
            &mut status,
            previous,
            "Progressing",
            "True",
            "ReplicaSetUpdated",
            &format!("ReplicaSet {new_name:?} is progressing."),
        );
    }
    let Some(mut cur) = store.get(&rt.key(), &ns, &name).cloned() else { return };
    // The Deployment carries its newest revision too.
    let revision = new_rs.map(revision_of).unwrap_or(0);
    if revision > 0 && revision_of(&cur) != revision {
        cur["metadata"]["annotations"][REVISION] = json!(revision.to_string());
        match client::update(store, &rt, cur, None) {
            Ok(stored) => cur = stored,
            Err(_) => return,
        }
    }
    if status != cur["status"] {
        cur["status"] = status;
        let _ = client::update(store, &rt, cur, Some("status"));
    }
}

/// Which excess Pod goes first (`controller.ActivePodsWithRanks`, simplified): not
/// scheduled, then not running, then not ready, then the newest.
fn deletion_rank(p: &Value) -> (u8, u8, u8, std::cmp::Reverse<String>) {
    let unscheduled = p["spec"]["nodeName"].as_str().is_none_or(str::is_empty);
    let pending = p["status"]["phase"] != "Running";
    let unready = !running_and_ready(p);
    let created = p["metadata"]["creationTimestamp"].as_str().unwrap_or_default().to_string();
    (u8::from(!unscheduled), u8::from(!pending), u8::from(!unready), std::cmp::Reverse(created))
}

fn replicaset_pass(store: &mut Store, state: &mut State, rs: &Value) {
    let rs_rt = client::rt(store, "apps", "replicasets");
    let pod_rt = client::rt(store, "", "pods");
    let (ns, name) = ns_name(rs);
    let uid = rs["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let want = replicas(rs);
    let mut active: Vec<Value> =
        owned_pods(store, &ns, &uid).into_iter().filter(|p| !deleting(p) && !terminal(p)).collect();
    let have = active.len() as i64;
    if have < want && state.may_create(&uid) {
        for _ in have..want {
            let tmpl = &rs["spec"]["template"];
            let mut meta = tmpl["metadata"].clone();
            if !meta.is_object() {
                meta = json!({});
            }
            meta["generateName"] = json!(format!("{name}-"));
            meta["namespace"] = json!(ns);
            meta["ownerReferences"] = json!([controller_ref(rs)]);
            let res = client::create(store, &pod_rt, json!({"metadata": meta, "spec": tmpl["spec"]}));
            match res {
                Ok(p) => {
                    let pod = p["metadata"]["name"].as_str().unwrap_or_default().to_string();
                    client::event(
                        store,
                        rs,
                        "Normal",
                        "SuccessfulCreate",
                        &format!("Created pod: {pod}"),
                        "replicaset-controller",
                    );
                }
                Err(e) => {
                    let why = e.body["message"].as_str().unwrap_or_default().to_string();
                    client::event(
                        store,
                        rs,
                        "Warning",
                        "FailedCreate",
                        &format!("Error creating: {why}"),
                        "replicaset-controller",
                    );
                    state.create_failed(&uid);
                    break;
                }
            }
        }
    } else if have > want {
        active.sort_by_key(deletion_rank);
        for p in active.iter().take((have - want) as usize) {
            let (pns, pname) = ns_name(p);
            if client::delete(store, &pod_rt, &pns, &pname).is_ok() {
                client::event(
                    store,
                    rs,
                    "Normal",
                    "SuccessfulDelete",
                    &format!("Deleted pod: {pname}"),
                    "replicaset-controller",
                );
            }
        }
    }
    // Status from what exists now.
    let pods: Vec<Value> = owned_pods(store, &ns, &uid).into_iter().filter(|p| !deleting(p) && !terminal(p)).collect();
    let ready = pods.iter().filter(|p| running_and_ready(p)).count() as i64;
    let mut status = json!({"replicas": pods.len(), "observedGeneration": rs["metadata"]["generation"]});
    let labels = rs["spec"]["template"]["metadata"]["labels"].as_object().cloned().unwrap_or_default();
    let fully = pods.iter().filter(|p| labels.iter().all(|(k, v)| p["metadata"]["labels"][k] == *v)).count();
    for (k, v) in [("fullyLabeledReplicas", fully as i64), ("readyReplicas", ready), ("availableReplicas", ready)] {
        if v != 0 {
            status[k] = json!(v);
        }
    }
    if status != rs["status"]
        && let Some(mut cur) = store.get(&rs_rt.key(), &ns, &name).cloned()
    {
        cur["status"] = status;
        let _ = client::update(store, &rs_rt, cur, Some("status"));
    }
}
