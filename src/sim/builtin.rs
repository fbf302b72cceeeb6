//! Defaults and validation of the built-in kinds, where the operator or the conformance
//! kit depends on them.

use super::errors::{ApiError, ApiResult, Cause};
use super::registry::ResType;
use super::store::Store;
use serde_json::{Value, json};

/// Defaulting as the real server's `SetDefaults_*` functions do.
pub fn default(rt: &ResType, obj: &mut Value) {
    match rt.kind.as_str() {
        "Namespace" => {
            let name = obj["metadata"]["name"].clone();
            obj["metadata"]["labels"]["kubernetes.io/metadata.name"] = name;
            if obj["spec"]["finalizers"].is_null() {
                obj["spec"]["finalizers"] = json!(["kubernetes"]);
            }
        }
        "StatefulSet" => {
            let s = &mut obj["spec"];
            set_default(s, "replicas", json!(1));
            set_default(s, "podManagementPolicy", json!("OrderedReady"));
            set_default(s, "revisionHistoryLimit", json!(10));
            set_default(s, "updateStrategy", json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}));
            set_default(
                s,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
            pod_spec_defaults(&mut s["template"]["spec"]);
            set_default(&mut s["template"]["spec"], "restartPolicy", json!("Always"));
            if let Some(ts) = s.get_mut("volumeClaimTemplates").and_then(Value::as_array_mut) {
                for t in ts {
                    set_default(&mut t["spec"], "volumeMode", json!("Filesystem"));
                    t["apiVersion"] = json!("v1");
                    t["kind"] = json!("PersistentVolumeClaim");
                    set_default(t, "status", json!({"phase": "Pending"}));
                }
            }
        }
        "Deployment" | "ReplicaSet" => {
            let deployment = rt.kind == "Deployment";
            let s = &mut obj["spec"];
            set_default(s, "replicas", json!(1));
            if deployment {
                // apps/v1 SetDefaults_Deployment
                if s["strategy"]["type"].is_null() {
                    s["strategy"]["type"] = json!("RollingUpdate");
                }
                if s["strategy"]["type"] == "RollingUpdate" {
                    set_default(&mut s["strategy"]["rollingUpdate"], "maxUnavailable", json!("25%"));
                    set_default(&mut s["strategy"]["rollingUpdate"], "maxSurge", json!("25%"));
                }
                set_default(s, "revisionHistoryLimit", json!(10));
                set_default(s, "progressDeadlineSeconds", json!(600));
            }
            pod_spec_defaults(&mut s["template"]["spec"]);
            set_default(&mut s["template"]["spec"], "restartPolicy", json!("Always"));
        }
        "Job" => {
            job_selector(obj);
            let s = &mut obj["spec"];
            set_default(s, "backoffLimit", json!(6));
            set_default(s, "completions", json!(1));
            set_default(s, "parallelism", json!(1));
            set_default(s, "completionMode", json!("NonIndexed"));
            set_default(s, "suspend", json!(false));
            set_default(s, "podReplacementPolicy", json!("TerminatingOrFailed"));
            pod_spec_defaults(&mut s["template"]["spec"]);
        }
        "Pod" => {
            pod_spec_defaults(&mut obj["spec"]);
            let s = &mut obj["spec"];
            set_default(s, "restartPolicy", json!("Always"));
            set_default(s, "enableServiceLinks", json!(true));
            set_default(s, "priority", json!(0));
            set_default(s, "preemptionPolicy", json!("PreemptLowerPriority"));
        }
        "PersistentVolumeClaim" => set_default(&mut obj["spec"], "volumeMode", json!("Filesystem")),
        "Secret" => {
            set_default(obj, "type", json!("Opaque"));
            // stringData is write-only: merged into data, base64-encoded.
            if let Some(Value::Object(sd)) = obj.as_object_mut().and_then(|m| m.remove("stringData")) {
                use base64::Engine;
                if !obj["data"].is_object() {
                    obj["data"] = json!({});
                }
                for (k, v) in sd {
                    let text = v.as_str().unwrap_or_default();
                    obj["data"][k] = json!(base64::engine::general_purpose::STANDARD.encode(text));
                }
            }
        }
        "Event" => super::events::canonical(obj),
        "Service" => {
            set_default(&mut obj["spec"], "type", json!("ClusterIP"));
            set_default(&mut obj["spec"], "sessionAffinity", json!("None"));
        }
        _ => {}
    }
}

