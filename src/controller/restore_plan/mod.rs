//! The RestorePlan controller: a recovery as a state machine kept in the plan's status.
//!
//! Pending -> Resolving (choose the restore point and location, read the captured
//! manifests, refuse to restore over anything that exists) -> RestoringVolumes (each
//! claim created empty, then filled and checked by a restore Job, before any workload
//! exists) -> StartingWorkloads (Secrets, ConfigMaps and Services that are missing, then
//! the StatefulSets group by group, each group ready before the next) -> Completed, with
//! the RPO and the RTO; or Failed, naming why. Each step is an Event: the audit trail.
//!
//! A plan runs once per `metadata.generation` and `trigger.runToken`: applying the same
//! plan again (a GitOps re-sync) restores nothing twice. A `WarmStandby` runs once per
//! `trigger.runToken`: its spec changes (promotion among them) apply to the running
//! standby. Restored claims and workloads
//! carry no owner reference: deleting the plan leaves them.
//!
//! A `Failover` fences the old primary first (see [`fencing`]): Resolving -> Fencing ->
//! RestoringVolumes -> …
//!
//! Post-restore hooks run after StartingWorkloads (Verifying); a `Drill` works in a
//! scratch namespace it creates and deletes (CleaningUp), see [`checks`].
//!
//! A `WarmStandby` keeps its volumes at the newest point and its workloads at zero until
//! promoted (see [`standby`]); a `Failback` hands a workload back to its original site
//! (see [`failback`]); trigger `HeartbeatLoss` starts a failover when the primary's
//! heartbeat stops at every source location (see [`heartbeat`]). Readiness commands are
//! refused with a `NotSupported` condition rather than half-done.

pub mod checks;
pub mod failback;
pub mod fencing;
pub mod heartbeat;
pub mod manifests;
pub mod record;
pub mod select;
pub mod standby;
pub mod volumes;
pub mod workloads;

use crate::api::common::condition::{DEGRADED, PROGRESSING, READY};
use crate::api::names::{LABEL_MANAGED_BY, LABEL_PLAN, MANAGED_BY_VALUE};
use crate::api::restore_plan::{
    PlanPhase, RestoreMode, RestoredPoint, Rto, TriggerType, VolumeProgress, WorkloadProgress,
};
use crate::api::restore_point::RunPhase;
use crate::api::{BackupLocation, RestorePlan, RestorePlanStatus, RestorePoint};
use crate::controller::{Context, Error, Result};
use crate::k8s::{apply, conditions, events};
use crate::telemetry::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "restore-plan";

/// How soon to look again while waiting on Jobs and workloads.
const POLL: Duration = Duration::from_secs(2);

/// The annotation on restored objects naming the run that created them.
pub const ANNOTATION_RUN: &str = "lifeline.io/restore-run";
/// The annotation on restored objects naming the plan (`namespace/name`) whose run made
/// them: a change of a restored StatefulSet wakes its plan at once.
pub const ANNOTATION_PLAN: &str = "lifeline.io/restore-plan";
/// The annotation on restored objects naming the restore point they came from.
pub const ANNOTATION_FROM: &str = "lifeline.io/restored-from";

/// What a step needs about the plan's run.
pub struct Run<'a> {
    pub ctx: &'a Context,
    pub plan: &'a RestorePlan,
    pub ns: String,
    pub name: String,
    /// Where objects are restored to.
    pub target: String,
    /// Identifies this run of this plan on the objects it creates.
    pub id: String,
}

