//! Snapshotting: all selected claims as one VolumeGroupSnapshot when a group snapshot
//! class serves their driver, else a VolumeSnapshot per claim, created back to back. The
//! step ends when every snapshot is cut (the point in time is taken), so the post-hooks
//! can release the application before the data is ready or shipped.

use super::{Run, fail, machine, names, progressing};
use crate::api::policy::ConsistencyMode;
use crate::api::restore_point::RunPhase;
use crate::api::{BackupPolicy, RestorePointStatus};
use crate::controller::policy::resolve::Claim;
use crate::controller::{Error, Result};
use crate::k8s::snapshot::{self as snap, LABEL_GROUP};
use crate::k8s::{apply, events, is_not_found};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::time::Duration;

fn dynamic(run: &Run<'_>, ar: &ApiResource) -> Api<DynamicObject> {
    Api::namespaced_with(run.ctx.client.clone(), &run.ns, ar)
}

/// The VolumeGroupSnapshotClass for the claims, if their one driver has one (the default
/// class for the driver first). `None` when the group snapshot API is not served.
pub async fn group_class(run: &Run<'_>, policy: &BackupPolicy, claims: &[Claim]) -> Result<Option<String>> {
    let drivers: std::collections::BTreeSet<_> = claims.iter().map(|c| c.driver.clone()).collect();
    let [Some(driver)] = &drivers.into_iter().collect::<Vec<_>>()[..] else { return Ok(None) };
    let api: Api<DynamicObject> = Api::all_with(run.ctx.client.clone(), &snap::group_snapshot_class());
    let classes = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(Error::kube("list VolumeGroupSnapshotClasses")(e)),
    };
    let mut matching: Vec<_> = classes.iter().filter(|c| snap::driver(c) == Some(driver.as_str())).collect();
    if let Some(named) = &policy.spec.volume_snapshot_class_name
        && let Some(c) = matching.iter().find(|c| &c.name_any() == named)
    {
        return Ok(Some(c.name_any()));
    }
    matching.sort_by_key(|c| !snap::is_default(c, snap::DEFAULT_GROUP_SNAPSHOT_CLASS));
    Ok(matching.first().map(|c| c.name_any()))
}

fn meta(run: &Run<'_>) -> serde_json::Value {
    json!({
        "labels": crate::k8s::child_labels(&run.point.spec.policy, &run.name),
        "ownerReferences": [apply::owner_ref(run.point)],
    })
}

pub async fn step(run: &Run<'_>, st: &mut RestorePointStatus) -> Result<Action> {
    let (policy, r) = super::resolved(run).await?;
    let states = match st.group_snapshot.clone() {
        Some(group) => group_step(run, st, &policy, &r.claims, &group).await?,
        None => single_step(run, st, &policy).await?,
    };
    if let Some(e) = states.iter().find_map(|(n, s)| s.error.as_ref().map(|e| format!("{n}: {e}"))) {
        release_after_failure(run, &policy).await;
        fail(run, st, "SnapshotFailed", &format!("SnapshotFailed: {e}")).await;
        return Ok(Action::requeue(Duration::ZERO));
    }
    let waiting: Vec<&str> = states.iter().filter(|(_, s)| !s.cut).map(|(n, _)| n.as_str()).collect();
    if waiting.is_empty() && st.volumes.iter().all(|v| v.snapshot_name.is_some()) {
        let how = st
            .group_snapshot
            .as_ref()
            .map_or("per-volume VolumeSnapshots".to_string(), |g| format!("VolumeGroupSnapshot {g}"));
        run.event(false, events::SNAPSHOTS_CUT, format!("{} volume(s) snapshotted as {how}", st.volumes.len())).await;
        machine::enter(st, RunPhase::Resuming, run.now());
        progressing(run, st, "Resuming", "snapshots cut; releasing the application");
        return Ok(Action::requeue(Duration::ZERO));
    }
    if machine::past_deadline(st, run.now(), run.ctx.config.snapshot_timeout) {
        release_after_failure(run, &policy).await;
        let which = if waiting.is_empty() { "group members".to_string() } else { waiting.join(", ") };
        let msg = format!(
            "SnapshotNotReady: {which} not cut within {}",
            crate::api::schedule::go_duration(run.ctx.config.snapshot_timeout)
        );
        fail(run, st, "SnapshotNotReady", &msg).await;
        return Ok(Action::requeue(Duration::ZERO));
    }
    progressing(run, st, "SnapshotNotReady", &format!("waiting for snapshots to be cut: {}", waiting.join(", ")));
    Ok(Action::requeue(super::POLL))
}

