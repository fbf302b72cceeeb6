//! Uploading: per volume, a claim cloned from its snapshot and a mover Job that backs it
//! up into the primary location, within the cluster's cap on concurrent movers; then the
//! record (the manifests, and what the point holds), written last, makes the restore
//! point complete at the location.

use super::machine::{self, JobOutcome};
use super::{Run, fail, names, progressing};
use crate::api::restore_point::{RunPhase, VolumeRecord};
use crate::api::{BackupLocation, BackupPolicy, RestorePointStatus};
use crate::controller::location::access;
use crate::controller::{Error, Result};
use crate::k8s::{COMPONENT_MOVER, LABEL_COMPONENT, LABEL_VOLUME, apply, conditions, events};
use crate::mover::job::{self, Plan, SOURCE_PATH};
use crate::mover::record::{self, PointRecord, RecordVolume};
use crate::telemetry::Metrics;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::time::Duration;

pub async fn step(run: &Run<'_>, st: &mut RestorePointStatus) -> Result<Action> {
    let (policy, r) = super::resolved(run).await?;
    let loc = r.primary;
    let mut blockers = Vec::new();
    for i in 0..st.volumes.len() {
        if st.volumes[i].done {
            continue;
        }
        match volume(run, st, i, &policy, &loc).await? {
            VolumeStep::Done => {}
            VolumeStep::Waiting(why) => blockers.push(why),
            VolumeStep::Failed(msg) => {
                fail(run, st, "JobFailed", &format!("JobFailed: {msg}")).await;
                return Ok(Action::requeue(Duration::ZERO));
            }
        }
    }
    st.progress = machine::progress(st, run.now());
    if !blockers.is_empty() {
        if machine::past_deadline(st, run.now(), run.ctx.config.mover_timeout + run.ctx.config.clone_timeout) {
            fail(run, st, "UploadTimedOut", &format!("the upload did not finish in time: {}", blockers.join("; ")))
                .await;
            return Ok(Action::requeue(Duration::ZERO));
        }
        progressing(run, st, "Uploading", &blockers.join("; "));
        return Ok(Action::requeue(super::POLL));
    }
    complete(run, st, &policy, &loc).await?;
    Ok(Action::requeue(Duration::ZERO))
}

enum VolumeStep {
    Done,
    Waiting(String),
    Failed(String),
}

fn labels(run: &Run<'_>, i: usize) -> std::collections::BTreeMap<String, String> {
    let mut l = crate::k8s::child_labels(&run.point.spec.policy, &run.name);
    l.insert(LABEL_VOLUME.into(), i.to_string());
    l
}

