//! Mover Jobs, seen from any controller: the cluster-wide cap on how many run at once,
//! and the typed result a finished one left in its Pod's termination message.

use crate::controller::{Context, Error, Result};
use crate::k8s::{COMPONENT_MOVER, LABEL_COMPONENT};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, LogParams};

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

/// The Pods of a mover Job, oldest first (one list call; read both the result and the
/// progress from it). Selected by the Job's uid, as the Job controller selects them: a
/// Job of the same name that was deleted a moment ago may still have Pods, and its result
/// is not this Job's.
pub async fn pods(ctx: &Context, ns: &str, job: &Job) -> Result<Vec<Pod>> {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let uid = job.metadata.uid.as_deref().unwrap_or_default();
    let lp = ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}"));
    let mut pods = api.list(&lp).await.map_err(Error::kube("read the mover's Pod"))?.items;
    // A list comes in name order; a retried Job's Pods are ordered by when they were made.
    pods.sort_by(|a, b| {
        let key = |p: &Pod| (p.metadata.creation_timestamp.clone().map(|t| t.0), p.metadata.name.clone());
        key(a).cmp(&key(b))
    });
    Ok(pods)
}

/// The termination message of the newest of a Job's Pods that has terminated.
pub fn termination_message_of(pods: &[Pod]) -> Option<String> {
    pods.iter().rev().find_map(|p| {
        let cs = p.status.as_ref()?.container_statuses.as_ref()?;
        cs.iter().find_map(|c| c.state.as_ref()?.terminated.as_ref()?.message.clone())
    })
}

/// The termination message of the Job's newest Pod, if it has terminated.
pub async fn termination_message(ctx: &Context, ns: &str, job: &Job) -> Result<Option<String>> {
    Ok(termination_message_of(&pods(ctx, ns, job).await?))
}

/// The newest progress line (`{"progress": …, "bytesDone": n, "bytesTotal": n}`) in the log
/// of the running one of a Job's Pods: bytes done and bytes found so far.
pub async fn progress(ctx: &Context, ns: &str, pods: &[Pod]) -> Option<(i64, i64)> {
    let pod = pods.iter().rev().find(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))?;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let params = LogParams { tail_lines: Some(20), ..Default::default() };
    // A log that cannot be read yet (the container is starting) is no progress, not an error.
    let log = api.logs(&kube::ResourceExt::name_any(pod), &params).await.ok()?;
    last_progress(&log)
}

/// The last progress line of a log (pure).
pub fn last_progress(log: &str) -> Option<(i64, i64)> {
    log.lines().rev().find_map(|l| {
        let v: serde_json::Value = serde_json::from_str(l.trim()).ok()?;
        v.get("progress")?;
        Some((v["bytesDone"].as_i64()?, v["bytesTotal"].as_i64()?))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_newest_progress_line_counts_and_other_lines_are_skipped() {
        let log = concat!(
            "{\"level\":\"info\",\"progress\":\"backing up\",\"bytesDone\":10,\"bytesTotal\":100}\n",
            "{\"level\":\"info\",\"progress\":\"backing up\",\"bytesDone\":60,\"bytesTotal\":120}\n",
            "{\"level\":\"info\",\"message\":\"not progress\"}\n",
            "a torn line {\"progress\n",
        );
        assert_eq!(super::last_progress(log), Some((60, 120)));
        assert_eq!(super::last_progress("nothing here\n"), None);
    }
}