async fn single_step(
    run: &Run<'_>,
    st: &mut RestorePointStatus,
    policy: &BackupPolicy,
) -> Result<Vec<(String, snap::State)>> {
    let api = dynamic(run, &snap::volume_snapshot());
    let class = policy.spec.volume_snapshot_class_name.as_deref();
    // Created back to back, all before waiting on any.
    for (i, v) in st.volumes.iter().enumerate() {
        let name = names::snapshot(&run.name, i);
        let obj = snap::volume_snapshot_of(&name, &run.ns, &v.pvc, class, meta(run));
        apply::apply(&api, super::NAME, &obj).await.map_err(Error::kube(format!("create VolumeSnapshot {name}")))?;
    }
    let mut out = Vec::new();
    for (i, v) in st.volumes.iter_mut().enumerate() {
        let name = names::snapshot(&run.name, i);
        let s = api.get_opt(&name).await.map_err(Error::kube(format!("read VolumeSnapshot {name}")))?;
        let state = s.as_ref().map(snap::state).unwrap_or_default();
        if state.cut {
            v.snapshot_name = Some(name.clone());
        }
        out.push((name, state));
    }
    Ok(out)
}

async fn group_step(
    run: &Run<'_>,
    st: &mut RestorePointStatus,
    policy: &BackupPolicy,
    claims: &[Claim],
    group: &str,
) -> Result<Vec<(String, snap::State)>> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(run.ctx.client.clone(), &run.ns);
    for v in &st.volumes {
        let patch = json!({"metadata": {"labels": {LABEL_GROUP: crate::k8s::truncate_label(&run.name)}}});
        pvcs.patch(&v.pvc, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(Error::kube(format!("label PersistentVolumeClaim {}", v.pvc)))?;
    }
    let api = dynamic(run, &snap::group_snapshot());
    let class = group_class(run, policy, claims)
        .await?
        .ok_or_else(|| Error::Invalid("the VolumeGroupSnapshotClass of this run's volumes is gone".into()))?;
    let obj = snap::group_snapshot_of(group, &run.ns, &crate::k8s::truncate_label(&run.name), &class, meta(run));
    apply::apply(&api, super::NAME, &obj).await.map_err(Error::kube(format!("create VolumeGroupSnapshot {group}")))?;
    let g = api.get_opt(group).await.map_err(Error::kube(format!("read VolumeGroupSnapshot {group}")))?;
    let state = g.as_ref().map(snap::state).unwrap_or_default();
    if state.cut
        && let Some(g) = &g
    {
        map_members(run, st, g).await?;
    }
    Ok(vec![(group.to_string(), state)])
}

/// Finds which member VolumeSnapshot of the group holds which claim: claim -> its PV's
/// volume handle -> the group content's snapshot handle for it -> the member whose
/// content has that handle.
async fn map_members(run: &Run<'_>, st: &mut RestorePointStatus, g: &DynamicObject) -> Result<()> {
    let client = &run.ctx.client;
    let Some(content_name) = g.data["status"]["boundVolumeGroupSnapshotContentName"].as_str() else { return Ok(()) };
    let gc: Api<DynamicObject> = Api::all_with(client.clone(), &snap::group_snapshot_content());
    let Some(content) = gc.get_opt(content_name).await.map_err(Error::kube("read VolumeGroupSnapshotContent"))? else {
        return Ok(());
    };
    let by_volume: std::collections::HashMap<String, String> = content.data["status"]["volumeSnapshotInfoList"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| Some((i["volumeHandle"].as_str()?.to_string(), i["snapshotHandle"].as_str()?.to_string())))
        .collect();
    let members = dynamic(run, &snap::volume_snapshot())
        .list(&ListParams::default())
        .await
        .map_err(Error::kube("list VolumeSnapshots"))?;
    let contents: Api<DynamicObject> = Api::all_with(client.clone(), &snap::volume_snapshot_content());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &run.ns);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    for v in st.volumes.iter_mut().filter(|v| v.snapshot_name.is_none()) {
        let pv = pvcs.get_opt(&v.pvc).await.map_err(Error::kube("read a claim"))?.and_then(|c| c.spec?.volume_name);
        let Some(pv) = pv else { continue };
        let handle = pvs
            .get_opt(&pv)
            .await
            .map_err(Error::kube("read a volume"))?
            .and_then(|p| p.spec?.csi.map(|c| c.volume_handle));
        let Some(snap_handle) = handle.and_then(|h| by_volume.get(&h).cloned()) else { continue };
        for m in members.items.iter().filter(|m| m.owner_references().iter().any(|o| o.name == g.name_any())) {
            let cname = m.data["status"]["boundVolumeSnapshotContentName"]
                .as_str()
                .or(m.data["spec"]["source"]["volumeSnapshotContentName"].as_str());
            let Some(cname) = cname else { continue };
            let c = contents.get_opt(cname).await.map_err(Error::kube("read a VolumeSnapshotContent"))?;
            let h = c.as_ref().and_then(|c| {
                c.data["status"]["snapshotHandle"]
                    .as_str()
                    .or(c.data["spec"]["source"]["snapshotHandle"].as_str())
                    .map(String::from)
            });
            if h.as_deref() == Some(snap_handle.as_str()) {
                v.snapshot_name = Some(m.name_any());
                v.snapshot_handle = Some(snap_handle.clone());
            }
        }
    }
    Ok(())
}

