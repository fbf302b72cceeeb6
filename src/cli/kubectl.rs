//! `kubectl lifeline`: the same binary installed as `kubectl-lifeline` (the image has both
//! names; `lifeline kubectl …` is the same command). It reads and writes only the
//! Kubernetes API, as kubectl does, with kubectl's flags: `-n`, `-A`, `--context`,
//! `--kubeconfig`, `-o json|yaml|wide`.
//!
//! - `status`: every policy with its RPO target and achieved, last and next backup,
//!   locations, last drill; every recovery plan with its phase and standby lag.
//! - `backup now <policy>`: an on-demand run (`--wait` follows it).
//! - `points [policy]`: restore points.
//! - `restore|failover|drill <policy>`: creates the RestorePlan and follows it until it
//!   ends (a live display on a terminal, a line per change otherwise), then prints its RPO
//!   and RTO; the exit code says whether it completed.
//! - `describe <kind>/<name>`: conditions, steps and Events as a story.

use crate::api::restore_plan::{PlanPhase, RestoreMode};
use crate::api::restore_point::RunPhase;
use crate::api::{BackupLocation, BackupPolicy, RestorePlan, RestorePoint};
use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Resource, ResourceExt};
use serde_json::{Value, json};
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "kubectl lifeline",
    about = "Lifeline from kubectl: status, on-demand backups, restore points, restores, failovers, drills"
)]
pub struct PluginCli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: PluginCommand,
}

/// kubectl's flags.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Namespace (default: the context's, else `default`).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Every namespace (`status`, `points`).
    #[arg(short = 'A', long, global = true)]
    pub all_namespaces: bool,
    /// The kubeconfig context to use.
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The kubeconfig file (default: `KUBECONFIG`, else `~/.kube/config`).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Output format: a table (default), `wide`, `json` or `yaml`.
    #[arg(short = 'o', long, global = true, value_enum)]
    pub output: Option<Output>,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Wide,
    Json,
    Yaml,
}

#[derive(Subcommand, Debug)]
pub enum PluginCommand {
    /// Policies (RPO target and achieved, last and next backup, locations, last drill)
    /// and recovery plans (phase, standby lag).
    Status,
    /// On-demand backups.
    Backup {
        #[command(subcommand)]
        what: BackupCommand,
    },
    /// Restore points, of one policy or all.
    Points { policy: Option<String> },
    /// Restore a policy's workloads (into another namespace with --to-namespace) and follow it.
    Restore(PlanArgs),
    /// Fail a policy's workloads over into this cluster and follow it.
    Failover(PlanArgs),
    /// Restore into a scratch namespace, check, measure the RTO, clean up; follow it.
    Drill(PlanArgs),
    /// A Lifeline object's conditions, steps and Events as a story (`backuppolicy/NAME`,
    /// `restoreplan/NAME`, `restorepoint/NAME`, `backuplocation/NAME`).
    Describe { target: String },
}

#[derive(Subcommand, Debug)]
pub enum BackupCommand {
    /// Start a run of a policy now.
    Now {
        policy: String,
        /// Follow the run until it ends.
        #[arg(long)]
        wait: bool,
    },
}

#[derive(Args, Debug)]
pub struct PlanArgs {
    /// The BackupPolicy whose restore points to use.
    pub policy: String,
    /// A restore point by name (default: the newest complete one).
    #[arg(long)]
    pub point: Option<String>,
    /// The newest restore point at or before this RFC 3339 time.
    #[arg(long, conflicts_with = "point")]
    pub before: Option<String>,
    /// Locations to read from, in order (default: the policy's, else every BackupLocation
    /// of the namespace).
    #[arg(long = "location")]
    pub locations: Vec<String>,
    /// Restore into this namespace (restore: default the policy's; drill: a scratch one).
    #[arg(long)]
    pub to_namespace: Option<String>,
    /// Failover: promote data older than the plan would allow.
    #[arg(long)]
    pub force: bool,
    /// Name of the RestorePlan (default: `<policy>-<mode>-<time>`).
    #[arg(long)]
    pub name: Option<String>,
    /// Create the plan and return at once.
    #[arg(long)]
    pub no_follow: bool,
    /// Give up following after this long (the plan goes on).
    #[arg(long, default_value = "2h")]
    pub timeout: String,
}

