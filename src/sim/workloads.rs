//! The Job and StatefulSet controllers, after kube-controller-manager's: they create Pods
//! (and a StatefulSet's PersistentVolumeClaims) through the API paths, record core v1
//! Events under their own component names, and write status as the real ones do. With
//! no kubelet (profile `bare`) Pods stay `Pending`, as the conformance goldens show.

use super::client::{self, controller_ref, controller_uid, ns_name};
use super::meta;
use super::store::Store;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// What the controllers remember between passes.
#[derive(Default)]
pub struct State {
    /// Per Job uid: failures counted so far and when the last one was seen (for the
    /// exponential back-off before a replacement Pod).
    job_failures: HashMap<String, (i64, Instant)>,
    /// When a pass is due even if nothing changed (a back-off running out).
    pub wake_at: Option<Instant>,
    /// Per owner uid: no new Pod before this, after a create failed (the failure's event
    /// would otherwise trigger the next attempt at once, over and over).
    create_retry: HashMap<String, Instant>,
}

/// How long a controller waits after a failed create before trying again.
const CREATE_RETRY: Duration = Duration::from_secs(5);

impl State {
    pub(super) fn may_create(&mut self, owner: &str) -> bool {
        match self.create_retry.get(owner) {
            Some(t) if *t > Instant::now() => {
                let t = *t;
                wake(self, t);
                false
            }
            _ => true,
        }
    }

    pub(super) fn create_failed(&mut self, owner: &str) {
        let at = Instant::now() + CREATE_RETRY;
        self.create_retry.insert(owner.to_string(), at);
        wake(self, at);
    }
}

/// The Job controller's first back-off step; it doubles per failure up to six minutes.
const JOB_BACKOFF: Duration = Duration::from_secs(10);
const JOB_BACKOFF_MAX: Duration = Duration::from_secs(360);
const JOB_TRACKING: &str = "batch.kubernetes.io/job-tracking";

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

