//! Mover Jobs, seen from any controller: the cluster-wide cap on how many run at once,
//! and the typed result a finished one left in its Pod's termination message.

use crate::controller::{Context, Error, Result};
use crate::k8s::{COMPONENT_MOVER, LABEL_COMPONENT};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

/// `None` when a mover may start now; otherwise what it waits for.
pub async fn slot(ctx: &Context) -> Result<Option<String>> {
    let all: Api<Job> = Api::all(ctx.client.clone());
    let lp = ListParams::default().labels(&format!("{LABEL_COMPONENT}={COMPONENT_MOVER}"));
    let jobs = all.list(&lp).await.map_err(Error::kube("count running mover Jobs"))?;
    let running = jobs
        .items
        .iter()
        .filter(|j| {
            j.status.as_ref().is_none_or(|s| {
                s.completion_time.is_none()
                    && !s
                        .conditions
                        .iter()
                        .flatten()
                        .any(|c| c.status == "True" && (c.type_ == "Failed" || c.type_ == "Complete"))
            })
        })
        .count();
    ctx.metrics.mover_jobs_running.set(running as i64);
    let cap = ctx.config.max_movers;
    Ok((running >= cap).then(|| format!("waiting for a mover slot ({running} of {cap} running)")))
}

/// The termination message of the Job's newest Pod, if it has terminated.
pub async fn termination_message(ctx: &Context, ns: &str, job: &str) -> Result<Option<String>> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}"));
    let list = pods.list(&lp).await.map_err(Error::kube("read the mover's Pod"))?;
    Ok(list.items.iter().rev().find_map(|p| {
        let cs = p.status.as_ref()?.container_statuses.as_ref()?;
        cs.iter().find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
    }))
}
