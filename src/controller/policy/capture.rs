//! What a restore point records besides the volumes: the manifests the workloads need to
//! be recreated elsewhere (the StatefulSets, their headless Services, and the ConfigMaps
//! and Secrets their Pods reference). They are stored only inside the encrypted
//! repository, in the run's record; the RestorePoint object lists their names, never a
//! Secret's content.

use crate::api::{BackupLocation, BackupPolicy};
use crate::controller::location::access;
use crate::controller::{Context, Error, Result};
use crate::mover::record::{self, PointRecord};
use crate::repo::backup::{self, BackupOptions};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::PodSpec;
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

/// `(apiVersion, kind, name, object)` of each captured manifest.
pub type Manifest = (String, String, String, Value);

/// ConfigMaps and Secrets a Pod template refers to.
fn references(spec: &PodSpec) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut cms = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for v in spec.volumes.iter().flatten() {
        if let Some(c) = &v.config_map {
            cms.insert(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(s);
        }
        for p in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &p.config_map {
                cms.insert(c.name.clone());
            }
            if let Some(s) = &p.secret {
                secrets.insert(s.name.clone());
            }
        }
    }
    let containers = spec.containers.iter().chain(spec.init_containers.iter().flatten());
    for c in containers {
        for e in c.env.iter().flatten() {
            if let Some(r) = e.value_from.as_ref().and_then(|f| f.config_map_key_ref.as_ref()) {
                cms.insert(r.name.clone());
            }
            if let Some(r) = e.value_from.as_ref().and_then(|f| f.secret_key_ref.as_ref()) {
                secrets.insert(r.name.clone());
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.insert(r.name.clone());
            }
            if let Some(r) = &f.secret_ref {
                secrets.insert(r.name.clone());
            }
        }
    }
    (cms, secrets)
}

async fn get(client: &kube::Client, ns: &str, gvk: (&str, &str, &str, &str), name: &str) -> Result<Option<Value>> {
    let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(gvk.0, gvk.1, gvk.2), gvk.3);
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let o = api.get_opt(name).await.map_err(Error::kube(format!("read {} {name}", gvk.2)))?;
    Ok(o.map(|o| {
        let mut v = serde_json::to_value(&o).unwrap_or(Value::Null);
        v["apiVersion"] = Value::String(ar.api_version.clone());
        v["kind"] = Value::String(ar.kind.clone());
        crate::k8s::without_cluster_state(v)
    }))
}

/// The manifests of the policy's StatefulSets and what they reference (those that exist).
pub async fn manifests(ctx: &Context, ns: &str, policy: &BackupPolicy) -> Result<Vec<Manifest>> {
    if !policy.spec.protect.capture_manifests {
        return Ok(Vec::new());
    }
    let client = &ctx.client;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let mut names: Vec<String> = policy.spec.protect.stateful_sets.clone();
    if let Some(sel) = &policy.spec.protect.stateful_set_selector {
        let lp = kube::api::ListParams::default().labels(&super::resolve::selector_string(sel));
        for s in sts_api.list(&lp).await.map_err(Error::kube("list StatefulSets"))?.items {
            names.push(s.name_any());
        }
    }
    names.sort();
    names.dedup();
    let mut out = Vec::new();
    let mut push = |o: Option<Value>| {
        if let Some(v) = o {
            let s = |k: &str| v[k].as_str().unwrap_or_default().to_string();
            let name = v["metadata"]["name"].as_str().unwrap_or_default().to_string();
            out.push((s("apiVersion"), s("kind"), name, v));
        }
    };
    for name in names {
        let Some(sts) = sts_api.get_opt(&name).await.map_err(Error::kube(format!("read StatefulSet {name}")))? else {
            continue;
        };
        push(get(client, ns, ("apps", "v1", "StatefulSet", "statefulsets"), &name).await?);
        let spec = sts.spec.clone().unwrap_or_default();
        if let Some(svc) = spec.service_name.filter(|s| !s.is_empty()) {
            push(get(client, ns, ("", "v1", "Service", "services"), &svc).await?);
        }
        let (cms, secrets) = spec.template.spec.as_ref().map(references).unwrap_or_default();
        for c in cms {
            push(get(client, ns, ("", "v1", "ConfigMap", "configmaps"), &c).await?);
        }
        for s in secrets {
            push(get(client, ns, ("", "v1", "Secret", "secrets"), &s).await?);
        }
    }
    out.sort_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
    out.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
    Ok(out)
}

/// Writes the run's record into the location's repository, unless it is there already
/// (a retried step after a crash), so a run records exactly one restore point.
pub async fn write_record(
    ctx: &Context,
    policy: &BackupPolicy,
    loc: &BackupLocation,
    rec: &PointRecord,
    manifests: &[Manifest],
) -> Result<()> {
    let ns = policy.namespace().unwrap_or_default();
    let (secret, rv) =
        access::passphrase(&ctx.client, &ns, &policy.spec.encryption.key_secret, "spec.encryption.keySecret").await?;
    let repo = access::open_repo(ctx, loc, secret, rv, false).await?;
    let rec = rec.clone();
    let point_name = rec.name.clone();
    let files: Vec<(String, Vec<u8>)> = manifests
        .iter()
        .map(|(_, kind, name, v)| {
            (format!("{}-{name}.json", kind.to_lowercase()), serde_json::to_vec_pretty(v).unwrap_or_default())
        })
        .collect();
    let host = format!("{ns}/{}", rec.policy);
    let res = crate::mover::inline::run(move || {
        let exists = repo.points()?.good.iter().any(|(_, s)| {
            record::of_point(&s.tags, Some(&rec.namespace), &rec.name)
                && s.tags.get(record::TAG_KIND).map(String::as_str) == Some(record::KIND_RECORD)
        });
        if exists {
            return Ok(());
        }
        let dir = private_dir()?;
        let root = dir.join("record");
        std::fs::create_dir_all(root.join("manifests")).map_err(|e| crate::repo::RepoError::io("create", &root, e))?;
        for (name, data) in &files {
            let p = root.join("manifests").join(name);
            std::fs::write(&p, data).map_err(|e| crate::repo::RepoError::io("write", &p, e))?;
        }
        let p = root.join("record.json");
        std::fs::write(&p, serde_json::to_vec_pretty(&rec).unwrap_or_default())
            .map_err(|e| crate::repo::RepoError::io("write", &p, e))?;
        let opts = BackupOptions { tags: rec.tags(), host: Some(host), workers: 1, ..Default::default() };
        let r = backup::run(repo, &root, &opts, Arc::new(backup::Progress::default()));
        let _ = std::fs::remove_dir_all(&dir);
        r.map(|_| ())
    })
    .await;
    res.map_err(Error::repo(format!(
        "write the record of restore point {} at BackupLocation {}",
        point_name,
        loc.name_any()
    )))
}

/// A private temporary directory (the record holds Secrets until it is encrypted).
pub fn private_dir() -> Result<std::path::PathBuf, crate::repo::RepoError> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("lifeline-record-{}", crate::repo::format::Id::random().short()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir).map_err(|e| crate::repo::RepoError::io("create", &dir, e))?;
    Ok(dir)
}
