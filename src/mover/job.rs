//! The mover Job (pure: a plan in, a `batch/v1` Job out). It runs `lifeline mover …` with
//! the volume mounted read-only, the location's credentials from its Secret, the key
//! from the policy's Secret, and writes its [`MoverResult`](super::MoverResult) to the
//! container's termination message, where the controller reads it.

use crate::api::common::SecretKeyRef;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Where the volume is mounted (or, for a block volume, the device path).
pub const SOURCE_PATH: &str = "/lifeline/source";
/// Where a restore's target volume is mounted, writable (or its device path).
pub const TARGET_PATH: &str = "/lifeline/target";
pub const TERMINATION_LOG: &str = "/dev/termination-log";

/// What one mover Job does and where.
#[derive(Debug, Clone)]
pub struct Plan {
    pub name: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    /// The owner reference (`null`: none, for a Job outside its owner's namespace).
    pub owner: Value,
    pub image: String,
    /// The command that starts `lifeline` in the image.
    pub command: Vec<String>,
    /// Arguments after `lifeline mover`.
    pub args: Vec<String>,
    /// The claim to mount, read-only, and whether it is a block volume.
    pub claim: Option<(String, bool)>,
    /// Mount the claim writable at [`TARGET_PATH`] instead (a restore).
    pub writable: bool,
    /// The location's environment (endpoint, region) and `envFrom` (its credentials).
    pub env: Vec<Value>,
    pub env_from: Vec<Value>,
    pub key: SecretKeyRef,
    /// `file://` locations: the directory, mounted from the node at the same path.
    pub host_paths: Vec<String>,
    pub deadline_seconds: i64,
    /// Resources and security contexts of the Pod (the operator's `--mover-*` settings).
    pub pod: MoverPod,
}

/// What an installation sets on every mover Pod (chart values `mover.resources`,
/// `mover.securityContext`, `mover.podSecurityContext`); unset, the defaults below.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MoverPod {
    /// The container's `resources`.
    pub resources: Option<Value>,
    /// The container's `securityContext`.
    pub security_context: Option<Value>,
    /// The Pod's `securityContext`.
    pub pod_security_context: Option<Value>,
}

