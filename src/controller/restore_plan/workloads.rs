//! StartingWorkloads: the captured Secrets, ConfigMaps and Services the target lacks
//! (what the target has is kept: it may hold newer credentials), then the StatefulSets in
//! their start groups: a group is created once the group before it is ready, and each must
//! be ready within its readiness timeout. The StatefulSets find their claims full.
//!
//! A warm standby that is not promoted holds its StatefulSets at zero replicas (all
//! created at once, nothing to wait for) and goes back to `Standby`; once promoted, the
//! existing StatefulSets are scaled up group by group behind the same readiness gates.

use super::{Run, complete, fail, manifests};
use crate::api::RestorePlanStatus;
use crate::api::common::condition::PROGRESSING;
use crate::controller::{Error, Result};
use crate::k8s::{apply, conditions, events};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::controller::Action;
use serde_json::{Value, json};
use std::time::Duration;

/// The metadata of a StatefulSet in the target, if there is one.
pub async fn exists(run: &Run<'_>, name: &str) -> Result<Option<ObjectMeta>> {
    let api: Api<StatefulSet> = Api::namespaced(run.ctx.client.clone(), &run.target);
    Ok(api.get_opt(name).await.map_err(Error::kube(format!("read StatefulSet {name}")))?.map(|s| s.metadata))
}

/// The start group of a workload.
fn order(run: &Run<'_>, name: &str) -> i32 {
    run.plan.spec.workloads.iter().find(|w| w.name == name).map_or(0, |w| w.start_order)
}

/// Whether the run is a warm standby holding its workloads at zero.
pub fn holding(run: &Run<'_>, st: &RestorePlanStatus) -> bool {
    run.plan.spec.mode == crate::api::restore_plan::RestoreMode::WarmStandby
        && st.standby.as_ref().is_none_or(|s| s.promoted.is_none())
}

