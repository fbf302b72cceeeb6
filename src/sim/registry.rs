//! The resource types the simulated API server serves: the built-in kinds a DR operator
//! touches, and every established CustomResourceDefinition.

use serde_json::{Value, json};
use std::sync::Arc;

/// A subresource as discovery lists it.
#[derive(Debug, Clone)]
pub struct Sub {
    pub name: &'static str,
    pub kind: String,
    pub verbs: &'static [&'static str],
    /// Group and version when they differ from the parent's (`statefulsets/scale`).
    pub gv: Option<(&'static str, &'static str)>,
}

/// One served resource.
#[derive(Debug, Clone)]
pub struct ResType {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub verbs: Vec<&'static str>,
    pub subs: Vec<Sub>,
    /// `metadata.generation` is kept and bumped on spec changes.
    pub generation: bool,
    /// A `/status` subresource exists: the main resource ignores status changes.
    pub status: bool,
    /// Custom resources: the CRD (as stored) they come from.
    pub crd: Option<Arc<Value>>,
}

impl ResType {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() { self.version.clone() } else { format!("{}/{}", self.group, self.version) }
    }

    /// `plural` or `plural.group`, as messages name a resource.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() { self.plural.clone() } else { format!("{}.{}", self.plural, self.group) }
    }

    /// Key for storage: one entry per group and resource, whatever the version.
    /// events.k8s.io Events are the core Events seen through another API (see `events`).
    pub fn key(&self) -> String {
        if self.group == "events.k8s.io" {
            return "/events".into();
        }
        format!("{}/{}", self.group, self.plural)
    }

    /// The apiVersion objects are stored under.
    pub fn storage_api_version(&self) -> String {
        if self.group == "events.k8s.io" { "v1".into() } else { self.api_version() }
    }

    pub fn has_sub(&self, name: &str) -> bool {
        self.subs.iter().any(|s| s.name == name)
    }

    pub fn is_custom(&self) -> bool {
        self.crd.is_some()
    }

    /// Discovery's entries for this resource and its subresources.
    pub fn discovery(&self) -> Vec<Value> {
        let mut main = json!({
            "name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
            "kind": self.kind, "verbs": self.verbs,
            "storageVersionHash": storage_hash(&self.key()),
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            main["categories"] = json!(self.categories);
        }
        let mut out = vec![main];
        for s in &self.subs {
            let mut v = json!({
                "name": format!("{}/{}", self.plural, s.name), "singularName": "",
                "namespaced": self.namespaced, "kind": s.kind, "verbs": s.verbs,
            });
            if let Some((g, ver)) = s.gv {
                v["group"] = json!(g);
                v["version"] = json!(ver);
            }
            out.push(v);
        }
        out
    }
}

fn storage_hash(key: &str) -> String {
    use base64::Engine;
    let h = blake3::hash(key.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(&h.as_bytes()[..8])
}

const RW: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];
const RW_NO_COLLECTION: &[&str] = &["create", "delete", "get", "list", "patch", "update", "watch"];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
const CREATE_ONLY: &[&str] = &["create"];

/// The review kinds: created to ask a question, answered in the response, never stored.
pub fn is_review(plural: &str) -> bool {
    plural.ends_with("accessreviews")
        || matches!(plural, "selfsubjectrulesreviews" | "selfsubjectreviews" | "tokenreviews")
}

struct B {
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short: &'static [&'static str],
    all: bool,
    subs: &'static [(&'static str, &'static str)],
    generation: bool,
    status: bool,
}

