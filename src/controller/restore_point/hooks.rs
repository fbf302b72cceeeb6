//! Hooks: each command runs in every Pod of the protected StatefulSets at once (the hook
//! window is as short as the slowest Pod), each with its own deadline.

use crate::api::common::{Hook, OnError};
use crate::controller::policy::resolve::hook_container;
use crate::k8s::exec;
use futures::future::join_all;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;

/// What a set of hooks did: warnings (failures with `Continue`) and the first failure
/// with `Fail`, each as `<pod>/<hook>: <what happened>`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub ran: usize,
    pub warnings: Vec<String>,
    pub failure: Option<String>,
}

pub async fn run(client: &kube::Client, ns: &str, hooks: &[Hook], pods: &[(String, Vec<String>)]) -> Outcome {
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let mut out = Outcome::default();
    for h in hooks {
        let timeout: std::time::Duration = h.timeout.into();
        let runs = pods.iter().map(|(pod, containers)| {
            let api = api.clone();
            let container = hook_container(h, containers).unwrap_or_default();
            async move {
                let r = exec::run(&api, pod, &container, &h.command, timeout).await;
                (pod.clone(), r)
            }
        });
        for (pod, r) in join_all(runs).await {
            out.ran += 1;
            let problem = match r {
                Ok(o) if o.ok() => continue,
                Ok(o) => o.describe(timeout),
                Err(e) => format!("could not run: {e}"),
            };
            let line = format!("{pod}/{}: {problem}", h.name);
            match h.on_error {
                OnError::Continue => out.warnings.push(line),
                OnError::Fail => {
                    if out.failure.is_none() {
                        out.failure = Some(line);
                    }
                }
            }
        }
        if out.failure.is_some() {
            break;
        }
    }
    out
}
