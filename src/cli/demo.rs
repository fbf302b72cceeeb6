//! `lifeline demo` (`make demo`): the whole product in about a minute, with no Kubernetes
//! and no cloud account. Two simulated clusters ("primary" and "standby") and two
//! `file://` locations ("region-a", "region-b"); the operator runs for each cluster in
//! this process, and its mover Jobs run this binary. A StatefulSet keeps appending
//! numbered records to its volumes; a policy takes restore points while it writes. The
//! standby, which knows only the locations, keeps a warm standby: each new point restored
//! in place into its volumes, the StatefulSet at zero. The primary cluster is then lost;
//! its heartbeat stops, and the standby fails over by itself (fencing markers, then it
//! scales up). For comparison, the same point is restored cold into another namespace.
//! The demo checks that every record up to the restored point is back, brings the
//! primary back to show it standing down, and prints the restore points, the RPO, and the
//! warm and cold RTO side by side.

use crate::api::restore_plan::PlanPhase;
use crate::api::restore_point::RunPhase;
use crate::api::{RestorePlan, RestorePoint};
use crate::controller::Config;
use crate::controller::clock::SystemClock;
use crate::mover::record;
use crate::repo::{Repository, Secret};
use crate::sim::{Cluster, Options as SimOptions};
use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Restore points to take before the primary is lost.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=10))]
    pub points: u32,
    /// Leave the standby cluster running at the end (until Ctrl-C), with its kubeconfig
    /// printed, to look around with kubectl.
    #[arg(long)]
    pub keep: bool,
}

const NS: &str = "records";
const PASSPHRASE: &str = "demo passphrase: keep a copy of yours outside the cluster";

/// What the demo prints: plain lines with the time since the start, or, on a terminal, a
/// spinner while it waits.
struct Out {
    start: Instant,
    spinner: Option<indicatif::ProgressBar>,
}

impl Out {
    fn new() -> Self {
        Out { start: Instant::now(), spinner: None }
    }

    fn line(&mut self, msg: &str) {
        self.done();
        println!("[{:>5.1}s] {msg}", self.start.elapsed().as_secs_f64());
    }

    fn wait(&mut self, msg: &str) {
        self.done();
        if std::io::stderr().is_terminal() {
            let s = indicatif::ProgressBar::new_spinner().with_message(msg.to_string());
            s.enable_steady_tick(Duration::from_millis(120));
            self.spinner = Some(s);
        }
    }

    fn done(&mut self) {
        if let Some(s) = self.spinner.take() {
            s.finish_and_clear();
        }
    }
}

