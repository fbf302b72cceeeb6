//! Verifying and CleaningUp.
//!
//! - **Verifying**: once the workloads are ready, each `postRestoreHooks` command runs in
//!   every restored Pod (`pods/exec`, with its timeout). A failing hook with
//!   `onError: Fail` fails the plan with the command's output (the workloads stay up for
//!   inspection); `Continue` is an Event. A drill's RTO is measured when its checks pass.
//! - **CleaningUp** (drills): the scratch namespace the drill created goes, with
//!   everything in it, and the drill ends passed or failed; with `keepOnFailure` a failed
//!   drill's namespace stays for inspection. The policy's `status.lastDrill` records the
//!   result.

use super::{Run, complete, enter, fail, measure};
use crate::api::RestorePlanStatus;
use crate::api::common::OnError;
use crate::api::common::condition::{DEGRADED, PROGRESSING};
use crate::api::restore_plan::{PlanPhase, RestoreMode};
use crate::controller::{Error, Result};
use crate::k8s::{conditions, events};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::time::Duration;

/// The reason a drill's failed check is recorded under until the cleanup ends it.
const CHECK_FAILED: &str = "CheckFailed";

/// The running Pods of the restored workloads.
async fn pods(run: &Run<'_>, st: &RestorePlanStatus) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(run.ctx.client.clone(), &run.target);
    let all = api.list(&Default::default()).await.map_err(Error::kube("list the restored Pods"))?.items;
    let mut out: Vec<Pod> = all
        .into_iter()
        .filter(|p| {
            p.metadata
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "StatefulSet" && st.workloads.iter().any(|w| w.name == o.name))
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .collect();
    out.sort_by_key(|p| p.name_any());
    Ok(out)
}

pub async fn step(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Action> {
    let now = run.now();
    let g = run.plan.meta().generation;
    let api: Api<Pod> = Api::namespaced(run.ctx.client.clone(), &run.target);
    let pods = pods(run, st).await?;
    let drill = run.plan.spec.mode == RestoreMode::Drill;
    let mut failures = Vec::new();
    let mut ran = 0;
    for hook in &run.plan.spec.post_restore_hooks {
        for p in &pods {
            let container = hook
                .container
                .clone()
                .or_else(|| p.spec.as_ref().and_then(|s| s.containers.first()).map(|c| c.name.clone()));
            let Some(container) = container else { continue };
            let timeout: Duration = hook.timeout.into();
            let out = crate::k8s::exec::run(&api, &p.name_any(), &container, &hook.command, timeout)
                .await
                .map_err(Error::kube(format!("run {} in Pod {}", hook.name, p.name_any())))?;
            ran += 1;
            if !out.ok() {
                let what = format!("{} in Pod {}: {}", hook.name, p.name_any(), out.describe(timeout));
                if hook.on_error == OnError::Fail || drill {
                    failures.push(what);
                } else {
                    run.event(true, events::HOOK_FAILED, format!("{what} (onError: Continue)")).await;
                }
            }
        }
    }
    if !failures.is_empty() {
        let msg = format!("check failed: {}", failures.join("; "));
        if drill {
            // Recorded now; the drill ends as failed once its namespace is cleaned up.
            conditions::set(&mut st.conditions, DEGRADED, true, CHECK_FAILED, &msg, g, now);
            st.message = Some(msg.clone());
            run.event(true, events::HOOK_FAILED, msg).await;
            measure(run, st, now);
            enter(st, PlanPhase::CleaningUp, now);
        } else {
            fail(run, st, "HookFailed", &msg).await;
        }
        return Ok(Action::requeue(Duration::ZERO));
    }
    if ran > 0 {
        run.event(false, events::HOOKS_RAN, format!("{ran} check(s) passed in {} Pod(s)", pods.len())).await;
    }
    if drill {
        measure(run, st, now);
        enter(st, PlanPhase::CleaningUp, now);
    } else {
        complete(run, st).await;
    }
    Ok(Action::requeue(Duration::ZERO))
}

/// Removes the drill's scratch namespace (only one this run created).
pub async fn delete_scratch(run: &Run<'_>) {
    let api: Api<Namespace> = Api::all(run.ctx.client.clone());
    if let Ok(Some(ns)) = api.get_opt(&run.target).await
        && run.ours(&ns.metadata)
        && ns.metadata.deletion_timestamp.is_none()
        && let Err(e) = api.delete(&run.target, &Default::default()).await
    {
        tracing::warn!(plan = %run.name, namespace = %run.target, error = %e, "could not remove the drill's namespace");
    }
}

pub async fn clean_up(run: &Run<'_>, st: &mut RestorePlanStatus) -> Result<Action> {
    let now = run.now();
    let g = run.plan.meta().generation;
    let failed = conditions::get(&st.conditions, DEGRADED).filter(|c| c.reason == CHECK_FAILED && c.status == "True");
    let failed = failed.map(|c| c.message.clone());
    let keep = run.plan.spec.drill.as_ref().is_some_and(|d| d.keep_on_failure);
    if failed.is_some() && keep {
        let msg = format!("{} (namespace {} kept for inspection)", failed.unwrap_or_default(), run.target);
        fail(run, st, CHECK_FAILED, &msg).await;
        return Ok(Action::requeue(Duration::ZERO));
    }
    let api: Api<Namespace> = Api::all(run.ctx.client.clone());
    let ns = api.get_opt(&run.target).await.map_err(Error::kube(format!("read Namespace {}", run.target)))?;
    if ns.as_ref().is_some_and(|n| run.ours(&n.metadata)) {
        delete_scratch(run).await;
        let msg = format!("removing the drill's namespace {}", run.target);
        conditions::set(&mut st.conditions, PROGRESSING, true, "CleaningUp", &msg, g, now);
        return Ok(Action::requeue(super::POLL));
    }
    match failed {
        Some(msg) => fail(run, st, CHECK_FAILED, &msg).await,
        None => complete(run, st).await,
    }
    Ok(Action::requeue(Duration::ZERO))
}

/// Records a drill's result on the policy it rehearsed (`status.lastDrill`).
pub async fn record_drill(run: &Run<'_>, st: &RestorePlanStatus, passed: bool, msg: &str) {
    let source_ns = run.plan.source_namespace();
    if source_ns != run.ns {
        return;
    }
    let api: Api<crate::api::BackupPolicy> = Api::namespaced(run.ctx.client.clone(), &run.ns);
    let result = json!({"status": {"lastDrill": {
        "restorePlan": run.name,
        "time": Time(run.now()),
        "passed": passed,
        "rto": st.rto.as_ref().and_then(|r| r.total),
        "message": msg,
    }}});
    let pp = PatchParams { field_manager: Some(crate::k8s::apply::manager(super::NAME)), ..Default::default() };
    if let Err(e) = api.patch_status(&run.plan.spec.source.policy, &pp, &Patch::Merge(&result)).await {
        tracing::warn!(plan = %run.name, error = %e, "could not record the drill on its policy");
    }
}
