//! `lifeline bench-operator` (`make bench-operator`): the operator at scale on a simulated
//! cluster. Many BackupPolicies across many namespaces (each with its key, a `file://`
//! location and a claim to protect) are created, then `lifeline run` is started as its own
//! process, and the bench reports: the time until every policy is Ready, the operator's
//! peak RSS, API requests per reconcile, and the status writes (during start-up and in a
//! quiet period afterwards, where there must be none).

use crate::sim::{Cluster, Options, Profile};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Sizes of one bench run.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// BackupPolicies in all.
    #[arg(long, default_value_t = 1000)]
    pub policies: usize,
    /// Namespaces they are spread over.
    #[arg(long, default_value_t = 100)]
    pub namespaces: usize,
    /// Seconds of quiet after all are Ready, in which no status may be written.
    #[arg(long, default_value_t = 15)]
    pub quiet: u64,
}

fn objects(a: &BenchArgs, dir: &std::path::Path) -> Vec<(ApiResource, Value)> {
    let ar = |g: &str, v: &str, k: &str, p: &str| ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), p);
    let per_ns = a.policies.div_ceil(a.namespaces.max(1));
    let mut out = Vec::new();
    for n in 0..a.namespaces {
        let ns = format!("bench-{n:03}");
        out.push((
            ar("", "v1", "Namespace", "namespaces"),
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        ));
        out.push((
            ar("", "v1", "Secret", "secrets"),
            json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "key", "namespace": ns}, "stringData": {"passphrase": format!("bench passphrase {n}")}}),
        ));
        // A mounted directory per namespace (the operator never creates a location).
        let _ = std::fs::create_dir_all(dir.join(&ns));
        let url = format!("file://{}/{ns}", dir.display());
        out.push((
            ar("lifeline.io", "v1alpha1", "BackupLocation", "backuplocations"),
            json!({"apiVersion": "lifeline.io/v1alpha1", "kind": "BackupLocation", "metadata": {"name": "local", "namespace": ns}, "spec": {"url": url}}),
        ));
        for p in 0..per_ns.min(a.policies.saturating_sub(n * per_ns)) {
            let app = format!("app-{p}");
            out.push((
                ar("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims"),
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": format!("data-{p}"), "namespace": ns, "labels": {"app": app}},
                       "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
            ));
            out.push((
                ar("lifeline.io", "v1alpha1", "BackupPolicy", "backuppolicies"),
                json!({"apiVersion": "lifeline.io/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": format!("policy-{p}"), "namespace": ns},
                       "spec": {"protect": {"persistentVolumeClaimSelector": {"matchLabels": {"app": app}}}, "schedule": "0 3 * * *",
                                "locations": [{"name": "local", "role": "Primary"}],
                                "encryption": {"keySecret": {"name": "key", "key": "passphrase"}}, "retention": {"keepLast": 7}}}),
            ));
        }
    }
    out
}

fn ready_count(list: &[DynamicObject]) -> usize {
    list.iter()
        .filter(|p| {
            p.data["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .count()
}

/// `name value` lines of the operator's metrics whose name starts with `prefix`, summed.
fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |a, b| a + b)
}

fn kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines().find(|l| l.starts_with(field)).and_then(|l| l.split_whitespace().nth(1)?.parse().ok()).unwrap_or(0)
}

