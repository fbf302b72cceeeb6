//! Defaults and validation of the built-in kinds, where the operator or the conformance
//! kit depends on them.

use super::errors::Cause;
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
            if let Some(ts) = s["volumeClaimTemplates"].as_array_mut() {
                for t in ts {
                    set_default(&mut t["spec"], "volumeMode", json!("Filesystem"));
                    t["apiVersion"] = json!("v1");
                    t["kind"] = json!("PersistentVolumeClaim");
                }
            }
        }
        "Job" => {
            let s = &mut obj["spec"];
            set_default(s, "backoffLimit", json!(6));
            set_default(s, "completions", json!(1));
            set_default(s, "parallelism", json!(1));
            set_default(s, "completionMode", json!("NonIndexed"));
            set_default(s, "suspend", json!(false));
            set_default(s, "podReplacementPolicy", json!("TerminatingOrFailed"));
            pod_spec_defaults(&mut s["template"]["spec"]);
        }
        "Pod" => pod_spec_defaults(&mut obj["spec"]),
        "PersistentVolumeClaim" => set_default(&mut obj["spec"], "volumeMode", json!("Filesystem")),
        "Secret" => set_default(obj, "type", json!("Opaque")),
        "Service" => {
            set_default(&mut obj["spec"], "type", json!("ClusterIP"));
            set_default(&mut obj["spec"], "sessionAffinity", json!("None"));
        }
        _ => {}
    }
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
    for list in ["containers", "initContainers"] {
        if let Some(cs) = spec[list].as_array_mut() {
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
                if let Some(ports) = c["ports"].as_array_mut() {
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
        // events.k8s.io Events are checked here only; the core rules below are for v1.
        "Event" if rt.group == "events.k8s.io" => {
            c.extend(obj["eventTime"].is_null().then(|| Cause::required("eventTime", "")));
        }
        "Event" => {
            let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default();
            let io_ns = obj["involvedObject"]["namespace"].as_str().unwrap_or_default();
            if io_ns != ns && !ns.is_empty() {
                c.push(Cause::invalid("involvedObject.namespace", &json!(io_ns), "does not match event.namespace"));
            }
            if let Some(t) = obj["type"].as_str()
                && !matches!(t, "Normal" | "Warning")
            {
                c.push(Cause::invalid("type", &json!(t), &format!("has invalid value: {t}")));
            }
        }
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