/// Runs the plugin; the process exit code.
pub fn main(cli: PluginCli) -> anyhow::Result<std::process::ExitCode> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let (client, default_ns) = connect(&cli.global).await?;
        let ns = cli.global.namespace.clone().unwrap_or(default_ns);
        let k = Kubectl { client, ns, g: cli.global };
        match cli.command {
            PluginCommand::Status => k.status().await,
            PluginCommand::Backup { what: BackupCommand::Now { policy, wait } } => k.backup_now(&policy, wait).await,
            PluginCommand::Points { policy } => k.points(policy.as_deref()).await,
            PluginCommand::Restore(a) => k.plan(RestoreMode::Restore, a).await,
            PluginCommand::Failover(a) => k.plan(RestoreMode::Failover, a).await,
            PluginCommand::Drill(a) => k.plan(RestoreMode::Drill, a).await,
            PluginCommand::Describe { target } => k.describe(&target).await,
        }
    })
}

async fn connect(g: &Global) -> anyhow::Result<(Client, String)> {
    let opts = kube::config::KubeConfigOptions { context: g.context.clone(), ..Default::default() };
    let config = match &g.kubeconfig {
        Some(p) => {
            let kc = kube::config::Kubeconfig::read_from(p).with_context(|| format!("--kubeconfig {}", p.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &opts).await?
        }
        None if g.context.is_some() => kube::Config::from_kubeconfig(&opts).await?,
        None => kube::Config::infer().await?,
    };
    let ns = config.default_namespace.clone();
    Ok((Client::try_from(config)?, ns))
}

struct Kubectl {
    client: Client,
    ns: String,
    g: Global,
}

/// An age as kubectl prints it (`45s`, `3m20s`, `5h10m`, `4d`).
pub fn age(d: Duration) -> String {
    crate::k8s::human_duration(d.as_secs() as i64)
}

fn since(t: &Time) -> Duration {
    jiff::Timestamp::now().duration_since(t.0).unsigned_abs()
}

fn until(t: &Time) -> Duration {
    t.0.duration_since(jiff::Timestamp::now()).unsigned_abs()
}

fn bytes(n: i64) -> String {
    super::repo::human(n.max(0) as u64)
}

/// Columns aligned as kubectl aligns them: three spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let n = cells.len();
        let mut s = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            if i + 1 == n {
                s.push_str(&c);
            } else {
                s.push_str(&format!("{c:<width$}   ", width = w[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.clone()));
        out.push('\n');
    }
    out
}

fn print_value(v: &impl serde::Serialize, o: Output) -> anyhow::Result<()> {
    let text = match o {
        Output::Yaml => serde_saphyr::to_string(v)?,
        _ => format!("{}\n", serde_json::to_string_pretty(v)?),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    Ok(())
}

fn condition(conds: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition], t: &str) -> Option<(String, String)> {
    conds.iter().find(|c| c.type_ == t).map(|c| (c.status.clone(), c.reason.clone()))
}

fn list_object<T: serde::Serialize>(items: &[T]) -> anyhow::Result<Value> {
    Ok(json!({"apiVersion": "v1", "kind": "List", "items": serde_json::to_value(items)?, "metadata": {}}))
}

/// A namespaced kind the plugin reads.
trait Namespaced:
    Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
{
}

impl<K> Namespaced for K where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
{
}

impl Kubectl {
    /// The namespace's objects, or every namespace's with `-A`.
    fn api<K: Namespaced>(&self) -> Api<K> {
        if self.g.all_namespaces { Api::all(self.client.clone()) } else { self.here() }
    }

    /// The namespace's objects.
    fn here<K: Namespaced>(&self) -> Api<K> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn status(&self) -> anyhow::Result<std::process::ExitCode> {
        let policies =
            self.api::<BackupPolicy>().list(&ListParams::default()).await.context("list BackupPolicies")?.items;
        let plans = self.api::<RestorePlan>().list(&ListParams::default()).await.context("list RestorePlans")?.items;
        let mut ps = Vec::new();
        for p in &policies {
            let st = p.status.clone().unwrap_or_default();
            let achieved = st
                .last_backup
                .as_ref()
                .and_then(|b| b.start_time.as_ref().or(b.completion_time.as_ref()))
                .map(|t| since(t).as_secs());
            let rpo = p.spec.rpo.map(|r| Duration::from(r).as_secs());
            ps.push(json!({
                "namespace": p.namespace(), "name": p.name_any(),
                "ready": condition(&st.conditions, "Ready").map(|c| c.0),
                "reason": condition(&st.conditions, "Ready").map(|c| c.1),
                "schedule": p.spec.schedule,
                "rpoTargetSeconds": rpo,
                "rpoAchievedSeconds": achieved,
                "rpoBreached": matches!((rpo, achieved), (Some(t), Some(a)) if a > t),
                "lastBackup": st.last_backup.as_ref().map(|b| json!({"restorePoint": b.restore_point, "completionTime": b.completion_time, "newBytes": b.new_bytes})),
                "nextBackup": st.next_run,
                "protectedBytes": st.protected_bytes, "storedBytes": st.stored_bytes,
                "locations": st.locations.iter().map(|l| json!({"name": l.name, "state": format!("{:?}", l.state), "lastRestorePoint": l.last_restore_point})).collect::<Vec<_>>(),
                "lastDrill": st.last_drill.as_ref().map(|d| json!({"passed": d.passed, "time": d.time, "rtoSeconds": d.rto.map(|r| Duration::from(r).as_secs_f64()), "restorePlan": d.restore_plan})),
            }));
        }
        let mut qs = Vec::new();
        for p in &plans {
            let st = p.status.clone().unwrap_or_default();
            let lag = st
                .standby
                .as_ref()
                .filter(|s| s.promoted.is_none())
                .and_then(|s| s.point_time.as_ref())
                .map(|t| since(t).as_secs());
            qs.push(json!({
                "namespace": p.namespace(), "name": p.name_any(), "mode": format!("{:?}", p.spec.mode),
                "phase": format!("{:?}", st.phase), "policy": p.spec.source.policy,
                "restorePoint": st.restored_point.as_ref().map(|r| r.name.clone()),
                "standbyLagSeconds": lag,
                "rpoSeconds": st.rpo.map(|r| Duration::from(r).as_secs_f64()),
                "rtoSeconds": st.rto.as_ref().and_then(|r| r.total).map(|r| Duration::from(r).as_secs_f64()),
                "message": st.message,
            }));
        }
        let summary = json!({"policies": ps, "plans": qs});
        if let Some(o @ (Output::Json | Output::Yaml)) = self.g.output {
            print_value(&summary, o)?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        let wide = self.g.output == Some(Output::Wide);
        let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
        let secs = |v: &Value| v.as_u64().map(|x| age(Duration::from_secs(x))).unwrap_or_else(|| "-".into());
        let mut out = String::new();
        if ps.is_empty() {
            out.push_str(&format!("No BackupPolicies{}.\n", self.where_()));
        } else {
            let mut header =
                vec!["POLICY", "READY", "RPO", "ACHIEVED", "LAST BACKUP", "NEXT", "LOCATIONS", "LAST DRILL"];
            if wide {
                header.extend(["SCHEDULE", "PROTECTED", "STORED"]);
            }
            if self.g.all_namespaces {
                header.insert(0, "NAMESPACE");
            }
            let rows: Vec<Vec<String>> = policies
                .iter()
                .zip(&ps)
                .map(|(p, j)| {
                    let st = p.status.clone().unwrap_or_default();
                    let mut achieved = secs(&j["rpoAchievedSeconds"]);
                    if j["rpoBreached"] == true {
                        achieved.push_str(" (breached)");
                    }
                    let mut r = vec![
                        p.name_any(),
                        s(&j["reason"]),
                        secs(&j["rpoTargetSeconds"]),
                        achieved,
                        st.last_backup
                            .as_ref()
                            .and_then(|b| b.completion_time.as_ref())
                            .map(|t| format!("{} ago", age(since(t))))
                            .unwrap_or_else(|| "-".into()),
                        st.next_run.as_ref().map(|t| format!("in {}", age(until(t)))).unwrap_or_else(|| "-".into()),
                        if st.locations.is_empty() {
                            "-".into()
                        } else {
                            st.locations
                                .iter()
                                .map(|l| format!("{}:{:?}", l.name, l.state))
                                .collect::<Vec<_>>()
                                .join(",")
                        },
                        st.last_drill
                            .as_ref()
                            .map(|d| {
                                format!("{} {} ago", if d.passed { "passed" } else { "FAILED" }, age(since(&d.time)))
                            })
                            .unwrap_or_else(|| "-".into()),
                    ];
                    if wide {
                        r.extend([
                            p.spec.schedule.clone(),
                            st.protected_bytes.map(bytes).unwrap_or_else(|| "-".into()),
                            st.stored_bytes.map(bytes).unwrap_or_else(|| "-".into()),
                        ]);
                    }
                    if self.g.all_namespaces {
                        r.insert(0, p.namespace().unwrap_or_default());
                    }
                    r
                })
                .collect();
            out.push_str(&table(&header, &rows));
        }
        if !qs.is_empty() {
            let mut header = vec!["PLAN", "MODE", "PHASE", "POINT", "STANDBY LAG", "RPO", "RTO"];
            if self.g.all_namespaces {
                header.insert(0, "NAMESPACE");
            }
            let f = |v: &Value| v.as_f64().map(|x| format!("{x:.1}s")).unwrap_or_else(|| "-".into());
            let rows: Vec<Vec<String>> = qs
                .iter()
                .map(|j| {
                    let mut r = vec![
                        s(&j["name"]),
                        s(&j["mode"]),
                        s(&j["phase"]),
                        s(&j["restorePoint"]),
                        secs(&j["standbyLagSeconds"]),
                        f(&j["rpoSeconds"]),
                        f(&j["rtoSeconds"]),
                    ];
                    if self.g.all_namespaces {
                        r.insert(0, s(&j["namespace"]));
                    }
                    r
                })
                .collect();
            out.push('\n');
            out.push_str(&table(&header, &rows));
        }
        print!("{out}");
        Ok(std::process::ExitCode::SUCCESS)
    }

    fn where_(&self) -> String {
        if self.g.all_namespaces { String::new() } else { format!(" in namespace {}", self.ns) }
    }

    async fn backup_now(&self, policy: &str, wait: bool) -> anyhow::Result<std::process::ExitCode> {
        let api = self.here::<BackupPolicy>();
        api.get_opt(policy).await?.with_context(|| format!("BackupPolicy {policy:?} not found{}", self.where_()))?;
        let token = jiff::Timestamp::now().strftime("%Y%m%dT%H%M%S%.fZ").to_string();
        let patch = json!({"metadata": {"annotations": {crate::api::names::ANNOTATION_RUN_NOW: token}}});
        api.patch(policy, &PatchParams::default(), &Patch::Merge(&patch)).await.context("annotate the policy")?;
        let point = crate::controller::restore_point::names::manual_point(policy, &token);
        println!("restorepoint/{point} requested");
        if !wait {
            return Ok(std::process::ExitCode::SUCCESS);
        }
        let points = self.here::<RestorePoint>();
        let mut last = String::new();
        loop {
            let p = points.get_opt(&point).await?;
            let st = p.and_then(|p| p.status).unwrap_or_default();
            let line = format!("{:?}{}", st.phase, st.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default());
            if line != last {
                println!("{line}");
                last = line;
            }
            match st.phase {
                RunPhase::Completed => return Ok(std::process::ExitCode::SUCCESS),
                RunPhase::Failed => return Ok(std::process::ExitCode::FAILURE),
                _ => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }

    async fn points(&self, policy: Option<&str>) -> anyhow::Result<std::process::ExitCode> {
        let mut lp = ListParams::default();
        if let Some(p) = policy {
            lp = lp.labels(&format!("{}={}", crate::api::names::LABEL_POLICY, crate::k8s::truncate_label(p)));
        }
        let mut items: Vec<RestorePoint> = self
            .api::<RestorePoint>()
            .list(&lp)
            .await
            .context("list RestorePoints")?
            .items
            .into_iter()
            .filter(|p| policy.is_none_or(|x| p.spec.policy == x))
            .collect();
        items.sort_by_key(|p| std::cmp::Reverse(p.spec.scheduled_time.0));
        if let Some(o @ (Output::Json | Output::Yaml)) = self.g.output {
            print_value(&list_object(&items)?, o)?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        if items.is_empty() {
            println!("No restore points{}.", self.where_());
            return Ok(std::process::ExitCode::SUCCESS);
        }
        let wide = self.g.output == Some(Output::Wide);
        let mut header = vec!["NAME", "POLICY", "PHASE", "TAKEN", "PROTECTED", "NEW", "LOCATIONS"];
        if wide {
            header.extend(["TRIGGER", "VOLUMES"]);
        }
        if self.g.all_namespaces {
            header.insert(0, "NAMESPACE");
        }
        let rows: Vec<Vec<String>> = items
            .iter()
            .map(|p| {
                let st = p.status.clone().unwrap_or_default();
                let taken = st.start_time.as_ref().unwrap_or(&p.spec.scheduled_time);
                let mut r = vec![
                    p.name_any(),
                    p.spec.policy.clone(),
                    format!("{:?}", st.phase),
                    format!("{} ago", age(since(taken))),
                    st.protected_bytes.map(bytes).unwrap_or_else(|| "-".into()),
                    st.new_bytes.map(bytes).unwrap_or_else(|| "-".into()),
                    {
                        let l: Vec<String> =
                            st.locations.iter().filter(|l| l.present).map(|l| l.name.clone()).collect();
                        if l.is_empty() { "-".into() } else { l.join(",") }
                    },
                ];
                if wide {
                    r.extend([format!("{:?}", p.spec.trigger), st.volumes.len().to_string()]);
                }
                if self.g.all_namespaces {
                    r.insert(0, p.namespace().unwrap_or_default());
                }
                r
            })
            .collect();
        print!("{}", table(&header, &rows));
        Ok(std::process::ExitCode::SUCCESS)
    }

    async fn plan(&self, mode: RestoreMode, a: PlanArgs) -> anyhow::Result<std::process::ExitCode> {
        let timeout = super::duration("--timeout", &a.timeout)?;
        let locations = if !a.locations.is_empty() {
            a.locations.clone()
        } else if let Some(p) = self.here::<BackupPolicy>().get_opt(&a.policy).await? {
            p.spec.locations.iter().map(|l| l.name.clone()).collect()
        } else {
            let all = self.here::<BackupLocation>().list(&ListParams::default()).await?.items;
            all.iter().map(|l| l.name_any()).collect()
        };
        if locations.is_empty() {
            bail!("no BackupLocation to read {:?} from{}: name one with --location", a.policy, self.where_());
        }
        let mode_name = format!("{mode:?}").to_lowercase();
        let name = a.name.clone().unwrap_or_else(|| {
            let t = jiff::Timestamp::now().strftime("%Y%m%d-%H%M%S").to_string();
            let base: String = a.policy.chars().take(253 - mode_name.len() - t.len() - 2).collect();
            format!("{base}-{mode_name}-{t}")
        });
        let point_in_time = match (&a.point, &a.before) {
            (Some(p), _) => json!({"type": "Named", "restorePoint": p}),
            (None, Some(b)) => {
                let t: jiff::Timestamp = b.parse().map_err(|e| anyhow::anyhow!("--before {b:?}: {e} (RFC 3339)"))?;
                json!({"type": "Before", "before": Time(t)})
            }
            (None, None) => json!({"type": "Latest"}),
        };
        let mut spec = json!({
            "mode": format!("{mode:?}"),
            "source": {"locations": locations, "policy": a.policy},
            "pointInTime": point_in_time,
        });
        if let Some(t) = &a.to_namespace {
            spec["target"] = json!({"namespace": t});
        }
        if a.force {
            anyhow::ensure!(mode == RestoreMode::Failover, "--force applies to failover only");
            spec["failover"] = json!({"force": true});
        }
        let plan: RestorePlan = serde_json::from_value(json!({
            "apiVersion": "lifeline.io/v1alpha1", "kind": "RestorePlan",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }))?;
        let plans = self.here::<RestorePlan>();
        plans.create(&PostParams::default(), &plan).await.with_context(|| format!("create RestorePlan {name}"))?;
        eprintln!("restoreplan/{name} created");
        if a.no_follow {
            if let Some(o @ (Output::Json | Output::Yaml)) = self.g.output {
                print_value(&plans.get(&name).await?, o)?;
            }
            return Ok(std::process::ExitCode::SUCCESS);
        }
        self.follow(&name, timeout).await
    }

    /// Follows a plan until it ends: a live display on a terminal, a line per change
    /// otherwise; then its outcome with RPO and RTO.
    async fn follow(&self, name: &str, timeout: Duration) -> anyhow::Result<std::process::ExitCode> {
        let plans = self.here::<RestorePlan>();
        let tty = std::io::stderr().is_terminal() && self.g.output.is_none();
        let multi = indicatif::MultiProgress::with_draw_target(if tty {
            indicatif::ProgressDrawTarget::stderr()
        } else {
            indicatif::ProgressDrawTarget::hidden()
        });
        let phase_bar = multi.add(indicatif::ProgressBar::new_spinner());
        phase_bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        phase_bar.enable_steady_tick(Duration::from_millis(120));
        let bar_style = indicatif::ProgressStyle::with_template(
            "  {prefix:<24} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        let mut bars: std::collections::HashMap<String, indicatif::ProgressBar> = Default::default();
        let started = std::time::Instant::now();
        let mut last = String::new();
        let plan = loop {
            let plan = plans.get(name).await.with_context(|| format!("read RestorePlan {name}"))?;
            let st = plan.status.clone().unwrap_or_default();
            let line = format!("{:?}{}", st.phase, st.message.as_deref().map(|m| format!(": {m}")).unwrap_or_default());
            if tty {
                phase_bar.set_message(line.clone());
                for v in &st.volumes {
                    let b = bars.entry(v.pvc.clone()).or_insert_with(|| {
                        let b = multi.add(indicatif::ProgressBar::new(v.bytes_total.max(0) as u64));
                        b.set_style(bar_style.clone());
                        b.set_prefix(v.pvc.clone());
                        b
                    });
                    b.set_length(v.bytes_total.max(0) as u64);
                    b.set_position(v.bytes_done.max(0) as u64);
                    if v.done && !b.is_finished() {
                        b.finish();
                    }
                }
            } else if line != last {
                eprintln!("{line}");
            }
            last = line;
            if matches!(st.phase, PlanPhase::Completed | PlanPhase::Failed | PlanPhase::Standby) {
                break plan;
            }
            if started.elapsed() > timeout {
                phase_bar.finish_and_clear();
                bail!(
                    "restoreplan/{name} has not ended after {}; it goes on (kubectl lifeline describe restoreplan/{name})",
                    age(timeout)
                );
            }
            tokio::time::sleep(Duration::from_millis(400)).await;
        };
        phase_bar.finish_and_clear();
        for b in bars.values() {
            b.finish();
        }
        let _ = multi.clear();
        let st = plan.status.clone().unwrap_or_default();
        if let Some(o @ (Output::Json | Output::Yaml)) = self.g.output {
            print_value(&plan, o)?;
        } else {
            let secs = |d: Option<crate::api::common::Duration>| {
                d.map(|d| format!("{:.1}s", Duration::from(d).as_secs_f64())).unwrap_or_else(|| "-".into())
            };
            println!("restoreplan/{name}: {:?}", st.phase);
            if let Some(m) = &st.message {
                println!("  {m}");
            }
            if let Some(p) = &st.restored_point {
                println!("  restore point: {} (from {})", p.name, p.location);
            }
            println!("  RPO: {}", secs(st.rpo));
            if let Some(r) = &st.rto {
                println!(
                    "  RTO: {} (detection {}, decision {}, execution {})",
                    secs(r.total),
                    secs(r.detection),
                    secs(r.decision),
                    secs(r.execution)
                );
            }
        }
        Ok(if st.phase == PlanPhase::Failed {
            std::process::ExitCode::FAILURE
        } else {
            std::process::ExitCode::SUCCESS
        })
    }

    async fn describe(&self, target: &str) -> anyhow::Result<std::process::ExitCode> {
        let (kind, name) = target
            .split_once('/')
            .with_context(|| format!("{target:?}: expected KIND/NAME, for example backuppolicy/db"))?;
        let kind = kind.to_lowercase();
        let kind = kind.split('.').next().unwrap_or_default();
        let (obj, kind_name): (Value, &str) = match kind {
            "backuppolicy" | "backuppolicies" | "bp" | "policy" => {
                (serde_json::to_value(self.here::<BackupPolicy>().get(name).await?)?, "BackupPolicy")
            }
            "restoreplan" | "restoreplans" | "plan" => {
                (serde_json::to_value(self.here::<RestorePlan>().get(name).await?)?, "RestorePlan")
            }
            "restorepoint" | "restorepoints" | "point" => {
                (serde_json::to_value(self.here::<RestorePoint>().get(name).await?)?, "RestorePoint")
            }
            "backuplocation" | "backuplocations" | "location" => {
                (serde_json::to_value(self.here::<BackupLocation>().get(name).await?)?, "BackupLocation")
            }
            other => bail!("{other:?}: not a Lifeline kind (backuppolicy, restoreplan, restorepoint, backuplocation)"),
        };
        if let Some(o @ (Output::Json | Output::Yaml)) = self.g.output {
            print_value(&obj, o)?;
            return Ok(std::process::ExitCode::SUCCESS);
        }
        let st = &obj["status"];
        let s = |v: &Value| match v {
            Value::String(x) => x.clone(),
            Value::Null => "-".into(),
            other => other.to_string(),
        };
        let mut out = format!("Name:       {name}\nNamespace:  {}\nKind:       {kind_name}\n", self.ns);
        if !st["phase"].is_null() {
            out.push_str(&format!("Phase:      {}\n", s(&st["phase"])));
        }
        if !st["message"].is_null() {
            out.push_str(&format!("Message:    {}\n", s(&st["message"])));
        }
        let conds = st["conditions"].as_array().cloned().unwrap_or_default();
        if !conds.is_empty() {
            out.push_str("\nConditions:\n");
            let rows: Vec<Vec<String>> =
                conds.iter().map(|c| vec![s(&c["type"]), s(&c["status"]), s(&c["reason"]), s(&c["message"])]).collect();
            out.push_str(&indent(&table(&["TYPE", "STATUS", "REASON", "MESSAGE"], &rows)));
        }
        // Steps: what the object is made of, with its progress.
        let steps: Vec<Vec<String>> = match kind_name {
            "RestorePlan" => st["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| {
                    let done = v["bytesDone"].as_i64().unwrap_or(0);
                    let total = v["bytesTotal"].as_i64().unwrap_or(0);
                    vec![
                        format!("volume {}", s(&v["pvc"])),
                        if v["done"] == true { "done".into() } else { "restoring".into() },
                        format!("{}/{}", bytes(done), bytes(total)),
                    ]
                })
                .chain(st["workloads"].as_array().into_iter().flatten().map(|w| {
                    vec![
                        format!("workload {}", s(&w["name"])),
                        if w["ready"] == true { "ready".into() } else { "starting".into() },
                        format!(
                            "{}/{} ready",
                            w["readyReplicas"].as_i64().unwrap_or(0),
                            w["replicas"].as_i64().unwrap_or(0)
                        ),
                    ]
                }))
                .collect(),
            "RestorePoint" => st["volumes"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| vec![format!("volume {}", s(&v["pvc"])), s(&v["snapshot"]), s(&v["id"])])
                .chain(st["locations"].as_array().into_iter().flatten().map(|l| {
                    vec![
                        format!("location {}", s(&l["name"])),
                        if l["present"] == true { "present".into() } else { "absent".into() },
                        s(&l["message"]),
                    ]
                }))
                .collect(),
            "BackupPolicy" => st["locations"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|l| vec![format!("location {}", s(&l["name"])), s(&l["state"]), s(&l["lastRestorePoint"])])
                .collect(),
            _ => Vec::new(),
        };
        if !steps.is_empty() {
            out.push_str("\nSteps:\n");
            out.push_str(&indent(&table(&["STEP", "STATE", "DETAIL"], &steps)));
        }
        let uid = obj["metadata"]["uid"].as_str().unwrap_or_default().to_string();
        let events: Api<Event> = Api::namespaced(self.client.clone(), &self.ns);
        let lp = ListParams::default().fields(&format!("involvedObject.name={name}"));
        let mut evs: Vec<Event> = events
            .list(&lp)
            .await
            .context("list Events")?
            .items
            .into_iter()
            .filter(|e| e.involved_object.uid.as_deref().is_none_or(|u| u == uid))
            .collect();
        let when = |e: &Event| {
            e.event_time.as_ref().map(|t| t.0).or(e.last_timestamp.as_ref().map(|t| t.0)).or(e
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0))
        };
        evs.sort_by_key(when);
        out.push_str("\nEvents:\n");
        if evs.is_empty() {
            out.push_str("  <none>\n");
        } else {
            let rows: Vec<Vec<String>> = evs
                .iter()
                .map(|e| {
                    vec![
                        when(e)
                            .map(|t| age(jiff::Timestamp::now().duration_since(t).unsigned_abs()))
                            .unwrap_or_default(),
                        e.type_.clone().unwrap_or_default(),
                        e.reason.clone().unwrap_or_default(),
                        e.message.clone().unwrap_or_default(),
                    ]
                })
                .collect();
            out.push_str(&indent(&table(&["AGE", "TYPE", "REASON", "MESSAGE"], &rows)));
        }
        print!("{out}");
        Ok(std::process::ExitCode::SUCCESS)
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_as_kubectl_prints_them() {
        assert_eq!(age(Duration::from_secs(5)), "5s");
        assert_eq!(age(Duration::from_secs(600)), "10m");
        assert_eq!(age(Duration::from_secs(3 * 3600)), "3h");
        assert_eq!(age(Duration::from_secs(4 * 86400)), "4d");
    }

    #[test]
    fn tables_align_their_columns() {
        let t = table(&["A", "LONG HEADER", "C"], &[vec!["xxxx".into(), "y".into(), "z".into()]]);
        assert_eq!(t, "A      LONG HEADER   C\nxxxx   y             z\n");
    }
}
