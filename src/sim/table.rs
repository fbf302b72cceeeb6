//! `as=Table` responses, as `kubectl get` asks for them.

use super::api::Req;
use super::registry::ResType;
use serde_json::{Value, json};

const NAME_DESC: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const AGE_DESC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

fn columns(rt: &ResType) -> Vec<(Value, Option<String>)> {
    let mut cols = vec![(
        json!({"name": "Name", "type": "string", "format": "name", "description": NAME_DESC, "priority": 0}),
        None,
    )];
    let printer = rt.crd.as_ref().and_then(|crd| {
        crd["spec"]["versions"]
            .as_array()?
            .iter()
            .find(|v| v["name"] == rt.version.as_str())
            .and_then(|v| v["additionalPrinterColumns"].as_array().cloned())
    });
    if let Some(builtin) = builtin_columns(rt) {
        for (name, typ, priority) in builtin {
            cols.push((
                json!({"name": name, "type": typ, "format": "", "description": column_description(name), "priority": priority}),
                Some(format!("builtin:{name}")),
            ));
        }
        return cols;
    }
    match printer {
        Some(pc) => {
            // Declared columns are all there is: no Age unless the CRD declares it.
            for c in pc {
                let path = c["jsonPath"].as_str().unwrap_or_default().to_string();
                let desc = c["description"]
                    .as_str()
                    .map(String::from)
                    .unwrap_or_else(|| format!("Custom resource definition column (in JSONPath format): {path}"));
                cols.push((
                    json!({"name": c["name"], "type": c["type"], "format": c["format"].as_str().unwrap_or(""), "description": desc, "priority": c["priority"].as_i64().unwrap_or(0)}),
                    Some(path),
                ));
            }
        }
        None => cols.push((
            json!({"name": "Age", "type": "string", "format": "", "description": AGE_DESC, "priority": 0}),
            Some("age".into()),
        )),
    }
    cols
}