impl Run<'_> {
    pub fn now(&self) -> jiff::Timestamp {
        self.ctx.now()
    }

    pub async fn event(&self, warning: bool, reason: &str, note: String) {
        let r = self.plan.object_ref(&());
        if warning {
            self.ctx.events.warning(&r, reason, "Restore", note).await
        } else {
            self.ctx.events.normal(&r, reason, "Restore", note).await
        }
    }

    /// The namespace and StorageClass mapping of the plan.
    pub fn mapping(&self) -> manifests::Mapping {
        manifests::Mapping {
            namespace: self.target.clone(),
            storage_classes: self
                .plan
                .spec
                .target
                .storage_class_mapping
                .iter()
                .map(|m| (m.from.clone(), m.to.clone()))
                .collect(),
        }
    }

    /// Labels of everything the run creates.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_MANAGED_BY.to_string(), MANAGED_BY_VALUE.to_string()),
            (LABEL_PLAN.to_string(), crate::k8s::truncate_label(&self.name)),
        ])
    }

    /// Whether an object in the target was created by this run.
    pub fn ours(&self, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
        meta.annotations.as_ref().and_then(|a| a.get(ANNOTATION_RUN)) == Some(&self.id)
    }

    /// Whether this run may restore into (and scale) an existing claim or StatefulSet:
    /// one it made itself, or, for a failback, the site's own (it brings them back).
    pub fn may_restore_into(&self, meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
        self.ours(meta) || self.plan.spec.mode == RestoreMode::Failback
    }

    /// Marks an object (JSON) as made by this run, and restored from `point` if it was.
    pub fn mark(&self, obj: &mut Value, point: Option<&str>) {
        let meta = &mut obj["metadata"];
        for (k, v) in self.labels() {
            meta["labels"][k] = Value::String(v);
        }
        meta["annotations"][ANNOTATION_RUN] = Value::String(self.id.clone());
        meta["annotations"][ANNOTATION_PLAN] = Value::String(format!("{}/{}", self.ns, self.name));
        if let Some(p) = point {
            meta["annotations"][ANNOTATION_FROM] = Value::String(p.to_string());
        }
    }

    pub async fn location(&self, name: &str) -> Result<Option<BackupLocation>> {
        let api: Api<BackupLocation> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        api.get_opt(name).await.map_err(Error::kube(format!("read BackupLocation {name}")))
    }

    pub async fn point(&self, name: &str) -> Result<RestorePoint> {
        let api: Api<RestorePoint> = Api::namespaced(self.ctx.client.clone(), &self.ns);
        api.get_opt(name)
            .await
            .map_err(Error::kube(format!("read RestorePoint {name}")))?
            .ok_or_else(|| Error::Invalid(format!("restore point {name} is gone (its data was deleted)")))
    }
}

/// The identity of a run: the plan's uid, the generation and the run token.
fn run_id(plan: &RestorePlan, generation: Option<i64>, token: Option<&str>) -> String {
    let s = format!("{}/{}/{}", plan.uid().unwrap_or_default(), generation.unwrap_or(0), token.unwrap_or_default());
    blake3::hash(s.as_bytes()).to_hex()[..16].to_string()
}

