//! Catalog sync: the restore points stored at a location become RestorePoint objects in
//! this cluster (created when missing, marked present at this location), so a standby
//! cluster that has only the location knows what it can restore while the primary is
//! gone, and a recreated policy or location gets its restore points back.
//!
//! Objects this creates carry the catalog annotation; the RestorePoint controller never
//! runs a backup for them. Objects this cluster's runs created get only their presence
//! at this location updated (a list entry this controller owns).

use super::access;
use crate::api::common::condition::READY;
use crate::api::restore_point::{ManifestRecord, PointLocation, RunPhase, RunTrigger, VolumeRecord};
use crate::api::{BackupLocation, RestorePoint, RestorePointStatus};
use crate::controller::{Context, Error, Result};
use crate::k8s::{ANNOTATION_CATALOG, ANNOTATION_SOURCE_NAMESPACE, apply, conditions, events};
use crate::mover::record::PointRecord;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::collections::BTreeMap;

/// The records stored at a location that its namespace may see, by restore point name:
/// those of its own namespace, and of namespaces an administrator granted it (see
/// [`crate::controller::grants`]). A location shared by several namespaces (one bucket,
/// one passphrase) shows each only its own.
pub async fn records(ctx: &Context, loc: &BackupLocation) -> Result<BTreeMap<String, PointRecord>> {
    let ns = loc.namespace().unwrap_or_default();
    let mut permitted: BTreeMap<String, bool> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for r in stored(ctx, loc).await? {
        let ok = match permitted.get(&r.namespace) {
            Some(ok) => *ok,
            None => {
                let ok = crate::controller::grants::refusal(ctx, &ns, &r.namespace).await?.is_none();
                permitted.insert(r.namespace.clone(), ok);
                ok
            }
        };
        // A name recorded in two namespaces: this namespace's own wins.
        let own = r.namespace == ns;
        if ok && (own || !out.contains_key(&r.name)) {
            out.insert(r.name.clone(), r);
        }
    }
    Ok(out)
}

/// Every record stored at a location, whatever its namespace.
async fn stored(ctx: &Context, loc: &BackupLocation) -> Result<Vec<PointRecord>> {
    let ns = loc.namespace().unwrap_or_default();
    let Some(key) = &loc.spec.key_secret else { return Ok(Vec::new()) };
    let (secret, rv) = access::passphrase(&ctx.client, &ns, key, "spec.keySecret").await?;
    let repo = access::open_repo(ctx, loc, secret, rv, false).await?;
    let points = crate::mover::inline::run(move || repo.points()).await;
    let points = match points {
        Ok(p) => p,
        Err(e) => {
            access::forget_cached(ctx, loc);
            return Err(Error::repo(format!("list the restore points of BackupLocation {}", loc.name_any()))(e));
        }
    };
    Ok(points.good.iter().filter_map(|(_, s)| PointRecord::from_tags(&s.tags)).collect())
}

/// A RestorePoint status from a record found at `location`.
pub fn status_from(r: &PointRecord, location: &str, now: jiff::Timestamp) -> RestorePointStatus {
    let time = |s: &str| s.parse::<jiff::Timestamp>().ok().map(Time);
    let mut st = RestorePointStatus {
        phase: RunPhase::Completed,
        completion_time: time(&r.completion_time),
        volume_count: Some(r.volumes.len() as i32),
        volumes: r
            .volumes
            .iter()
            .map(|v| VolumeRecord {
                pvc: v.pvc.clone(),
                stateful_set: v.stateful_set.clone(),
                volume_mode: v.volume_mode.clone(),
                capacity_bytes: v.capacity_bytes,
                storage_class_name: v.storage_class_name.clone(),
                snapshot_name: None,
                snapshot_handle: None,
                bytes_done: Some(v.bytes as i64),
                bytes_total: Some(v.bytes as i64),
                bytes_new: Some(v.new_bytes as i64),
                repository_snapshot: Some(v.snapshot.clone()),
                done: true,
            })
            .collect(),
        manifests: r.manifests.iter().filter_map(|m| manifest_record(m)).collect(),
        locations: vec![PointLocation { name: location.into(), present: true, time: None, message: None }],
        protected_bytes: Some(r.protected_bytes as i64),
        new_bytes: Some(r.new_bytes as i64),
        message: Some(format!("found at BackupLocation {location}")),
        ..Default::default()
    };
    conditions::set(&mut st.conditions, READY, true, "Stored", &format!("stored at {location}"), None, now);
    st
}

/// `apps/v1/StatefulSet/db` -> its parts.
pub fn manifest_record(m: &str) -> Option<ManifestRecord> {
    let (rest, name) = m.rsplit_once('/')?;
    let (api_version, kind) = rest.rsplit_once('/')?;
    Some(ManifestRecord { api_version: api_version.into(), kind: kind.into(), name: name.into() })
}

pub async fn sync(ctx: &Context, loc: &BackupLocation) -> Result<()> {
    let ns = loc.namespace().unwrap_or_default();
    let lname = loc.name_any();
    let found = records(ctx, loc).await?;
    let api: Api<RestorePoint> = Api::namespaced(ctx.client.clone(), &ns);
    let have = api.list(&ListParams::default()).await.map_err(Error::kube("list RestorePoints"))?;
    let now = ctx.now();
    let mut created = 0;
    for (name, r) in &found {
        match have.items.iter().find(|p| &p.name_any() == name) {
            None => {
                let mut annotations = json!({ANNOTATION_CATALOG: lname});
                if r.namespace != ns {
                    annotations[ANNOTATION_SOURCE_NAMESPACE] = json!(r.namespace);
                }
                let obj = json!({
                    "apiVersion": "lifeline.io/v1alpha1", "kind": "RestorePoint",
                    "metadata": {"name": name, "namespace": ns, "annotations": annotations,
                                 "labels": crate::k8s::child_labels(&r.policy, name)},
                    "spec": {"policy": r.policy, "trigger": trigger(&r.trigger), "scheduledTime": r.scheduled_time,
                             "requestedBy": r.requested_by},
                });
                apply::apply(&api, super::NAME, &obj)
                    .await
                    .map_err(Error::kube(format!("create RestorePoint {name}")))?;
                apply::apply_status(&api, super::NAME, name, &status_from(r, &lname, now))
                    .await
                    .map_err(Error::kube(format!("record RestorePoint {name}")))?;
                created += 1;
            }
            Some(p) => {
                let present =
                    p.status.as_ref().is_some_and(|s| s.locations.iter().any(|l| l.name == lname && l.present));
                if !present {
                    apply::apply_presence(&api, name, &lname, true, None, None)
                        .await
                        .map_err(Error::kube(format!("record RestorePoint {name} at {lname}")))?;
                }
            }
        }
    }
    // Catalog entries of this location whose data is gone from it (forgotten by retention).
    for p in &have.items {
        let ours = p.annotations().get(ANNOTATION_CATALOG).is_some_and(|l| l == &lname);
        if ours && !found.contains_key(&p.name_any()) {
            apply::delete(&api, &p.name_any()).await.map_err(Error::kube("remove a forgotten RestorePoint"))?;
        }
    }
    if created > 0 {
        let note = format!("{created} restore point(s) found at {} now listed as RestorePoints", loc.spec.url);
        ctx.events.normal(&loc.object_ref(&()), events::CATALOG_SYNCED, "Sync", note).await;
    }
    Ok(())
}

fn trigger(t: &str) -> RunTrigger {
    if t == "Manual" { RunTrigger::Manual } else { RunTrigger::Schedule }
}
