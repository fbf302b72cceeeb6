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
    /// Reconcile only the Lifeline objects of these namespaces (comma-separated; default:
    /// every namespace).
    #[arg(long, env = "LIFELINE_WATCH_NAMESPACES", value_delimiter = ',', value_name = "NAMESPACES")]
    pub watch_namespaces: Vec<String>,
    /// Lets restore points and RestorePlans of the SOURCES namespaces restore into the
    /// TARGET namespace, which may not exist yet: `TARGET=SOURCE[,SOURCE...]` (`*`: any),
    /// repeatable. A Namespace's annotation `lifeline.io/restore-from` grants the same for
    /// a namespace that exists. Without a grant, nothing crosses a namespace boundary.
    #[arg(long = "grant", env = "LIFELINE_GRANTS", value_delimiter = ';', value_name = "TARGET=SOURCES")]
    pub grants: Vec<String>,
    /// Namespaces (comma-separated, `*`: every one) whose BackupLocations without
    /// `spec.credentialsSecret` may use the operator's own cloud identity (environment,
    /// web identity, instance metadata). Elsewhere such a location's requests go unsigned.
    #[arg(long, env = "LIFELINE_AMBIENT_CREDENTIALS", value_delimiter = ',', value_name = "NAMESPACES")]
    pub ambient_credentials: Vec<String>,
    /// The mover containers' `resources`, as JSON (a ResourceRequirements).
    #[arg(long, env = "LIFELINE_MOVER_RESOURCES", value_name = "JSON")]
    pub mover_resources: Option<String>,
    /// The mover containers' `securityContext`, as JSON (a SecurityContext).
    #[arg(long, env = "LIFELINE_MOVER_SECURITY_CONTEXT", value_name = "JSON")]
    pub mover_security_context: Option<String>,
    /// The mover Pods' `securityContext`, as JSON (a PodSecurityContext).
    #[arg(long, env = "LIFELINE_MOVER_POD_SECURITY_CONTEXT", value_name = "JSON")]
    pub mover_pod_security_context: Option<String>,
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

/// A JSON flag checked as the Kubernetes type it stands for (unknown fields refused, so a
/// typo is an error naming the flag, not a silently ignored setting); `{}` and an empty
/// value mean unset.
fn typed<T: serde::de::DeserializeOwned + serde::Serialize>(
    flag: &str,
    what: &str,
    v: Option<&str>,
) -> anyhow::Result<Option<serde_json::Value>> {
    let Some(text) = v.map(str::trim).filter(|t| !t.is_empty() && *t != "{}" && *t != "null") else {
        return Ok(None);
    };
    let raw: serde_json::Value =
        serde_json::from_str(text).map_err(|e| anyhow::anyhow!("{flag}: not JSON ({e}): {text}"))?;
    let parsed: T = serde_json::from_value(raw.clone()).map_err(|e| anyhow::anyhow!("{flag}: not a {what} ({e})"))?;
    let back = serde_json::to_value(&parsed)?;
    if let Some(unknown) = unknown_field(&raw, &back, "") {
        anyhow::bail!("{flag}: {what} has no field {unknown}");
    }
    Ok(Some(back))
}

/// The first path in `raw` that `typed` dropped.
fn unknown_field(raw: &serde_json::Value, typed: &serde_json::Value, at: &str) -> Option<String> {
    let (serde_json::Value::Object(r), serde_json::Value::Object(t)) = (raw, typed) else { return None };
    r.iter().find_map(|(k, v)| match t.get(k) {
        None if !v.is_null() => Some(format!("{at}.{k}")),
        None => None,
        Some(tv) => unknown_field(v, tv, &format!("{at}.{k}")),
    })
}

fn mover_pod(a: &RunArgs) -> anyhow::Result<crate::mover::job::MoverPod> {
    use k8s_openapi::api::core::v1::{PodSecurityContext, ResourceRequirements, SecurityContext};
    Ok(crate::mover::job::MoverPod {
        resources: typed::<ResourceRequirements>(
            "--mover-resources",
            "ResourceRequirements",
            a.mover_resources.as_deref(),
        )?,
        security_context: typed::<SecurityContext>(
            "--mover-security-context",
            "SecurityContext",
            a.mover_security_context.as_deref(),
        )?,
        pod_security_context: typed::<PodSecurityContext>(
            "--mover-pod-security-context",
            "PodSecurityContext",
            a.mover_pod_security_context.as_deref(),
        )?,
    })
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
    config.mover_pod = mover_pod(&a)?;
    config.watch_namespaces =
        a.watch_namespaces.iter().map(|n| n.trim().to_string()).filter(|n| !n.is_empty()).collect();
    config.watch_namespaces.sort();
    config.watch_namespaces.dedup();
    for n in &config.watch_namespaces {
        anyhow::ensure!(
            crate::api::common::is_dns_label(n),
            "--watch-namespaces: {n:?} is not a namespace name (a DNS label)"
        );
    }
    config.grants = crate::controller::grants::Grants::parse(&a.grants).map_err(anyhow::Error::msg)?;
    config.ambient_credentials =
        crate::controller::grants::Namespaces::parse("--ambient-credentials", &a.ambient_credentials)
            .map_err(anyhow::Error::msg)?;
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
    fn mover_pod_settings_are_checked_as_their_kubernetes_types() {
        use k8s_openapi::api::core::v1::{ResourceRequirements, SecurityContext};
        let r = super::typed::<ResourceRequirements>(
            "--mover-resources",
            "ResourceRequirements",
            Some(r#"{"limits":{"memory":"2Gi"}}"#),
        )
        .unwrap()
        .unwrap();
        assert_eq!(r["limits"]["memory"], "2Gi");
        assert_eq!(
            super::typed::<ResourceRequirements>("--mover-resources", "ResourceRequirements", Some("{}")).unwrap(),
            None
        );
        let e =
            super::typed::<ResourceRequirements>("--mover-resources", "ResourceRequirements", Some(r#"{"limit":{}}"#))
                .unwrap_err()
                .to_string();
        assert!(e.contains("--mover-resources") && e.contains(".limit"), "{e}");
        let e = super::typed::<SecurityContext>(
            "--mover-security-context",
            "SecurityContext",
            Some(r#"{"runAsUser":"root"}"#),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--mover-security-context: not a SecurityContext"), "{e}");
        let e = super::typed::<SecurityContext>("--mover-security-context", "SecurityContext", Some("{runAsUser"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not JSON"), "{e}");
    }

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