async fn volume(
    run: &Run<'_>,
    st: &mut RestorePointStatus,
    i: usize,
    policy: &BackupPolicy,
    loc: &BackupLocation,
) -> Result<VolumeStep> {
    let client = &run.ctx.client;
    let v = st.volumes[i].clone();
    let Some(snapshot) = v.snapshot_name.clone() else {
        return Ok(VolumeStep::Failed(format!("{}: no snapshot was recorded", v.pvc)));
    };
    // The clone the mover reads; provisioned once the snapshot is ready to use.
    let clone = names::clone(&run.name, i);
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &run.ns);
    let size = v.capacity_bytes.unwrap_or(1 << 30).max(1);
    let mut claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": clone, "namespace": run.ns, "labels": labels(run, i), "ownerReferences": [apply::owner_ref(run.point)]},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": v.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "resources": {"requests": {"storage": size.to_string()}},
            "dataSource": {"apiGroup": crate::k8s::snapshot::GROUP, "kind": "VolumeSnapshot", "name": snapshot},
        },
    });
    if let Some(sc) = &v.storage_class_name {
        claim["spec"]["storageClassName"] = json!(sc);
    }
    apply::apply(&pvcs, super::NAME, &claim).await.map_err(Error::kube(format!("create clone claim {clone}")))?;
    let attempt = st.attempts.unwrap_or(0);
    let job_name = names::job(&run.name, i, attempt);
    let jobs: Api<Job> = Api::namespaced(client.clone(), &run.ns);
    let existing = jobs.get_opt(&job_name).await.map_err(Error::kube(format!("read Job {job_name}")))?;
    let Some(j) = existing else {
        if let Some(wait) = crate::controller::movers::slot(run.ctx).await? {
            return Ok(VolumeStep::Waiting(wait));
        }
        let plan = backup_plan(run, &v, i, &job_name, &clone, policy, loc);
        apply::apply(&jobs, super::NAME, &job::job(&plan))
            .await
            .map_err(Error::kube(format!("create mover Job {job_name}")))?;
        return Ok(VolumeStep::Waiting(format!("{}: mover Job {job_name} started", v.pvc)));
    };
    let pods = crate::controller::movers::pods(run.ctx, &run.ns, &j).await?;
    let message = crate::controller::movers::termination_message_of(&pods);
    match machine::job_outcome(&j, message.as_deref()) {
        JobOutcome::Running => {
            let bound =
                pvcs.get_opt(&clone).await.map_err(Error::kube("read a clone claim"))?.and_then(|c| c.status?.phase)
                    == Some("Bound".into());
            let why = if bound {
                if let Some((done, total)) = crate::controller::movers::progress(run.ctx, &run.ns, &pods).await {
                    let rec = &mut st.volumes[i];
                    rec.bytes_done = Some(done);
                    rec.bytes_total = Some(total.max(done));
                }
                format!("{}: mover Job {job_name} running", v.pvc)
            } else {
                format!("PVCNotBound: clone {clone} of {} not bound yet", v.pvc)
            };
            Ok(VolumeStep::Waiting(why))
        }
        JobOutcome::Succeeded(r) => {
            let Some(f) = r.backup() else {
                return Ok(VolumeStep::Failed(format!("{}: the mover result has no backup figures", v.pvc)));
            };
            let rec = &mut st.volumes[i];
            rec.bytes_total = Some(f.summary.bytes as i64);
            rec.bytes_done = Some(f.summary.bytes as i64);
            rec.bytes_new = Some(f.summary.stored_bytes as i64);
            rec.repository_snapshot = Some(f.id);
            rec.done = true;
            Ok(VolumeStep::Done)
        }
        JobOutcome::Failed { category, message, retryable } => {
            let attempts = st.attempts.unwrap_or(0);
            if retryable && attempts < run.ctx.config.mover_retries {
                st.attempts = Some(attempts + 1);
                run.event(
                    true,
                    events::RUN_FAILED,
                    format!("mover Job {job_name} failed ({category}: {message}); retrying"),
                )
                .await;
                return Ok(VolumeStep::Waiting(format!("{}: retrying after {category}", v.pvc)));
            }
            Ok(VolumeStep::Failed(format!("{}: {category}: {message}", v.pvc)))
        }
    }
}

fn backup_plan(
    run: &Run<'_>,
    v: &VolumeRecord,
    i: usize,
    name: &str,
    clone: &str,
    policy: &BackupPolicy,
    loc: &BackupLocation,
) -> Plan {
    let cfg = &run.ctx.config;
    let block = v.volume_mode.as_deref() == Some("Block");
    let mut args = vec!["backup".to_string(), loc.spec.url.clone(), SOURCE_PATH.to_string()];
    let mut tags = record::base_tags(&run.ns, &run.point.spec.policy, &run.name);
    tags.insert(record::TAG_KIND.into(), record::KIND_VOLUME.into());
    tags.insert(record::TAG_PVC.into(), format!("{}/{}", run.ns, v.pvc));
    for (k, val) in tags {
        args.push("--tag".into());
        args.push(format!("{k}={val}"));
    }
    args.extend([
        "--host".into(),
        format!("{}/{}", run.ns, v.pvc),
        "--parent-tag".into(),
        record::volume_key(&run.ns, &v.pvc),
    ]);
    let (env, env_from) = access::job_env(loc);
    let mut labels = labels(run, i);
    labels.insert(LABEL_COMPONENT.into(), COMPONENT_MOVER.into());
    Plan {
        name: name.into(),
        namespace: run.ns.clone(),
        labels,
        owner: apply::owner_ref(run.point),
        image: cfg.mover_image.clone(),
        command: cfg.mover_command.clone(),
        pod: cfg.mover_pod.clone(),
        args,
        claim: Some((clone.into(), block)),
        writable: false,
        env,
        env_from,
        key: policy.spec.encryption.key_secret.clone(),
        host_paths: access::host_paths(&[loc]),
        deadline_seconds: cfg.mover_timeout.as_secs() as i64,
    }
}