pub async fn reconcile(plan: Arc<RestorePlan>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.get_or_create(&Metrics::controller(NAME)).inc();
    if plan.meta().deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    // The newest object, not the cache's: a reconcile that ran before the cache saw this
    // controller's last status write would otherwise repeat a finished step.
    let api: Api<RestorePlan> = Api::namespaced(ctx.client.clone(), &plan.namespace().unwrap_or_default());
    let Some(plan) = api.get_opt(&plan.name_any()).await.map_err(Error::kube("read the RestorePlan"))? else {
        return Ok(Action::await_change());
    };
    let plan = Arc::new(plan);
    let mut old = plan.status.clone().unwrap_or_default();
    let g = plan.meta().generation;
    let token = plan.spec.trigger.run_token.clone();
    let mut st = old.clone();
    let busy = !matches!(old.phase, PlanPhase::Pending | PlanPhase::Completed | PlanPhase::Failed);
    // A warm standby's spec changes apply to the standby as it runs (promotion is one):
    // only a new run token starts it again.
    let warm = plan.spec.mode == RestoreMode::WarmStandby;
    let new_generation = old.observed_generation != g && (!warm || old.observed_generation.is_none());
    if warm && !new_generation && old.run_token == token {
        st.observed_generation = g;
    }
    if (new_generation || old.run_token != token) && !busy {
        // A new run: a new generation or token (never a re-apply of the same spec). What
        // the last run recorded is removed first: an apply that leaves a field out would
        // leave an empty object behind where the schema requires its fields.
        if old != RestorePlanStatus::default() {
            let clear = serde_json::json!({"status": {
                "restoredPoint": null, "volumes": null, "workloads": null, "rpo": null, "rto": null,
                "startTime": null, "stepStartTime": null, "completionTime": null, "message": null, "fencing": null,
            }});
            let pp = kube::api::PatchParams::apply(&apply::manager(NAME));
            let pp = kube::api::PatchParams { force: false, ..pp };
            api.patch_status(&plan.name_any(), &pp, &kube::api::Patch::Merge(&clear))
                .await
                .map_err(Error::kube("clear the status of the last run"))?;
            old = RestorePlanStatus { conditions: old.conditions.clone(), ..Default::default() };
            ctx.metrics.status_writes.get_or_create(&Metrics::controller(NAME)).inc();
        }
        st = RestorePlanStatus {
            observed_generation: g,
            run_token: token,
            conditions: old.conditions.clone(),
            ..Default::default()
        };
    }
    let ns = plan.namespace().unwrap_or_default();
    let run = Run {
        ctx: &ctx,
        plan: &plan,
        target: plan.spec.target.namespace.clone().unwrap_or_else(|| {
            if plan.spec.mode == RestoreMode::Drill {
                crate::controller::restore_point::names::scratch_namespace(&ns)
            } else {
                ns.clone()
            }
        }),
        ns,
        name: plan.name_any(),
        id: run_id(&plan, if warm { None } else { st.observed_generation }, st.run_token.as_deref()),
    };
    if matches!(st.phase, PlanPhase::Completed | PlanPhase::Failed) {
        write(&run, &old, &st).await?;
        return Ok(Action::await_change());
    }
    if let Some(why) = unsupported(&plan) {
        let now = run.now();
        let msg = format!("{why}; this version of Lifeline does not run it yet");
        if conditions::get(&old.conditions, DEGRADED).map(|c| c.message.as_str()) != Some(msg.as_str()) {
            run.event(true, events::INVALID_SPEC, msg.clone()).await;
        }
        st.message = Some(msg.clone());
        conditions::set(&mut st.conditions, DEGRADED, true, "NotSupported", &msg, g, now);
        conditions::set(&mut st.conditions, READY, false, "NotSupported", &msg, g, now);
        write(&run, &old, &st).await?;
        return Ok(Action::await_change());
    }
    // A step that moves on at once is followed by the next one in this reconcile (its
    // status written first, so a crash between them resumes from it), not after another
    // round trip through the queue: a warm standby's promotion is a few quick steps, and
    // each round trip costs most under load.
    let mut steps = 0;
    loop {
        // Before every step: a grant withdrawn stops a running standby's next refresh too.
        if let Some(msg) = boundary(&run).await? {
            not_permitted(&run, &mut st, &msg).await;
            write(&run, &old, &st).await?;
            return Ok(Action::await_change());
        }
        let (began, was) = (std::time::Instant::now(), st.phase);
        let action = match step(&run, &mut st).await {
            Ok(a) => a,
            Err(Error::NotPermitted(msg)) => {
                not_permitted(&run, &mut st, &msg).await;
                Action::requeue(Duration::ZERO)
            }
            Err(Error::Invalid(msg)) => {
                fail(&run, &mut st, "InvalidSpec", &msg).await;
                Action::requeue(Duration::ZERO)
            }
            // Damaged or unreadable data (a wrong key, a corrupted record) does not heal by
            // waiting: the plan fails and says what.
            Err(Error::Repo { action, source }) if !source.retryable() => {
                let msg = format!("failed to {action}: {source} ({})", source.hint());
                fail(&run, &mut st, source.category(), &msg).await;
                Action::requeue(Duration::ZERO)
            }
            Err(e) => {
                conditions::set(&mut st.conditions, PROGRESSING, true, e.category(), &e.to_string(), g, run.now());
                write(&run, &old, &st).await?;
                return Err(e);
            }
        };
        let took = began.elapsed();
        write(&run, &old, &st).await?;
        tracing::debug!(plan = %run.name, namespace = %run.ns, from = ?was, to = ?st.phase, step = ?took, with_status_write = ?began.elapsed(), "step");
        steps += 1;
        let terminal = matches!(st.phase, PlanPhase::Completed | PlanPhase::Failed);
        if action != Action::requeue(Duration::ZERO) || terminal || steps >= STEPS_AT_ONCE {
            return Ok(action);
        }
        old = st.clone();
    }
}

/// Steps one reconcile runs at most while each moves on at once.
const STEPS_AT_ONCE: usize = 8;

/// The plan's first field that would cross a namespace boundary without a grant, and
/// why (see [`crate::controller::grants`]): reading the restore points of another
/// namespace (`spec.source.namespace`), or restoring into another namespace
/// (`spec.target.namespace`: both the plan's namespace and the source's must be granted
/// there). A drill's scratch namespace is its own (created by it, or refused in
/// [`resolve`]); its source still needs the grant.
async fn boundary(run: &Run<'_>) -> Result<Option<String>> {
    use crate::controller::grants::refusal;
    let spec = &run.plan.spec;
    let source = run.plan.source_namespace();
    if let Some(why) = refusal(run.ctx, &run.ns, &source).await? {
        return Ok(Some(format!(
            "spec.source.namespace: RestorePlans of namespace {} may not restore the restore points of namespace {source}: {why}",
            run.ns
        )));
    }
    if spec.mode == RestoreMode::Drill {
        return Ok(None);
    }
    let mut from = vec![run.ns.clone()];
    if source != run.ns {
        from.push(source);
    }
    for f in from {
        if let Some(why) = refusal(run.ctx, &run.target, &f).await? {
            let whose = if f == run.ns { "RestorePlans" } else { "restore points" };
            return Ok(Some(format!(
                "spec.target.namespace: {whose} of namespace {f} may not restore into namespace {}: {why}",
                run.target
            )));
        }
    }
    Ok(None)
}

