//! `lifeline fence-gate`: the init container of a gated workload (see
//! [`crate::controller::gate`]). It exits 0 once the operator of this cluster has
//! annotated the Pod with this container's start time, which it does only after reading
//! the fencing markers and finding that no other cluster took the workload over. Until
//! then it waits, without a time limit: a workload that may have been taken over stays
//! down rather than write next to its new primary.
//!
//! Needs `get` on its own Pod (a Role in the workload's namespace).

use crate::controller::gate::{ANNOTATION, CONTAINER, gate_started};
use clap::Args;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::Api;
use std::time::{Duration, Instant};

#[derive(Args, Debug, Clone)]
pub struct GateArgs {
    /// This Pod's name (the downward API's `metadata.name`).
    #[arg(long, env = "POD_NAME")]
    pub pod: String,
    /// This Pod's namespace (the downward API's `metadata.namespace`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub namespace: String,
    /// The name of this init container in the Pod.
    #[arg(long, default_value = CONTAINER)]
    pub container: String,
    /// How often the Pod is read.
    #[arg(long, default_value = "2s", value_parser = |s: &str| super::duration("--interval", s))]
    pub interval: Duration,
}

pub fn run(args: GateArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(wait(args))
}

async fn wait(args: GateArgs) -> anyhow::Result<()> {
    let client =
        kube::Client::try_default().await.map_err(|e| anyhow::anyhow!("failed to connect to the cluster: {e}"))?;
    let api: Api<Pod> = Api::namespaced(client, &args.namespace);
    let begun = Instant::now();
    let mut said = Instant::now() - Duration::from_secs(3600);
    loop {
        let why = match api.get(&args.pod).await {
            Ok(pod) => match gate_started(&pod, &args.container) {
                Some(started) if pod.annotations().get(ANNOTATION) == Some(&started) => {
                    eprintln!(
                        "fence gate: cleared by the operator after {:.1}s: this cluster may write",
                        begun.elapsed().as_secs_f64()
                    );
                    return Ok(());
                }
                Some(_) => "waiting for the Lifeline operator to read the fencing markers".to_string(),
                None => format!("waiting for the kubelet to report init container {} running", args.container),
            },
            Err(e) => format!("cannot read Pod {}/{}: {e}", args.namespace, args.pod),
        };
        if said.elapsed() >= Duration::from_secs(30) {
            eprintln!("fence gate: {why} ({:.0}s so far)", begun.elapsed().as_secs_f64());
            said = Instant::now();
        }
        tokio::time::sleep(args.interval).await;
    }
}