pub async fn step(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Action> {
    let now = run.now();
    let g = run.plan.meta().generation;
    let Some(chosen) = st.restored_point.clone() else {
        return Err(Error::Invalid("no restore point was chosen".into()));
    };
    let sts_api: Api<StatefulSet> = Api::namespaced(run.ctx.client.clone(), &run.target);
    if run.plan.spec.mode == crate::api::restore_plan::RestoreMode::Failback {
        super::failback::resume(run, st).await?;
    }
    if holding(run, st) {
        hold(run, st, &chosen).await?;
        super::standby::refreshed(run, st).await?;
        return Ok(Action::requeue(Duration::ZERO));
    }
    // The first group not ready yet.
    let mut group: Option<i32> = None;
    let mut found = Vec::new();
    for i in 0..st.workloads.len() {
        let name = st.workloads[i].name.clone();
        let o = order(run, &name);
        if group.is_some_and(|gr| o > gr) {
            break;
        }
        let Some(s) = sts_api.get_opt(&name).await.map_err(Error::kube(format!("read StatefulSet {name}")))? else {
            group = Some(o);
            continue;
        };
        found.push(name.clone());
        let ready = s.status.as_ref().and_then(|x| x.ready_replicas).unwrap_or(0);
        let w = &mut st.workloads[i];
        w.ready_replicas = ready;
        // A promoted standby's StatefulSet exists at zero: scaled up with its group.
        let desired = s.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1);
        if desired != w.replicas && run.may_restore_into(&s.metadata) {
            apply::scale(&sts_api, &name, w.replicas, super::NAME)
                .await
                .map_err(Error::kube(format!("scale StatefulSet {name}")))?;
            run.event(
                false,
                events::WORKLOADS_STARTED,
                format!("start group {o}: scaled StatefulSet {name} to {} replica(s)", w.replicas),
            )
            .await;
        }
        w.ready = ready >= w.replicas && desired == w.replicas;
        if !w.ready {
            group = Some(o);
        }
    }
    let Some(group) = group else {
        if !st.workloads.is_empty() {
            let names: Vec<&str> = st.workloads.iter().map(|w| w.name.as_str()).collect();
            run.event(false, events::WORKLOADS_STARTED, format!("workloads ready: {}", names.join(", "))).await;
        }
        if !run.plan.spec.post_restore_hooks.is_empty()
            || run.plan.spec.mode == crate::api::restore_plan::RestoreMode::Drill
        {
            super::enter(st, crate::api::restore_plan::PlanPhase::Verifying, now);
        } else {
            complete(run, st).await;
        }
        return Ok(Action::requeue(Duration::ZERO));
    };
    // Create what the group lacks (and, before the first group, what workloads need).
    let missing: Vec<String> = {
        let mut m = Vec::new();
        for w in st.workloads.iter().filter(|w| order(run, &w.name) == group && !found.contains(&w.name)) {
            if exists(run, &w.name).await?.is_none() {
                m.push(w.name.clone());
            }
        }
        m
    };
    if !missing.is_empty() {
        let loc = run
            .location(&chosen.location)
            .await?
            .ok_or_else(|| Error::Invalid(format!("BackupLocation {} is gone", chosen.location)))?;
        let objects = super::record::manifests(run.ctx, run.plan, &loc, &chosen.name).await?;
        let mapping = run.mapping();
        support(run, &objects, &mapping, &chosen.name).await?;
        for w in st.workloads.iter().filter(|w| missing.contains(&w.name)) {
            create(run, &objects, &w.name, w.replicas, &chosen.name).await?;
        }
        run.event(
            false,
            events::WORKLOADS_STARTED,
            format!("start group {group}: created StatefulSet(s) {}", missing.join(", ")),
        )
        .await;
    }
    let timeout: Duration = run
        .plan
        .spec
        .workloads
        .iter()
        .filter(|w| w.start_order == group)
        .map(|w| Duration::from(w.readiness.timeout))
        .max()
        .unwrap_or(Duration::from_secs(600));
    let waiting: Vec<String> = st
        .workloads
        .iter()
        .filter(|w| order(run, &w.name) == group && !w.ready)
        .map(|w| format!("{} {}/{} ready", w.name, w.ready_replicas, w.replicas))
        .collect();
    let since = st.step_start_time.as_ref().map(|t| now.duration_since(t.0).unsigned_abs()).unwrap_or_default();
    if since > timeout {
        let msg = format!(
            "start group {group} not ready within {}: {}",
            crate::api::common::Duration::from(timeout),
            waiting.join(", ")
        );
        fail(run, st, "ReadinessTimeout", &msg).await;
        return Ok(Action::requeue(Duration::ZERO));
    }
    let msg = format!("starting workloads (group {group}): {}", waiting.join(", "));
    conditions::set(&mut st.conditions, PROGRESSING, true, "StartingWorkloads", &msg, g, now);
    st.message = Some(msg);
    Ok(Action::requeue(super::POLL))
}

/// A warm standby's workloads: created at zero replicas when missing (with what they
/// need), scaled back to zero when someone scaled them up (a refresh must never write
/// under a running workload).
async fn hold(run: &Run<'_>, st: &RestorePlanStatus, chosen: &crate::api::restore_plan::RestoredPoint) -> Result<()> {
    let sts_api: Api<StatefulSet> = Api::namespaced(run.ctx.client.clone(), &run.target);
    let mut objects: Option<Vec<Value>> = None;
    for w in &st.workloads {
        match sts_api.get_opt(&w.name).await.map_err(Error::kube(format!("read StatefulSet {}", w.name)))? {
            Some(s) => {
                if s.spec.as_ref().and_then(|x| x.replicas).unwrap_or(1) != 0 {
                    apply::scale(&sts_api, &w.name, 0, super::NAME)
                        .await
                        .map_err(Error::kube(format!("scale StatefulSet {} to zero", w.name)))?;
                    run.event(
                        true,
                        events::WORKLOADS_STARTED,
                        format!("StatefulSet {} scaled back to zero: a warm standby holds its workloads at zero until it is promoted (spec.failover.promote)", w.name),
                    )
                    .await;
                }
            }
            None => {
                if objects.is_none() {
                    let loc = run
                        .location(&chosen.location)
                        .await?
                        .ok_or_else(|| Error::Invalid(format!("BackupLocation {} is gone", chosen.location)))?;
                    let o = super::record::manifests(run.ctx, run.plan, &loc, &chosen.name).await?;
                    support(run, &o, &run.mapping(), &chosen.name).await?;
                    objects = Some(o);
                }
                create(run, objects.as_deref().unwrap_or_default(), &w.name, 0, &chosen.name).await?;
            }
        }
    }
    Ok(())
}

