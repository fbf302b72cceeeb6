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
            // core/v1 SetDefaults_Service
            let s = &mut obj["spec"];
            set_default(s, "type", json!("ClusterIP"));
            set_default(s, "sessionAffinity", json!("None"));
            if s["sessionAffinity"] == "ClientIP" {
                set_default(&mut s["sessionAffinityConfig"]["clientIP"], "timeoutSeconds", json!(10800));
            }
            let kind = s["type"].as_str().unwrap_or_default().to_string();
            if kind != "ExternalName" {
                set_default(s, "internalTrafficPolicy", json!("Cluster"));
            }
            if kind == "NodePort" || kind == "LoadBalancer" {
                set_default(s, "externalTrafficPolicy", json!("Cluster"));
            }
            if kind == "LoadBalancer" {
                set_default(s, "allocateLoadBalancerNodePorts", json!(true));
            }
            for p in s.get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
                set_default(p, "protocol", json!("TCP"));
                if p["targetPort"].is_null() || p["targetPort"] == 0 || p["targetPort"] == "" {
                    p["targetPort"] = p["port"].clone();
                }
            }
        }
        "CronJob" => {
            // batch/v1 SetDefaults_CronJob, and the pod template's defaults.
            let s = &mut obj["spec"];
            set_default(s, "concurrencyPolicy", json!("Allow"));
            set_default(s, "suspend", json!(false));
            set_default(s, "successfulJobsHistoryLimit", json!(3));
            set_default(s, "failedJobsHistoryLimit", json!(1));
            pod_spec_defaults(&mut s["jobTemplate"]["spec"]["template"]["spec"]);
        }
        _ => {}
    }
}

/// The service IP range and node port range of the simulated cluster (kubeadm's defaults).
const SERVICE_NET: u32 = 0x0a60_0000;
const SERVICE_PREFIX: u32 = 12;
const SERVICE_RANGE: &str = "10.96.0.0/12";
const NODE_PORTS: std::ops::RangeInclusive<i64> = 30000..=32767;

fn needs_node_ports(spec: &Value) -> bool {
    spec["type"] == "NodePort" || (spec["type"] == "LoadBalancer" && spec["allocateLoadBalancerNodePorts"] != false)
}

/// A Service update keeps what was allocated when the new object leaves it out (as the
/// real server's `patchAllocatedValues`): the cluster IPs and families, and each port's
/// node port, matched by port and protocol.
fn carry_service_allocations(old: &Value, obj: &mut Value) {
    let (o, n) = (&old["spec"], &obj["spec"]);
    let keeps_ip = |t: &Value| t != "ExternalName";
    if keeps_ip(&o["type"]) && keeps_ip(&n["type"]) {
        for k in ["clusterIP", "clusterIPs", "ipFamilies", "ipFamilyPolicy"] {
            let unset = |v: &Value| v.is_null() || v == "" || v.as_array().is_some_and(Vec::is_empty);
            if unset(&obj["spec"][k]) && !old["spec"][k].is_null() {
                obj["spec"][k] = old["spec"][k].clone();
            }
        }
    }
    if needs_node_ports(&old["spec"]) && needs_node_ports(&obj["spec"]) {
        let before: Vec<Value> = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
        for p in obj["spec"].get_mut("ports").and_then(Value::as_array_mut).into_iter().flatten() {
            if p["nodePort"].as_i64().unwrap_or(0) == 0
                && let Some(b) = before.iter().find(|b| b["port"] == p["port"] && b["protocol"] == p["protocol"])
                && !b["nodePort"].is_null()
            {
                p["nodePort"] = b["nodePort"].clone();
            }
        }
    }
}

/// Cluster IPs and node ports of the other Services.
fn service_allocations(
    store: &Store,
    except: (&str, &str),
) -> (std::collections::HashSet<u32>, std::collections::HashSet<i64>) {
    let (mut ips, mut ports) = (std::collections::HashSet::new(), std::collections::HashSet::new());
    for svc in store.list("/services", None) {
        let m = &svc["metadata"];
        if (m["namespace"].as_str().unwrap_or_default(), m["name"].as_str().unwrap_or_default()) == except {
            continue;
        }
        for ip in svc["spec"]["clusterIPs"].as_array().into_iter().flatten() {
            if let Some(a) = ip.as_str().and_then(|t| t.parse::<std::net::Ipv4Addr>().ok()) {
                ips.insert(u32::from(a));
            }
        }
        for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(n) = p["nodePort"].as_i64() {
                ports.insert(n);
            }
        }
    }
    (ips, ports)
}