fn ar(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// The resource of a manifest this demo applies.
fn resource(obj: &Value) -> anyhow::Result<ApiResource> {
    Ok(match obj["kind"].as_str().unwrap_or_default() {
        "Namespace" => ar("", "v1", "Namespace", "namespaces"),
        "Secret" => ar("", "v1", "Secret", "secrets"),
        "Service" => ar("", "v1", "Service", "services"),
        "StatefulSet" => ar("apps", "v1", "StatefulSet", "statefulsets"),
        "BackupLocation" => ar("lifeline.io", "v1alpha1", "BackupLocation", "backuplocations"),
        "BackupPolicy" => ar("lifeline.io", "v1alpha1", "BackupPolicy", "backuppolicies"),
        "RestorePlan" => ar("lifeline.io", "v1alpha1", "RestorePlan", "restoreplans"),
        k => bail!("the demo does not apply kind {k}"),
    })
}

async fn apply(client: &Client, obj: Value) -> anyhow::Result<()> {
    let ar = resource(&obj)?;
    let name = obj["metadata"]["name"].as_str().unwrap_or_default().to_string();
    let api: Api<DynamicObject> = match obj["metadata"]["namespace"].as_str() {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    };
    api.patch(&name, &PatchParams::apply("lifeline-demo").force(), &Patch::Apply(&obj))
        .await
        .with_context(|| format!("apply {} {name}", ar.kind))?;
    Ok(())
}

/// Waits (up to `secs`) until `f` yields a value.
async fn until<T, F, Fut>(secs: u64, what: &str, mut f: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {secs} s waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One simulated cluster with the CRDs installed and the operator running.
struct Site {
    cluster: Cluster,
    client: Client,
    kubeconfig: PathBuf,
    operator: tokio::task::JoinHandle<anyhow::Result<()>>,
}

async fn site(dir: &Path, name: &str) -> anyhow::Result<Site> {
    // The simulated cluster drives its own runtime: started off this one's threads.
    let cluster = tokio::task::spawn_blocking(|| Cluster::start(SimOptions::default()))
        .await?
        .context("start a simulated cluster")?;
    let kubeconfig = dir.join(format!("{name}.kubeconfig"));
    cluster.write_kubeconfig(&kubeconfig)?;
    let client = Client::try_from(kube::Config::new(cluster.url().parse()?))?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::api::crds() {
        crds.create(&PostParams::default(), &crd).await.context("install the CRDs")?;
    }
    let plans: Api<RestorePlan> = Api::all(client.clone());
    until(30, "the CRDs to be served", || async { plans.list(&Default::default()).await.ok() }).await?;
    let operator = operator(&client).await?;
    Ok(Site { cluster, client, kubeconfig, operator })
}

/// The operator for a cluster, in this process; its mover Jobs run this binary.
async fn operator(client: &Client) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<()>>> {
    let config = Config {
        mover_command: vec![std::env::current_exe()?.display().to_string()],
        mover_image: format!("lifeline:{}", env!("CARGO_PKG_VERSION")),
        heartbeat_interval: Duration::from_secs(1),
        // The cold comparison restores into a namespace of its own, which needs the grant
        // any cross-namespace restore needs.
        grants: crate::controller::grants::Grants::parse(&[format!("records-cold={NS}")])
            .map_err(anyhow::Error::msg)?,
        ..Config::default()
    };
    let opts = crate::operator::Options { config, http: None, leader: None, clock: Arc::new(SystemClock) };
    let (_, fut) = crate::operator::start(client.clone(), opts, futures::future::pending()).await?;
    Ok(tokio::spawn(fut))
}

/// The namespace, the key, and the two locations (read-only in the standby).
fn locations(a: &str, b: &str, read_only: bool) -> Vec<Value> {
    let mut out = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "records-key", "namespace": NS},
               "stringData": {"passphrase": PASSPHRASE}}),
    ];
    for (name, url) in [("region-a", a), ("region-b", b)] {
        let mut spec =
            json!({"url": url, "keySecret": {"name": "records-key", "key": "passphrase"}, "checkInterval": "2s"});
        if read_only {
            spec["accessMode"] = json!("ReadOnly");
        }
        out.push(json!({"apiVersion": "lifeline.io/v1alpha1", "kind": "BackupLocation",
                        "metadata": {"name": name, "namespace": NS}, "spec": spec}));
    }
    out
}

