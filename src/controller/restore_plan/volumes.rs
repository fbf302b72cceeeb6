//! RestoringVolumes: per volume, the claim is created empty under the name the
//! StatefulSet will look for (`<template>-<statefulset>-<ordinal>`), then a restore Job
//! fills it and reads it back against the restore point (`lifeline mover restore
//! --check`). A volume counts as restored only with a successful, checked result; no
//! workload exists before every volume is.

use super::{Run, enter, fail, manifests};
use crate::api::RestorePlanStatus;
use crate::api::restore_plan::PlanPhase;
use crate::api::restore_point::VolumeRecord;
use crate::api::{BackupLocation, RestorePoint};
use crate::controller::location::access;
use crate::controller::restore_point::machine::{JobOutcome, job_outcome};
use crate::controller::{Error, Result, movers};
use crate::k8s::{COMPONENT_MOVER, LABEL_COMPONENT, LABEL_VOLUME, apply, conditions, events};
use crate::mover::job::{self, Plan, TARGET_PATH};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;

/// The metadata of a claim in the target, if there is one.
pub async fn exists(run: &Run<'_>, pvc: &str) -> Result<Option<ObjectMeta>> {
    let api: Api<PersistentVolumeClaim> = Api::namespaced(run.ctx.client.clone(), &run.target);
    Ok(api.get_opt(pvc).await.map_err(Error::kube(format!("read PersistentVolumeClaim {pvc}")))?.map(|c| c.metadata))
}

/// Removes the run's restore Jobs (at the end of the run).
pub async fn remove_jobs(run: &Run<'_>) -> Result<()> {
    let jobs: Api<Job> = Api::namespaced(run.ctx.client.clone(), &run.target);
    let lp = kube::api::ListParams::default().labels(&format!(
        "{}={},{LABEL_COMPONENT}={COMPONENT_MOVER}",
        crate::api::names::LABEL_PLAN,
        crate::k8s::truncate_label(&run.name)
    ));
    for j in jobs.list(&lp).await.map_err(Error::kube("list restore Jobs"))?.items {
        apply::delete(&jobs, &j.name_any()).await.map_err(Error::kube(format!("remove Job {}", j.name_any())))?;
    }
    Ok(())
}

/// The restore Job of volume `i`, attempt `a`, of this run (and of a warm standby's
/// refresh).
fn job_name(run: &Run<'_>, st: &RestorePlanStatus, i: usize, a: i32) -> String {
    // A new pass over the same volumes (a standby's refresh, a failback's final sync)
    // runs new Jobs.
    let refresh = st.standby.as_ref().map(|s| s.refreshes).unwrap_or(0)
        + st.failback.as_ref().map_or(0, |f| i64::from(f.final_point.is_some()));
    let base = if refresh > 0 {
        format!("{}-r{}-{refresh}", run.name, &run.id[..6])
    } else {
        format!("{}-r{}", run.name, &run.id[..6])
    };
    crate::controller::restore_point::names::job(&base, i, a)
}