/// Refuses a plan that would cross a namespace boundary: Failed, `Degraded` with reason
/// `NotPermitted`, and a warning Event naming the field and the missing grant. Unlike
/// [`fail`], it touches nothing: no clean-up lists or deletes anything in the namespace
/// that was not granted.
async fn not_permitted(run: &Run<'_>, st: &mut RestorePlanStatus, msg: &str) {
    let now = run.now();
    let g = run.plan.meta().generation;
    enter(st, PlanPhase::Failed, now);
    st.completion_time = Some(Time(now));
    st.message = Some(msg.to_string());
    conditions::set(&mut st.conditions, READY, false, events::NOT_PERMITTED, msg, g, now);
    conditions::set(&mut st.conditions, DEGRADED, true, events::NOT_PERMITTED, msg, g, now);
    conditions::set(&mut st.conditions, PROGRESSING, false, events::NOT_PERMITTED, "", g, now);
    run.event(true, events::NOT_PERMITTED, msg.to_string()).await;
}

/// Why the plan asks for something this version does not do, if it does.
fn unsupported(plan: &RestorePlan) -> Option<String> {
    if plan.spec.workloads.iter().any(|w| w.readiness.check.is_some()) {
        return Some("spec.workloads[].readiness.check: readiness commands are not supported yet".into());
    }
    None
}

async fn write(run: &Run<'_>, old: &RestorePlanStatus, st: &RestorePlanStatus) -> Result<()> {
    if old == st {
        return Ok(());
    }
    let api: Api<RestorePlan> = Api::namespaced(run.ctx.client.clone(), &run.ns);
    apply::apply_status(&api, NAME, &run.name, st)
        .await
        .map_err(Error::kube(format!("update the status of RestorePlan {}", run.name)))?;
    run.ctx.metrics.status_writes.get_or_create(&Metrics::controller(NAME)).inc();
    Ok(())
}

/// Moves to a phase, restarting the step clock.
pub fn enter(st: &mut RestorePlanStatus, p: PlanPhase, now: jiff::Timestamp) {
    if st.phase != p {
        st.phase = p;
        st.step_start_time = Some(Time(now));
    }
}

async fn step(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Action> {
    match st.phase {
        PlanPhase::Pending => {
            let mut cause = "manual trigger".to_string();
            if run.plan.spec.trigger.type_ == TriggerType::HeartbeatLoss && run.plan.spec.mode == RestoreMode::Failover
            {
                match heartbeat::watch(run, st).await? {
                    heartbeat::Verdict::Lost(why) => cause = why,
                    heartbeat::Verdict::Alive(msg) | heartbeat::Verdict::Deciding(msg) => {
                        let (now, g) = (run.now(), run.plan.meta().generation);
                        let msg = format!("armed: {msg}");
                        conditions::set(&mut st.conditions, READY, true, "Armed", &msg, g, now);
                        conditions::set(&mut st.conditions, PROGRESSING, false, "Armed", "", g, now);
                        conditions::set(&mut st.conditions, DEGRADED, false, "Armed", "", g, now);
                        st.message = Some(msg);
                        return Ok(Action::requeue(heartbeat::poll(run)));
                    }
                }
            }
            let now = run.now();
            st.start_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(now));
            enter(st, PlanPhase::Resolving, now);
            let detected =
                run.plan.spec.trigger.detected_at.as_ref().map(|t| format!(", disaster detected at {}", t.0));
            run.event(
                false,
                events::RESTORE_STARTED,
                format!(
                    "restore into namespace {} started (mode {:?}, {cause}{})",
                    run.target,
                    run.plan.spec.mode,
                    detected.unwrap_or_default()
                ),
            )
            .await;
            Ok(Action::requeue(Duration::ZERO))
        }
        PlanPhase::Resolving => resolve(run, st).await,
        PlanPhase::Fencing if run.plan.spec.mode == RestoreMode::Failback => failback::step(run, st).await,
        PlanPhase::Fencing => fencing::step(run, st).await,
        PlanPhase::RestoringVolumes => volumes::step(run, st).await,
        PlanPhase::StartingWorkloads => workloads::step(run, st).await,
        PlanPhase::Verifying => checks::step(run, st).await,
        PlanPhase::CleaningUp => checks::clean_up(run, st).await,
        PlanPhase::Standby => standby::step(run, st).await,
        _ => Ok(Action::await_change()),
    }
}