/// Post-hooks after a failed snapshot step: the application must not stay quiesced.
async fn release_after_failure(run: &Run<'_>, policy: &BackupPolicy) {
    let c = &policy.spec.consistency;
    if c.mode != ConsistencyMode::Application {
        return;
    }
    if let Ok((_, r)) = super::resolved(run).await {
        let out = super::hooks::run(&run.ctx.client, &run.ns, &c.post_hooks, &r.pods).await;
        for w in out.warnings.iter().chain(out.failure.iter()) {
            run.event(true, events::HOOK_FAILED, format!("post-hook failed: {w}")).await;
        }
    }
}

/// Takes the group label off the run's claims (tolerating claims that are gone).
pub async fn release_claims(run: &Run<'_>, st: &RestorePointStatus) -> Result<()> {
    if st.group_snapshot.is_none() {
        return Ok(());
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(run.ctx.client.clone(), &run.ns);
    for v in &st.volumes {
        let patch = json!({"metadata": {"labels": {LABEL_GROUP: null}}});
        match pvcs.patch(&v.pvc, &PatchParams::default(), &Patch::Merge(&patch)).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::kube(format!("unlabel PersistentVolumeClaim {}", v.pvc))(e)),
        }
    }
    Ok(())
}

/// Deletes the run's Jobs, clone claims, snapshots and group snapshot; returns how many
/// were still there.
pub async fn remove_children(run: &Run<'_>, st: &RestorePointStatus) -> Result<usize> {
    let client = &run.ctx.client;
    let lp = ListParams::default().labels(&format!(
        "{}={}",
        crate::api::names::LABEL_RESTORE_POINT,
        crate::k8s::truncate_label(&run.name)
    ));
    let mut left = 0;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &run.ns);
    for j in jobs.list(&lp).await.map_err(Error::kube("list the run's Jobs"))?.items {
        left += 1;
        if j.meta().deletion_timestamp.is_none() {
            apply::delete(&jobs, &j.name_any()).await.map_err(Error::kube("delete a mover Job"))?;
        }
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &run.ns);
    for c in pvcs.list(&lp).await.map_err(Error::kube("list the run's clone claims"))?.items {
        left += 1;
        if c.meta().deletion_timestamp.is_none() {
            apply::delete(&pvcs, &c.name_any()).await.map_err(Error::kube("delete a clone claim"))?;
        }
    }
    release_claims(run, st).await?;
    let groups = dynamic(run, &snap::group_snapshot());
    match groups.list(&lp).await {
        Ok(l) => {
            for g in l.items {
                left += 1;
                if g.metadata.deletion_timestamp.is_none() {
                    apply::delete(&groups, &g.name_any()).await.map_err(Error::kube("delete the group snapshot"))?;
                }
            }
        }
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(Error::kube("list the run's group snapshots")(e)),
    }
    let snaps = dynamic(run, &snap::volume_snapshot());
    let group = st.group_snapshot.clone().unwrap_or_default();
    for s in snaps.list(&ListParams::default()).await.map_err(Error::kube("list VolumeSnapshots"))?.items {
        let ours = s.labels().get(crate::api::names::LABEL_RESTORE_POINT)
            == Some(&crate::k8s::truncate_label(&run.name))
            || (!group.is_empty()
                && s.owner_references().iter().any(|o| o.kind == "VolumeGroupSnapshot" && o.name == group));
        if ours {
            left += 1;
            if s.metadata.deletion_timestamp.is_none() {
                apply::delete(&snaps, &s.name_any()).await.map_err(Error::kube("delete a VolumeSnapshot"))?;
            }
        }
    }
    Ok(left)
}