/// The IP and port allocation of a Service create (or update: `old`), as the real
/// server's allocators do it: a cluster IP from the service range (or the one asked for,
/// if it is in range and free), its families, and a node port per port of a NodePort or
/// LoadBalancer Service. A taken or out-of-range address or port is a 422.
fn allocate_service(store: &Store, obj: &mut Value, old: Option<&Value>) -> ApiResult<()> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let ns = obj["metadata"]["namespace"].as_str().unwrap_or_default().to_string();
    let (ips, used_ports) = service_allocations(store, (&ns, &name));
    let invalid = |cause: Cause| ApiError::invalid_in("", "Service", &name, vec![cause]);
    let spec = &mut obj["spec"];
    if let Some(o) = old
        && o["spec"]["type"] != "ExternalName"
        && spec["type"] != "ExternalName"
        && !o["spec"]["clusterIP"].is_null()
        && spec["clusterIP"] != o["spec"]["clusterIP"]
    {
        return Err(invalid(Cause::invalid("spec.clusterIPs[0]", &spec["clusterIPs"], "may not change once set")));
    }
    if spec["type"] != "ExternalName" && old.is_none_or(|o| o["spec"]["clusterIP"].is_null()) {
        let asked = spec["clusterIP"]
            .as_str()
            .or_else(|| spec["clusterIPs"][0].as_str())
            .filter(|t| !t.is_empty())
            .map(String::from);
        let headless = asked.as_deref() == Some("None");
        if headless {
            spec["clusterIP"] = json!("None");
            spec["clusterIPs"] = json!(["None"]);
        } else {
            let first = SERVICE_NET;
            let size = 1u32 << (32 - SERVICE_PREFIX);
            let ip = match &asked {
                Some(t) => {
                    let list = json!([t]);
                    let Ok(addr) = t.parse::<std::net::Ipv4Addr>().map(u32::from) else {
                        return Err(invalid(Cause::invalid(
                            "spec.clusterIPs[0]",
                            &json!(t),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )));
                    };
                    let in_range = addr & !(size - 1) == first && addr != first && addr != first + size - 1;
                    if !in_range {
                        return Err(invalid(Cause::invalid(
                            "spec.clusterIPs",
                            &list,
                            &format!(
                                "failed to allocate IP {t}: the provided IP ({t}) is not in the valid range. The range of valid IPs is {SERVICE_RANGE}"
                            ),
                        )));
                    }
                    if ips.contains(&addr) {
                        return Err(invalid(Cause::invalid(
                            "spec.clusterIPs",
                            &list,
                            &format!("failed to allocate IP {t}: provided IP is already allocated"),
                        )));
                    }
                    addr
                }
                None => {
                    // Random, as the real allocator; the range's first address is the
                    // `kubernetes` Service's.
                    let mut pick = u32::from_le_bytes(super::meta::rand_bytes::<4>()) % (size - 3) + 2;
                    while ips.contains(&(first + pick)) {
                        pick = (pick - 1) % (size - 3) + 2;
                    }
                    first + pick
                }
            };
            let text = std::net::Ipv4Addr::from(ip).to_string();
            spec["clusterIP"] = json!(text);
            spec["clusterIPs"] = json!([text]);
        }
        let selectorless = spec["selector"].as_object().is_none_or(|m| m.is_empty());
        set_default(
            spec,
            "ipFamilyPolicy",
            json!(if headless && selectorless { "RequireDualStack" } else { "SingleStack" }),
        );
        set_default(spec, "ipFamilies", json!(["IPv4"]));
    }
    if needs_node_ports(spec) {
        let mut taken = used_ports;
        let before: Vec<i64> = old
            .map(|o| {
                o["spec"]["ports"].as_array().into_iter().flatten().filter_map(|p| p["nodePort"].as_i64()).collect()
            })
            .unwrap_or_default();
        let ports = spec.get_mut("ports").and_then(Value::as_array_mut);
        // Ports asked for are checked first, then the others are given free ones.
        let mut missing = Vec::new();
        for (i, p) in ports.into_iter().flatten().enumerate() {
            match p["nodePort"].as_i64().filter(|n| *n != 0) {
                Some(n) if before.contains(&n) => {
                    taken.insert(n);
                }
                Some(n) => {
                    let field = format!("spec.ports[{i}].nodePort");
                    if !NODE_PORTS.contains(&n) {
                        return Err(invalid(Cause::invalid(
                            field,
                            &json!(n),
                            &format!(
                                "provided port is not in the valid range. The range of valid ports is {}-{}",
                                NODE_PORTS.start(),
                                NODE_PORTS.end()
                            ),
                        )));
                    }
                    if !taken.insert(n) {
                        return Err(invalid(Cause::invalid(field, &json!(n), "provided port is already allocated")));
                    }
                }
                None => missing.push(i),
            }
        }
        let span = (NODE_PORTS.end() - NODE_PORTS.start() + 1) as u32;
        for i in missing {
            let mut n = NODE_PORTS.start() + i64::from(u32::from_le_bytes(super::meta::rand_bytes::<4>()) % span);
            while taken.contains(&n) {
                n = if n == *NODE_PORTS.end() { *NODE_PORTS.start() } else { n + 1 };
            }
            taken.insert(n);
            obj["spec"]["ports"][i]["nodePort"] = json!(n);
        }
    }
    Ok(())
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
        "Service" => allocate_service(store, obj, None),
        _ => Ok(()),
    }
}

/// What an update of a built-in kind keeps or allocates, as the real server's storage does:
/// a Service keeps the addresses the new object leaves out, and gets node ports it newly
/// needs (a taken one is a 422).
pub fn admit_update(store: &Store, rt: &ResType, old: &Value, obj: &mut Value) -> ApiResult<()> {
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Service") => {
            carry_service_allocations(old, obj);
            allocate_service(store, obj, Some(old))
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