/// Chooses the point and location, reads what the point holds, checks the plan against
/// it and the target against the plan; nothing is created before all of that holds.
async fn resolve(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Action> {
    let now = run.now();
    let g = run.plan.meta().generation;
    let spec = &run.plan.spec;
    if spec.mode == RestoreMode::Drill {
        // A drill works in a scratch namespace of its own: created by it, deleted after.
        if run.target == run.ns {
            return Err(Error::Invalid(format!(
                "spec.target.namespace: a drill restores into a scratch namespace, not into {} itself",
                run.ns
            )));
        }
        let nss: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(run.ctx.client.clone());
        if let Some(existing) =
            nss.get_opt(&run.target).await.map_err(Error::kube(format!("read Namespace {}", run.target)))?
            && !run.ours(&existing.metadata)
        {
            let msg = format!(
                "spec.target.namespace: namespace {} exists and was not created by this drill: a drill only uses a scratch namespace it creates, and deletes it afterwards; name another one",
                run.target
            );
            not_permitted(run, st, &msg).await;
            return Ok(Action::requeue(Duration::ZERO));
        }
    }
    let choice = match choose(run, &spec.point_in_time).await? {
        Chosen::Point(c) => c,
        Chosen::NotChecked(msg) => {
            conditions::set(&mut st.conditions, PROGRESSING, true, "Resolving", &msg, g, now);
            st.message = Some(msg);
            return Ok(Action::requeue(POLL));
        }
        Chosen::None(why) => {
            // Catalog sync may not have brought the points yet, or a region may return.
            let (reason, msg) = if promotion_due(run, st) {
                ("PromotionRefused", format!("refusing to fail over: no restore point to promote ({why})"))
            } else {
                ("NoRestorePoint", format!("waiting for a restore point: {why}"))
            };
            if st.message.as_deref() != Some(msg.as_str()) {
                run.event(true, events::RESTORE_WAITING, msg.clone()).await;
            }
            conditions::set(&mut st.conditions, PROGRESSING, true, reason, &msg, g, now);
            conditions::set(&mut st.conditions, READY, false, reason, &msg, g, now);
            st.message = Some(msg);
            return Ok(Action::requeue(Duration::from_secs(5)));
        }
    };
    if spec.mode == RestoreMode::Failover
        && let Some(msg) = too_old(run, &choice)
    {
        refuse(run, st, &msg).await;
        return Ok(Action::requeue(Duration::from_secs(5)));
    }
    let point = run.point(&choice.point).await?;
    let loc = run
        .location(&choice.location)
        .await?
        .ok_or_else(|| Error::Invalid(format!("BackupLocation {} is gone", choice.location)))?;
    let objects = record::manifests(run.ctx, run.plan, &loc, &choice.point).await?;
    let pst = point.status.clone().unwrap_or_default();

    // The workloads: as the plan lists them, or every StatefulSet the point holds.
    let recorded: Vec<&Value> = objects.iter().filter(|o| is_kind(o, "apps/v1", "StatefulSet")).collect();
    let names = |v: &[&Value]| v.iter().filter_map(|o| o["metadata"]["name"].as_str()).collect::<Vec<_>>().join(", ");
    let mut workloads: Vec<(i32, WorkloadProgress)> = Vec::new();
    if spec.workloads.is_empty() {
        for s in &recorded {
            let name = s["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let replicas = s["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
            workloads.push((0, WorkloadProgress { name, replicas, ready_replicas: 0, ready: false }));
        }
    } else {
        for (i, w) in spec.workloads.iter().enumerate() {
            let Some(s) = recorded.iter().find(|s| s["metadata"]["name"] == w.name.as_str()) else {
                return Err(Error::Invalid(format!(
                    "spec.workloads[{i}].name: restore point {} holds no StatefulSet {} (it holds: {})",
                    choice.point,
                    w.name,
                    if recorded.is_empty() { "none".to_string() } else { names(&recorded) }
                )));
            };
            let replicas = w.replicas.unwrap_or_else(|| s["spec"]["replicas"].as_i64().unwrap_or(1) as i32);
            workloads.push((
                w.start_order,
                WorkloadProgress { name: w.name.clone(), replicas, ready_replicas: 0, ready: false },
            ));
        }
    }
    workloads.sort_by_key(|(order, w)| (*order, w.name.clone()));

    // The volumes: as the plan lists them, else those of the chosen workloads (all of the
    // point's volumes when the plan names no workloads).
    let mut vols = Vec::new();
    for (i, want) in spec.volumes.iter().enumerate() {
        if !pst.volumes.iter().any(|v| &v.pvc == want) {
            let have: Vec<&str> = pst.volumes.iter().map(|v| v.pvc.as_str()).collect();
            return Err(Error::Invalid(format!(
                "spec.volumes[{i}]: restore point {} holds no volume {want} (it holds: {})",
                choice.point,
                have.join(", ")
            )));
        }
    }
    for v in &pst.volumes {
        let chosen = if !spec.volumes.is_empty() {
            spec.volumes.contains(&v.pvc)
        } else if !spec.workloads.is_empty() {
            v.stateful_set.as_ref().is_some_and(|s| workloads.iter().any(|(_, w)| &w.name == s))
        } else {
            true
        };
        if !chosen {
            continue;
        }
        if v.repository_snapshot.is_none() {
            return Err(Error::Invalid(format!("restore point {}: volume {} has no stored data", choice.point, v.pvc)));
        }
        vols.push(VolumeProgress {
            pvc: v.pvc.clone(),
            bytes_done: 0,
            bytes_total: v.bytes_total.unwrap_or(0),
            done: false,
            source: Some(v.pvc.clone()),
            files: None,
            digest: None,
            attempts: None,
            written: None,
        });
    }

    // A failback writes into this site's own volumes, its workload stood down.
    if spec.mode == RestoreMode::Failback {
        let names: Vec<String> = workloads.iter().map(|(_, w)| w.name.clone()).collect();
        if let Some(msg) = failback::check(run, &names).await? {
            fail(run, st, "WorkloadRunning", &msg).await;
            return Ok(Action::requeue(Duration::ZERO));
        }
    }
    // Nothing is restored over what exists: claims and workloads of the same names.
    let mut existing = Vec::new();
    for v in &vols {
        if volumes::exists(run, &v.pvc).await?.is_some_and(|m| !run.may_restore_into(&m)) {
            existing.push(format!("PersistentVolumeClaim {}", v.pvc));
        }
    }
    for (_, w) in &workloads {
        if workloads::exists(run, &w.name).await?.is_some_and(|m| !run.may_restore_into(&m)) {
            existing.push(format!("StatefulSet {}", w.name));
        }
    }
    if !existing.is_empty() {
        let msg = format!(
            "{} already exist(s) in namespace {}: a restore never replaces existing data; delete them or restore into another namespace (spec.target.namespace)",
            existing.join(", "),
            run.target
        );
        fail(run, st, "TargetExists", &msg).await;
        return Ok(Action::requeue(Duration::ZERO));
    }

    st.rpo = failure_time(run, st).map(|t| millis(t.duration_since(choice.time).unsigned_abs()).into());
    st.restored_point =
        Some(RestoredPoint { name: choice.point.clone(), time: Time(choice.time), location: choice.location.clone() });
    st.volumes = vols;
    st.workloads = workloads.into_iter().map(|(_, w)| w).collect();
    let msg = choice.describe();
    st.message = Some(msg.clone());
    conditions::set(&mut st.conditions, PROGRESSING, true, "RestoringVolumes", &msg, g, now);
    run.event(
        false,
        events::RESTORE_POINT_CHOSEN,
        format!("{msg}; {} volume(s), {} workload(s)", st.volumes.len(), st.workloads.len()),
    )
    .await;
    match spec.mode {
        RestoreMode::Failover => enter(st, PlanPhase::Fencing, now),
        RestoreMode::Failback => failback::after_resolving(st, now),
        _ => enter(st, PlanPhase::RestoringVolumes, now),
    }
    Ok(Action::requeue(Duration::ZERO))
}

/// The moment of the failure, for the RPO: the detection time given with a manual
/// trigger, the last heartbeat's own time after a heartbeat loss, else the start.
pub fn failure_time(run: &Run<'_>, st: &RestorePlanStatus) -> Option<jiff::Timestamp> {
    let beat = st.heartbeat.as_ref().filter(|h| h.loss_detected.is_some()).and_then(|h| h.last_beat.as_ref());
    let detected = run.plan.spec.trigger.detected_at.as_ref().map(|t| t.0);
    detected.or(beat.map(|t| t.0)).or(st.start_time.as_ref().map(|t| t.0))
}

/// Points the run at restore point `p` and marks every volume to be brought to it again
/// (a warm standby's refresh, a failback's final sync): the next RestoringVolumes runs
/// new Jobs, in place.
pub fn restore_again(st: &mut RestorePlanStatus, p: RestoredPoint) {
    st.restored_point = Some(p);
    for v in &mut st.volumes {
        v.done = false;
        v.attempts = None;
        v.bytes_done = 0;
        v.written = None;
    }
}

/// The outcome of choosing a restore point.
pub enum Chosen {
    Point(select::Choice),
    /// A source location has not been checked yet (the operator just started).
    NotChecked(String),
    /// No point can be used, and why.
    None(String),
}

/// Chooses a restore point by `selector` among the completed points of the source
/// policy, at the first reachable source location that holds it.
pub async fn choose(run: &Run<'_>, selector: &crate::api::restore_plan::PointInTime) -> Result<Chosen> {
    let spec = &run.plan.spec;
    let mut locations: BTreeMap<String, Option<BackupLocation>> = BTreeMap::new();
    for l in &spec.source.locations {
        let loc = run.location(l).await?;
        if let Some(loc) = &loc
            && conditions::get(&loc.status.clone().unwrap_or_default().conditions, READY).is_none()
        {
            return Ok(Chosen::NotChecked(format!("waiting for the first check of BackupLocation {l}")));
        }
        locations.insert(l.clone(), loc);
    }
    let unreachable = |l: &str| match locations.get(l).cloned().flatten() {
        None => Some(format!("no BackupLocation {l} in namespace {}", run.ns)),
        Some(loc) => {
            let conds = loc.status.unwrap_or_default().conditions;
            let ready = conditions::get(&conds, READY);
            match ready {
                Some(c) if c.status == "True" => None,
                Some(c) => Some(format!("{}: {}", c.reason, c.message)),
                None => Some("not checked yet".into()),
            }
        }
    };
    let api: Api<RestorePoint> = Api::namespaced(run.ctx.client.clone(), &run.ns);
    let points = api.list(&Default::default()).await.map_err(Error::kube("list RestorePoints"))?.items;
    // Points of the source namespace only: this namespace's own runs and catalog entries,
    // or entries the catalog brought from a granted namespace (marked with it).
    let source = run.plan.source_namespace();
    let origin = |p: &RestorePoint| {
        p.annotations().get(crate::k8s::ANNOTATION_SOURCE_NAMESPACE).cloned().unwrap_or_else(|| run.ns.clone())
    };
    let known: Vec<select::Known> = points
        .iter()
        .filter(|p| p.spec.policy == spec.source.policy && origin(p) == source)
        .filter(|p| crate::controller::restore_point::delete::requested(p).is_none())
        .filter_map(|p| {
            let s = p.status.as_ref()?;
            (s.phase == RunPhase::Completed).then(|| select::Known {
                name: p.name_any(),
                time: crate::controller::policy::status::data_time(p),
                slot: p.spec.scheduled_time.0,
                locations: s.locations.iter().filter(|l| l.present).map(|l| l.name.clone()).collect(),
            })
        })
        .collect();
    Ok(match select::choose(selector, &spec.source.locations, unreachable, &known) {
        Ok(c) => Chosen::Point(c),
        Err(why) => Chosen::None(why),
    })
}

/// Whether a failover is due now: a warm standby asked to promote, or a plan whose
/// heartbeat trigger found the primary lost.
fn promotion_due(run: &Run<'_>, st: &RestorePlanStatus) -> bool {
    run.plan.spec.failover.as_ref().is_some_and(|f| f.promote)
        || st.heartbeat.as_ref().is_some_and(|h| h.loss_detected.is_some())
}

/// Why `choice` is too old to promote (`spec.failover.maxDataAge`), unless forced.
pub fn too_old(run: &Run<'_>, choice: &select::Choice) -> Option<String> {
    let f = run.plan.spec.failover.as_ref()?;
    let max = Duration::from(f.max_data_age?);
    let age = run.now().duration_since(choice.time).unsigned_abs();
    (age > max && !f.force).then(|| {
        format!(
            "refusing to promote restore point {}: its data is {} old, older than spec.failover.maxDataAge {}; set spec.failover.force: true to promote it anyway",
            choice.point,
            crate::api::common::Duration::from(Duration::from_secs(age.as_secs())),
            crate::api::common::Duration::from(max)
        )
    })
}

/// Waits instead of promoting, saying why (a `Degraded` condition, reason `DataTooOld`).
pub async fn refuse(run: &Run<'_>, st: &mut RestorePlanStatus, msg: &str) {
    let (now, g) = (run.now(), run.plan.meta().generation);
    if st.message.as_deref() != Some(msg) {
        run.event(true, events::PROMOTION_REFUSED, msg.to_string()).await;
    }
    conditions::set(&mut st.conditions, READY, false, "DataTooOld", msg, g, now);
    conditions::set(&mut st.conditions, DEGRADED, true, "DataTooOld", msg, g, now);
    st.message = Some(msg.to_string());
}

pub fn is_kind(o: &Value, api_version: &str, kind: &str) -> bool {
    o["apiVersion"] == api_version && o["kind"] == kind
}

/// Ends the run as failed, saying why.
pub async fn fail(run: &Run<'_>, st: &mut RestorePlanStatus, reason: &str, msg: &str) {
    let now = run.now();
    let g = run.plan.meta().generation;
    enter(st, PlanPhase::Failed, now);
    st.completion_time = Some(Time(now));
    st.message = Some(msg.to_string());
    conditions::set(&mut st.conditions, READY, false, reason, msg, g, now);
    conditions::set(&mut st.conditions, DEGRADED, true, reason, msg, g, now);
    conditions::set(&mut st.conditions, PROGRESSING, false, reason, "", g, now);
    run.event(true, events::RESTORE_FAILED, format!("{reason}: {msg}")).await;
    cleanup(run).await;
    if run.plan.spec.mode == RestoreMode::Drill {
        let keep = run.plan.spec.drill.as_ref().is_some_and(|d| d.keep_on_failure);
        if !keep {
            checks::delete_scratch(run).await;
        }
        checks::record_drill(run, st, false, msg).await;
    }
}

/// Removes the run's Jobs; what they restored stays. A failure here only leaves Jobs
/// behind until the plan goes (they are the plan's).
async fn cleanup(run: &Run<'_>) {
    if let Err(e) = volumes::remove_jobs(run).await {
        tracing::warn!(plan = %run.name, error = %e, "could not remove the restore Jobs");
    }
    if let Err(e) = volumes::remove_copies(run).await {
        tracing::warn!(plan = %run.name, error = %e, "could not remove the Secrets copied for the restore Jobs");
    }
}

/// Ends the run as completed, with the RTO.
pub async fn complete(run: &Run<'_>, st: &mut RestorePlanStatus) {
    let now = run.now();
    let g = run.plan.meta().generation;
    enter(st, PlanPhase::Completed, now);
    st.completion_time = Some(Time(now));
    // A drill measured its RTO when its checks passed, before cleaning up.
    if st.rto.is_none() {
        measure(run, st, now);
    }
    let total = st.rto.as_ref().and_then(|r| r.total).map(Duration::from).unwrap_or_default();
    let point = st.restored_point.as_ref().map(|p| format!("{} from {}", p.name, p.location)).unwrap_or_default();
    let bytes: i64 = st.volumes.iter().map(|v| v.bytes_done).sum();
    let msg = format!(
        "restored {point}: {} volume(s), {bytes} bytes, checked; {} workload(s) ready; RPO {}, RTO {}",
        st.volumes.len(),
        st.workloads.len(),
        st.rpo.as_ref().map(|d| d.to_string()).unwrap_or_else(|| "unknown".into()),
        crate::api::common::Duration::from(total),
    );
    st.message = Some(msg.clone());
    conditions::set(&mut st.conditions, READY, true, "Restored", &msg, g, now);
    conditions::set(&mut st.conditions, PROGRESSING, false, "Restored", "", g, now);
    conditions::set(&mut st.conditions, DEGRADED, false, "Restored", "", g, now);
    run.event(false, events::RESTORE_COMPLETED, msg.clone()).await;
    cleanup(run).await;
    if run.plan.spec.mode == RestoreMode::Drill {
        checks::record_drill(run, st, true, &msg).await;
    }
}

/// A measured RPO or RTO to the millisecond: finer than the clocks that measure it agree,
/// and `kubectl get` shows it as `5.806s`, not `5.806330454s`.
pub fn millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The RTO as of `now`: decision (detection to start, when the detection time is known)
/// and execution (start to now).
pub fn measure(run: &Run<'_>, st: &mut RestorePlanStatus, now: jiff::Timestamp) {
    let start = st.start_time.as_ref().map(|t| t.0).unwrap_or(now);
    let span = |a: jiff::Timestamp, b: jiff::Timestamp| -> Duration { millis(b.duration_since(a).unsigned_abs()) };
    let execution = span(start, now);
    let mut decision = run.plan.spec.trigger.detected_at.as_ref().map(|d| span(d.0, start));
    let mut detection = None;
    // A heartbeat loss: detection from the last heartbeat (its own time) to the loss
    // being detected here, decision from there to the start.
    if let Some(h) = &st.heartbeat
        && let Some(found) = &h.loss_detected
    {
        detection = h.last_beat.as_ref().map(|b| span(b.0, found.0));
        decision = Some(span(found.0, start));
    }
    let total = detection.unwrap_or_default() + decision.unwrap_or_default() + execution;
    st.rto = Some(Rto {
        detection: detection.map(Into::into),
        decision: decision.map(Into::into),
        execution: Some(execution.into()),
        total: Some(total.into()),
    });
}