pub(super) fn terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub(super) fn deleting(obj: &Value) -> bool {
    obj["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null())
}

fn condition_true(obj: &Value, typ: &str) -> bool {
    obj["status"]["conditions"]
        .as_array()
        .is_some_and(|cs| cs.iter().any(|c| c["type"] == typ && c["status"] == "True"))
}

pub(super) fn running_and_ready(pod: &Value) -> bool {
    phase(pod) == "Running" && condition_true(pod, "Ready")
}

/// Sets (or changes) a condition, keeping its transition time when the status is unchanged.
fn set_condition(status: &mut Value, typ: &str, st: &str, reason: &str, message: &str, probe: bool) {
    let now = meta::now();
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    let list = status["conditions"].as_array_mut().expect("array");
    let mut c = json!({"type": typ, "status": st, "lastTransitionTime": now, "reason": reason, "message": message});
    if probe {
        c["lastProbeTime"] = json!(now);
    }
    match list.iter_mut().find(|c| c["type"] == typ) {
        Some(old) if old["status"] == st => {
            old["reason"] = json!(reason);
            old["message"] = json!(message);
        }
        Some(old) => *old = c,
        None => list.push(c),
    }
}

pub(super) fn owned_pods(store: &Store, ns: &str, uid: &str) -> Vec<Value> {
    store.list("/pods", Some(ns)).filter(|p| controller_uid(p) == Some(uid)).cloned().collect()
}

// ---------------------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------------------

pub fn jobs(store: &mut Store, state: &mut State) {
    let job_rt = client::rt(store, "batch", "jobs");
    let pod_rt = client::rt(store, "", "pods");
    let all: Vec<Value> = store.list(&job_rt.key(), None).cloned().collect();
    let live: std::collections::HashSet<String> =
        all.iter().filter(|j| !deleting(j)).filter_map(|j| j["metadata"]["uid"].as_str().map(String::from)).collect();
    // Pods whose Job is gone or going lose the tracking finalizer, so they can go too.
    let orphans: Vec<Value> = store
        .list(&pod_rt.key(), None)
        .filter(|p| {
            p["metadata"]["finalizers"].as_array().is_some_and(|f| f.iter().any(|x| x == JOB_TRACKING))
                && controller_uid(p).is_none_or(|u| !live.contains(u))
        })
        .cloned()
        .collect();
    for p in orphans {
        let _ = client::drop_finalizer(store, &pod_rt, &p, JOB_TRACKING);
    }
    state.job_failures.retain(|uid, _| live.contains(uid));
    state.create_retry.retain(|_, t| *t > Instant::now());
    for job in all {
        if !deleting(&job) {
            job_pass(store, state, &job);
        }
    }
}

fn finished(job: &Value) -> bool {
    condition_true(job, "Complete") || condition_true(job, "Failed")
}

fn job_pass(store: &mut Store, state: &mut State, job: &Value) {
    let job_rt = client::rt(store, "batch", "jobs");
    let pod_rt = client::rt(store, "", "pods");
    let (ns, name) = ns_name(job);
    let uid = job["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let spec = &job["spec"];
    let mut status = job["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    let mut succeeded = status["succeeded"].as_i64().unwrap_or(0);
    let mut failed = status["failed"].as_i64().unwrap_or(0);
    let done = finished(job);
    // Count Pods that finished (or were deleted before finishing) and release them.
    for p in owned_pods(store, &ns, &uid) {
        let tracked = p["metadata"]["finalizers"].as_array().is_some_and(|f| f.iter().any(|x| x == JOB_TRACKING));
        if !tracked {
            continue;
        }
        let count = if phase(&p) == "Succeeded" {
            Some(true)
        } else if phase(&p) == "Failed" || deleting(&p) {
            Some(false)
        } else {
            None
        };
        let Some(ok) = count else { continue };
        if !done {
            if ok {
                succeeded += 1;
            } else {
                failed += 1;
            }
        }
        let _ = client::drop_finalizer(store, &pod_rt, &p, JOB_TRACKING);
    }
    let pods = owned_pods(store, &ns, &uid);
    let active: Vec<&Value> = pods.iter().filter(|p| !terminal(p) && !deleting(p)).collect();
    let restarts: i64 = if spec["template"]["spec"]["restartPolicy"] == "OnFailure" {
        active
            .iter()
            .flat_map(|p| p["status"]["containerStatuses"].as_array().into_iter().flatten())
            .map(|c| c["restartCount"].as_i64().unwrap_or(0))
            .sum()
    } else {
        0
    };
    let completions = spec["completions"].as_i64().unwrap_or(1);
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1);
    let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
    let suspend = spec["suspend"].as_bool() == Some(true);
    let mut n_active = active.len() as i64;
    let mut delete_active = false;
    let now = meta::now();
    if !done {
        let prev = state.job_failures.get(&uid).map_or(0, |(n, _)| *n);
        if failed + restarts > prev {
            state.job_failures.insert(uid.clone(), (failed + restarts, Instant::now()));
        }
        if suspend {
            delete_active = true;
            if !condition_true(job, "Suspended") {
                set_condition(&mut status, "Suspended", "True", "JobSuspended", "Job suspended", true);
                client::event(store, job, "Normal", "Suspended", "Job suspended", "job-controller");
            }
            if let Some(m) = status.as_object_mut() {
                m.remove("startTime");
            }
        } else {
            if condition_true(job, "Suspended") {
                set_condition(&mut status, "Suspended", "False", "JobResumed", "Job resumed", true);
                client::event(store, job, "Normal", "Resumed", "Job resumed", "job-controller");
                status["startTime"] = json!(now);
            }
            if status["startTime"].is_null() {
                status["startTime"] = json!(now);
            }
            let deadline = spec["activeDeadlineSeconds"].as_i64().and_then(|secs| {
                let start: jiff::Timestamp = status["startTime"].as_str()?.parse().ok()?;
                Some(start + jiff::SignedDuration::from_secs(secs))
            });
            if succeeded >= completions {
                set_condition(
                    &mut status,
                    "SuccessCriteriaMet",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    true,
                );
                set_condition(
                    &mut status,
                    "Complete",
                    "True",
                    "CompletionsReached",
                    "Reached expected number of succeeded pods",
                    true,
                );
                status["completionTime"] = json!(now);
                delete_active = true;
                client::event(store, job, "Normal", "Completed", "Job completed", "job-controller");
            } else if failed + restarts > backoff_limit {
                let msg = "Job has reached the specified backoff limit";
                set_condition(&mut status, "FailureTarget", "True", "BackoffLimitExceeded", msg, true);
                set_condition(&mut status, "Failed", "True", "BackoffLimitExceeded", msg, true);
                delete_active = true;
                client::event(store, job, "Warning", "BackoffLimitExceeded", msg, "job-controller");
            } else if deadline.is_some_and(|d| d <= jiff::Timestamp::now()) {
                let msg = "Job was active longer than specified deadline";
                set_condition(&mut status, "FailureTarget", "True", "DeadlineExceeded", msg, true);
                set_condition(&mut status, "Failed", "True", "DeadlineExceeded", msg, true);
                delete_active = true;
                client::event(store, job, "Warning", "DeadlineExceeded", msg, "job-controller");
            } else {
                if let Some(d) = deadline {
                    let left = d.duration_since(jiff::Timestamp::now()).unsigned_abs();
                    wake(state, Instant::now() + left);
                }
                let want = parallelism.min(completions - succeeded) - n_active;
                let ready_at = state.job_failures.get(&uid).map(|(n, at)| {
                    let steps = (*n - 1).clamp(0, 10) as u32;
                    *at + (JOB_BACKOFF * 2u32.pow(steps)).min(JOB_BACKOFF_MAX)
                });
                if want > 0 && ready_at.is_some_and(|t| t > Instant::now()) {
                    wake(state, ready_at.expect("some"));
                } else if want > 0 && state.may_create(&uid) {
                    for _ in 0..want.max(0) {
                        match create_job_pod(store, job) {
                            Ok(pod) => {
                                n_active += 1;
                                let msg =
                                    format!("Created pod: {}", pod["metadata"]["name"].as_str().unwrap_or_default());
                                client::event(store, job, "Normal", "SuccessfulCreate", &msg, "job-controller");
                            }
                            Err(e) => {
                                let msg = format!("Error creating: {}", e.body["message"].as_str().unwrap_or_default());
                                client::event(store, job, "Warning", "FailedCreate", &msg, "job-controller");
                                state.create_failed(&uid);
                                break;
                            }
                        }
                    }
                }
            }
        }
    } else {
        delete_active = true;
    }
    let mut terminating = pods.iter().filter(|p| deleting(p) && !terminal(p)).count() as i64;
    if delete_active {
        for p in &active {
            let (pns, pname) = ns_name(p);
            let _ = client::drop_finalizer(store, &pod_rt, p, JOB_TRACKING);
            let _ = client::delete(store, &pod_rt, &pns, &pname);
            if store.get(&pod_rt.key(), &pns, &pname).is_some() {
                terminating += 1;
            }
        }
        n_active = 0;
    }
    let ready = pods.iter().filter(|p| !deleting(p) && condition_true(p, "Ready")).count() as i64;
    let m = status.as_object_mut().expect("object");
    for (k, v) in [("active", n_active), ("succeeded", succeeded), ("failed", failed)] {
        if v > 0 {
            m.insert(k.into(), json!(v));
        } else {
            m.remove(k);
        }
    }
    m.insert("ready".into(), json!(if delete_active { 0 } else { ready }));
    m.insert("terminating".into(), json!(terminating));
    m.insert("uncountedTerminatedPods".into(), json!({}));
    if status != job["status"]
        && let Some(cur) = store.get(&job_rt.key(), &ns, &name).cloned()
    {
        let mut next = cur;
        next["status"] = status;
        let _ = client::update(store, &job_rt, next, Some("status"));
    }
}

fn wake(state: &mut State, at: Instant) {
    state.wake_at = Some(state.wake_at.map_or(at, |w| w.min(at)));
}

fn create_job_pod(store: &mut Store, job: &Value) -> super::errors::ApiResult<Value> {
    let pod_rt = client::rt(store, "", "pods");
    let (ns, name) = ns_name(job);
    let tmpl = &job["spec"]["template"];
    let mut meta = tmpl["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["generateName"] = json!(format!("{name}-"));
    meta["namespace"] = json!(ns);
    meta["finalizers"] = json!([JOB_TRACKING]);
    meta["ownerReferences"] = json!([controller_ref(job)]);
    client::create(store, &pod_rt, json!({"metadata": meta, "spec": tmpl["spec"]}))
}

// ---------------------------------------------------------------------------------------
// StatefulSets
// ---------------------------------------------------------------------------------------

pub fn statefulsets(store: &mut Store, state: &mut State) {
    let sts_rt = client::rt(store, "apps", "statefulsets");
    let all: Vec<Value> = store.list(&sts_rt.key(), None).cloned().collect();
    for sts in all {
        if !deleting(&sts) {
            sts_pass(store, state, &sts);
        }
    }
}

/// The revision hash of a Pod template, spelt as the real controller spells hashes.
pub(super) fn template_hash(tmpl: &Value, collisions: i64) -> String {
    const ALPHA: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = blake3::Hasher::new();
    h.update(tmpl.to_string().as_bytes());
    h.update(&collisions.to_le_bytes());
    let n = u32::from_le_bytes(h.finalize().as_bytes()[..4].try_into().expect("4 bytes"));
    n.to_string().bytes().map(|b| ALPHA[b as usize % ALPHA.len()] as char).collect()
}

fn ordinal(sts_name: &str, pod: &Value) -> Option<i64> {
    pod["metadata"]["name"].as_str()?.strip_prefix(sts_name)?.strip_prefix('-')?.parse().ok()
}

/// The ControllerRevision of the current template (created if new); returns its name.
fn revision(store: &mut Store, sts: &Value) -> Option<String> {
    let cr_rt = client::rt(store, "apps", "controllerrevisions");
    let (ns, name) = ns_name(sts);
    let uid = sts["metadata"]["uid"].as_str().unwrap_or_default();
    let tmpl = &sts["spec"]["template"];
    let hash = template_hash(tmpl, sts["status"]["collisionCount"].as_i64().unwrap_or(0));
    let rev_name = format!("{name}-{hash}");
    let owned: Vec<Value> =
        store.list(&cr_rt.key(), Some(&ns)).filter(|r| controller_uid(r) == Some(uid)).cloned().collect();
    if owned.iter().any(|r| r["metadata"]["name"] == rev_name.as_str()) {
        return Some(rev_name);
    }
    let next = owned.iter().filter_map(|r| r["revision"].as_i64()).max().unwrap_or(0) + 1;
    let mut labels = tmpl["metadata"]["labels"].clone();
    if !labels.is_object() {
        labels = json!({});
    }
    labels["controller.kubernetes.io/hash"] = json!(hash);
    let mut data_tmpl = tmpl.clone();
    data_tmpl["$patch"] = json!("replace");
    let obj = json!({
        "metadata": {"name": rev_name, "namespace": ns, "labels": labels, "ownerReferences": [controller_ref(sts)]},
        "data": {"spec": {"template": data_tmpl}},
        "revision": next,
    });
    client::create(store, &cr_rt, obj).ok()?;
    // Old revisions beyond revisionHistoryLimit go, oldest first.
    let limit = sts["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10).max(0) as usize;
    let mut old: Vec<(i64, String)> = owned
        .iter()
        .map(|r| (r["revision"].as_i64().unwrap_or(0), r["metadata"]["name"].as_str().unwrap_or_default().into()))
        .collect();
    old.sort();
    let in_use: Vec<String> = store
        .list("/pods", Some(&ns))
        .filter(|p| controller_uid(p) == Some(uid))
        .filter_map(|p| p["metadata"]["labels"]["controller-revision-hash"].as_str().map(String::from))
        .collect();
    let excess = old.len().saturating_sub(limit);
    for (_, n) in old.into_iter().filter(|(_, n)| !in_use.contains(n)).take(excess) {
        let _ = client::delete(store, &cr_rt, &ns, &n);
    }
    Some(rev_name)
}

fn claim_name(tmpl: &Value, sts_name: &str, ord: i64) -> String {
    format!("{}-{sts_name}-{ord}", tmpl["metadata"]["name"].as_str().unwrap_or_default())
}

/// Creates the Pod of one ordinal, and its claims first.
fn create_sts_pod(store: &mut Store, sts: &Value, ord: i64, rev: &str) -> Result<(), ()> {
    let pvc_rt = client::rt(store, "", "persistentvolumeclaims");
    let pod_rt = client::rt(store, "", "pods");
    let (ns, name) = ns_name(sts);
    let templates: Vec<Value> = sts["spec"]["volumeClaimTemplates"].as_array().cloned().unwrap_or_default();
    let delete_with_set = sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Delete";
    let pod_name = format!("{name}-{ord}");
    let mut claim_volumes = Vec::new();
    for t in &templates {
        let claim = claim_name(t, &name, ord);
        claim_volumes.push(json!({"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}}));
        match store.get(&pvc_rt.key(), &ns, &claim) {
            Some(c) if deleting(c) => return Err(()),
            Some(_) => continue,
            None => {}
        }
        let mut labels = t["metadata"]["labels"].clone();
        if !labels.is_object() {
            labels = json!({});
        }
        for (k, v) in sts["spec"]["selector"]["matchLabels"].as_object().into_iter().flatten() {
            labels[k] = v.clone();
        }
        let mut meta = json!({"name": claim, "namespace": ns, "labels": labels});
        if let Some(a) = t["metadata"]["annotations"].as_object() {
            meta["annotations"] = json!(a);
        }
        if delete_with_set {
            meta["ownerReferences"] = json!([controller_ref(sts)]);
        }
        let res = client::create(store, &pvc_rt, json!({"metadata": meta, "spec": t["spec"]}));
        let (typ, reason, msg) = match &res {
            Ok(_) => (
                "Normal",
                "SuccessfulCreate",
                format!("Create Claim {claim} Pod {pod_name} in StatefulSet {name} success"),
            ),
            Err(e) => (
                "Warning",
                "FailedCreate",
                format!(
                    "Create Claim {claim} for Pod {pod_name} in StatefulSet {name} failed error: {}",
                    e.body["message"].as_str().unwrap_or_default()
                ),
            ),
        };
        client::event(store, sts, typ, reason, &msg, "statefulset-controller");
        if res.is_err() {
            return Err(());
        }
    }
    let tmpl = &sts["spec"]["template"];
    let mut meta = tmpl["metadata"].clone();
    if !meta.is_object() {
        meta = json!({});
    }
    meta["name"] = json!(pod_name);
    meta["generateName"] = json!(format!("{name}-"));
    meta["namespace"] = json!(ns);
    meta["ownerReferences"] = json!([controller_ref(sts)]);
    meta["labels"]["controller-revision-hash"] = json!(rev);
    meta["labels"]["statefulset.kubernetes.io/pod-name"] = json!(pod_name);
    meta["labels"]["apps.kubernetes.io/pod-index"] = json!(ord.to_string());
    let mut spec = tmpl["spec"].clone();
    spec["hostname"] = json!(pod_name);
    if let Some(svc) = sts["spec"]["serviceName"].as_str().filter(|s| !s.is_empty()) {
        spec["subdomain"] = json!(svc);
    }
    let names: Vec<Value> = claim_volumes.iter().map(|v| v["name"].clone()).collect();
    let mut volumes = claim_volumes;
    volumes.extend(spec["volumes"].as_array().into_iter().flatten().filter(|v| !names.contains(&v["name"])).cloned());
    if !volumes.is_empty() {
        spec["volumes"] = json!(volumes);
    }
    let res = client::create(store, &pod_rt, json!({"metadata": meta, "spec": spec})).map(|_| ());
    pod_event(store, sts, "Create", &pod_name, &res);
    res.map_err(|_| ())
}

/// The StatefulSet controller's event for creating or deleting a Pod.
fn pod_event(store: &mut Store, sts: &Value, verb: &str, pod_name: &str, res: &super::errors::ApiResult<()>) {
    let name = sts["metadata"]["name"].as_str().unwrap_or_default();
    let (typ, reason, msg) = match res {
        Ok(()) => {
            ("Normal", format!("Successful{verb}"), format!("{verb} Pod {pod_name} in StatefulSet {name} successful"))
        }
        Err(e) => (
            "Warning",
            format!("Failed{verb}"),
            format!(
                "{verb} Pod {pod_name} in StatefulSet {name} failed error: {}",
                e.body["message"].as_str().unwrap_or_default()
            ),
        ),
    };
    client::event(store, sts, typ, &reason, &msg, "statefulset-controller");
}

fn delete_sts_pod(store: &mut Store, sts: &Value, pod: &Value, scaled_away: bool) {
    let pod_rt = client::rt(store, "", "pods");
    let pvc_rt = client::rt(store, "", "persistentvolumeclaims");
    let (ns, pod_name) = ns_name(pod);
    let (_, name) = ns_name(sts);
    let res = client::delete(store, &pod_rt, &ns, &pod_name);
    pod_event(store, sts, "Delete", &pod_name, &res);
    if scaled_away
        && res.is_ok()
        && sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] == "Delete"
        && let Some(ord) = ordinal(&name, pod)
    {
        for t in sts["spec"]["volumeClaimTemplates"].as_array().into_iter().flatten() {
            let _ = client::delete(store, &pvc_rt, &ns, &claim_name(t, &name, ord));
        }
    }
}

fn sts_pass(store: &mut Store, state: &mut State, sts: &Value) {
    let sts_rt = client::rt(store, "apps", "statefulsets");
    let (ns, name) = ns_name(sts);
    let uid = sts["metadata"]["uid"].as_str().unwrap_or_default().to_string();
    let Some(rev) = revision(store, sts) else { return };
    let replicas = sts["spec"]["replicas"].as_i64().unwrap_or(1);
    let monotonic = sts["spec"]["podManagementPolicy"] != "Parallel";
    let pods: BTreeMap<i64, Value> =
        owned_pods(store, &ns, &uid).into_iter().filter_map(|p| ordinal(&name, &p).map(|o| (o, p))).collect();
    let healthy = |p: &Value| running_and_ready(p) && !deleting(p);
    let first_unhealthy = pods.iter().find(|(_, p)| !healthy(p)).map(|(o, _)| *o);
    'work: {
        for ord in 0..replicas {
            match pods.get(&ord) {
                None => {
                    if !state.may_create(&uid) {
                        break 'work;
                    }
                    if create_sts_pod(store, sts, ord, &rev).is_err() {
                        state.create_failed(&uid);
                        break 'work;
                    }
                    if monotonic {
                        break 'work;
                    }
                }
                Some(p) if terminal(p) && !deleting(p) => {
                    delete_sts_pod(store, sts, p, false);
                    if monotonic {
                        break 'work;
                    }
                }
                Some(p) if deleting(p) => {
                    if monotonic {
                        break 'work;
                    }
                }
                Some(p) if !running_and_ready(p) && monotonic => break 'work,
                Some(_) => {}
            }
        }
        for (ord, p) in pods.iter().rev().filter(|(o, _)| **o >= replicas) {
            if deleting(p) {
                if monotonic {
                    break 'work;
                }
                continue;
            }
            if !running_and_ready(p) && monotonic && Some(*ord) != first_unhealthy {
                break 'work;
            }
            delete_sts_pod(store, sts, p, true);
            if monotonic {
                break 'work;
            }
        }
        // Rolling update: one Pod at a time, highest ordinal first, down to the partition,
        // and only while every other Pod is healthy.
        if sts["spec"]["updateStrategy"]["type"] != "OnDelete" {
            let partition = sts["spec"]["updateStrategy"]["rollingUpdate"]["partition"].as_i64().unwrap_or(0);
            let in_range: Vec<(&i64, &Value)> = pods.iter().filter(|(o, _)| **o < replicas).collect();
            if in_range.iter().any(|(_, p)| deleting(p)) {
                break 'work;
            }
            for (ord, p) in in_range.iter().rev() {
                if **ord < partition {
                    break;
                }
                if p["metadata"]["labels"]["controller-revision-hash"] != rev.as_str() {
                    let others_ok = in_range.iter().all(|(o, q)| o == ord || healthy(q));
                    if others_ok {
                        delete_sts_pod(store, sts, p, false);
                    }
                    break 'work;
                }
            }
        }
    }
    // Status from what exists now.
    let pods = owned_pods(store, &ns, &uid);
    let count = |f: &dyn Fn(&Value) -> bool| pods.iter().filter(|p| f(p)).count() as i64;
    let created = count(&|p| ordinal(&name, p).is_some());
    let ready = count(&|p| running_and_ready(p));
    let updated = count(&|p| !deleting(p) && p["metadata"]["labels"]["controller-revision-hash"] == rev.as_str());
    let current_rev = sts["status"]["currentRevision"].as_str().map(String::from);
    let current_rev = match current_rev {
        Some(c) if updated < replicas || created != replicas => c,
        _ => rev.clone(),
    };
    let current =
        count(&|p| !deleting(p) && p["metadata"]["labels"]["controller-revision-hash"] == current_rev.as_str());
    let mut status = json!({
        "observedGeneration": sts["metadata"]["generation"],
        "replicas": created,
        "availableReplicas": ready,
        "currentReplicas": current,
        "updatedReplicas": updated,
        "currentRevision": current_rev,
        "updateRevision": rev,
        "collisionCount": sts["status"]["collisionCount"].as_i64().unwrap_or(0),
    });
    if ready > 0 {
        status["readyReplicas"] = json!(ready);
    }
    for k in ["currentReplicas", "updatedReplicas"] {
        if status[k] == 0 {
            status.as_object_mut().expect("object").remove(k);
        }
    }
    if let Some(c) = sts["status"].get("conditions") {
        status["conditions"] = c.clone();
    }
    if status != sts["status"]
        && let Some(cur) = store.get(&sts_rt.key(), &ns, &name).cloned()
    {
        let mut next = cur;
        next["status"] = status;
        let _ = client::update(store, &sts_rt, next, Some("status"));
    }
}
