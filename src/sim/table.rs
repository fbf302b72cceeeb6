//! `as=Table` responses, as `kubectl get` asks for them.

use super::api::Req;
use super::registry::ResType;
use super::selector_string;
use serde_json::{Value, json};

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// How a resource's rows are printed, as kube-apiserver chooses: the built-in printer of
/// its kind (kubernetes `pkg/printers/internalversion/printers.go`), a custom resource's
/// printer columns, or the default convertor (name and creation time) for the built-in
/// kinds without a printer (Roles, ClusterRoles, CustomResourceDefinitions in v1.36).
enum Printer {
    Builtin(&'static str),
    Custom(Vec<(String, String)>),
    Default,
}

fn printer(rt: &ResType) -> (Printer, Vec<Value>) {
    let name = json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0});
    if rt.is_custom() {
        let declared = rt.crd.as_ref().and_then(|crd| {
            crd["spec"]["versions"]
                .as_array()?
                .iter()
                .find(|v| v["name"] == rt.version.as_str())
                .and_then(|v| v["additionalPrinterColumns"].as_array().cloned())
        });
        // A version without printer columns gets Age (apiextensions' default column).
        let declared = declared.filter(|c| !c.is_empty()).unwrap_or_else(|| {
            vec![json!({"name": "Age", "type": "date", "description": AGE_DESC, "jsonPath": ".metadata.creationTimestamp"})]
        });
        let mut cols = vec![name];
        let mut paths = Vec::new();
        for c in declared {
            let path = c["jsonPath"].as_str().unwrap_or_default().to_string();
            let desc = c["description"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("Custom resource definition column (in JSONPath format): {path}"));
            let typ = c["type"].as_str().unwrap_or("string").to_string();
            cols.push(json!({"name": c["name"], "type": typ, "format": c["format"].as_str().unwrap_or(""), "description": desc, "priority": c["priority"].as_i64().unwrap_or(0)}));
            paths.push((path, typ));
        }
        return (Printer::Custom(paths), cols);
    }
    match builtin_columns(&rt.group, &rt.kind) {
        Some((key, cols)) => (
            Printer::Builtin(key),
            cols.into_iter()
                .map(|(n, typ, format, priority, desc)| {
                    json!({"name": n, "type": typ, "format": format, "description": desc, "priority": priority})
                })
                .collect(),
        ),
        None => (
            Printer::Default,
            vec![
                name,
                json!({"name": "Created At", "type": "date", "format": "", "description": AGE_DESC, "priority": 0}),
            ],
        ),
    }
}

