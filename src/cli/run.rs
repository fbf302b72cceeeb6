//! `lifeline run`: the operator's flags, and its start.

use crate::controller::Config;
use crate::controller::clock::SystemClock;
use crate::operator::{self, Leader, Options};
use clap::Args;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Where to serve /metrics, /healthz and /readyz.
    /// `HOST:PORT`; an IPv6 host may come without brackets (`$(POD_IP):8080`).
    #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDR", value_parser = socket_addr)]
    pub http_addr: SocketAddr,
    /// Take the leader Lease before acting (off: this process acts alone).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub leader_elect: bool,
    /// Namespace of the leader Lease (the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "lifeline-system")]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = "lifeline-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease (default: the Pod name, else host and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a Lease lasts without renewal: how long a dead leader's successor waits.
    #[arg(long, default_value_t = 15)]
    pub lease_seconds: u64,
    /// Image of the mover Jobs.
    #[arg(long, env = "LIFELINE_MOVER_IMAGE")]
    pub mover_image: Option<String>,
    /// Command that starts lifeline inside the mover image.
    #[arg(long, default_value = "lifeline")]
    pub mover_command: String,
    /// Most mover Jobs running at once in the cluster.
    #[arg(long, default_value_t = 4)]
    pub max_movers: usize,
    /// How long snapshots may take to be cut (Go duration: 10m).
    #[arg(long, default_value = "10m")]
    pub snapshot_timeout: String,
    /// How long one mover Job may run.
    #[arg(long, default_value = "6h")]
    pub mover_timeout: String,
    /// This cluster's identity in fencing markers (default: the uid of the `kube-system`
    /// namespace).
    #[arg(long, env = "LIFELINE_CLUSTER_ID")]
    pub cluster_id: Option<String>,
    /// How often this cluster's heartbeat is written to the locations its active
    /// policies use (standby plans with trigger HeartbeatLoss watch it).
    #[arg(long, default_value = "10s")]
    pub heartbeat_interval: String,
}

/// `HOST:PORT`, with or without brackets around an IPv6 host.
fn socket_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse() {
        return Ok(a);
    }
    let bad = || format!("{s:?} is not HOST:PORT with an IP address as the host");
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let ip: std::net::IpAddr = host.parse().map_err(|_| bad())?;
    Ok(SocketAddr::new(ip, port.parse().map_err(|_| bad())?))
}

/// Runs the operator until SIGTERM/SIGINT.
pub fn run(a: RunArgs) -> anyhow::Result<()> {
    // Opening a repository derives its key with ~19 MiB of memory for a moment. With
    // glibc's sliding mmap threshold such blocks end up on the heap after the first one is
    // freed, and the heap does not shrink; a fixed threshold keeps them in their own
    // mappings, returned on free (measured with `make bench-operator`).
    // SAFETY: mallopt is called before the runtime starts any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let mut config =
        Config { max_movers: a.max_movers.max(1), mover_command: vec![a.mover_command.clone()], ..Config::default() };
    if let Some(i) = a.mover_image.clone() {
        config.mover_image = i;
    }
    config.snapshot_timeout = super::duration("--snapshot-timeout", &a.snapshot_timeout)?;
    config.mover_timeout = super::duration("--mover-timeout", &a.mover_timeout)?;
    config.cluster_id = a.cluster_id.clone().filter(|c| !c.is_empty());
    config.heartbeat_interval =
        super::duration("--heartbeat-interval", &a.heartbeat_interval)?.max(Duration::from_secs(1));
    let identity = a.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        format!("{}-{}", host.trim(), std::process::id())
    });
    let leader = a.leader_elect.then(|| Leader {
        namespace: a.lease_namespace.clone(),
        name: a.lease_name.clone(),
        identity,
        duration: a.lease_seconds.max(2),
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let client =
            kube::Client::try_default().await.map_err(|e| anyhow::anyhow!("failed to connect to the cluster: {e}"))?;
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("signal handler");
            tokio::select! { _ = term.recv() => {}, _ = tokio::signal::ctrl_c() => {} }
        };
        let opts = Options { config, http: Some(a.http_addr), leader, clock: Arc::new(SystemClock) };
        let (running, fut) = operator::start(client, opts, shutdown).await?;
        tracing::info!(http = ?running.http, "lifeline operator started");
        fut.await
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn http_addr_takes_ipv6_hosts_with_or_without_brackets() {
        for (s, want) in [
            ("0.0.0.0:8080", "0.0.0.0:8080"),
            ("[fd00::1]:8080", "[fd00::1]:8080"),
            ("fd00::1:8080", "[fd00::1]:8080"),
            ("10.1.2.3:9090", "10.1.2.3:9090"),
        ] {
            assert_eq!(super::socket_addr(s).unwrap().to_string(), want);
        }
        for bad in ["", "8080", "host:8080", "10.1.2.3:http", "10.1.2.3:70000"] {
            assert!(super::socket_addr(bad).unwrap_err().contains("HOST:PORT"), "{bad}");
        }
    }
}