/// The built-in kinds (all at version v1).
const BUILTIN: &[B] = &[
    B {
        group: "",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        short: &["cm"],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "",
        kind: "Endpoints",
        plural: "endpoints",
        namespaced: true,
        short: &["ep"],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short: &["ev"],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        short: &["ns"],
        all: false,
        subs: &[("status", "Namespace"), ("finalize", "Namespace")],
        generation: false,
        status: true,
    },
    B {
        group: "",
        kind: "Node",
        plural: "nodes",
        namespaced: false,
        short: &["no"],
        all: false,
        subs: &[("status", "Node")],
        generation: false,
        status: true,
    },
    B {
        group: "",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        namespaced: true,
        short: &["pvc"],
        all: false,
        subs: &[("status", "PersistentVolumeClaim")],
        generation: false,
        status: true,
    },
    B {
        group: "",
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        namespaced: false,
        short: &["pv"],
        all: false,
        subs: &[("status", "PersistentVolume")],
        generation: false,
        status: true,
    },
    B {
        group: "",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        short: &["po"],
        all: true,
        subs: &[
            ("status", "Pod"),
            ("ephemeralcontainers", "Pod"),
            ("portforward", "PodPortForwardOptions"),
            ("attach", "PodAttachOptions"),
            ("log", "Pod"),
            ("exec", "PodExecOptions"),
            ("eviction", "Eviction"),
            ("binding", "Binding"),
        ],
        generation: true,
        status: true,
    },
    B {
        group: "",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
        short: &["sa"],
        all: false,
        subs: &[("token", "TokenRequest")],
        generation: false,
        status: false,
    },
    B {
        group: "",
        kind: "Service",
        plural: "services",
        namespaced: true,
        short: &["svc"],
        all: true,
        subs: &[("status", "Service")],
        generation: false,
        status: true,
    },
    B {
        group: "apps",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        namespaced: true,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "apps",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
        short: &["sts"],
        all: true,
        subs: &[("status", "StatefulSet"), ("scale", "Scale")],
        generation: true,
        status: true,
    },
    B {
        group: "apps",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        short: &["deploy"],
        all: true,
        subs: &[("status", "Deployment"), ("scale", "Scale")],
        generation: true,
        status: true,
    },
    B {
        group: "apps",
        kind: "ReplicaSet",
        plural: "replicasets",
        namespaced: true,
        short: &["rs"],
        all: true,
        subs: &[("status", "ReplicaSet"), ("scale", "Scale")],
        generation: true,
        status: true,
    },
    B {
        group: "batch",
        kind: "Job",
        plural: "jobs",
        namespaced: true,
        short: &[],
        all: true,
        subs: &[("status", "Job")],
        generation: true,
        status: true,
    },
    B {
        group: "batch",
        kind: "CronJob",
        plural: "cronjobs",
        namespaced: true,
        short: &["cj"],
        all: true,
        subs: &[("status", "CronJob")],
        generation: true,
        status: true,
    },
    B {
        group: "coordination.k8s.io",
        kind: "Lease",
        plural: "leases",
        namespaced: true,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "events.k8s.io",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short: &["ev"],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "storage.k8s.io",
        kind: "StorageClass",
        plural: "storageclasses",
        namespaced: false,
        short: &["sc"],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "apiextensions.k8s.io",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        namespaced: false,
        short: &["crd", "crds"],
        all: false,
        subs: &[("status", "CustomResourceDefinition")],
        generation: true,
        status: true,
    },
    B {
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRole",
        plural: "clusterroles",
        namespaced: false,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "rbac.authorization.k8s.io",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        namespaced: false,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "rbac.authorization.k8s.io",
        kind: "Role",
        plural: "roles",
        namespaced: true,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "rbac.authorization.k8s.io",
        kind: "RoleBinding",
        plural: "rolebindings",
        namespaced: true,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "policy",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        namespaced: true,
        short: &["pdb"],
        all: false,
        subs: &[("status", "PodDisruptionBudget")],
        generation: true,
        status: true,
    },
    B {
        group: "authorization.k8s.io",
        kind: "LocalSubjectAccessReview",
        plural: "localsubjectaccessreviews",
        namespaced: true,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "authorization.k8s.io",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        namespaced: false,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "authorization.k8s.io",
        kind: "SelfSubjectRulesReview",
        plural: "selfsubjectrulesreviews",
        namespaced: false,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "authorization.k8s.io",
        kind: "SubjectAccessReview",
        plural: "subjectaccessreviews",
        namespaced: false,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "authentication.k8s.io",
        kind: "SelfSubjectReview",
        plural: "selfsubjectreviews",
        namespaced: false,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
    B {
        group: "authentication.k8s.io",
        kind: "TokenReview",
        plural: "tokenreviews",
        namespaced: false,
        short: &[],
        all: false,
        subs: &[],
        generation: false,
        status: false,
    },
];

fn sub_verbs(name: &str) -> &'static [&'static str] {
    match name {
        "status" | "scale" | "ephemeralcontainers" => STATUS_VERBS,
        "finalize" => &["update"],
        "log" => &["get"],
        "exec" | "portforward" | "attach" => &["create", "get"],
        "eviction" | "binding" | "token" => &["create"],
        _ => &["get"],
    }
}

