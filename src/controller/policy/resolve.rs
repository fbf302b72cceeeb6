//! The policy's references, fetched and checked before anything is snapshotted: its
//! locations, Secrets, the claims and Pods it selects, the hooks' containers and the
//! repository key. Each problem is an [`Error::Invalid`] naming the field and object.

use crate::api::common::Hook;
use crate::api::location::AccessMode;
use crate::api::policy::{LocationRole, PolicyLocation};
use crate::api::{BackupLocation, BackupPolicy, Validate};
use crate::controller::location::access;
use crate::controller::{Context, Error, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use std::collections::BTreeMap;

/// One protected claim.
#[derive(Debug, Clone, PartialEq)]
pub struct Claim {
    pub pvc: String,
    pub stateful_set: Option<String>,
    pub storage_class: Option<String>,
    pub block: bool,
    pub capacity_bytes: Option<i64>,
    /// CSI driver of the bound volume (to pick snapshot classes).
    pub driver: Option<String>,
}

/// Everything a run needs, checked.
pub struct Resolved {
    pub primary: BackupLocation,
    pub replicas: Vec<(PolicyLocation, BackupLocation)>,
    pub claims: Vec<Claim>,
    /// Running Pods of the protected StatefulSets, and their containers.
    pub pods: Vec<(String, Vec<String>)>,
}

/// Turns a label selector into the API's `labelSelector` string.
pub fn selector_string(s: &LabelSelector) -> String {
    let mut parts: Vec<String> = s.match_labels.iter().flatten().map(|(k, v)| format!("{k}={v}")).collect();
    for e in s.match_expressions.iter().flatten() {
        let vals = e.values.clone().unwrap_or_default().join(",");
        parts.push(match e.operator.as_str() {
            "In" => format!("{} in ({vals})", e.key),
            "NotIn" => format!("{} notin ({vals})", e.key),
            "Exists" => e.key.clone(),
            _ => format!("!{}", e.key),
        });
    }
    parts.join(",")
}

pub async fn resolve(ctx: &Context, policy: &BackupPolicy) -> Result<Resolved> {
    let errors = policy.validate(None);
    if !errors.is_empty() {
        return Err(Error::Invalid(crate::api::field::summarize(&errors)));
    }
    let ns = policy.namespace().unwrap_or_default();
    let client = &ctx.client;
    let locs: Api<BackupLocation> = Api::namespaced(client.clone(), &ns);
    let mut primary = None;
    let mut replicas = Vec::new();
    for (i, pl) in policy.spec.locations.iter().enumerate() {
        let field = format!("spec.locations[{i}].name");
        let loc = locs
            .get_opt(&pl.name)
            .await
            .map_err(Error::kube(format!("read BackupLocation {}", pl.name)))?
            .ok_or_else(|| Error::Invalid(format!("{field}: BackupLocation {ns}/{} not found", pl.name)))?;
        if loc.spec.access_mode == AccessMode::ReadOnly {
            return Err(Error::Invalid(format!(
                "{field}: BackupLocation {ns}/{} is ReadOnly in this cluster; a policy can only write to ReadWrite locations",
                pl.name
            )));
        }
        if let Some(s) = &loc.spec.credentials_secret {
            access::secret_data(client, &ns, &s.name, &format!("BackupLocation {}: spec.credentialsSecret", pl.name))
                .await?;
        }
        match pl.role {
            LocationRole::Primary => primary = Some(loc),
            LocationRole::Replica => replicas.push((pl.clone(), loc)),
        }
    }
    let primary =
        primary.ok_or_else(|| Error::Invalid("spec.locations: exactly one location must have role Primary".into()))?;
    access::passphrase(client, &ns, &policy.spec.encryption.key_secret, "spec.encryption.keySecret").await?;
    let (claims, pods) = select(client, &ns, policy).await?;
    check_hooks(policy, &pods)?;
    Ok(Resolved { primary, replicas, claims, pods })
}

/// Checks that the policy's key opens the repository at a location (creating the
/// repository when there is none yet). A wrong key is an invalid spec.
pub async fn check_key(ctx: &Context, policy: &BackupPolicy, loc: &BackupLocation) -> Result<()> {
    let ns = policy.namespace().unwrap_or_default();
    let (secret, rv) =
        access::passphrase(&ctx.client, &ns, &policy.spec.encryption.key_secret, "spec.encryption.keySecret").await?;
    match access::open_repo(ctx, loc, secret, rv, true).await {
        Ok(_) => Ok(()),
        Err(Error::Repo { source, .. }) if source.category() == "WrongKey" => Err(Error::Invalid(format!(
            "spec.encryption.keySecret: the passphrase in Secret {ns}/{} does not open the repository at BackupLocation {} ({})",
            policy.spec.encryption.key_secret.name,
            loc.name_any(),
            loc.spec.url
        ))),
        // What no retry mends (a missing bucket, no permission, a bad URL) is reported on
        // the policy like any other impossible reference.
        Err(Error::Repo { source, .. }) if !source.retryable() => {
            let hint = source.hint();
            let hint = if hint.is_empty() { String::new() } else { format!(" ({hint})") };
            Err(Error::Invalid(format!("spec.locations: BackupLocation {}: {source}{hint}", loc.name_any())))
        }
        Err(e) => Err(e),
    }
}

fn claim_of(c: &PersistentVolumeClaim, sts: Option<String>) -> Claim {
    let spec = c.spec.clone().unwrap_or_default();
    let capacity = c
        .status
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|m| m.get("storage"))
        .or_else(|| spec.resources.as_ref().and_then(|r| r.requests.as_ref()).and_then(|m| m.get("storage")))
        .and_then(|q| crate::k8s::quantity_bytes(&q.0));
    Claim {
        pvc: c.name_any(),
        stateful_set: sts,
        storage_class: spec.storage_class_name.clone(),
        block: spec.volume_mode.as_deref() == Some("Block"),
        capacity_bytes: capacity.map(|b| b as i64),
        driver: c.annotations().get("volume.kubernetes.io/storage-provisioner").cloned(),
    }
}