/// Writes the record (unless a previous attempt did), and completes the run.
async fn complete(
    run: &Run<'_>,
    st: &mut RestorePointStatus,
    policy: &BackupPolicy,
    loc: &BackupLocation,
) -> Result<()> {
    let now = run.now();
    let protected: i64 = st.volumes.iter().filter_map(|v| v.bytes_total).sum();
    let new: i64 = st.volumes.iter().filter_map(|v| v.bytes_new).sum();
    let manifests = super::super::policy::capture::manifests(run.ctx, &run.ns, policy).await?;
    let rec = PointRecord {
        name: run.name.clone(),
        namespace: run.ns.clone(),
        policy: run.point.spec.policy.clone(),
        scheduled_time: run.point.spec.scheduled_time.0.to_string(),
        completion_time: now.to_string(),
        trigger: format!("{:?}", run.point.spec.trigger),
        requested_by: run.point.spec.requested_by.clone(),
        volumes: st
            .volumes
            .iter()
            .map(|v| RecordVolume {
                pvc: v.pvc.clone(),
                stateful_set: v.stateful_set.clone(),
                snapshot: v.repository_snapshot.clone().unwrap_or_default(),
                bytes: v.bytes_total.unwrap_or(0) as u64,
                new_bytes: v.bytes_new.unwrap_or(0) as u64,
                volume_mode: v.volume_mode.clone(),
                storage_class_name: v.storage_class_name.clone(),
                capacity_bytes: v.capacity_bytes,
            })
            .collect(),
        manifests: manifests.iter().map(|m| format!("{}/{}/{}", m.0, m.1, m.2)).collect(),
        protected_bytes: protected as u64,
        new_bytes: new as u64,
    };
    super::super::policy::capture::write_record(run.ctx, policy, loc, &rec, &manifests).await?;
    st.completion_time = Some(Time(now));
    st.protected_bytes = Some(protected);
    st.new_bytes = Some(new);
    st.manifests =
        rec.manifests.iter().filter_map(|m| crate::controller::location::catalog::manifest_record(m)).collect();
    // Progress is never removed from the status once there (server-side apply would
    // leave an empty object behind): it ends complete.
    st.progress =
        Some(crate::api::restore_point::Progress { bytes_done: protected, bytes_total: protected, eta: None });
    for l in st.locations.iter_mut().filter(|l| l.name == loc.name_any()) {
        l.present = true;
        l.time = Some(Time(now));
        l.message = None;
    }
    machine::enter(st, RunPhase::Completed, now);
    let generation = run.point.meta().generation;
    let msg = format!("stored at {}", loc.name_any());
    st.message = Some(msg.clone());
    conditions::set(&mut st.conditions, crate::api::common::condition::READY, true, "Stored", &msg, generation, now);
    conditions::set(
        &mut st.conditions,
        crate::api::common::condition::PROGRESSING,
        false,
        "Stored",
        "",
        generation,
        now,
    );
    conditions::set(&mut st.conditions, crate::api::common::condition::DEGRADED, false, "Stored", "", generation, now);
    let labels = Metrics::policy(&run.ns, &run.point.spec.policy);
    if let Some(start) = &st.start_time {
        run.ctx.metrics.backup_duration.get_or_create(&labels).observe(now.duration_since(start.0).as_secs_f64());
    }
    run.event(
        false,
        events::RUN_COMPLETED,
        format!(
            "restore point stored at {}: {} volume(s), {} bytes protected, {} bytes new",
            loc.name_any(),
            st.volumes.len(),
            protected,
            new
        ),
    )
    .await;
    Ok(())
}