/// The built-in resource types.
pub fn builtin() -> Vec<Arc<ResType>> {
    BUILTIN
        .iter()
        .map(|b| {
            let verbs = if matches!(b.plural, "namespaces" | "services") {
                RW_NO_COLLECTION
            } else if is_review(b.plural) {
                CREATE_ONLY
            } else {
                RW
            };
            Arc::new(ResType {
                group: b.group.into(),
                version: "v1".into(),
                kind: b.kind.into(),
                plural: b.plural.into(),
                singular: b.kind.to_lowercase(),
                namespaced: b.namespaced,
                short_names: b.short.iter().map(|s| s.to_string()).collect(),
                categories: if b.all {
                    vec!["all".into()]
                } else if b.plural == "customresourcedefinitions" {
                    vec!["api-extensions".into()]
                } else {
                    vec![]
                },
                verbs: verbs.to_vec(),
                subs: b
                    .subs
                    .iter()
                    .map(|(name, kind)| Sub {
                        name,
                        kind: kind.to_string(),
                        verbs: sub_verbs(name),
                        gv: (*name == "scale").then_some(("autoscaling", "v1")),
                    })
                    .collect(),
                generation: b.generation,
                status: b.status,
                crd: None,
            })
        })
        .collect()
}

/// The resource types a CRD serves (one per served version).
pub fn from_crd(crd: &Value) -> Vec<Arc<ResType>> {
    let spec = &crd["spec"];
    let names = &crd["status"]["acceptedNames"];
    let names = if names.is_object() && names.get("plural").is_some() { names } else { &spec["names"] };
    let strs = |v: &Value| -> Vec<String> {
        v.as_array().map(|a| a.iter().filter_map(|s| s.as_str().map(String::from)).collect()).unwrap_or_default()
    };
    let kind = names["kind"].as_str().unwrap_or_default().to_string();
    let plural = names["plural"].as_str().unwrap_or_default().to_string();
    let crd = Arc::new(crd.clone());
    spec["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["served"].as_bool().unwrap_or(false))
        .map(|v| {
            let mut subs = Vec::new();
            if v["subresources"].get("status").is_some() {
                subs.push(Sub { name: "status", kind: kind.clone(), verbs: STATUS_VERBS, gv: None });
            }
            if v["subresources"].get("scale").is_some() {
                subs.push(Sub {
                    name: "scale",
                    kind: "Scale".into(),
                    verbs: STATUS_VERBS,
                    gv: Some(("autoscaling", "v1")),
                });
            }
            Arc::new(ResType {
                group: spec["group"].as_str().unwrap_or_default().into(),
                version: v["name"].as_str().unwrap_or_default().into(),
                kind: kind.clone(),
                plural: plural.clone(),
                singular: names["singular"].as_str().map(String::from).unwrap_or_else(|| kind.to_lowercase()),
                namespaced: spec["scope"].as_str() != Some("Cluster"),
                short_names: strs(&names["shortNames"]),
                categories: strs(&names["categories"]),
                verbs: vec!["delete", "deletecollection", "get", "list", "patch", "create", "update", "watch"],
                status: !subs.is_empty() && subs[0].name == "status",
                subs,
                generation: true,
                crd: Some(crd.clone()),
            })
        })
        .collect()
}