/// The claims and Pods a policy selects. Selecting nothing, or naming a StatefulSet that
/// does not exist, is an invalid spec.
async fn select(
    client: &kube::Client,
    ns: &str,
    policy: &BackupPolicy,
) -> Result<(Vec<Claim>, Vec<(String, Vec<String>)>)> {
    let p = &policy.spec.protect;
    let sts_api: Api<StatefulSet> = Api::namespaced(client.clone(), ns);
    let pvc_api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut sets: Vec<StatefulSet> = Vec::new();
    for (i, name) in p.stateful_sets.iter().enumerate() {
        let s =
            sts_api.get_opt(name).await.map_err(Error::kube(format!("read StatefulSet {name}")))?.ok_or_else(|| {
                Error::Invalid(format!("spec.protect.statefulSets[{i}]: StatefulSet {ns}/{name} not found"))
            })?;
        sets.push(s);
    }
    if let Some(sel) = &p.stateful_set_selector {
        let lp = ListParams::default().labels(&selector_string(sel));
        for s in sts_api.list(&lp).await.map_err(Error::kube("list StatefulSets"))?.items {
            if !sets.iter().any(|x| x.name_any() == s.name_any()) {
                sets.push(s);
            }
        }
    }
    let all = pvc_api.list(&ListParams::default()).await.map_err(Error::kube("list PersistentVolumeClaims"))?.items;
    let mut claims: BTreeMap<String, Claim> = BTreeMap::new();
    let mut pods = Vec::new();
    for s in &sets {
        let sname = s.name_any();
        let spec = s.spec.clone().unwrap_or_default();
        for t in spec.volume_claim_templates.iter().flatten() {
            let prefix = format!("{}-{sname}-", t.name_any());
            for c in all.iter().filter(|c| {
                c.name_any()
                    .strip_prefix(&prefix)
                    .is_some_and(|o| !o.is_empty() && o.bytes().all(|b| b.is_ascii_digit()))
            }) {
                claims.insert(c.name_any(), claim_of(c, Some(sname.clone())));
            }
        }
        let sel = selector_string(&spec.selector);
        let lp = ListParams::default().labels(&sel);
        for pod in pod_api.list(&lp).await.map_err(Error::kube("list Pods"))?.items {
            let owned = pod.owner_references().iter().any(|o| o.kind == "StatefulSet" && o.name == sname);
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            if owned && running && pod.metadata.deletion_timestamp.is_none() {
                let containers = pod.spec.iter().flat_map(|s| s.containers.iter().map(|c| c.name.clone())).collect();
                pods.push((pod.name_any(), containers));
            }
        }
    }
    if let Some(sel) = &p.persistent_volume_claim_selector {
        let lp = ListParams::default().labels(&selector_string(sel));
        for c in pvc_api.list(&lp).await.map_err(Error::kube("list PersistentVolumeClaims"))?.items {
            claims.entry(c.name_any()).or_insert_with(|| claim_of(&c, None));
        }
    }
    let claims: Vec<Claim> = claims.into_values().collect();
    if claims.is_empty() {
        return Err(Error::Invalid(format!(
            "spec.protect: selects no PersistentVolumeClaim in namespace {ns} ({} StatefulSet(s) matched)",
            sets.len()
        )));
    }
    pods.sort();
    Ok((claims, pods))
}

/// Every hook's container exists in every Pod it runs in.
fn check_hooks(policy: &BackupPolicy, pods: &[(String, Vec<String>)]) -> Result<()> {
    let c = &policy.spec.consistency;
    let hooks = c.pre_hooks.iter().map(|h| ("preHooks", h)).chain(c.post_hooks.iter().map(|h| ("postHooks", h)));
    for (i, (list, h)) in hooks.enumerate() {
        let idx = if list == "preHooks" { i } else { i - c.pre_hooks.len() };
        if let Some(want) = &h.container
            && let Some((pod, _)) = pods.iter().find(|(_, cs)| !cs.contains(want))
        {
            return Err(Error::Invalid(format!(
                "spec.consistency.{list}[{idx}].container: Pod {pod} has no container {want:?} (hook {})",
                h.name
            )));
        }
    }
    Ok(())
}

/// The container a hook runs in, in a Pod with these containers.
pub fn hook_container(h: &Hook, containers: &[String]) -> Option<String> {
    h.container.clone().or_else(|| containers.first().cloned())
}