/// Requests for a mover's steady work; the limit covers its largest buffers.
pub fn default_resources() -> Value {
    json!({"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}})
}

pub fn default_security_context() -> Value {
    json!({"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true})
}

/// The Job. `backoffLimit: 0`: the controller reads each attempt's result and decides
/// about retries itself (a retryable error gets a new Job; a wrong key does not).
pub fn job(p: &Plan) -> Value {
    let mut env = p.env.clone();
    env.push(
        json!({"name": "LIFELINE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": p.key.name, "key": p.key.key}}}),
    );
    env.push(json!({"name": "LIFELINE_LOG", "value": "info"}));
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    let mut devices = Vec::new();
    if let Some((claim, block)) = &p.claim {
        let (name, path, ro) = if p.writable { ("target", TARGET_PATH, false) } else { ("source", SOURCE_PATH, true) };
        volumes.push(json!({"name": name, "persistentVolumeClaim": {"claimName": claim, "readOnly": ro}}));
        if *block {
            devices.push(json!({"name": name, "devicePath": path}));
        } else if ro {
            mounts.push(json!({"name": name, "mountPath": path, "readOnly": true}));
        } else {
            mounts.push(json!({"name": name, "mountPath": path}));
        }
    }
    for (i, dir) in p.host_paths.iter().enumerate() {
        let name = format!("location-{i}");
        volumes.push(json!({"name": name, "hostPath": {"path": dir, "type": "Directory"}}));
        mounts.push(json!({"name": name, "mountPath": dir}));
    }
    let args: Vec<String> =
        ["--result-file".to_string(), TERMINATION_LOG.to_string()].into_iter().chain(p.args.iter().cloned()).collect();
    let mut command = p.command.clone();
    command.push("mover".into());
    let mut container = json!({
        "name": "mover",
        "image": p.image,
        "command": command,
        "args": args,
        "env": env,
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": p.pod.resources.clone().unwrap_or_else(default_resources),
        "securityContext": p.pod.security_context.clone().unwrap_or_else(default_security_context),
    });
    if !p.env_from.is_empty() {
        container["envFrom"] = json!(p.env_from);
    }
    if !mounts.is_empty() {
        container["volumeMounts"] = json!(mounts);
    }
    if !devices.is_empty() {
        container["volumeDevices"] = json!(devices);
    }
    let mut pod = json!({"restartPolicy": "Never", "containers": [container], "volumes": volumes});
    if let Some(sc) = &p.pod.pod_security_context {
        pod["securityContext"] = sc.clone();
    }
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": p.name, "namespace": p.namespace, "labels": p.labels,
            // No owner (null) for a Job in another namespace than its owner: the garbage
            // collector treats such a reference as absent and deletes the Job.
            "ownerReferences": if p.owner.is_null() { json!([]) } else { json!([p.owner]) },
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": p.deadline_seconds,
            "template": {
                "metadata": {"labels": p.labels},
                "spec": pod,
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_job_mounts_its_claim_read_only_and_reads_the_key_from_the_secret() {
        let p = Plan {
            name: "db-1-0".into(),
            namespace: "shop".into(),
            labels: BTreeMap::from([("lifeline.io/restore-point".into(), "db-1".into())]),
            owner: json!({"kind": "RestorePoint", "name": "db-1"}),
            image: "img".into(),
            command: vec!["lifeline".into()],
            args: vec!["backup".into(), "s3://b/p".into(), SOURCE_PATH.into()],
            claim: Some(("db-1-0".into(), false)),
            writable: false,
            env: vec![],
            env_from: vec![json!({"secretRef": {"name": "creds"}})],
            key: SecretKeyRef { name: "key".into(), key: "passphrase".into() },
            host_paths: vec![],
            deadline_seconds: 60,
            pod: MoverPod::default(),
        };
        let j = job(&p);
        let c = &j["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["command"], json!(["lifeline", "mover"]));
        assert_eq!(c["volumeMounts"][0]["readOnly"], true);
        assert_eq!(j["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["readOnly"], true);
        assert_eq!(c["env"][0]["valueFrom"]["secretKeyRef"]["name"], "key");
        assert_eq!(j["spec"]["backoffLimit"], 0);
        assert_eq!(c["terminationMessagePolicy"], "FallbackToLogsOnError");
    }

    #[test]
    fn an_installations_mover_settings_reach_the_pod() {
        let mut p = Plan {
            name: "db-1-0".into(),
            namespace: "shop".into(),
            labels: BTreeMap::new(),
            owner: Value::Null,
            image: "img".into(),
            command: vec!["lifeline".into()],
            args: vec![],
            claim: None,
            writable: false,
            env: vec![],
            env_from: vec![],
            key: SecretKeyRef { name: "key".into(), key: "passphrase".into() },
            host_paths: vec![],
            deadline_seconds: 60,
            pod: MoverPod::default(),
        };
        let j = job(&p);
        let spec = &j["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["resources"], default_resources());
        assert_eq!(spec["containers"][0]["securityContext"], default_security_context());
        assert!(spec["securityContext"].is_null());
        p.pod = MoverPod {
            resources: Some(json!({"limits": {"memory": "3Gi"}})),
            security_context: Some(json!({"runAsNonRoot": true})),
            pod_security_context: Some(json!({"fsGroup": 1000})),
        };
        let j = job(&p);
        let spec = &j["spec"]["template"]["spec"];
        assert_eq!(spec["containers"][0]["resources"], json!({"limits": {"memory": "3Gi"}}));
        assert_eq!(spec["containers"][0]["securityContext"], json!({"runAsNonRoot": true}));
        assert_eq!(spec["securityContext"], json!({"fsGroup": 1000}));
    }
}