async fn scrape(addr: &str) -> String {
    // A plain HTTP/1.0 GET: no client library needed for one endpoint.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else { return String::new() };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await;
    let mut out = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_string(&mut out)).await;
    out
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let cluster = Cluster::start(Options { profile: Profile::Bare, ..Default::default() })?;
    let dir = tempfile_dir()?;
    let kubeconfig = dir.join("kubeconfig");
    cluster.write_kubeconfig(&kubeconfig)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let url: axum::http::Uri = cluster.url().parse()?;
    let client = rt.block_on(async { kube::Client::try_from(kube::Config::new(url)) })?;
    eprintln!("creating {} policies in {} namespaces …", a.policies, a.namespaces);
    rt.block_on(async {
        let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
        for crd in crate::api::crds() {
            crds.create(&PostParams::default(), &crd).await?;
        }
        // Served once Established, as on a real server.
        let policies: Api<DynamicObject> = Api::all_with(
            client.clone(),
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("lifeline.io", "v1alpha1", "BackupPolicy"),
                "backuppolicies",
            ),
        );
        let t = Instant::now();
        while policies.list(&Default::default()).await.is_err() {
            anyhow::ensure!(t.elapsed() < Duration::from_secs(30), "the CRDs were not served within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Namespaces first, then their Secrets and locations, then claims and policies.
        let rank = |k: &str| match k {
            "Namespace" => 0,
            "Secret" | "BackupLocation" => 1,
            _ => 2,
        };
        let all = objects(&a, &dir);
        let batches: Vec<Vec<(ApiResource, Value)>> =
            (0..3).map(|r| all.iter().filter(|(ar, _)| rank(&ar.kind) == r).cloned().collect()).collect();
        for batch in batches {
            futures::stream::iter(batch)
                .map(|(ar, obj)| {
                    let client = client.clone();
                    async move {
                        let ns = obj["metadata"]["namespace"].as_str().map(String::from);
                        let api: Api<DynamicObject> = match &ns {
                            Some(ns) => Api::namespaced_with(client, ns, &ar),
                            None => Api::all_with(client, &ar),
                        };
                        let o: DynamicObject = serde_json::from_value(obj)?;
                        api.create(&PostParams::default(), &o).await?;
                        anyhow::Ok(())
                    }
                })
                .buffer_unordered(16)
                .try_collect::<Vec<_>>()
                .await?;
        }
        anyhow::Ok(())
    })?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{port}");
    let requests_before = cluster.requests();
    let started = Instant::now();
    let mut child = std::process::Command::new(std::env::current_exe()?)
        .args(["run", "--leader-elect=false", "--http-addr", &addr])
        .env("KUBECONFIG", &kubeconfig)
        .env("LIFELINE_LOG", std::env::var("LIFELINE_BENCH_LOG").unwrap_or_else(|_| "error".into()))
        .spawn()?;
    let pid = child.id();
    let policies: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("lifeline.io", "v1alpha1", "BackupPolicy"),
            "backuppolicies",
        ),
    );
    // Readiness is followed through a watch, not by listing: the measurement must not
    // load the API server it measures.
    let deadline = Duration::from_secs(300);
    let ready_after = rt.block_on(async {
        use kube::runtime::watcher::{self, Event};
        let mut ready = std::collections::HashSet::new();
        let mut stream = std::pin::pin!(watcher::watcher(policies.clone(), Default::default()));
        loop {
            let next = tokio::time::timeout(deadline.saturating_sub(started.elapsed()), stream.next()).await;
            let ev = match next {
                Ok(Some(ev)) => ev?,
                Ok(None) => anyhow::bail!("the watch on BackupPolicies ended"),
                Err(_) => anyhow::bail!("only {} of {} policies Ready after {deadline:?}", ready.len(), a.policies),
            };
            let (Event::Apply(o) | Event::InitApply(o)) = ev else { continue };
            let key = (o.metadata.namespace.clone(), o.metadata.name.clone());
            if ready_count(std::slice::from_ref(&o)) == 1 {
                ready.insert(key);
            } else {
                ready.remove(&key);
            }
            if ready.len() == a.policies {
                return Ok(started.elapsed());
            }
        }
    })?;
    let requests_ready = cluster.requests() - requests_before;
    let at_ready = rt.block_on(scrape(&addr));
    std::thread::sleep(Duration::from_secs(a.quiet));
    let after = rt.block_on(scrape(&addr));
    let requests_quiet = cluster.requests() - requests_before - requests_ready;
    let (peak, now) = (kib(pid, "VmHWM:"), kib(pid, "VmRSS:"));
    let _ = child.kill();
    let _ = child.wait();
    let reconciles = metric(&at_ready, "lifeline_reconciles_total");
    let writes = metric(&at_ready, "lifeline_status_writes_total");
    let writes_quiet = metric(&after, "lifeline_status_writes_total") - writes;
    let errors = metric(&after, "lifeline_reconcile_errors_total");
    println!("policies                 {} in {} namespaces", a.policies, a.namespaces);
    println!("all Ready after          {:.1} s   (target: 30 s)", ready_after.as_secs_f64());
    println!(
        "operator peak RSS        {:.1} MiB (target: 100 MiB; {:.1} MiB at the end)",
        peak as f64 / 1024.0,
        now as f64 / 1024.0
    );
    println!("reconciles until Ready   {reconciles}");
    println!(
        "API requests until Ready {requests_ready} ({:.1} per reconcile, watches counted once)",
        requests_ready as f64 / reconciles.max(1.0)
    );
    println!("status writes until Ready {writes} ({:.2} per object)", writes / (a.policies + a.namespaces) as f64);
    println!("status writes in {} s of quiet {writes_quiet} (target: 0); API requests then {requests_quiet}", a.quiet);
    println!("reconcile errors         {errors}");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn tempfile_dir() -> std::io::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("lifeline-bench-operator-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