/// The columns kube-apiserver's printers give the built-in kinds `kubectl get` shows
/// (kubernetes `pkg/printers/internalversion/printers.go`): (name, type, priority; 1 is
/// `-o wide` only).
fn builtin_columns(rt: &ResType) -> Option<Vec<(&'static str, &'static str, i64)>> {
    if rt.is_custom() {
        return None;
    }
    Some(match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Pod") => vec![
            ("Ready", "string", 0),
            ("Status", "string", 0),
            ("Restarts", "string", 0),
            ("Age", "string", 0),
            ("IP", "string", 1),
            ("Node", "string", 1),
        ],
        ("apps", "Deployment") => vec![
            ("Ready", "string", 0),
            ("Up-to-date", "integer", 0),
            ("Available", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "ReplicaSet") => vec![
            ("Desired", "integer", 0),
            ("Current", "integer", 0),
            ("Ready", "integer", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("apps", "StatefulSet") => {
            vec![("Ready", "string", 0), ("Age", "string", 0), ("Containers", "string", 1), ("Images", "string", 1)]
        }
        ("batch", "Job") => vec![
            ("Status", "string", 0),
            ("Completions", "string", 0),
            ("Duration", "string", 0),
            ("Age", "string", 0),
            ("Containers", "string", 1),
            ("Images", "string", 1),
            ("Selector", "string", 1),
        ],
        ("batch", "CronJob") => vec![
            ("Schedule", "string", 0),
            ("Timezone", "string", 0),
            ("Suspend", "boolean", 0),
            ("Active", "integer", 0),
            ("Last Schedule", "string", 0),
            ("Age", "string", 0),
        ],
        ("", "PersistentVolumeClaim") => vec![
            ("Status", "string", 0),
            ("Volume", "string", 0),
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Age", "string", 0),
            ("VolumeMode", "string", 1),
        ],
        ("", "PersistentVolume") => vec![
            ("Capacity", "string", 0),
            ("Access Modes", "string", 0),
            ("Reclaim Policy", "string", 0),
            ("Status", "string", 0),
            ("Claim", "string", 0),
            ("StorageClass", "string", 0),
            ("VolumeAttributesClass", "string", 0),
            ("Reason", "string", 0),
            ("Age", "string", 0),
        ],
        ("", "Namespace") => vec![("Status", "string", 0), ("Age", "string", 0)],
        ("", "Service") => vec![
            ("Type", "string", 0),
            ("Cluster-IP", "string", 0),
            ("External-IP", "string", 0),
            ("Port(s)", "string", 0),
            ("Age", "string", 0),
            ("Selector", "string", 1),
        ],
        ("", "ConfigMap") => vec![("Data", "integer", 0), ("Age", "string", 0)],
        ("", "Secret") => vec![("Type", "string", 0), ("Data", "integer", 0), ("Age", "string", 0)],
        ("", "Node") => vec![
            ("Status", "string", 0),
            ("Roles", "string", 0),
            ("Age", "string", 0),
            ("Version", "string", 0),
            ("Internal-IP", "string", 1),
        ],
        ("storage.k8s.io", "StorageClass") => vec![
            ("Provisioner", "string", 0),
            ("ReclaimPolicy", "string", 0),
            ("VolumeBindingMode", "string", 0),
            ("AllowVolumeExpansion", "string", 0),
            ("Age", "string", 0),
        ],
        ("coordination.k8s.io", "Lease") => vec![("Holder", "string", 0), ("Age", "string", 0)],
        _ => return None,
    })
}

fn column_description(name: &str) -> String {
    if name == "Age" { AGE_DESC.into() } else { format!("{name} of the object, as kubectl shows it.") }
}

fn joined(items: &Value, f: impl Fn(&Value) -> Option<String>) -> String {
    let v: Vec<String> = items.as_array().into_iter().flatten().filter_map(f).collect();
    v.join(",")
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn none_if_empty(s: String) -> String {
    if s.is_empty() { "<none>".into() } else { s }
}

/// One cell of a built-in column, computed as the printer computes it.
fn builtin_cell(kind: &str, column: &str, o: &Value) -> Value {
    let spec = &o["spec"];
    let status = &o["status"];
    let containers = match kind {
        "Pod" => &spec["containers"],
        "CronJob" => &spec["jobTemplate"]["spec"]["template"]["spec"]["containers"],
        _ => &spec["template"]["spec"]["containers"],
    };
    match (kind, column) {
        (_, "Age") => json!(age(o["metadata"]["creationTimestamp"].as_str().unwrap_or_default())),
        (_, "Containers") => json!(joined(containers, |c| c["name"].as_str().map(String::from))),
        (_, "Images") => json!(joined(containers, |c| c["image"].as_str().map(String::from))),
        (_, "Selector") => {
            let sel = if kind == "Service" { &spec["selector"] } else { &spec["selector"]["matchLabels"] };
            let pairs: Vec<String> = sel
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            json!(none_if_empty(pairs.join(",")))
        }
        ("Pod", "Ready") => {
            let total = containers.as_array().map_or(0, Vec::len);
            let ready =
                status["containerStatuses"].as_array().into_iter().flatten().filter(|c| c["ready"] == true).count();
            json!(format!("{ready}/{total}"))
        }
        ("Pod", "Status") => {
            let mut reason = status["reason"].as_str().or(status["phase"].as_str()).unwrap_or("Pending").to_string();
            for c in status["containerStatuses"].as_array().into_iter().flatten() {
                if let Some(r) = c["state"]["waiting"]["reason"].as_str().filter(|r| !r.is_empty()) {
                    reason = r.into();
                } else if let Some(r) = c["state"]["terminated"]["reason"].as_str().filter(|r| !r.is_empty()) {
                    reason = r.into();
                }
            }
            if o["metadata"].get("deletionTimestamp").is_some() {
                reason = "Terminating".into();
            }
            json!(reason)
        }
        ("Pod", "Restarts") => {
            let n: i64 =
                status["containerStatuses"].as_array().into_iter().flatten().map(|c| int(&c["restartCount"])).sum();
            json!(n.to_string())
        }
        ("Pod", "IP") => json!(status["podIP"].as_str().unwrap_or("<none>")),
        ("Pod", "Node") => json!(spec["nodeName"].as_str().unwrap_or("<none>")),
        ("Deployment", "Ready") | ("StatefulSet", "Ready") => {
            json!(format!("{}/{}", int(&status["readyReplicas"]), spec["replicas"].as_i64().unwrap_or(1)))
        }
        ("Deployment", "Up-to-date") => json!(int(&status["updatedReplicas"])),
        ("Deployment", "Available") => json!(int(&status["availableReplicas"])),
        ("ReplicaSet", "Desired") => json!(spec["replicas"].as_i64().unwrap_or(1)),
        ("ReplicaSet", "Current") => json!(int(&status["replicas"])),
        ("ReplicaSet", "Ready") => json!(int(&status["readyReplicas"])),
        ("Job", "Status") => {
            let cond = |t: &str| {
                status["conditions"].as_array().into_iter().flatten().any(|c| c["type"] == t && c["status"] == "True")
            };
            let s = if cond("Complete") {
                "Complete"
            } else if cond("Failed") {
                "Failed"
            } else if cond("Suspended") {
                "Suspended"
            } else {
                "Running"
            };
            json!(s)
        }
        ("Job", "Completions") => {
            let want = spec["completions"].as_i64().map_or("1".to_string(), |c| c.to_string());
            json!(format!("{}/{want}", int(&status["succeeded"])))
        }
        ("Job", "Duration") => {
            let start = status["startTime"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok());
            let end = status["completionTime"]
                .as_str()
                .and_then(|t| t.parse::<jiff::Timestamp>().ok())
                .unwrap_or_else(jiff::Timestamp::now);
            json!(start.map_or(String::new(), |s| crate::k8s::human_duration(end.as_second() - s.as_second())))
        }
        ("CronJob", "Schedule") => spec["schedule"].clone(),
        ("CronJob", "Timezone") => json!(spec["timeZone"].as_str().unwrap_or("<none>")),
        ("CronJob", "Suspend") => json!(spec["suspend"].as_bool().unwrap_or(false)),
        ("CronJob", "Active") => json!(status["active"].as_array().map_or(0, Vec::len)),
        ("CronJob", "Last Schedule") => json!(match status["lastScheduleTime"].as_str() {
            Some(t) => age(t),
            None => "<none>".into(),
        }),
        ("PersistentVolumeClaim", "Status") | ("PersistentVolume", "Status") => {
            json!(if o["metadata"].get("deletionTimestamp").is_some() {
                "Terminating"
            } else {
                status["phase"].as_str().unwrap_or("Pending")
            })
        }
        ("PersistentVolumeClaim", "Volume") => json!(spec["volumeName"].as_str().unwrap_or_default()),
        ("PersistentVolumeClaim", "Capacity") => json!(status["capacity"]["storage"].as_str().unwrap_or_default()),
        ("PersistentVolume", "Capacity") => json!(spec["capacity"]["storage"].as_str().unwrap_or_default()),
        (_, "Access Modes") => {
            let modes = if kind == "PersistentVolumeClaim" { &status["accessModes"] } else { &spec["accessModes"] };
            json!(joined(modes, |m| match m.as_str()? {
                "ReadWriteOnce" => Some("RWO".into()),
                "ReadOnlyMany" => Some("ROX".into()),
                "ReadWriteMany" => Some("RWX".into()),
                "ReadWriteOncePod" => Some("RWOP".into()),
                _ => None,
            }))
        }
        (_, "StorageClass") => json!(none_if_empty(spec["storageClassName"].as_str().unwrap_or_default().into())),
        (_, "VolumeAttributesClass") => {
            json!(none_if_empty(spec["volumeAttributesClassName"].as_str().unwrap_or_default().into()))
        }
        ("PersistentVolumeClaim", "VolumeMode") => json!(spec["volumeMode"].as_str().unwrap_or("Filesystem")),
        ("PersistentVolume", "Reclaim Policy") => json!(spec["persistentVolumeReclaimPolicy"]),
        ("PersistentVolume", "Claim") => {
            let c = &spec["claimRef"];
            json!(match c["name"].as_str() {
                Some(n) => format!("{}/{n}", c["namespace"].as_str().unwrap_or_default()),
                None => String::new(),
            })
        }
        ("PersistentVolume", "Reason") => json!(status["reason"].as_str().unwrap_or_default()),
        ("Namespace", "Status") => json!(status["phase"].as_str().unwrap_or("Active")),
        ("Service", "Type") => json!(spec["type"].as_str().unwrap_or("ClusterIP")),
        ("Service", "Cluster-IP") => json!(spec["clusterIP"].as_str().unwrap_or("<none>")),
        ("Service", "External-IP") => {
            json!(none_if_empty(joined(&spec["externalIPs"], |i| i.as_str().map(String::from))))
        }
        ("Service", "Port(s)") => json!(none_if_empty(joined(&spec["ports"], |p| {
            let proto = p["protocol"].as_str().unwrap_or("TCP");
            Some(match p["nodePort"].as_i64() {
                Some(n) => format!("{}:{n}/{proto}", p["port"]),
                None => format!("{}/{proto}", p["port"]),
            })
        }))),
        ("ConfigMap", "Data") => {
            json!(o["data"].as_object().map_or(0, |m| m.len()) + o["binaryData"].as_object().map_or(0, |m| m.len()))
        }
        ("Secret", "Type") => json!(o["type"].as_str().unwrap_or("Opaque")),
        ("Secret", "Data") => json!(o["data"].as_object().map_or(0, |m| m.len())),
        ("Node", "Status") => {
            let ready = status["conditions"].as_array().into_iter().flatten().find(|c| c["type"] == "Ready");
            json!(match ready {
                Some(c) if c["status"] == "True" => "Ready",
                _ => "NotReady",
            })
        }
        ("Node", "Roles") => {
            let roles: Vec<String> = o["metadata"]["labels"]
                .as_object()
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/").map(String::from))
                .collect();
            json!(none_if_empty(roles.join(",")))
        }
        ("Node", "Version") => json!(status["nodeInfo"]["kubeletVersion"].as_str().unwrap_or_default()),
        ("Node", "Internal-IP") => json!(
            status["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a["address"].as_str())
                .unwrap_or("<none>")
        ),
        ("StorageClass", "Provisioner") => o["provisioner"].clone(),
        ("StorageClass", "ReclaimPolicy") => json!(o["reclaimPolicy"].as_str().unwrap_or("Delete")),
        ("StorageClass", "VolumeBindingMode") => json!(o["volumeBindingMode"].as_str().unwrap_or("Immediate")),
        ("StorageClass", "AllowVolumeExpansion") => {
            json!(o["allowVolumeExpansion"].as_bool().unwrap_or(false).to_string())
        }
        ("Lease", "Holder") => json!(spec["holderIdentity"].as_str().unwrap_or_default()),
        _ => Value::Null,
    }
}

fn cell(obj: &Value, path: &str, custom: bool) -> Value {
    if path == "age" {
        return json!(age(obj["metadata"]["creationTimestamp"].as_str().unwrap_or_default()));
    }
    let mut cur = obj;
    for p in path.trim_start_matches('.').split('.') {
        cur = &cur[p];
    }
    if cur.is_null() && custom { Value::Null } else { cur.clone() }
}

fn age(ts: &str) -> String {
    let Ok(t) = ts.parse::<jiff::Timestamp>() else { return "<unknown>".into() };
    crate::k8s::human_duration(jiff::Timestamp::now().as_second() - t.as_second())
}

pub fn table(rt: &ResType, items: &[Value], list_meta: Option<Value>, req: &Req) -> Value {
    let cols = columns(rt);
    let include = req.q("includeObject").unwrap_or("Metadata");
    let rows: Vec<Value> = items
        .iter()
        .map(|o| {
            let cells: Vec<Value> = cols
                .iter()
                .map(|(def, p)| match p {
                    // The printer marks the default StorageClass.
                    None if rt.kind == "StorageClass"
                        && o["metadata"]["annotations"]["storageclass.kubernetes.io/is-default-class"] == "true" =>
                    {
                        json!(format!("{} (default)", o["metadata"]["name"].as_str().unwrap_or_default()))
                    }
                    None => o["metadata"]["name"].clone(),
                    Some(p) if p.starts_with("builtin:") => builtin_cell(&rt.kind, &p["builtin:".len()..], o),
                    // Date columns are shown as an age, as the real server prints them.
                    Some(p) if def["type"] == "date" => match cell(o, p, true).as_str() {
                        Some(ts) => json!(age(ts)),
                        None => Value::Null,
                    },
                    Some(p) => cell(o, p, rt.is_custom()),
                })
                .collect();
            let object = match include {
                "None" => Value::Null,
                "Object" => o.clone(),
                _ => {
                    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
                }
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let meta = list_meta.unwrap_or_else(|| json!({"resourceVersion": items.first().map(|o| o["metadata"]["resourceVersion"].clone()).unwrap_or_default()}));
    json!({
        "kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
        "columnDefinitions": cols.into_iter().map(|(c, _)| c).collect::<Vec<_>>(),
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use crate::k8s::human_duration;

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