pub async fn step(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Action> {
    let now = run.now();
    let g = run.plan.meta().generation;
    let Some(chosen) = st.restored_point.clone() else {
        return Err(Error::Invalid("no restore point was chosen".into()));
    };
    let point = run.point(&chosen.name).await?;
    let loc = run
        .location(&chosen.location)
        .await?
        .ok_or_else(|| Error::Invalid(format!("BackupLocation {} is gone", chosen.location)))?;
    namespace(run).await?;
    // Read once per step, and only when a claim or a Job is still to be made.
    let mut templates: Option<Vec<Value>> = None;
    let mut ids: Option<BTreeMap<String, String>> = None;
    let mut blockers = Vec::new();
    for i in 0..st.volumes.len() {
        if st.volumes[i].done {
            continue;
        }
        let source = st.volumes[i].source.clone().unwrap_or_else(|| st.volumes[i].pvc.clone());
        let Some(rec) = point.status.as_ref().and_then(|s| s.volumes.iter().find(|v| v.pvc == source)).cloned() else {
            fail(run, st, "VolumeMissing", &format!("restore point {} no longer lists volume {source}", chosen.name))
                .await;
            return Ok(Action::requeue(Duration::ZERO));
        };
        // The claim, created once, empty.
        match exists(run, &st.volumes[i].pvc).await? {
            Some(meta) if !run.may_restore_into(&meta) => {
                let msg = format!(
                    "PersistentVolumeClaim {} appeared in namespace {} during the restore: a restore never replaces existing data",
                    st.volumes[i].pvc, run.target
                );
                fail(run, st, "TargetExists", &msg).await;
                return Ok(Action::requeue(Duration::ZERO));
            }
            Some(_) => {}
            None => {
                if templates.is_none() {
                    templates = Some(super::record::manifests(run.ctx, run.plan, &loc, &chosen.name).await?);
                }
                let claim =
                    claim(run, &rec, &st.volumes[i].pvc, templates.as_deref().unwrap_or_default(), &chosen.name);
                let api: Api<PersistentVolumeClaim> = Api::namespaced(run.ctx.client.clone(), &run.target);
                apply::apply(&api, super::NAME, &claim)
                    .await
                    .map_err(Error::kube(format!("create PersistentVolumeClaim {}", st.volumes[i].pvc)))?;
            }
        }
        match volume(run, st, i, &rec, &loc, &point, &mut ids).await? {
            Step::Done => {}
            Step::Waiting(why) => blockers.push(why),
            Step::Failed(msg) => {
                fail(run, st, "RestoreFailed", &msg).await;
                return Ok(Action::requeue(Duration::ZERO));
            }
        }
    }
    if !blockers.is_empty() {
        let msg = blockers.join("; ");
        conditions::set(
            &mut st.conditions,
            crate::api::common::condition::PROGRESSING,
            true,
            "RestoringVolumes",
            &msg,
            g,
            now,
        );
        st.message = Some(msg);
        return Ok(Action::requeue(super::POLL));
    }
    let bytes: i64 = st.volumes.iter().map(|v| v.bytes_done).sum();
    run.event(
        false,
        events::VOLUMES_RESTORED,
        format!(
            "{} volume(s) restored and checked against restore point {}: {bytes} bytes",
            st.volumes.len(),
            chosen.name
        ),
    )
    .await;
    let next = if run.plan.spec.mode == crate::api::restore_plan::RestoreMode::Failback {
        super::failback::after_volumes(st)
    } else {
        PlanPhase::StartingWorkloads
    };
    enter(st, next, now);
    Ok(Action::requeue(Duration::ZERO))
}

/// The target namespace, created when missing (a drill's scratch namespace, or one a
/// grant of the operator covers). It takes the plan namespace's Pod Security labels: a
/// namespace made through Lifeline is held to the same Pod Security level as the team's.
async fn namespace(run: &Run<'_>) -> Result<()> {
    let api: Api<Namespace> = Api::all(run.ctx.client.clone());
    if api.get_opt(&run.target).await.map_err(Error::kube(format!("read Namespace {}", run.target)))?.is_some() {
        return Ok(());
    }
    let mut ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": run.target}});
    let own = api.get_opt(&run.ns).await.map_err(Error::kube(format!("read Namespace {}", run.ns)))?;
    for (k, v) in own.and_then(|n| n.metadata.labels).unwrap_or_default() {
        if k.starts_with("pod-security.kubernetes.io/") {
            ns["metadata"]["labels"][k] = json!(v);
        }
    }
    run.mark(&mut ns, None);
    apply::apply(&api, super::NAME, &ns).await.map_err(Error::kube(format!("create Namespace {}", run.target)))?;
    Ok(())
}

/// The annotation on a Secret copied for the restore Jobs of a run (removed at its end).
pub const ANNOTATION_COPY: &str = "lifeline.io/copied-from";

/// The name of a Secret's copy in the target namespace.
fn copy_name(run: &Run<'_>, name: &str) -> String {
    let n = format!("lifeline-{}-{name}", &run.id[..8]);
    n.chars().take(253).collect()
}

/// Copies what the restore Jobs read (the location's credentials, CA bundle and key)
/// into the target namespace when it is not the plan's, under names of this run; they
/// are removed when the run ends (with a drill's namespace at the latest).
async fn secrets(run: &Run<'_>, loc: &BackupLocation) -> Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    let from: Api<Secret> = Api::namespaced(run.ctx.client.clone(), &run.ns);
    let to: Api<Secret> = Api::namespaced(run.ctx.client.clone(), &run.target);
    for n in secret_names(run, loc).await? {
        let Some(s) = from.get_opt(&n).await.map_err(Error::kube(format!("read Secret {}/{n}", run.ns)))? else {
            return Err(Error::Invalid(format!(
                "Secret {}/{n} (for BackupLocation {}) not found",
                run.ns,
                loc.name_any()
            )));
        };
        let copy_of = copy_name(run, &n);
        let mut copy = json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": copy_of, "namespace": run.target}, "type": s.type_, "data": s.data});
        run.mark(&mut copy, None);
        copy["metadata"]["annotations"][ANNOTATION_COPY] = json!(format!("{}/{n}", run.ns));
        apply::apply(&to, super::NAME, &copy)
            .await
            .map_err(Error::kube(format!("copy Secret {n} into {}", run.target)))?;
    }
    Ok(())
}

/// The Secrets a restore Job of `loc` reads.
async fn secret_names(run: &Run<'_>, loc: &BackupLocation) -> Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    names.extend(loc.spec.credentials_secret.iter().map(|s| s.name.clone()));
    names.extend(loc.spec.tls.as_ref().and_then(|t| t.ca_bundle.as_ref()).map(|s| s.name.clone()));
    names.push(super::record::key(run.ctx, run.plan, loc).await?.name);
    names.sort();
    names.dedup();
    Ok(names)
}

/// Removes the Secrets copied for this run's Jobs.
pub async fn remove_copies(run: &Run<'_>) -> Result<()> {
    use k8s_openapi::api::core::v1::Secret;
    if run.target == run.ns {
        return Ok(());
    }
    let api: Api<Secret> = Api::namespaced(run.ctx.client.clone(), &run.target);
    let lp = kube::api::ListParams::default().labels(&format!(
        "{}={}",
        crate::api::names::LABEL_PLAN,
        crate::k8s::truncate_label(&run.name)
    ));
    for s in api.list_metadata(&lp).await.map_err(Error::kube("list copied Secrets"))?.items {
        let copy = s.metadata.annotations.as_ref().is_some_and(|a| a.contains_key(ANNOTATION_COPY));
        if copy && run.ours(&s.metadata) {
            apply::delete(&api, &s.name_any()).await.map_err(Error::kube("remove a copied Secret"))?;
        }
    }
    Ok(())
}

/// Points a Job's Secret references at the copies in the target namespace.
fn use_copies(run: &Run<'_>, plan: &mut Plan, names: &[String]) {
    let rename = |v: &mut Value| {
        if let Some(n) = v.as_str().filter(|n| names.iter().any(|x| x == n)) {
            *v = json!(copy_name(run, n));
        }
    };
    for e in &mut plan.env_from {
        rename(&mut e["secretRef"]["name"]);
    }
    for e in &mut plan.env {
        if e["valueFrom"]["secretKeyRef"].is_object() {
            rename(&mut e["valueFrom"]["secretKeyRef"]["name"]);
        }
    }
    if names.contains(&plan.key.name) {
        plan.key.name = copy_name(run, &plan.key.name);
    }
}

/// The claim to create for a recorded volume: the StatefulSet's claim template when the
/// volume is one of its claims (mapped like the StatefulSet itself), else what the
/// record says (size, mode, class mapped).
pub fn claim(run: &Run<'_>, rec: &VolumeRecord, pvc: &str, objects: &[Value], point: &str) -> Value {
    let mut claim = claim_object(rec, pvc, objects, &run.mapping());
    run.mark(&mut claim, Some(point));
    claim
}

/// The claim for a recorded volume (pure; see [`claim`]).
pub fn claim_object(rec: &VolumeRecord, pvc: &str, objects: &[Value], mapping: &manifests::Mapping) -> Value {
    let template = rec.stateful_set.as_ref().and_then(|sts| {
        let s = objects
            .iter()
            .find(|o| super::is_kind(o, "apps/v1", "StatefulSet") && o["metadata"]["name"] == sts.as_str())?;
        let s = manifests::prepare(s, mapping);
        let t = s["spec"]["volumeClaimTemplates"].as_array()?.iter().find(|t| {
            let name = t["metadata"]["name"].as_str().unwrap_or_default();
            pvc.strip_prefix(&format!("{name}-{sts}-")).is_some_and(|n| n.parse::<u32>().is_ok())
        })?;
        let mut labels = t["metadata"]["labels"].clone();
        if let Some(sel) = s["spec"]["selector"]["matchLabels"].as_object() {
            for (k, v) in sel {
                labels[k] = v.clone();
            }
        }
        Some((t["spec"].clone(), labels))
    });
    let (mut spec, labels) = template.unwrap_or_else(|| {
        let spec = json!({
            "accessModes": ["ReadWriteOnce"],
            "volumeMode": rec.volume_mode.clone().unwrap_or_else(|| "Filesystem".into()),
            "resources": {"requests": {"storage": rec.capacity_bytes.unwrap_or(1 << 30).max(1).to_string()}},
        });
        (spec, Value::Null)
    });
    // A template without a class got the source cluster's default, which the record names:
    // a mapping of that class applies too.
    if spec["storageClassName"].is_null()
        && let Some(to) = rec.storage_class_name.as_ref().and_then(|c| mapping.storage_classes.get(c))
    {
        spec["storageClassName"] = json!(to);
    } else if spec["storageClassName"].is_null()
        && let Some(c) = &rec.storage_class_name
        && rec.stateful_set.is_none()
    {
        spec["storageClassName"] = json!(c);
    }
    let mut claim = json!({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": pvc, "namespace": mapping.namespace},
        "spec": spec,
    });
    if labels.is_object() {
        claim["metadata"]["labels"] = labels;
    }
    claim
}

enum Step {
    Done,
    Waiting(String),
    Failed(String),
}

#[allow(clippy::too_many_arguments)]
async fn volume(
    run: &Run<'_>,
    st: &mut RestorePlanStatus,
    i: usize,
    rec: &VolumeRecord,
    loc: &BackupLocation,
    point: &RestorePoint,
    ids: &mut Option<BTreeMap<String, String>>,
) -> Result<Step> {
    let pvc = st.volumes[i].pvc.clone();
    let attempt = st.volumes[i].attempts.unwrap_or(0);
    let name = job_name(run, st, i, attempt);
    let jobs: Api<Job> = Api::namespaced(run.ctx.client.clone(), &run.target);
    let Some(j) = jobs.get_opt(&name).await.map_err(Error::kube(format!("read Job {name}")))? else {
        if let Some(wait) = movers::slot(run.ctx).await? {
            return Ok(Step::Waiting(wait));
        }
        if run.target != run.ns {
            secrets(run, loc).await?;
        }
        if ids.is_none() {
            *ids = Some(super::record::volumes(run.ctx, run.plan, loc, &point.name_any()).await?);
        }
        let snapshot = ids.as_ref().and_then(|ids| ids.get(&rec.pvc)).cloned().ok_or_else(|| {
            Error::Invalid(format!(
                "restore point {}: BackupLocation {} holds no data of volume {}",
                point.name_any(),
                loc.name_any(),
                rec.pvc
            ))
        })?;
        let plan = restore_plan(run, i, &name, &pvc, rec, snapshot, loc).await?;
        apply::apply(&jobs, super::NAME, &job::job(&plan))
            .await
            .map_err(Error::kube(format!("create restore Job {name}")))?;
        return Ok(Step::Waiting(format!("{pvc}: restore Job {name} started")));
    };
    let pods = movers::pods(run.ctx, &run.target, &j).await?;
    let message = movers::termination_message_of(&pods);
    match job_outcome(&j, message.as_deref()) {
        JobOutcome::Running => {
            if let Some((done, total)) = movers::progress(run.ctx, &run.target, &pods).await {
                let v = &mut st.volumes[i];
                v.bytes_done = done;
                v.bytes_total = total.max(done);
            }
            Ok(Step::Waiting(format!("{pvc}: restore Job {name} running")))
        }
        JobOutcome::Succeeded(r) => {
            let res = r.result.unwrap_or_default();
            let check = &res["check"];
            if !check.is_object() {
                return Ok(Step::Failed(format!("{pvc}: the restore Job reported no check of what it wrote")));
            }
            let v = &mut st.volumes[i];
            v.bytes_done = check["bytes"].as_i64().unwrap_or(0);
            v.bytes_total = v.bytes_done;
            v.files = check["files"].as_i64();
            v.digest = check["digest"].as_str().map(String::from);
            v.written = res["summary"]["bytesWritten"].as_i64();
            v.done = true;
            let note = format!(
                "{pvc} restored from {} and checked: {} files, {} bytes ({} written), digest {}",
                point.name_any(),
                v.files.unwrap_or(0),
                v.bytes_done,
                v.written.unwrap_or(v.bytes_done),
                v.digest.as_deref().map(|d| &d[..16.min(d.len())]).unwrap_or("?")
            );
            run.event(false, events::VOLUME_RESTORED, note).await;
            // The Job stays until the run ends: a reconcile from a cache that has not seen
            // this status yet finds it finished instead of starting it again.
            Ok(Step::Done)
        }
        JobOutcome::Failed { category, message, retryable } => {
            if retryable && attempt < run.ctx.config.mover_retries {
                st.volumes[i].attempts = Some(attempt + 1);
                run.event(
                    true,
                    events::RESTORE_FAILED,
                    format!("restore Job {name} failed ({category}: {message}); retrying"),
                )
                .await;
                return Ok(Step::Waiting(format!("{pvc}: retrying after {category}")));
            }
            Ok(Step::Failed(format!("volume {pvc}: {category}: {message}")))
        }
    }
}

async fn restore_plan(
    run: &Run<'_>,
    i: usize,
    name: &str,
    pvc: &str,
    rec: &VolumeRecord,
    snapshot: String,
    loc: &BackupLocation,
) -> Result<Plan> {
    let cfg = &run.ctx.config;
    // The claim is this run's own (checked before): a retried or replayed Job may find
    // what an earlier attempt wrote, and a warm standby's refresh what the last refresh
    // wrote; in place, only what differs from the point is written (and what the point
    // does not have is deleted).
    let mut args = vec![
        "restore".to_string(),
        loc.spec.url.clone(),
        snapshot,
        TARGET_PATH.to_string(),
        "--check".into(),
        "--in-place".into(),
    ];
    for p in &run.plan.spec.paths {
        args.push("--include".into());
        args.push(p.clone());
    }
    let key = super::record::key(run.ctx, run.plan, loc).await?;
    let (env, env_from) = access::job_env(loc);
    let mut labels = run.labels();
    labels.insert(LABEL_COMPONENT.into(), COMPONENT_MOVER.into());
    labels.insert(LABEL_VOLUME.into(), i.to_string());
    let mut plan = Plan {
        name: name.into(),
        namespace: run.target.clone(),
        labels,
        owner: if run.target == run.ns { apply::owner_ref(run.plan) } else { Value::Null },
        image: cfg.mover_image.clone(),
        command: cfg.mover_command.clone(),
        pod: cfg.mover_pod.clone(),
        args,
        claim: Some((pvc.into(), rec.volume_mode.as_deref() == Some("Block"))),
        writable: true,
        env,
        env_from,
        key,
        host_paths: access::host_paths(&[loc]),
        deadline_seconds: cfg.mover_timeout.as_secs() as i64,
    };
    if run.target != run.ns {
        let names = secret_names(run, loc).await?;
        use_copies(run, &mut plan, &names);
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "db", "namespace": "shop", "uid": "u1"},
            "spec": {
                "selector": {"matchLabels": {"app": "db"}},
                "volumeClaimTemplates": [
                    {"metadata": {"name": "data", "labels": {"tier": "storage"}},
                     "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast-eu",
                              "resources": {"requests": {"storage": "5Gi"}}}},
                    {"metadata": {"name": "wal"},
                     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
                ],
            },
        })
    }

    fn mapping() -> manifests::Mapping {
        manifests::Mapping {
            namespace: "shop".into(),
            storage_classes: [
                ("fast-eu".to_string(), "fast-us".to_string()),
                ("std-eu".to_string(), "std-us".to_string()),
            ]
            .into(),
        }
    }

    fn rec(pvc: &str, sts: Option<&str>, class: Option<&str>) -> VolumeRecord {
        VolumeRecord {
            pvc: pvc.into(),
            stateful_set: sts.map(String::from),
            volume_mode: Some("Filesystem".into()),
            capacity_bytes: Some(2 << 30),
            storage_class_name: class.map(String::from),
            done: true,
            ..Default::default()
        }
    }

    #[test]
    fn a_statefulset_claim_comes_from_its_template_mapped_with_the_selector_labels() {
        let c = claim_object(&rec("data-db-2", Some("db"), Some("fast-eu")), "data-db-2", &[sts()], &mapping());
        assert_eq!(c["metadata"]["name"], "data-db-2");
        assert_eq!(c["spec"]["storageClassName"], "fast-us");
        assert_eq!(c["spec"]["resources"]["requests"]["storage"], "5Gi");
        assert_eq!(c["metadata"]["labels"], json!({"tier": "storage", "app": "db"}));
        assert!(c["metadata"]["ownerReferences"].is_null() && c["metadata"]["uid"].is_null());
        // The template without a class: the recorded (default) class, mapped.
        let c = claim_object(&rec("wal-db-0", Some("db"), Some("std-eu")), "wal-db-0", &[sts()], &mapping());
        assert_eq!(c["spec"]["storageClassName"], "std-us");
        // Unmapped default class: left to the target's default.
        let c = claim_object(&rec("wal-db-0", Some("db"), Some("standard")), "wal-db-0", &[sts()], &mapping());
        assert!(c["spec"]["storageClassName"].is_null(), "{c}");
    }

    #[test]
    fn a_claim_without_a_template_is_built_from_the_record() {
        // Not a claim of the StatefulSet's templates ("data-db-x" is no ordinal), or none.
        for (pvc, sts_name) in [("data-db-x", Some("db")), ("uploads", None)] {
            let c = claim_object(&rec(pvc, sts_name, Some("fast-eu")), pvc, &[sts()], &mapping());
            assert_eq!(c["spec"]["storageClassName"], "fast-us", "{pvc}");
            assert_eq!(c["spec"]["resources"]["requests"]["storage"], (2u64 << 30).to_string());
            assert_eq!(c["spec"]["volumeMode"], "Filesystem");
        }
        let c = claim_object(&rec("uploads", None, Some("other")), "uploads", &[], &mapping());
        assert_eq!(c["spec"]["storageClassName"], "other");
    }
}