/// Creates StatefulSet `name` as captured in restore point `point` (`objects`), mapped,
/// marked as this run's, with `replicas`.
async fn create(run: &Run<'_>, objects: &[Value], name: &str, replicas: i32, point: &str) -> Result<()> {
    let Some(obj) =
        objects.iter().find(|o| super::is_kind(o, "apps/v1", "StatefulSet") && o["metadata"]["name"] == name)
    else {
        return Err(Error::Invalid(format!("restore point {point} holds no StatefulSet {name}")));
    };
    let mut sts = manifests::prepare(obj, &run.mapping());
    sts["spec"]["replicas"] = json!(replicas);
    run.mark(&mut sts, Some(point));
    let api: Api<StatefulSet> = Api::namespaced(run.ctx.client.clone(), &run.target);
    apply::apply(&api, super::NAME, &sts).await.map_err(Error::kube(format!("create StatefulSet {name}")))?;
    Ok(())
}

/// Creates the captured Secrets, ConfigMaps and Services the target lacks.
async fn support(run: &Run<'_>, objects: &[Value], mapping: &manifests::Mapping, point: &str) -> Result<()> {
    for (kind, plural) in [("Secret", "secrets"), ("ConfigMap", "configmaps"), ("Service", "services")] {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind), plural);
        let api: Api<DynamicObject> = Api::namespaced_with(run.ctx.client.clone(), &run.target, &ar);
        for o in objects.iter().filter(|o| super::is_kind(o, "v1", kind)) {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            if api.get_opt(name).await.map_err(Error::kube(format!("read {kind} {name}")))?.is_some() {
                continue;
            }
            let mut obj = manifests::prepare(o, mapping);
            run.mark(&mut obj, Some(point));
            let obj: DynamicObject = serde_json::from_value(obj)
                .map_err(|e| Error::Invalid(format!("the captured {kind} {name} cannot be read: {e}")))?;
            let mut created = api.create(&Default::default(), &obj).await;
            // A Service keeps its node ports where they are free (load balancers outside
            // the cluster point at them). Where one is taken (a drill or restore into the
            // same cluster, or another Service holds it in the standby), the Service gets
            // free ones rather than failing the restore, and an Event says so.
            if let Err(e) = &created
                && kind == "Service"
                && manifests::node_port_taken(e)
            {
                let mut fresh = obj.clone();
                let before = manifests::clear_node_ports(&mut fresh.data);
                created = api.create(&Default::default(), &fresh).await;
                if let Ok(svc) = &created {
                    let after = manifests::node_ports(&svc.data);
                    run.event(
                        true,
                        crate::k8s::events::NODE_PORTS_REASSIGNED,
                        format!(
                            "Service {name}: node port(s) {} taken in the target; created with {}",
                            before.join(","),
                            after.join(",")
                        ),
                    )
                    .await;
                }
            }
            match created {
                Ok(_) => {}
                Err(e) if crate::k8s::is_conflict(&e) || matches!(&e, kube::Error::Api(s) if s.code == 409) => {}
                Err(e) => return Err(Error::kube(format!("create {kind} {name}"))(e)),
            }
        }
    }
    Ok(())
}
