//! How this cluster reaches a location: its options and credentials (from the
//! BackupLocation and its Secret), for the operator's own light calls and for the
//! environment of mover Jobs.

use crate::api::BackupLocation;
use crate::api::common::SecretKeyRef;
use crate::controller::{Context, Error, Result};
use crate::mover::record::{KIND_RECORD, TAG_KIND, TAG_POINT, of_namespace};
use crate::repo::format::Id;
use crate::repo::prune;
use crate::repo::{RepoError, Repository, Secret};
use crate::store::{self, Backend, LocationOptions};
use k8s_openapi::api::core::v1::Secret as K8sSecret;
use kube::ResourceExt;
use kube::api::Api;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// Reads a Secret's data; a missing Secret is an invalid spec naming it.
pub async fn secret_data(
    client: &kube::Client,
    ns: &str,
    name: &str,
    field: &str,
) -> Result<(BTreeMap<String, Vec<u8>>, String)> {
    let api: Api<K8sSecret> = Api::namespaced(client.clone(), ns);
    match api.get_opt(name).await.map_err(Error::kube(format!("read Secret {ns}/{name}")))? {
        Some(s) => {
            let rv = s.resource_version().unwrap_or_default();
            let data = s.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
            Ok((data, rv))
        }
        None => Err(Error::Invalid(format!("{field}: Secret {ns}/{name} not found"))),
    }
}

/// The repository passphrase a key reference points at, and the Secret's version.
pub async fn passphrase(client: &kube::Client, ns: &str, key: &SecretKeyRef, field: &str) -> Result<(Secret, String)> {
    let (data, rv) = secret_data(client, ns, &key.name, &format!("{field}.name")).await?;
    let v = data
        .get(&key.key)
        .ok_or_else(|| Error::Invalid(format!("{field}.key: Secret {ns}/{} has no key {:?}", key.name, key.key)))?;
    let v: Vec<u8> = v.strip_suffix(b"\n").unwrap_or(v).to_vec();
    if v.is_empty() {
        return Err(Error::Invalid(format!("{field}.key: key {:?} of Secret {ns}/{} is empty", key.key, key.name)));
    }
    Ok((Secret::Passphrase(zeroize::Zeroizing::new(v)), rv))
}

/// Options for opening a location from this process: its Secret's credentials, else the
/// operator's own identity where its settings allow it for the location's namespace,
/// else none (unsigned requests; see [`crate::controller::grants`]).
pub async fn options(ctx: &Context, loc: &BackupLocation) -> Result<LocationOptions> {
    let client = &ctx.client;
    let ns = loc.namespace().unwrap_or_default();
    let mut o = LocationOptions {
        endpoint: loc.spec.endpoint.clone(),
        region: loc.spec.region.clone(),
        force_path_style: loc.spec.force_path_style.unwrap_or(false),
        anonymous: !ctx.config.ambient_credentials.contains(&ns),
        ..Default::default()
    };
    if let Some(s) = &loc.spec.credentials_secret {
        let (data, _) = secret_data(client, &ns, &s.name, "spec.credentialsSecret").await?;
        let text = |k: &str| data.get(k).map(|v| String::from_utf8_lossy(v).trim().to_string());
        o.access_key_id = text("AWS_ACCESS_KEY_ID");
        o.secret_access_key = text("AWS_SECRET_ACCESS_KEY");
        o.settings = store::CREDENTIAL_KEYS.iter().filter_map(|k| Some((k.to_string(), text(k)?))).collect();
    }
    if let Some(tls) = &loc.spec.tls {
        if let Some(ca) = &tls.ca_bundle {
            let (data, _) = secret_data(client, &ns, &ca.name, "spec.tls.caBundle.name").await?;
            let pem = data.get(&ca.key).ok_or_else(|| {
                Error::Invalid(format!("spec.tls.caBundle.key: Secret {ns}/{} has no key {:?}", ca.name, ca.key))
            })?;
            o.ca_bundle = Some(pem.clone());
        }
        o.insecure_skip_verify = tls.insecure_skip_verify;
    }
    Ok(o)
}