/// The workload: two replicas, each with a 4 MB table written once and appending
/// `record <n>` five times a second.
fn workload() -> Vec<Value> {
    let script = "[ -f /data/table ] || head -c 4000000 /dev/urandom > /data/table\ni=$(wc -l < /data/records.log 2>/dev/null || echo 0)\nwhile true; do\n  i=$((i + 1))\n  echo \"record $i\" >> /data/records.log\n  sleep 0.2\ndone\n";
    vec![
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "records", "namespace": NS},
               "spec": {"clusterIP": "None", "selector": {"app": "records"}, "ports": [{"name": "none", "port": 80}]}}),
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "records", "namespace": NS},
               "spec": {"serviceName": "records", "replicas": 2, "selector": {"matchLabels": {"app": "records"}},
                        "template": {"metadata": {"labels": {"app": "records"}},
                                     "spec": {"containers": [{"name": "writer", "image": "busybox:1.37",
                                              "command": ["sh", "-c", script],
                                              "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]}}),
        json!({"apiVersion": "lifeline.io/v1alpha1", "kind": "BackupPolicy", "metadata": {"name": "records", "namespace": NS},
               "spec": {"protect": {"statefulSets": ["records"]}, "schedule": "0 3 * * *", "rpo": "25h",
                        "locations": [{"name": "region-a", "role": "Primary"}, {"name": "region-b", "role": "Replica"}],
                        "encryption": {"keySecret": {"name": "records-key", "key": "passphrase"}},
                        "retention": {"keepLast": 24}}}),
    ]
}

/// A figure in bytes for people.
fn human(b: i64) -> String {
    let b = b as f64;
    if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.1} kB", b / 1e3)
    } else {
        format!("{b} B")
    }
}

fn secs(d: Option<&kube::core::Duration>) -> String {
    d.map(|d| format!("{:.1}s", Duration::from(*d).as_secs_f64())).unwrap_or_else(|| "-".into())
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = Scratch(std::env::temp_dir().join(format!("lifeline-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = rt.block_on(demo(&a, &dir.0));
    rt.shutdown_timeout(Duration::from_secs(5));
    result
}

/// The locations, kubeconfigs and checks of one run, removed when it ends (also when it
/// fails).
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn demo(a: &DemoArgs, dir: &Path) -> anyhow::Result<()> {
    let mut out = Out::new();
    println!("Lifeline demo: a StatefulSet lost with its cluster fails over to a warm standby cluster by itself.");
    let (loc_a, loc_b) = (dir.join("region-a"), dir.join("region-b"));
    std::fs::create_dir_all(&loc_a)?;
    std::fs::create_dir_all(&loc_b)?;
    let (url_a, url_b) = (format!("file://{}", loc_a.display()), format!("file://{}", loc_b.display()));

    out.wait("starting the primary cluster and its operator");
    let mut primary = site(dir, "primary").await?;
    out.line("primary cluster running, with the operator");
    for o in locations(&url_a, &url_b, false).into_iter().chain(workload()) {
        apply(&primary.client, o).await?;
    }
    out.wait("waiting for the StatefulSet to run");
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(primary.client.clone(), NS);
    until(90, "the records StatefulSet to run", || async {
        let l = pods.list(&Default::default()).await.ok()?;
        let ready =
            l.items.iter().filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")).count();
        (ready == 2).then_some(())
    })
    .await?;
    out.line("StatefulSet records: 2 replicas appending numbered records to their volumes");

    let points_api: Api<RestorePoint> = Api::namespaced(primary.client.clone(), NS);
    let policies = Api::<DynamicObject>::namespaced_with(
        primary.client.clone(),
        NS,
        &ar("lifeline.io", "v1alpha1", "BackupPolicy", "backuppolicies"),
    );
    let mut names: Vec<String> = Vec::new();
    let mut standby: Option<Site> = None;
    for n in 1..=a.points {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let patch = json!({"metadata": {"annotations": {"lifeline.io/run-now": format!("demo-{n}")}}});
        policies.patch("records", &PatchParams::default(), &Patch::Merge(&patch)).await?;
        out.wait(&format!("taking restore point {n} of {} while the records are written", a.points));
        let p = until(120, "the restore point", || async {
            let l = points_api.list(&Default::default()).await.ok()?;
            let p = l.items.into_iter().find(|p| !names.contains(&p.name_any()))?;
            let s = p.status.as_ref()?;
            let copied = s.locations.iter().any(|l| l.name == "region-b" && l.present);
            (matches!(s.phase, RunPhase::Failed) || (s.phase == RunPhase::Completed && copied)).then_some(p)
        })
        .await?;
        let s = p.status.clone().unwrap_or_default();
        if s.phase == RunPhase::Failed {
            bail!("restore point {} failed: {}", p.name_any(), s.message.unwrap_or_default());
        }
        out.line(&format!(
            "restore point {}: {} protected, {} new, in region-a and region-b",
            p.name_any(),
            human(s.protected_bytes.unwrap_or(0)),
            human(s.new_bytes.unwrap_or(0)),
        ));
        names.push(p.name_any());
        // The standby cluster, from the first point on: a warm standby of the workload.
        let site_b = match standby.take() {
            Some(b) => b,
            None => {
                out.wait("starting the standby cluster and its warm standby");
                let b = start_standby(&primary, &url_a, &url_b).await?;
                out.line("standby cluster running; it knows only the locations and keeps a warm standby");
                b
            }
        };
        out.wait("the warm standby takes the new restore point in place");
        let sb = held(&site_b, &p.name_any()).await?;
        out.line(&format!(
            "warm standby holds {}: refresh {} wrote {} in {}, StatefulSet at zero",
            p.name_any(),
            sb.refreshes,
            human(sb.last_refresh_bytes.unwrap_or(0)),
            secs(sb.last_refresh_duration.as_ref()),
        ));
        standby = Some(site_b);
    }
    let standby = standby.context("no standby")?;
    let final_points = points_api.list(&Default::default()).await?.items;

    // The site is lost: its cluster and operator stop (and with them its heartbeat); what
    // it wrote after the last point is gone with it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    primary.operator.abort();
    primary.cluster.kill();
    out.line("the primary cluster is lost");

    out.wait("the standby watches the primary's heartbeat go silent in both regions, then fails over");
    let plans: Api<RestorePlan> = Api::namespaced(standby.client.clone(), NS);
    let plan = until(240, "the failover", || async {
        let p = plans.get_opt("records").await.ok()??;
        matches!(p.status.as_ref()?.phase, PlanPhase::Completed | PlanPhase::Failed).then_some(p)
    })
    .await?;
    let st = plan.status.clone().unwrap_or_default();
    if st.phase != PlanPhase::Completed {
        bail!("the failover failed: {}", st.message.unwrap_or_default());
    }
    let used = st.restored_point.clone().context("the plan names no restore point")?;
    if let Some(h) = &st.heartbeat {
        let silent: Vec<String> = h.locations.iter().map(|l| format!("{} {}", l.location, l.state)).collect();
        out.line(&format!("heartbeat lost ({}): the standby decided to fail over", silent.join(", ")));
    }
    if let Some(f) = &st.fencing {
        out.line(&format!(
            "fencing: the primary's cluster {}; fencing markers written ({})",
            f.source,
            f.markers.join(", ")
        ));
    }
    out.line(&format!("promoted: {} (held by the warm standby); the StatefulSet is ready in the standby", used.name));

    // Every record up to the point, byte for byte: the point's volumes read with the data
    // path alone, against the standby's volumes.
    out.wait("checking every record");
    let volumes: Vec<String> = st.volumes.iter().map(|v| v.pvc.clone()).collect();
    let expected = {
        let (url, point, check_dir) = (url_a.clone(), used.name.clone(), dir.join("check"));
        tokio::task::spawn_blocking(move || point_records(&url, &point, &volumes, &check_dir)).await??
    };
    let mut counted = Vec::new();
    for (pvc, expected) in expected {
        let restored = std::fs::read_to_string(volume_dir(&standby.client, &pvc).await?.join("records.log"))?;
        if !restored.starts_with(&expected) {
            bail!("{pvc}: the restored volume does not hold every record of the restore point");
        }
        counted.push(format!("{pvc}: records 1..{}", expected.lines().count()));
    }
    out.line(&format!("every record up to the restore point is back ({})", counted.join(", ")));

    // For comparison: the same point restored cold (new volumes filled from the
    // locations) into another namespace of the standby.
    out.wait("for comparison, restoring the same point cold into namespace records-cold");
    let cold = json!({"apiVersion": "lifeline.io/v1alpha1", "kind": "RestorePlan",
        "metadata": {"name": "records-cold", "namespace": NS},
        "spec": {"mode": "Restore", "source": {"locations": ["region-a", "region-b"], "policy": "records"},
                 "pointInTime": {"type": "Named", "restorePoint": used.name},
                 "target": {"namespace": "records-cold"}}});
    apply(&standby.client, cold).await?;
    let cold = until(240, "the cold restore", || async {
        let p = plans.get_opt("records-cold").await.ok()??;
        matches!(p.status.as_ref()?.phase, PlanPhase::Completed | PlanPhase::Failed).then_some(p)
    })
    .await?
    .status
    .unwrap_or_default();
    if cold.phase != PlanPhase::Completed {
        bail!("the cold restore failed: {}", cold.message.unwrap_or_default());
    }
    out.line("cold restore done");

    // The primary site returns: its operator finds the marker and stands down.
    out.wait("the primary cluster comes back");
    let mut cluster = primary.cluster;
    let cluster_back = tokio::task::spawn_blocking(move || cluster.restart().map(|()| cluster)).await??;
    primary.cluster = cluster_back;
    primary.operator = operator(&primary.client).await?;
    let policies = Api::<crate::api::BackupPolicy>::namespaced(primary.client.clone(), NS);
    let sets = Api::<k8s_openapi::api::apps::v1::StatefulSet>::namespaced(primary.client.clone(), NS);
    until(60, "the returning primary to stand down", || async {
        let p = policies.get("records").await.ok()?;
        let fenced = p.status?.conditions.iter().any(|c| c.reason == "Fenced" && c.status == "True");
        let zero = sets.get("records").await.ok()?.spec?.replicas == Some(0);
        (fenced && zero && p.spec.suspend).then_some(())
    })
    .await?;
    out.line(
        "the primary comes back, finds the fencing marker and stands down: policy suspended, StatefulSet held at zero",
    );

    // The report.
    out.done();
    println!();
    println!("Restore points (taken while the records were written):");
    println!("  {:<28} {:>12} {:>12} {:>8}", "NAME", "PROTECTED", "NEW STORED", "RATIO");
    let mut shown: Vec<&RestorePoint> = final_points.iter().filter(|p| names.contains(&p.name_any())).collect();
    shown.sort_by_key(|p| p.status.as_ref().and_then(|s| s.start_time.clone()).map(|t| t.0));
    for p in shown {
        let s = p.status.clone().unwrap_or_default();
        let (prot, new) = (s.protected_bytes.unwrap_or(0), s.new_bytes.unwrap_or(0));
        let ratio = if new > 0 { format!("{:.1}x", prot as f64 / new as f64) } else { "-".into() };
        println!("  {:<28} {:>12} {:>12} {:>8}", p.name_any(), human(prot), human(new), ratio);
    }
    let rto = st.rto.clone();
    let part = |d: Option<&kube::core::Duration>| secs(d);
    println!();
    println!("Recovery of {} from the warm standby (automatic, on heartbeat loss):", used.name);
    println!("  RPO  {}   (age of the restored data at the primary's last heartbeat)", secs(st.rpo.as_ref()));
    println!(
        "  RTO  {}   = detection {} + decision {} + execution {}",
        part(rto.as_ref().and_then(|r| r.total.as_ref())),
        part(rto.as_ref().and_then(|r| r.detection.as_ref())),
        part(rto.as_ref().and_then(|r| r.decision.as_ref())),
        part(rto.as_ref().and_then(|r| r.execution.as_ref())),
    );
    let warm = rto.as_ref().and_then(|r| r.execution).map(Duration::from);
    let cold_exec = cold.rto.as_ref().and_then(|r| r.execution).map(Duration::from);
    println!();
    println!("Execution time of the recovery, same point, same standby cluster:");
    println!(
        "  cold restore (new volumes filled from the locations)  {}",
        cold_exec.map(|d| format!("{:.1}s", d.as_secs_f64())).unwrap_or_else(|| "-".into())
    );
    println!(
        "  warm standby (volumes current, only scaled up)        {}",
        warm.map(|d| format!("{:.1}s", d.as_secs_f64())).unwrap_or_else(|| "-".into())
    );
    println!("DEMO PASSED");

    if a.keep {
        println!();
        println!("The standby cluster keeps running (the primary was lost as part of the demo):");
        println!("  export KUBECONFIG={}", standby.kubeconfig.display());
        println!("  kubectl get restoreplans,restorepoints,statefulsets,pvc -n {NS}");
        println!("Press Ctrl-C to stop and clean up.");
        tokio::signal::ctrl_c().await?;
    }
    standby.operator.abort();
    primary.operator.abort();
    drop(standby);
    drop(primary);
    Ok(())
}

/// The standby cluster: read-only locations, a way to reach the primary (for fencing),
/// and a warm standby of the workload that fails over by itself when the primary's
/// heartbeat stops for 5 s in every region.
async fn start_standby(primary: &Site, url_a: &str, url_b: &str) -> anyhow::Result<Site> {
    let dir = primary.kubeconfig.parent().context("no scratch directory")?.to_path_buf();
    let standby = site(&dir, "standby").await?;
    for o in locations(url_a, url_b, true) {
        apply(&standby.client, o).await?;
    }
    let kubeconfig = std::fs::read_to_string(&primary.kubeconfig)?;
    apply(
        &standby.client,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "primary-kubeconfig", "namespace": NS},
               "stringData": {"kubeconfig": kubeconfig}}),
    )
    .await?;
    let plan = json!({"apiVersion": "lifeline.io/v1alpha1", "kind": "RestorePlan",
        "metadata": {"name": "records", "namespace": NS},
        "spec": {"mode": "WarmStandby", "source": {"locations": ["region-a", "region-b"], "policy": "records"},
                 "failover": {"sourceKubeconfig": {"name": "primary-kubeconfig", "key": "kubeconfig"}},
                 "trigger": {"type": "HeartbeatLoss", "heartbeat": {"timeout": "5s", "decisionDelay": "1s"}}}});
    apply(&standby.client, plan).await?;
    Ok(standby)
}

/// Waits until the warm standby holds `point`.
async fn held(standby: &Site, point: &str) -> anyhow::Result<crate::api::restore_plan::StandbyStatus> {
    let plans: Api<RestorePlan> = Api::namespaced(standby.client.clone(), NS);
    let st = until(120, "the warm standby", || async {
        let st = plans.get_opt("records").await.ok()??.status?;
        if st.phase == PlanPhase::Failed {
            return Some(Err(st.message.unwrap_or_default()));
        }
        let sb = st.standby?;
        (st.phase == PlanPhase::Standby && sb.point.as_deref() == Some(point)).then_some(Ok(sb))
    })
    .await?;
    st.map_err(|m| anyhow::anyhow!("the warm standby failed: {m}"))
}

/// The records each volume holds in restore point `point`, read with the data path alone.
fn point_records(url: &str, point: &str, pvcs: &[String], dir: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let repo = Arc::new(Repository::open(
        crate::store::open(url, &Default::default())?,
        &Secret::Passphrase(zeroize::Zeroizing::new(PASSPHRASE.as_bytes().to_vec())),
    )?);
    let points = repo.points()?.good;
    let mut out = Vec::new();
    for pvc in pvcs {
        let (_, snap) = points
            .iter()
            .find(|(_, s)| {
                s.tags.get(record::TAG_POINT).map(String::as_str) == Some(point)
                    && s.tags.get(record::TAG_PVC).is_some_and(|p| p.ends_with(&format!("/{pvc}")))
            })
            .with_context(|| format!("no data of {pvc} in {point}"))?;
        let target = dir.join(pvc);
        crate::repo::restore::run(repo.clone(), snap, &target, &Default::default(), Arc::default())?;
        out.push((pvc.clone(), std::fs::read_to_string(target.join("records.log"))?));
    }
    Ok(out)
}

/// The host directory behind a claim of the simulated cluster.
async fn volume_dir(client: &Client, pvc: &str) -> anyhow::Result<PathBuf> {
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let pvs: Api<PersistentVolume> = Api::all(client.clone());
    let c = pvcs.get(pvc).await?;
    let pv = c.spec.and_then(|s| s.volume_name).with_context(|| format!("{pvc} is not bound"))?;
    let pv = serde_json::to_value(pvs.get(&pv).await?)?;
    crate::sim::volume_path(&pv).with_context(|| format!("no host path for {pvc}"))
}