/// A Job's generated selector and labels, from its uid (`manualSelector` unset or false),
/// as the real server's Job strategy does.
fn job_selector(obj: &mut Value) {
    if obj["spec"]["manualSelector"].as_bool() == Some(true) {
        return;
    }
    let uid = obj["metadata"]["uid"].clone();
    let name = obj["metadata"]["name"].clone();
    if uid.is_null() {
        return;
    }
    obj["spec"]["manualSelector"] = json!(false);
    if obj["spec"]["selector"].is_null() {
        obj["spec"]["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
    }
    let labels = &mut obj["spec"]["template"]["metadata"]["labels"];
    for (k, v) in [
        ("batch.kubernetes.io/controller-uid", &uid),
        ("batch.kubernetes.io/job-name", &name),
        ("controller-uid", &uid),
        ("job-name", &name),
    ] {
        if labels.get(k).is_none() {
            labels[k] = v.clone();
        }
    }
    if obj["metadata"]["labels"].as_object().is_none_or(|l| l.is_empty()) {
        obj["metadata"]["labels"] = obj["spec"]["template"]["metadata"]["labels"].clone();
    }
}

/// Admission plugins that look at other objects on create: a Pod gets its ServiceAccount
/// (which must exist) and the projected API-access volume; a PersistentVolumeClaim or
/// PersistentVolume gets its in-use protection finalizer.
pub fn admit_create(store: &Store, rt: &ResType, obj: &mut Value) -> ApiResult<()> {
    match rt.kind.as_str() {
        "Pod" => service_account(store, obj),
        "PersistentVolumeClaim" => {
            add_finalizer(obj, "kubernetes.io/pvc-protection");
            // DefaultStorageClass: a claim without a class gets the default one, if any.
            if obj["spec"].get("storageClassName").is_none()
                && let Some(sc) = store
                    .list("storage.k8s.io/storageclasses", None)
                    .find(|c| c["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true")
            {
                obj["spec"]["storageClassName"] = sc["metadata"]["name"].clone();
            }
            Ok(())
        }
        "PersistentVolume" => {
            add_finalizer(obj, "kubernetes.io/pv-protection");
            Ok(())
        }
        _ => Ok(()),
    }
}

fn add_finalizer(obj: &mut Value, f: &str) {
    let list = &mut obj["metadata"]["finalizers"];
    if !list.is_array() {
        *list = json!([]);
    }
    let a = list.as_array_mut().expect("array");
    if !a.iter().any(|x| x == f) {
        a.push(json!(f));
    }
}

const TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

fn service_account(store: &Store, pod: &mut Value) -> ApiResult<()> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let name = pod["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let spec = &mut pod["spec"];
    let sa_name = spec["serviceAccountName"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| spec["serviceAccount"].as_str().filter(|s| !s.is_empty()))
        .unwrap_or("default")
        .to_string();
    spec["serviceAccountName"] = json!(sa_name);
    spec["serviceAccount"] = json!(sa_name);
    let Some(sa) = store.get("/serviceaccounts", &ns, &sa_name) else {
        return Err(ApiError::status(
            403,
            "Forbidden",
            format!(
                "pods {name:?} is forbidden: error looking up service account {ns}/{sa_name}: serviceaccount {sa_name:?} not found"
            ),
            Some(json!({"name": name, "kind": "pods"})),
        ));
    };
    let automount = spec["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true);
    if !automount {
        return Ok(());
    }
    let volume = format!("kube-api-access-{}", super::meta::random_suffix());
    let mut used = false;
    for list in ["initContainers", "containers"] {
        for c in spec.get_mut(list).and_then(Value::as_array_mut).into_iter().flatten() {
            let mounts = &mut c["volumeMounts"];
            if !mounts.is_array() {
                *mounts = json!([]);
            }
            let m = mounts.as_array_mut().expect("array");
            if m.iter().any(|x| x["mountPath"] == TOKEN_PATH) {
                continue;
            }
            m.push(json!({"name": volume, "readOnly": true, "mountPath": TOKEN_PATH}));
            used = true;
        }
    }
    if used {
        if !spec["volumes"].is_array() {
            spec["volumes"] = json!([]);
        }
        spec["volumes"].as_array_mut().expect("array").push(json!({
            "name": volume,
            "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]},
        }));
    }
    // DefaultTolerationSeconds: tolerate an unready or unreachable node for 5 minutes.
    let tolerations = &mut spec["tolerations"];
    if !tolerations.is_array() {
        *tolerations = json!([]);
    }
    let t = tolerations.as_array_mut().expect("array");
    for key in ["node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"] {
        if !t.iter().any(|x| x["key"] == key) {
            t.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    Ok(())
}

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if obj.get(key).is_none_or(Value::is_null)
        && let Some(m) = obj.as_object_mut()
        && !v.is_null()
    {
        m.insert(key.into(), v);
    }
}

fn pod_spec_defaults(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                let pull = if c["image"].as_str().is_some_and(|i| i.ends_with(":latest") || !i.contains(':')) {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                set_default(c, "imagePullPolicy", json!(pull));
                set_default(c, "resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

/// Kind-specific validation.
pub fn validate(_store: &Store, rt: &ResType, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut c = Vec::new();
    match rt.kind.as_str() {
        "Job" => {
            let rp = obj["spec"]["template"]["spec"]["restartPolicy"].as_str();
            if !matches!(rp, Some("OnFailure" | "Never")) {
                match rp {
                    None => c.push(Cause::required(
                        "spec.template.spec.restartPolicy",
                        "valid values: \"OnFailure\", \"Never\"",
                    )),
                    Some(v) => c.push(Cause::new(
                        "FieldValueNotSupported",
                        "spec.template.spec.restartPolicy",
                        format!("Unsupported value: {v:?}: supported values: \"OnFailure\", \"Never\""),
                    )),
                }
            }
            if let Some(old) = old {
                let strip = |v: &Value| {
                    let mut t = v["spec"]["template"].clone();
                    if let Some(m) = t["metadata"].as_object_mut() {
                        m.remove("labels");
                        m.remove("annotations");
                    }
                    t
                };
                if strip(old) != strip(obj) && old["spec"]["suspend"].as_bool() != Some(true) {
                    c.push(Cause::invalid("spec.template", &Value::Null, "field is immutable"));
                }
            }
        }
        "CustomResourceDefinition" => c.extend(super::custom::crd_errors(obj)),
        "Lease" => {
            if let Some(d) = obj["spec"]["leaseDurationSeconds"].as_i64()
                && d <= 0
            {
                c.push(Cause::invalid("spec.leaseDurationSeconds", &json!(d), "must be greater than 0"));
            }
        }
        "StatefulSet" => {
            if obj["spec"]["selector"].is_null() {
                c.push(Cause::required("spec.selector", ""));
            }
            if obj["spec"]["template"].is_null() {
                c.push(Cause::required("spec.template", ""));
            }
        }
        "Deployment" | "ReplicaSet" => {
            // apps validation: a selector, and template labels it selects.
            let sel = &obj["spec"]["selector"];
            if sel.is_null() {
                c.push(Cause::required("spec.selector", ""));
            } else {
                let labels = &obj["spec"]["template"]["metadata"]["labels"];
                let matches = sel["matchLabels"].as_object().is_none_or(|m| m.iter().all(|(k, v)| labels[k] == *v));
                if !matches {
                    c.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        labels,
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            if obj["spec"]["replicas"].as_i64().is_some_and(|r| r < 0) {
                c.push(Cause::invalid("spec.replicas", &obj["spec"]["replicas"], "must be greater than or equal to 0"));
            }
        }
        "Event" => c.extend(super::events::validate(obj, rt.group == "events.k8s.io", old)),
        _ => {}
    }
    c
}

/// Server-set fields of a new object.
pub fn on_create(rt: &ResType, obj: &mut Value) {
    match rt.kind.as_str() {
        "Namespace" => obj["status"] = json!({"phase": "Active"}),
        "Pod" if obj["status"]["phase"].is_null() => {
            obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
        }
        "PersistentVolumeClaim" => obj["status"] = json!({"phase": "Pending"}),
        // Status is the controllers', but these start out serialized.
        "Job" => obj["status"] = json!({}),
        "StatefulSet" => obj["status"] = json!({"replicas": 0, "availableReplicas": 0}),
        "Deployment" => obj["status"] = json!({}),
        "ReplicaSet" => obj["status"] = json!({"replicas": 0}),
        "PersistentVolume" if obj["status"]["phase"].is_null() => {
            obj["status"] = json!({"phase": "Pending"});
        }
        "CustomResourceDefinition" => super::custom::default_crd(obj),
        _ => {}
    }
}

/// Rules of updates to built-in kinds: a Namespace's phase is the server's.
pub fn on_update(rt: &ResType, old: &Value, obj: &mut Value) {
    if rt.kind == "Namespace" && obj["status"].is_null() {
        obj["status"] = old["status"].clone();
    }
}