/// The environment a mover Job needs for a location (besides the key): endpoint and
/// region as variables, credentials straight from the location's Secret.
pub fn job_env(loc: &BackupLocation) -> (Vec<Value>, Vec<Value>) {
    let mut env = Vec::new();
    if let Some(e) = &loc.spec.endpoint {
        env.push(json!({"name": "LIFELINE_S3_ENDPOINT", "value": e}));
    }
    if let Some(r) = &loc.spec.region {
        env.push(json!({"name": "AWS_REGION", "value": r}));
    }
    if loc.spec.force_path_style == Some(true) {
        env.push(json!({"name": "LIFELINE_S3_PATH_STYLE", "value": "true"}));
    }
    if let Some(tls) = &loc.spec.tls {
        if let Some(ca) = &tls.ca_bundle {
            env.push(json!({"name": "LIFELINE_S3_CA_BUNDLE_PEM", "valueFrom": {"secretKeyRef": {"name": ca.name, "key": ca.key}}}));
        }
        if tls.insecure_skip_verify {
            env.push(json!({"name": "LIFELINE_S3_INSECURE_SKIP_VERIFY", "value": "true"}));
        }
    }
    let env_from = loc.spec.credentials_secret.iter().map(|s| json!({"secretRef": {"name": s.name}})).collect();
    (env, env_from)
}

/// The directories of `file://` locations, which a mover Job mounts from the node.
pub fn host_paths(locations: &[&BackupLocation]) -> Vec<String> {
    locations
        .iter()
        .filter_map(|l| crate::store::file_path(&l.spec.url).ok())
        .map(|p| p.display().to_string())
        .collect()
}

/// Opens the store behind a location, without retries: a check must answer quickly.
///
/// Object stores are kept per URL and options (credentials included, so a rotated Secret opens
/// a new one): a heartbeat each second, a location check or a fencing marker reuses the
/// client and its connections instead of building a TLS client and connecting again
/// (about 20 ms of CPU each, and a round trip more, which stretch most under load).
pub fn backend(url: &str, opts: &LocationOptions) -> Result<Arc<dyn Backend>, RepoError> {
    type Stores = std::sync::Mutex<std::collections::HashMap<[u8; 32], Arc<dyn Backend>>>;
    static STORES: std::sync::OnceLock<Stores> = std::sync::OnceLock::new();
    /// Locations one operator talks to are few; past this many the cache starts again.
    const MOST: usize = 256;
    if url.get(..7).is_some_and(|p| p.eq_ignore_ascii_case("file://")) {
        // Cheap to open, and opening is what finds a directory gone.
        return Ok(store::open(url, opts)?);
    }
    let key = *blake3::hash(format!("{url}\0{opts:?}").as_bytes()).as_bytes();
    let stores = STORES.get_or_init(Default::default);
    if let Some(b) = stores.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(b.clone());
    }
    let b = store::open(url, opts)?;
    let mut map = stores.lock().unwrap_or_else(|e| e.into_inner());
    if map.len() >= MOST {
        map.clear();
    }
    Ok(map.entry(key).or_insert(b).clone())
}