type Column = (&'static str, &'static str, &'static str, i64, String);

fn doc(gv: &str, kind: &str, field: &str) -> String {
    super::table_docs::swagger_doc(gv, kind, field).unwrap_or_default().to_string()
}

/// The printer's columns for a built-in kind, with its key for [`builtin_cells`].
fn builtin_columns(group: &str, kind: &str) -> Option<(&'static str, Vec<Column>)> {
    let name = || ("Name", "string", "name", 0, NAME_DESC.to_string());
    let age = || ("Age", "string", "", 0, AGE_DESC.to_string());
    let text = |n: &'static str, typ: &'static str, priority: i64, d: &str| (n, typ, "", priority, d.to_string());
    let sw = |n: &'static str, typ: &'static str, priority: i64, gv: &str, k: &str, f: &str| {
        (n, typ, "", priority, doc(gv, k, f))
    };
    let containers = || text("Containers", "string", 1, "Names of each container in the template.");
    let images = || text("Images", "string", 1, "Images referenced by each container in the template.");
    Some(match (group, kind) {
        ("", "Pod") => (
            "Pod",
            vec![
                name(),
                text("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
                text("Status", "string", 0, "The aggregate status of the containers in this pod."),
                text(
                    "Restarts",
                    "string",
                    0,
                    "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
                ),
                age(),
                sw("IP", "string", 1, "v1", "PodStatus", "podIP"),
                sw("Node", "string", 1, "v1", "PodSpec", "nodeName"),
                sw("Nominated Node", "string", 1, "v1", "PodStatus", "nominatedNodeName"),
                sw("Readiness Gates", "string", 1, "v1", "PodSpec", "readinessGates"),
            ],
        ),
        ("policy", "PodDisruptionBudget") => (
            "PodDisruptionBudget",
            vec![
                name(),
                text("Min Available", "string", 0, "The minimum number of pods that must be available."),
                text("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable."),
                text(
                    "Allowed Disruptions",
                    "integer",
                    0,
                    "Calculated number of pods that may be disrupted at this time.",
                ),
                age(),
            ],
        ),
        ("apps", "ReplicaSet") => (
            "ReplicaSet",
            vec![
                name(),
                sw("Desired", "integer", 0, "extensions/v1beta1", "ReplicaSetSpec", "replicas"),
                sw("Current", "integer", 0, "extensions/v1beta1", "ReplicaSetStatus", "replicas"),
                sw("Ready", "integer", 0, "extensions/v1beta1", "ReplicaSetStatus", "readyReplicas"),
                age(),
                containers(),
                images(),
                sw("Selector", "string", 1, "extensions/v1beta1", "ReplicaSetSpec", "selector"),
            ],
        ),
        ("batch", "Job") => (
            "Job",
            vec![
                name(),
                text("Status", "string", 0, "Status of the job."),
                sw("Completions", "string", 0, "batch/v1", "JobStatus", "succeeded"),
                text("Duration", "string", 0, "Time required to complete the job."),
                age(),
                containers(),
                images(),
                sw("Selector", "string", 1, "batch/v1", "JobSpec", "selector"),
            ],
        ),
        ("batch", "CronJob") => (
            "CronJob",
            vec![
                name(),
                sw("Schedule", "string", 0, "batch/v1beta1", "CronJobSpec", "schedule"),
                sw("Timezone", "string", 0, "batch/v1beta1", "CronJobSpec", "timeZone"),
                sw("Suspend", "boolean", 0, "batch/v1beta1", "CronJobSpec", "suspend"),
                sw("Active", "integer", 0, "batch/v1beta1", "CronJobStatus", "active"),
                sw("Last Schedule", "string", 0, "batch/v1beta1", "CronJobStatus", "lastScheduleTime"),
                age(),
                containers(),
                images(),
                sw("Selector", "string", 1, "batch/v1", "JobSpec", "selector"),
            ],
        ),
        ("", "Service") => (
            "Service",
            vec![
                name(),
                sw("Type", "string", 0, "v1", "ServiceSpec", "type"),
                sw("Cluster-IP", "string", 0, "v1", "ServiceSpec", "clusterIP"),
                sw("External-IP", "string", 0, "v1", "ServiceSpec", "externalIPs"),
                sw("Port(s)", "string", 0, "v1", "ServiceSpec", "ports"),
                age(),
                sw("Selector", "string", 1, "v1", "ServiceSpec", "selector"),
            ],
        ),
        ("apps", "StatefulSet") => (
            "StatefulSet",
            vec![
                name(),
                text("Ready", "string", 0, "Number of the pod with ready state"),
                age(),
                containers(),
                images(),
            ],
        ),
        ("", "Endpoints") => {
            ("Endpoints", vec![name(), sw("Endpoints", "string", 0, "v1", "Endpoints", "subsets"), age()])
        }
        ("", "Node") => (
            "Node",
            vec![
                name(),
                text("Status", "string", 0, "The status of the node"),
                text("Roles", "string", 0, "The roles of the node"),
                age(),
                sw("Version", "string", 0, "v1", "NodeSystemInfo", "kubeletVersion"),
                sw("Internal-IP", "string", 1, "v1", "NodeStatus", "addresses"),
                sw("External-IP", "string", 1, "v1", "NodeStatus", "addresses"),
                sw("OS-Image", "string", 1, "v1", "NodeSystemInfo", "osImage"),
                sw("Kernel-Version", "string", 1, "v1", "NodeSystemInfo", "kernelVersion"),
                sw("Container-Runtime", "string", 1, "v1", "NodeSystemInfo", "containerRuntimeVersion"),
            ],
        ),
        ("", "Event") | ("events.k8s.io", "Event") => (
            "Event",
            vec![
                sw("Last Seen", "string", 0, "v1", "Event", "lastTimestamp"),
                sw("Type", "string", 0, "v1", "Event", "type"),
                sw("Reason", "string", 0, "v1", "Event", "reason"),
                sw("Object", "string", 0, "v1", "Event", "involvedObject"),
                sw("Subobject", "string", 1, "v1", "ObjectReference", "fieldPath"),
                sw("Source", "string", 1, "v1", "Event", "source"),
                sw("Message", "string", 0, "v1", "Event", "message"),
                sw("First Seen", "string", 1, "v1", "Event", "firstTimestamp"),
                sw("Count", "string", 1, "v1", "Event", "count"),
                ("Name", "string", "name", 1, NAME_DESC.to_string()),
            ],
        ),
        ("", "Namespace") => {
            ("Namespace", vec![name(), text("Status", "string", 0, "The status of the namespace"), age()])
        }
        ("", "Secret") => (
            "Secret",
            vec![
                name(),
                sw("Type", "string", 0, "v1", "Secret", "type"),
                sw("Data", "string", 0, "v1", "Secret", "data"),
                age(),
            ],
        ),
        ("", "ServiceAccount") => {
            ("ServiceAccount", vec![name(), sw("Secrets", "string", 0, "v1", "ServiceAccount", "secrets"), age()])
        }
        ("", "PersistentVolume") => (
            "PersistentVolume",
            vec![
                name(),
                sw("Capacity", "string", 0, "v1", "PersistentVolumeSpec", "capacity"),
                sw("Access Modes", "string", 0, "v1", "PersistentVolumeSpec", "accessModes"),
                sw("Reclaim Policy", "string", 0, "v1", "PersistentVolumeSpec", "persistentVolumeReclaimPolicy"),
                sw("Status", "string", 0, "v1", "PersistentVolumeStatus", "phase"),
                sw("Claim", "string", 0, "v1", "PersistentVolumeSpec", "claimRef"),
                text("StorageClass", "string", 0, "StorageClass of the pv"),
                text("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
                sw("Reason", "string", 0, "v1", "PersistentVolumeStatus", "reason"),
                age(),
                sw("VolumeMode", "string", 1, "v1", "PersistentVolumeSpec", "volumeMode"),
            ],
        ),
        ("", "PersistentVolumeClaim") => (
            "PersistentVolumeClaim",
            vec![
                name(),
                sw("Status", "string", 0, "v1", "PersistentVolumeClaimStatus", "phase"),
                sw("Volume", "string", 0, "v1", "PersistentVolumeClaimSpec", "volumeName"),
                sw("Capacity", "string", 0, "v1", "PersistentVolumeClaimStatus", "capacity"),
                sw("Access Modes", "string", 0, "v1", "PersistentVolumeClaimStatus", "accessModes"),
                text("StorageClass", "string", 0, "StorageClass of the pvc"),
                text("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
                age(),
                sw("VolumeMode", "string", 1, "v1", "PersistentVolumeClaimSpec", "volumeMode"),
            ],
        ),
        ("apps", "Deployment") => (
            "Deployment",
            vec![
                name(),
                text("Ready", "string", 0, "Number of the pod with ready state"),
                sw("Up-to-date", "string", 0, "extensions/v1beta1", "DeploymentStatus", "updatedReplicas"),
                sw("Available", "string", 0, "extensions/v1beta1", "DeploymentStatus", "availableReplicas"),
                age(),
                containers(),
                images(),
                sw("Selector", "string", 1, "extensions/v1beta1", "DeploymentSpec", "selector"),
            ],
        ),
        ("", "ConfigMap") => ("ConfigMap", vec![name(), sw("Data", "string", 0, "v1", "ConfigMap", "data"), age()]),
        ("rbac.authorization.k8s.io", "RoleBinding") => (
            "RoleBinding",
            vec![
                name(),
                sw("Role", "string", 0, "rbac/v1beta1", "RoleBinding", "roleRef"),
                age(),
                text("Users", "string", 1, "Users in the roleBinding"),
                text("Groups", "string", 1, "Groups in the roleBinding"),
                text("ServiceAccounts", "string", 1, "ServiceAccounts in the roleBinding"),
            ],
        ),
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => (
            "RoleBinding",
            vec![
                name(),
                sw("Role", "string", 0, "rbac/v1beta1", "ClusterRoleBinding", "roleRef"),
                age(),
                text("Users", "string", 1, "Users in the clusterRoleBinding"),
                text("Groups", "string", 1, "Groups in the clusterRoleBinding"),
                text("ServiceAccounts", "string", 1, "ServiceAccounts in the clusterRoleBinding"),
            ],
        ),
        ("coordination.k8s.io", "Lease") => {
            ("Lease", vec![name(), sw("Holder", "string", 0, "coordination/v1", "LeaseSpec", "holderIdentity"), age()])
        }
        ("storage.k8s.io", "StorageClass") => (
            "StorageClass",
            vec![
                name(),
                sw("Provisioner", "string", 0, "storage/v1", "StorageClass", "provisioner"),
                sw("ReclaimPolicy", "string", 0, "storage/v1", "StorageClass", "reclaimPolicy"),
                sw("VolumeBindingMode", "string", 0, "storage/v1", "StorageClass", "volumeBindingMode"),
                sw("AllowVolumeExpansion", "string", 0, "storage/v1", "StorageClass", "allowVolumeExpansion"),
                age(),
            ],
        ),
        ("apps", "ControllerRevision") => (
            "ControllerRevision",
            vec![
                name(),
                text("Controller", "string", 0, "Controller of the object"),
                sw("Revision", "string", 0, "apps/v1beta1", "ControllerRevision", "revision"),
                age(),
            ],
        ),
        _ => return None,
    })
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn items(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// `translateTimestampSince`: the age of a timestamp, `<unknown>` when it is unset.
fn since(ts: &Value) -> String {
    match ts.as_str().filter(|t| !t.is_empty()) {
        Some(t) => age(t),
        None => "<unknown>".into(),
    }
}

/// `labels.FormatLabels`: `k=v` pairs sorted by key, `<none>` when empty.
fn format_labels(m: &Value) -> String {
    let pairs: Vec<String> = m.as_object().into_iter().flatten().map(|(k, v)| format!("{k}={}", s(v))).collect();
    if pairs.is_empty() { "<none>".into() } else { pairs.join(",") }
}

/// `metav1.FormatLabelSelector`: [`selector_string`], `<none>` when it selects everything.
fn format_selector(sel: &Value) -> String {
    let t = selector_string(sel);
    if t.is_empty() { "<none>".into() } else { t }
}

/// `layoutContainerCells`: container names and images, comma-separated.
fn layout_containers(containers: &Value) -> (String, String) {
    let names: Vec<&str> = items(containers).iter().map(|c| s(&c["name"])).collect();
    let images: Vec<&str> = items(containers).iter().map(|c| s(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// `helper.GetAccessModesAsString`: the modes present, in a fixed order.
fn access_modes(modes: &Value) -> String {
    let has = |m: &str| items(modes).iter().any(|x| x == m);
    [("ReadWriteOnce", "RWO"), ("ReadOnlyMany", "ROX"), ("ReadWriteMany", "RWX"), ("ReadWriteOncePod", "RWOP")]
        .iter()
        .filter(|(m, _)| has(m))
        .map(|(_, short)| *short)
        .collect::<Vec<_>>()
        .join(",")
}

/// The storage class of a PV or PVC: the beta annotation first, then the field.
fn storage_class(o: &Value) -> String {
    let beta = &o["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"];
    s(if beta.is_string() { beta } else { &o["spec"]["storageClassName"] }).to_string()
}

fn or_unset(v: &Value) -> String {
    v.as_str().map_or_else(|| "<unset>".into(), String::from)
}

/// `IntOrString.String()`.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::String(t) => t.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn condition_true(conds: &Value, t: &str) -> bool {
    // The first condition of the type decides, as the printer's helpers do.
    items(conds).iter().find(|c| c["type"] == t).is_some_and(|c| c["status"] == "True")
}

/// A container's `Signal:N` / `ExitCode:N` when it ended with no reason.
fn terminated_text(t: &Value, prefix: &str) -> String {
    match t["signal"].as_i64().filter(|n| *n != 0) {
        Some(sig) => format!("{prefix}Signal:{sig}"),
        None => format!("{prefix}ExitCode:{}", int(&t["exitCode"])),
    }
}

/// Cells of a pod's row, as `printPod` computes them.
fn pod_cells(o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    let phase = s(&status["phase"]);
    let mut reason = if s(&status["reason"]).is_empty() { phase.to_string() } else { s(&status["reason"]).to_string() };
    if items(&status["conditions"]).iter().any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated") {
        reason = "SchedulingGated".into();
    }
    let restartable = |name: &Value| {
        items(&spec["initContainers"]).iter().any(|c| &c["name"] == name && c["restartPolicy"] == "Always")
    };
    let total = items(&spec["containers"]).len()
        + items(&spec["initContainers"]).iter().filter(|c| c["restartPolicy"] == "Always").count();
    let mut ready = 0;
    let mut restarts = 0i64;
    let mut sidecar_restarts = 0i64;
    let mut last_restart: Option<String> = None;
    let mut last_sidecar_restart: Option<String> = None;
    let later = |cur: &mut Option<String>, t: &Value| {
        if let Some(t) = t.as_str().filter(|t| !t.is_empty())
            && cur.as_deref().is_none_or(|c| c < t)
        {
            *cur = Some(t.to_string());
        }
    };
    let inits = items(&spec["initContainers"]).len();
    let mut initializing = false;
    for (i, c) in items(&status["initContainerStatuses"]).iter().enumerate() {
        restarts += int(&c["restartCount"]);
        later(&mut last_restart, &c["lastState"]["terminated"]["finishedAt"]);
        let sidecar = restartable(&c["name"]);
        if sidecar {
            sidecar_restarts += int(&c["restartCount"]);
            later(&mut last_sidecar_restart, &c["lastState"]["terminated"]["finishedAt"]);
        }
        let terminated = &c["state"]["terminated"];
        let waiting = &c["state"]["waiting"];
        if terminated.is_object() && int(&terminated["exitCode"]) == 0 {
            continue;
        }
        if sidecar && c["started"] == true {
            if c["ready"] == true {
                ready += 1;
            }
            continue;
        }
        if terminated.is_object() {
            reason = match s(&terminated["reason"]) {
                "" => terminated_text(terminated, "Init:"),
                r => format!("Init:{r}"),
            };
        } else if waiting.is_object() && !s(&waiting["reason"]).is_empty() && waiting["reason"] != "PodInitializing" {
            reason = format!("Init:{}", s(&waiting["reason"]));
        } else {
            reason = format!("Init:{i}/{inits}");
        }
        initializing = true;
        break;
    }
    let initialized =
        items(&status["conditions"]).iter().find(|c| c["type"] == "Initialized").is_some_and(|c| c["status"] == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut running = false;
        for c in items(&status["containerStatuses"]).iter().rev() {
            restarts += int(&c["restartCount"]);
            later(&mut last_restart, &c["lastState"]["terminated"]["finishedAt"]);
            let terminated = &c["state"]["terminated"];
            let waiting = &c["state"]["waiting"];
            if waiting.is_object() && !s(&waiting["reason"]).is_empty() {
                reason = s(&waiting["reason"]).to_string();
            } else if terminated.is_object() && !s(&terminated["reason"]).is_empty() {
                reason = s(&terminated["reason"]).to_string();
            } else if terminated.is_object() {
                reason = terminated_text(terminated, "");
            } else if c["ready"] == true && c["state"]["running"].is_object() {
                running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && running {
            reason = if condition_true(&status["conditions"], "Ready") { "Running" } else { "NotReady" }.into();
        }
    }
    let deleting = o["metadata"]["deletionTimestamp"].is_string();
    if deleting && status["reason"] == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }
    let restarts_text = match &last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", age(t)),
        _ => restarts.to_string(),
    };
    let ip = items(&status["podIPs"]).first().map(|p| s(&p["ip"])).filter(|ip| !ip.is_empty()).unwrap_or("<none>");
    let node = Some(s(&spec["nodeName"])).filter(|n| !n.is_empty()).unwrap_or("<none>");
    let nominated = Some(s(&status["nominatedNodeName"])).filter(|n| !n.is_empty()).unwrap_or("<none>");
    let gates = items(&spec["readinessGates"]);
    let gates_text = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let met = gates
            .iter()
            .filter(|g| {
                items(&status["conditions"])
                    .iter()
                    .find(|c| c["type"] == g["conditionType"])
                    .is_some_and(|c| c["status"] == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        o["metadata"]["name"].clone(),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_text),
        json!(since(&o["metadata"]["creationTimestamp"])),
        json!(ip),
        json!(node),
        json!(nominated),
        json!(gates_text),
    ]
}

/// `formatEndpoints`: up to three addresses (with each port), then `+ N more...`.
fn format_endpoints(subsets: &Value) -> String {
    if items(subsets).is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let (mut more, mut count) = (false, 0);
    for ss in items(subsets) {
        let addrs = items(&ss["addresses"]);
        let ports = items(&ss["ports"]);
        let targets: Vec<Option<i64>> =
            if ports.is_empty() { vec![None] } else { ports.iter().map(|p| Some(int(&p["port"]))).collect() };
        for port in targets {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip = s(&a["ip"]);
                list.push(match port {
                    None => ip.to_string(),
                    Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                    Some(p) => format!("{ip}:{p}"),
                });
            }
        }
    }
    let ret = list.join(",");
    if more { format!("{ret} + {} more...", count - MAX) } else { ret }
}

/// An events.k8s.io/v1 Event in the core Event's field names (the printer works on the
/// internal type both versions convert to).
fn core_event(o: &Value) -> Value {
    if o["apiVersion"] != "events.k8s.io/v1" {
        return o.clone();
    }
    json!({
        "metadata": o["metadata"], "type": o["type"], "reason": o["reason"], "involvedObject": o["regarding"],
        "message": o["note"], "source": o["deprecatedSource"], "firstTimestamp": o["deprecatedFirstTimestamp"],
        "lastTimestamp": o["deprecatedLastTimestamp"], "count": o["deprecatedCount"], "eventTime": o["eventTime"],
        "series": o["series"], "reportingController": o["reportingController"],
        "reportingInstance": o["reportingInstance"],
    })
}

fn event_cells(o: &Value) -> Vec<Value> {
    let o = &core_event(o);
    let first = if o["firstTimestamp"].is_string() { since(&o["firstTimestamp"]) } else { since(&o["eventTime"]) };
    let mut last = if o["lastTimestamp"].is_string() { since(&o["lastTimestamp"]) } else { first.clone() };
    let mut count = int(&o["count"]);
    if o["series"].is_object() {
        last = since(&o["series"]["lastObservedTime"]);
        count = int(&o["series"]["count"]);
    } else if count == 0 {
        count = 1;
    }
    let obj = &o["involvedObject"];
    let target = match s(&obj["name"]) {
        "" => s(&obj["kind"]).to_lowercase(),
        n => format!("{}/{n}", s(&obj["kind"]).to_lowercase()),
    };
    let first_of = |a: &Value, b: &Value| if s(a).is_empty() { s(b).to_string() } else { s(a).to_string() };
    let component = first_of(&o["source"]["component"], &o["reportingController"]);
    let instance = first_of(&o["source"]["host"], &o["reportingInstance"]);
    let source = if instance.is_empty() { component } else { format!("{component}, {instance}") };
    vec![
        json!(last),
        json!(s(&o["type"])),
        json!(s(&o["reason"])),
        json!(target),
        json!(s(&obj["fieldPath"])),
        json!(source),
        json!(s(&o["message"]).trim()),
        json!(first),
        json!(count),
        o["metadata"]["name"].clone(),
    ]
}

/// Cells of a built-in kind's row, wide columns included (the server always prints wide;
/// `kubectl` hides the columns of priority 1 unless `-o wide`).
fn builtin_cells(key: &str, o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    let name = o["metadata"]["name"].clone();
    let age = json!(since(&o["metadata"]["creationTimestamp"]));
    match key {
        "Pod" => pod_cells(o),
        "Event" => event_cells(o),
        "PodDisruptionBudget" => {
            let bound = |v: &Value| if v.is_null() { "N/A".to_string() } else { int_or_string(v) };
            vec![
                name,
                json!(bound(&spec["minAvailable"])),
                json!(bound(&spec["maxUnavailable"])),
                json!(int(&status["disruptionsAllowed"])),
                age,
            ]
        }
        "ReplicaSet" => {
            let (names, images) = layout_containers(&spec["template"]["spec"]["containers"]);
            vec![
                name,
                json!(spec["replicas"].as_i64().unwrap_or(1)),
                json!(int(&status["replicas"])),
                json!(int(&status["readyReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(format_selector(&spec["selector"])),
            ]
        }
        "Job" => {
            let completions = match spec["completions"].as_i64() {
                Some(c) => format!("{}/{c}", int(&status["succeeded"])),
                None => match int(&spec["parallelism"]) {
                    p if p > 1 => format!("{}/1 of {p}", int(&status["succeeded"])),
                    _ => format!("{}/1", int(&status["succeeded"])),
                },
            };
            let ts = |v: &Value| v.as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
            let duration = match (ts(&status["startTime"]), ts(&status["completionTime"])) {
                (None, _) => String::new(),
                (Some(start), None) => {
                    crate::k8s::human_duration(jiff::Timestamp::now().as_second() - start.as_second())
                }
                (Some(start), Some(end)) => crate::k8s::human_duration(end.as_second() - start.as_second()),
            };
            let conds = &status["conditions"];
            let state = if condition_true(conds, "Complete") {
                "Complete"
            } else if condition_true(conds, "Failed") {
                "Failed"
            } else if o["metadata"]["deletionTimestamp"].is_string() {
                "Terminating"
            } else if condition_true(conds, "Suspended") {
                "Suspended"
            } else if condition_true(conds, "FailureTarget") {
                "FailureTarget"
            } else {
                "Running"
            };
            let (names, images) = layout_containers(&spec["template"]["spec"]["containers"]);
            vec![
                name,
                json!(state),
                json!(completions),
                json!(duration),
                age,
                json!(names),
                json!(images),
                json!(format_selector(&spec["selector"])),
            ]
        }
        "CronJob" => {
            let suspend = match spec["suspend"].as_bool() {
                Some(true) => "True",
                Some(false) => "False",
                None => "<unset>",
            };
            let job = &spec["jobTemplate"]["spec"];
            let (names, images) = layout_containers(&job["template"]["spec"]["containers"]);
            vec![
                name,
                spec["schedule"].clone(),
                json!(spec["timeZone"].as_str().unwrap_or("<none>")),
                json!(suspend),
                json!(items(&status["active"]).len()),
                json!(if status["lastScheduleTime"].is_string() {
                    since(&status["lastScheduleTime"])
                } else {
                    "<none>".into()
                }),
                age,
                json!(names),
                json!(images),
                json!(format_selector(&job["selector"])),
            ]
        }
        "Service" => {
            let joined = |v: &Value| items(v).iter().map(s).collect::<Vec<_>>().join(",");
            let external = match s(&spec["type"]) {
                "ClusterIP" | "NodePort" if !items(&spec["externalIPs"]).is_empty() => joined(&spec["externalIPs"]),
                "ClusterIP" | "NodePort" => "<none>".into(),
                "LoadBalancer" => {
                    let mut lb: Vec<&str> = items(&status["loadBalancer"]["ingress"])
                        .iter()
                        .filter_map(|i| i["ip"].as_str().filter(|x| !x.is_empty()).or(i["hostname"].as_str()))
                        .filter(|x| !x.is_empty())
                        .collect();
                    lb.sort_unstable();
                    lb.dedup();
                    let lb = lb.join(",");
                    if !items(&spec["externalIPs"]).is_empty() {
                        let ext = joined(&spec["externalIPs"]);
                        if lb.is_empty() { ext } else { format!("{lb},{ext}") }
                    } else if lb.is_empty() {
                        "<pending>".into()
                    } else {
                        lb
                    }
                }
                "ExternalName" => s(&spec["externalName"]).to_string(),
                _ => "<unknown>".into(),
            };
            let ports: Vec<String> = items(&spec["ports"])
                .iter()
                .map(|p| match int(&p["nodePort"]) {
                    0 => format!("{}/{}", int(&p["port"]), s(&p["protocol"])),
                    n => format!("{}:{n}/{}", int(&p["port"]), s(&p["protocol"])),
                })
                .collect();
            vec![
                name,
                spec["type"].clone(),
                json!(items(&spec["clusterIPs"]).first().map_or("<none>", s)),
                json!(external),
                json!(if ports.is_empty() { "<none>".into() } else { ports.join(",") }),
                age,
                json!(format_labels(&spec["selector"])),
            ]
        }
        "StatefulSet" => {
            let (names, images) = layout_containers(&spec["template"]["spec"]["containers"]);
            vec![
                name,
                json!(format!("{}/{}", int(&status["readyReplicas"]), spec["replicas"].as_i64().unwrap_or(1))),
                age,
                json!(names),
                json!(images),
            ]
        }
        "Endpoints" => vec![name, json!(format_endpoints(&o["subsets"])), age],
        "Node" => {
            let mut state = match items(&status["conditions"]).iter().rev().find(|c| c["type"] == "Ready") {
                Some(c) if c["status"] == "True" => vec!["Ready"],
                Some(_) => vec!["NotReady"],
                None => vec!["Unknown"],
            };
            if spec["unschedulable"] == true {
                state.push("SchedulingDisabled");
            }
            let mut roles: Vec<String> = o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| match k.strip_prefix("node-role.kubernetes.io/") {
                    Some(r) if !r.is_empty() => Some(r.to_string()),
                    Some(_) => None,
                    None => (k == "kubernetes.io/role" && !s(v).is_empty()).then(|| s(v).to_string()),
                })
                .collect();
            roles.sort();
            roles.dedup();
            let address = |t: &str| {
                items(&status["addresses"]).iter().find(|a| a["type"] == t).map_or("<none>", |a| s(&a["address"]))
            };
            let info = &status["nodeInfo"];
            let known = |v: &Value| if s(v).is_empty() { "<unknown>".to_string() } else { s(v).to_string() };
            vec![
                name,
                json!(state.join(",")),
                json!(if roles.is_empty() { "<none>".into() } else { roles.join(",") }),
                age,
                json!(s(&info["kubeletVersion"])),
                json!(address("InternalIP")),
                json!(address("ExternalIP")),
                json!(known(&info["osImage"])),
                json!(known(&info["kernelVersion"])),
                json!(known(&info["containerRuntimeVersion"])),
            ]
        }
        "Namespace" => vec![name, json!(s(&status["phase"])), age],
        "Secret" => {
            vec![name, json!(s(&o["type"])), json!(o["data"].as_object().map_or(0, |m| m.len())), age]
        }
        "ServiceAccount" => vec![name, json!(items(&o["secrets"]).len()), age],
        "PersistentVolume" => {
            let claim = &spec["claimRef"];
            let claim = if claim.is_object() {
                format!("{}/{}", s(&claim["namespace"]), s(&claim["name"]))
            } else {
                String::new()
            };
            let phase =
                if o["metadata"]["deletionTimestamp"].is_string() { "Terminating" } else { s(&status["phase"]) };
            vec![
                name,
                json!(s(&spec["capacity"]["storage"])),
                json!(access_modes(&spec["accessModes"])),
                json!(s(&spec["persistentVolumeReclaimPolicy"])),
                json!(phase),
                json!(claim),
                json!(storage_class(o)),
                json!(or_unset(&spec["volumeAttributesClassName"])),
                json!(s(&status["reason"])),
                age,
                json!(or_unset(&spec["volumeMode"])),
            ]
        }
        "PersistentVolumeClaim" => {
            let phase =
                if o["metadata"]["deletionTimestamp"].is_string() { "Terminating" } else { s(&status["phase"]) };
            let bound = !s(&spec["volumeName"]).is_empty();
            vec![
                name,
                json!(phase),
                json!(s(&spec["volumeName"])),
                json!(if bound { s(&status["capacity"]["storage"]).to_string() } else { String::new() }),
                json!(if bound { access_modes(&status["accessModes"]) } else { String::new() }),
                json!(storage_class(o)),
                json!(or_unset(&spec["volumeAttributesClassName"])),
                age,
                json!(or_unset(&spec["volumeMode"])),
            ]
        }
        "Deployment" => {
            let (names, images) = layout_containers(&spec["template"]["spec"]["containers"]);
            vec![
                name,
                json!(format!("{}/{}", int(&status["readyReplicas"]), spec["replicas"].as_i64().unwrap_or(1))),
                json!(int(&status["updatedReplicas"])),
                json!(int(&status["availableReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(selector_string(&spec["selector"])),
            ]
        }
        "ConfigMap" => {
            let n = o["data"].as_object().map_or(0, |m| m.len()) + o["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n), age]
        }
        "RoleBinding" => {
            let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
            for sub in items(&o["subjects"]) {
                match s(&sub["kind"]) {
                    "ServiceAccount" => sas.push(format!("{}/{}", s(&sub["namespace"]), s(&sub["name"]))),
                    "User" => users.push(s(&sub["name"]).to_string()),
                    "Group" => groups.push(s(&sub["name"]).to_string()),
                    _ => {}
                }
            }
            vec![
                name,
                json!(format!("{}/{}", s(&o["roleRef"]["kind"]), s(&o["roleRef"]["name"]))),
                age,
                json!(users.join(", ")),
                json!(groups.join(", ")),
                json!(sas.join(", ")),
            ]
        }
        "Lease" => vec![name, json!(s(&spec["holderIdentity"])), age],
        "StorageClass" => {
            let ann = &o["metadata"]["annotations"];
            let default = ann["storageclass.kubernetes.io/is-default-class"] == "true"
                || ann["storageclass.beta.kubernetes.io/is-default-class"] == "true";
            let shown = if default { format!("{} (default)", s(&name)) } else { s(&name).to_string() };
            vec![
                json!(shown),
                json!(s(&o["provisioner"])),
                json!(o["reclaimPolicy"].as_str().unwrap_or("Delete")),
                json!(o["volumeBindingMode"].as_str().unwrap_or("Immediate")),
                json!(o["allowVolumeExpansion"].as_bool().unwrap_or(false)),
                age,
            ]
        }
        "ControllerRevision" => {
            let owner = items(&o["metadata"]["ownerReferences"]).iter().find(|r| r["controller"] == true);
            let controller = match owner {
                Some(r) => {
                    let group = s(&r["apiVersion"]).rsplit_once('/').map_or("", |(g, _)| g);
                    let kind =
                        if group.is_empty() { s(&r["kind"]).to_string() } else { format!("{}.{group}", s(&r["kind"])) };
                    format!("{}/{}", kind.to_lowercase(), s(&r["name"]))
                }
                None => "<none>".into(),
            };
            vec![name, json!(controller), json!(int(&o["revision"])), age]
        }
        _ => vec![name, age],
    }
}

/// A custom resource's cell as apiextensions' convertor computes it from the JSONPath's
/// value: text for string columns (numbers and objects as `kubectl` JSONPath prints
/// them), the value for integer/number/boolean columns when it has that type, an age
/// for date columns; null when missing or of another type.
fn custom_cell(obj: &Value, path: &str, typ: &str) -> Value {
    let found = jsonpath(obj, path);
    let cur = found.first().copied().unwrap_or(&Value::Null);
    match (typ, cur) {
        (_, Value::Null) => Value::Null,
        ("string", Value::String(_)) => cur.clone(),
        ("string", Value::Number(n)) => json!(n.to_string()),
        ("string", Value::Bool(b)) => json!(b.to_string()),
        ("string", other) => json!(other.to_string()),
        ("integer", Value::Number(n)) => {
            n.as_i64().map_or_else(|| json!(n.as_f64().unwrap_or(0.0) as i64), |i| json!(i))
        }
        ("number", Value::Number(n)) => json!(n.as_f64().unwrap_or(0.0)),
        ("boolean", Value::Bool(_)) => cur.clone(),
        ("date", Value::String(t)) if t.parse::<jiff::Timestamp>().is_err() => json!("<invalid>"),
        ("date", Value::String(t)) => json!(age(t)),
        _ => Value::Null,
    }
}

/// The values a printer column's JSONPath selects (the subset CRDs use, as client-go's
/// `jsonpath` reads it): `.name`, `['name']`, `[N]` (negative from the end), `[*]`, and
/// filters `[?(@.a.b == "v")]`, `!=`, and `[?(@.a)]`.
fn jsonpath<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur: Vec<&Value> = vec![obj];
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let (name, tail) = r.split_at(end);
            if !name.is_empty() {
                cur = cur.into_iter().filter_map(|v| v.get(name)).collect();
            }
            rest = tail;
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(close) = bracket_end(r) else { return Vec::new() };
            let inner = r[..close].trim();
            rest = &r[close + 1..];
            cur = if inner == "*" {
                cur.into_iter()
                    .flat_map(|v| match v {
                        Value::Array(a) => a.iter().collect::<Vec<_>>(),
                        Value::Object(m) => m.values().collect(),
                        _ => Vec::new(),
                    })
                    .collect()
            } else if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
                cur.into_iter()
                    .flat_map(|v| v.as_array().map(|a| a.iter().collect::<Vec<_>>()).unwrap_or_default())
                    .filter(|item| filter_matches(item, filter))
                    .collect()
            } else if let Some(key) = inner
                .strip_prefix('\'')
                .and_then(|k| k.strip_suffix('\''))
                .or_else(|| inner.strip_prefix('"').and_then(|k| k.strip_suffix('"')))
            {
                cur.into_iter().filter_map(|v| v.get(key)).collect()
            } else if let Ok(i) = inner.parse::<i64>() {
                cur.into_iter()
                    .filter_map(|v| {
                        let a = v.as_array()?;
                        let i = if i < 0 { a.len() as i64 + i } else { i };
                        a.get(usize::try_from(i).ok()?)
                    })
                    .collect()
            } else {
                return Vec::new();
            };
        } else {
            return Vec::new();
        }
    }
    cur.into_iter().filter(|v| !v.is_null()).collect()
}

/// Where the bracket opened just before `s` closes (quotes and nested parentheses skipped).
fn bracket_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, ']') => return Some(i),
            _ => {}
        }
    }
    None
}

/// A filter's condition on one list item: `@.path OP literal`, or `@.path` existing.
fn filter_matches(item: &Value, filter: &str) -> bool {
    let (lhs, op, rhs) = match filter.find("==").map(|i| (i, "==")).or_else(|| filter.find("!=").map(|i| (i, "!="))) {
        Some((i, op)) => (filter[..i].trim(), op, Some(filter[i + 2..].trim())),
        None => (filter.trim(), "", None),
    };
    let Some(path) = lhs.strip_prefix('@') else { return false };
    let found = jsonpath(item, path);
    let Some(rhs) = rhs else { return !found.is_empty() };
    let literal: Value = match rhs.strip_prefix('"').and_then(|r| r.strip_suffix('"')) {
        Some(text) => json!(text),
        None => match rhs.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
            Some(text) => json!(text),
            None => serde_json::from_str(rhs).unwrap_or(Value::Null),
        },
    };
    let equal = found.first().is_some_and(|v| **v == literal);
    if op == "==" { equal } else { !equal }
}

fn age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else { return "<unknown>".into() };
    crate::k8s::human_duration(jiff::Timestamp::now().as_second() - t.as_second())
}

pub fn table(rt: &ResType, items: &[Value], list_meta: Option<Value>, req: &Req) -> Value {
    table_with(rt, items, list_meta, req.q("includeObject").unwrap_or("Metadata"), true)
}

/// [`table`] with the `includeObject` option given, and the column definitions left out
/// when `headers` is false (a watch sends them with its first event only).
pub fn table_with(rt: &ResType, items: &[Value], list_meta: Option<Value>, include: &str, headers: bool) -> Value {
    let (printer, cols) = printer(rt);
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let cells: Vec<Value> = match &printer {
                Printer::Builtin(key) => builtin_cells(key, o),
                Printer::Custom(paths) => std::iter::once(o["metadata"]["name"].clone())
                    .chain(paths.iter().map(|(p, typ)| custom_cell(o, p, typ)))
                    .collect(),
                Printer::Default => {
                    let created = o["metadata"]["creationTimestamp"]
                        .as_str()
                        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                        .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
                    vec![o["metadata"]["name"].clone(), json!(created)]
                }
            };
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => {
                    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
                }
            };
            let mut row = json!({"cells": cells, "object": object});
            // A finished pod's row says so (`kubectl` may hide completed rows).
            if matches!(printer, Printer::Builtin("Pod")) {
                let done = match s(&o["status"]["phase"]) {
                    "Succeeded" => Some(("Succeeded", "The pod has completed successfully.")),
                    "Failed" => Some(("Failed", "The pod failed.")),
                    _ => None,
                };
                if let Some((reason, message)) = done {
                    row["conditions"] =
                        json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]);
                }
            }
            row
        })
        .collect();
    let meta = list_meta.unwrap_or_else(|| json!({"resourceVersion": items.first().map(|o| o["metadata"]["resourceVersion"].clone()).unwrap_or_default()}));
    let mut t = json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": cols,
        "rows": rows,
    });
    if !headers {
        t["columnDefinitions"] = Value::Null;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::human_duration;

    fn ago(secs: i64) -> String {
        (jiff::Timestamp::now() - jiff::SignedDuration::from_secs(secs)).to_string()
    }

    fn names(cols: &[Column]) -> Vec<&str> {
        cols.iter().map(|c| c.0).collect()
    }

    /// `kubectl get events` prints LAST SEEN, TYPE, REASON, OBJECT, MESSAGE (the Name
    /// column comes last, wide only), for both Event APIs.
    #[test]
    fn events_print_as_the_real_printer_prints_them() {
        let (key, cols) = builtin_columns("", "Event").unwrap();
        assert_eq!(
            names(&cols),
            ["Last Seen", "Type", "Reason", "Object", "Subobject", "Source", "Message", "First Seen", "Count", "Name"]
        );
        let shown: Vec<&str> = cols.iter().filter(|c| c.3 == 0).map(|c| c.0).collect();
        assert_eq!(shown, ["Last Seen", "Type", "Reason", "Object", "Message"]);
        assert!(cols[0].4.starts_with("The time at which the most recent occurrence"), "{}", cols[0].4);
        let core = json!({"apiVersion": "v1", "kind": "Event", "metadata": {"name": "e1"},
            "type": "Warning", "reason": "BackupFailed", "message": " no route to host \n",
            "involvedObject": {"kind": "BackupPolicy", "name": "db", "fieldPath": "spec"},
            "source": {"component": "lifeline"}, "firstTimestamp": ago(600), "lastTimestamp": ago(60), "count": 4});
        assert_eq!(
            builtin_cells(key, &core),
            json!([
                "60s",
                "Warning",
                "BackupFailed",
                "backuppolicy/db",
                "spec",
                "lifeline",
                "no route to host",
                "10m",
                4,
                "e1"
            ])
            .as_array()
            .unwrap()
            .clone()
        );
        // events.k8s.io/v1: a series counts, the reporting controller is the source.
        let new = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e2"},
            "type": "Normal", "reason": "RunCompleted", "note": "done", "eventTime": ago(300),
            "regarding": {"kind": "BackupPolicy", "name": "db"}, "reportingController": "lifeline.io/operator",
            "reportingInstance": "lifeline-0", "series": {"count": 3, "lastObservedTime": ago(5)}});
        let cells = builtin_cells(key, &new);
        assert_eq!(cells[0], "5s");
        assert_eq!(cells[3], "backuppolicy/db");
        assert_eq!(cells[5], "lifeline.io/operator, lifeline-0");
        assert_eq!((cells[6].clone(), cells[7].clone(), cells[8].clone()), (json!("done"), json!("5m"), json!(3)));
    }

    /// A pod's STATUS and RESTARTS as `printPod` derives them.
    #[test]
    fn pod_status_follows_the_printer() {
        let pod = |spec: Value, status: Value| json!({"metadata": {"name": "p", "creationTimestamp": ago(90)}, "spec": spec, "status": status});
        let one = json!({"containers": [{"name": "c"}]});
        let running = json!({"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}], "containerStatuses": [
            {"name": "c", "ready": true, "restartCount": 2, "state": {"running": {}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}}]});
        let cells = pod_cells(&pod(one.clone(), running));
        assert_eq!(cells[1..4], [json!("1/1"), json!("Running"), json!("2 (30s ago)")]);
        assert_eq!(cells[5..], [json!("10.0.0.5"), json!("<none>"), json!("<none>"), json!("<none>")]);
        let crashed = json!({"phase": "Running", "containerStatuses": [
            {"name": "c", "ready": false, "restartCount": 0, "state": {"terminated": {"exitCode": 137}}}]});
        assert_eq!(pod_cells(&pod(one.clone(), crashed))[2], "ExitCode:137");
        let init = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]});
        let waiting = json!({"phase": "Pending", "initContainerStatuses": [
            {"name": "i1", "state": {"terminated": {"exitCode": 0}}}, {"name": "i2", "state": {"running": {}}}],
            "containerStatuses": [{"name": "c", "state": {"waiting": {"reason": "PodInitializing"}}}]});
        assert_eq!(pod_cells(&pod(init, waiting))[2], "Init:1/2");
        let mut gone = pod(one, json!({"phase": "Running"}));
        gone["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(pod_cells(&gone)[2], "Terminating");
    }

    /// Selectors, endpoints, node ports, claims and controllers in the printers' words.
    #[test]
    fn other_kinds_print_what_kubectl_shows() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "api"]}, {"key": "old", "operator": "DoesNotExist"}]});
        assert_eq!(selector_string(&sel), "a=1,b=2,!old,tier in (api,web)");
        assert_eq!(format_selector(&json!({})), "<none>");
        let subsets =
            json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}, {"port": 443}]}]);
        assert_eq!(format_endpoints(&subsets), "10.0.0.1:80,10.0.0.2:80,10.0.0.1:443 + 1 more...");
        assert_eq!(format_endpoints(&json!([])), "<none>");
        let svc = json!({"metadata": {"name": "s", "creationTimestamp": ago(5)}, "spec": {"type": "NodePort",
            "clusterIPs": ["10.96.0.9"], "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}], "selector": {"app": "s"}}});
        assert_eq!(
            builtin_cells("Service", &svc)[1..5],
            [json!("NodePort"), json!("10.96.0.9"), json!("<none>"), json!("80:30080/TCP")]
        );
        let pending =
            json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "fast"}, "status": {"phase": "Pending"}});
        assert_eq!(
            builtin_cells("PersistentVolumeClaim", &pending)[1..7],
            [json!("Pending"), json!(""), json!(""), json!(""), json!("fast"), json!("<unset>")]
        );
        let rev = json!({"metadata": {"name": "db-5f7", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db", "controller": true}]}, "revision": 2});
        assert_eq!(builtin_cells("ControllerRevision", &rev)[1..3], [json!("statefulset.apps/db"), json!(2)]);
        // Kinds without a printer get the default convertor's columns.
        assert!(builtin_columns("rbac.authorization.k8s.io", "ClusterRole").is_none());
    }

    /// Custom columns: text for string columns, typed values otherwise, null on a mismatch.
    #[test]
    fn custom_columns_convert_as_apiextensions_does() {
        let o = json!({"spec": {"size": 3, "name": "x", "flag": true, "when": ago(120), "obj": {"a": 1}}});
        assert_eq!(custom_cell(&o, ".spec.size", "string"), "3");
        assert_eq!(custom_cell(&o, ".spec.obj", "string"), r#"{"a":1}"#);
        assert_eq!(custom_cell(&o, ".spec.size", "integer"), 3);
        assert_eq!(custom_cell(&o, ".spec.name", "integer"), Value::Null);
        assert_eq!(custom_cell(&o, ".spec.flag", "boolean"), true);
        assert_eq!(custom_cell(&o, ".spec.when", "date"), "2m");
        assert_eq!(custom_cell(&o, ".spec.missing", "string"), Value::Null);
        // Filters and indexes, as status conditions' columns use them.
        let o = json!({"status": {"conditions": [
            {"type": "Progressing", "status": "False"}, {"type": "Ready", "status": "True", "reason": "Restored"}]}});
        assert_eq!(custom_cell(&o, r#".status.conditions[?(@.type=="Ready")].status"#, "string"), "True");
        assert_eq!(custom_cell(&o, ".status.conditions[?(@.type=='Ready')].reason", "string"), "Restored");
        assert_eq!(custom_cell(&o, r#".status.conditions[?(@.type!="Ready")].type"#, "string"), "Progressing");
        assert_eq!(custom_cell(&o, ".status.conditions[-1].type", "string"), "Ready");
        assert_eq!(custom_cell(&o, ".status.conditions[*].type", "string"), "Progressing");
        assert_eq!(custom_cell(&o, r#".status.conditions[?(@.type=="Gone")].status"#, "string"), Value::Null);
        assert_eq!(custom_cell(&o, "['status']['conditions'][1].status", "string"), "True");
    }

    #[test]
    fn ages_print_as_human_duration_does() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (119, "119s"),
            (200, "3m20s"),
            (240, "4m"),
            (1500, "25m"),
            (18_600, "5h10m"),
            (36_000, "10h"),
            (273_600, "3d4h"),
            (864_000, "10d"),
            (63_072_000 + 86_400, "2y1d"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(secs), want, "{secs}");
        }
    }
}