/// Opens (or, when `create` and there is none, creates) the repository at a location
/// with a passphrase, through the one bridge to the data path. Opened repositories are
/// cached by `cache_key`: key derivation is slow on purpose.
pub async fn open_repo(
    ctx: &Context,
    loc: &BackupLocation,
    secret: Secret,
    cache_key: String,
    create: bool,
) -> Result<Arc<Repository>> {
    let cache_key = format!("{}|{}|{cache_key}", loc.uid().unwrap_or_default(), loc.spec.url);
    if let Some(r) = ctx.repos.lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key) {
        return Ok(r.clone());
    }
    // Key derivation takes ~19 MiB and a core for a moment: two at a time, and a caller
    // that waited finds the repository another one opened meanwhile.
    static OPENING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    // The semaphore is never closed, so acquiring cannot fail.
    let _permit = OPENING.acquire().await.ok();
    if let Some(r) = ctx.repos.lock().unwrap_or_else(|e| e.into_inner()).get(&cache_key) {
        return Ok(r.clone());
    }
    let opts = options(ctx, loc).await?;
    let url = loc.spec.url.clone();
    let name = loc.name_any();
    let repo = crate::mover::inline::run(move || {
        let b: Arc<dyn Backend> = Arc::new(store::Retrying::new(store::open(&url, &opts)?));
        match Repository::open(b.clone(), &secret) {
            Err(RepoError::NotInitialized { .. }) if create => {
                let mut o = opts.clone();
                o.create = true;
                let b: Arc<dyn Backend> = Arc::new(store::Retrying::new(store::open(&url, &o)?));
                Repository::init(b, &secret)
            }
            r => r,
        }
    })
    .await
    .map_err(Error::repo(format!("open the repository of BackupLocation {name}")))?;
    let repo = Arc::new(repo);
    ctx.repos.lock().unwrap_or_else(|e| e.into_inner()).insert(cache_key, repo.clone());
    Ok(repo)
}

/// Forgets the named points at one location (opened with the key `key`, named `field` in
/// errors): every record first, then the volumes. Returns how many of the repository's
/// snapshots went.
pub async fn forget_points(
    ctx: &Context,
    loc: &BackupLocation,
    key: &SecretKeyRef,
    field: &str,
    names: &[String],
) -> Result<usize> {
    let ns = loc.namespace().unwrap_or_default();
    let (secret, rv) = passphrase(&ctx.client, &ns, key, field).await?;
    let repo = open_repo(ctx, loc, secret, rv, false).await?;
    let names: BTreeSet<String> = names.iter().cloned().collect();
    // Only this namespace's: another namespace's point of the same name is not ours.
    crate::mover::inline::run(move || {
        let mut parts: Vec<(bool, Id)> = repo
            .points()?
            .good
            .into_iter()
            .filter(|(_, s)| s.tags.get(TAG_POINT).is_some_and(|p| names.contains(p)) && of_namespace(&s.tags, &ns))
            .map(|(id, s)| (s.tags.get(TAG_KIND).is_some_and(|k| k == KIND_RECORD), id))
            .collect();
        parts.sort_by_key(|(record, _)| !record);
        prune::forget_ids(&repo, &parts.into_iter().map(|(_, id)| id).collect::<Vec<_>>())
    })
    .await
    .map_err(Error::repo(format!("forget restore points at BackupLocation {}", loc.name_any())))
}

/// Forgets cached repositories of a location (after an error, so the next call opens
/// afresh).
pub fn forget_cached(ctx: &Context, loc: &BackupLocation) {
    let prefix = format!("{}|", loc.uid().unwrap_or_default());
    ctx.repos.lock().unwrap_or_else(|e| e.into_inner()).retain(|k, _| !k.starts_with(&prefix));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mover_gets_the_location_s_tls_settings_from_its_secret() {
        let loc: BackupLocation = serde_json::from_value(json!({
            "apiVersion": "lifeline.io/v1alpha1", "kind": "BackupLocation",
            "metadata": {"name": "eu", "namespace": "shop"},
            "spec": {"url": "s3://b/p", "endpoint": "https://s3.example:9000",
                     "tls": {"caBundle": {"name": "eu-ca", "key": "ca.pem"}, "insecureSkipVerify": false}},
        }))
        .unwrap();
        let (env, _) = job_env(&loc);
        let ca = env.iter().find(|e| e["name"] == "LIFELINE_S3_CA_BUNDLE_PEM").expect("the CA variable");
        assert_eq!(ca["valueFrom"]["secretKeyRef"], json!({"name": "eu-ca", "key": "ca.pem"}));
        assert!(!env.iter().any(|e| e["name"] == "LIFELINE_S3_INSECURE_SKIP_VERIFY"));
    }
}
