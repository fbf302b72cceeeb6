//! The operator end to end: simulated clusters, real S3 servers (two regions), the
//! examples users copy, the lifeline binary as the mover, kubectl as the client.

mod backup;
mod catalog;
mod crash;
mod failback;
mod failover;
mod heartbeat;
mod install;
mod invalid;
mod leader;
mod minute;
mod plugin;
mod rbac;
mod replication;
mod restore;
mod retention;
mod scope;
mod standby;
mod tenancy;
mod unreachable;

use crate::support::{self, s3};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use lifeline::api::RestorePoint;
use lifeline::api::restore_point::RunPhase;
use lifeline::controller::Config;
use lifeline::controller::clock::{Clock, ManualClock, SystemClock};
use lifeline::operator::{self, Options};
use lifeline::sim::{Cluster, Options as SimOptions};
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// One simulated cluster with the CRDs installed, a runtime, and (when started) the
/// operator running in this process.
pub struct Env {
    _cluster: Cluster,
    pub rt: tokio::runtime::Runtime,
    pub client: Client,
    pub kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
    operator: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub metrics: Option<Arc<lifeline::telemetry::Metrics>>,
}

impl Env {
    pub fn start(opts: SimOptions) -> Env {
        let env = Env::start_without_crds(opts);
        env.kubectl(&["apply", "-f", support::path("crds").to_str().unwrap()], None);
        env
    }

    /// A cluster without Lifeline's CRDs (a Helm release brings its own).
    pub fn start_without_crds(opts: SimOptions) -> Env {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        {
            use tracing_subscriber::prelude::*;
            use tracing_subscriber::{EnvFilter, filter::Targets, fmt};
            let shown = fmt::layer()
                .with_test_writer()
                .with_filter(EnvFilter::try_from_env("LIFELINE_LOG").unwrap_or_else(|_| "warn".into()));
            let kept = fmt::layer()
                .with_ansi(false)
                .with_writer(|| Capture)
                .with_filter(Targets::new().with_target("lifeline", tracing::Level::INFO));
            let _ = tracing_subscriber::registry().with(shown).with(kept).try_init();
        }
        let cluster = Cluster::start(opts).expect("start the simulated cluster");
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        cluster.write_kubeconfig(&kubeconfig).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let client = rt.block_on(client_for(&cluster.kubeconfig()));
        Env { _cluster: cluster, rt, client, kubeconfig, _dir: dir, operator: None, metrics: None }
    }

    /// Runs kubectl against this cluster; panics with its output on failure.
    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        let (ok, out, err) = crate::sim::kubectl(&self.kubeconfig, args, stdin);
        assert!(ok, "kubectl {args:?}: {err}{out}");
        out
    }

    pub fn apply(&self, yaml: &str) {
        self.kubectl(&["apply", "-f", "-"], Some(yaml));
    }

    /// Starts the operator in this process (no leader election), movers running the
    /// lifeline binary of this build.
    pub fn start_operator(&mut self, clock: Arc<dyn Clock>) {
        self.start_operator_with(clock, |_| {});
    }

    /// [`Env::start_operator`] with settings changed by `set`.
    pub fn start_operator_with(&mut self, clock: Arc<dyn Clock>, set: impl FnOnce(&mut Config)) {
        let mut config = test_config();
        set(&mut config);
        let opts = Options { config, http: None, leader: None, clock };
        let client = self.client.clone();
        let (running, fut) = self.rt.block_on(operator::start(client, opts, futures::future::pending())).unwrap();
        self.metrics = Some(running.metrics);
        self.operator = Some(self.rt.spawn(fut));
    }

    /// Starts the operator as the ServiceAccount `namespace/name` (with RBAC on, it may do
    /// only what that account's roles grant).
    pub fn start_operator_as(&mut self, namespace: &str, name: &str, clock: Arc<dyn Clock>) {
        self.start_operator_as_with(namespace, name, clock, |_| {});
    }

    /// [`Env::start_operator_as`] with settings changed by `set`.
    pub fn start_operator_as_with(
        &mut self,
        namespace: &str,
        name: &str,
        clock: Arc<dyn Clock>,
        set: impl FnOnce(&mut Config),
    ) {
        let kubeconfig = self
            ._cluster
            .service_account_kubeconfig(namespace, name)
            .unwrap_or_else(|| panic!("no ServiceAccount {namespace}/{name}"));
        let client = self.rt.block_on(client_for(&kubeconfig));
        let mut config = test_config();
        set(&mut config);
        // As the chart runs it: leader election on a Lease named like the account, in its
        // namespace.
        let leader = lifeline::operator::Leader {
            namespace: namespace.into(),
            name: name.into(),
            identity: format!("{name}-0"),
            duration: 15,
        };
        let opts = Options { config, http: None, leader: Some(leader), clock };
        let (running, fut) = self.rt.block_on(operator::start(client, opts, futures::future::pending())).unwrap();
        self.metrics = Some(running.metrics);
        self.operator = Some(self.rt.spawn(fut));
    }

    /// With RBAC on: the kinds of request made so far (see [`lifeline::sim::Access`]).
    pub fn audit(&self) -> Vec<(lifeline::sim::Access, u64)> {
        self._cluster.audit()
    }

    /// Starts one replica of the operator with leader election on the Lease
    /// `default/lifeline-operator` (lasting `lease_seconds`); returns it with its metrics.
    pub fn start_replica(&self, identity: &str, lease_seconds: u64) -> Replica {
        let config = test_config();
        let leader = lifeline::operator::Leader {
            namespace: "default".into(),
            name: "lifeline-operator".into(),
            identity: identity.into(),
            duration: lease_seconds,
        };
        let opts = Options { config, http: None, leader: Some(leader), clock: system_clock() };
        let (running, fut) =
            self.rt.block_on(operator::start(self.client.clone(), opts, futures::future::pending())).unwrap();
        Replica { metrics: running.metrics, task: self.rt.spawn(fut) }
    }

    /// Stops the operator abruptly, as a crash would: no step finishes, nothing is
    /// cleaned up.
    pub fn kill_operator(&mut self) {
        if let Some(h) = self.operator.take() {
            h.abort();
            let _ = self.rt.block_on(h);
        }
    }

    /// Stops the whole cluster, as a lost site would (its state is kept).
    pub fn kill_cluster(&mut self) {
        self.kill_operator();
        self._cluster.kill();
    }

    /// Starts a killed cluster again, on the same address, with its state.
    pub fn restart_cluster(&mut self) {
        self._cluster.restart().expect("restart the simulated cluster");
    }

    /// Every file of the cluster's volumes with a digest of its content, to catch any
    /// write to them.
    pub fn volume_digest(&self) -> Vec<(String, u64, String)> {
        let root = self._cluster.state_dir().join("volumes");
        let mut out = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(d) = dirs.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                let (p, t) = (e.path(), e.file_type().unwrap());
                if t.is_dir() {
                    dirs.push(p);
                } else if t.is_file() {
                    let data = std::fs::read(&p).unwrap();
                    let rel = p.strip_prefix(&root).unwrap().display().to_string();
                    out.push((rel, data.len() as u64, blake3::hash(&data).to_hex().to_string()));
                }
            }
        }
        out.sort();
        out
    }

    /// A kubeconfig for this cluster, as a file's content.
    pub fn kubeconfig_text(&self) -> String {
        self._cluster.kubeconfig()
    }

    pub fn block_on<F: Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Waits (with a deadline) until `f` yields a value.
    pub fn eventually<T, F, Fut>(&self, secs: u64, what: &str, mut f: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<T>>,
    {
        self.rt.block_on(async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
            loop {
                if let Some(v) = f().await {
                    return v;
                }
                assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    }

    /// The messages of the Events of one reason in a namespace, as `kubectl get events`
    /// shows them, space-separated.
    pub fn event_messages(&self, ns: &str, reason: &str) -> String {
        let selector = format!("reason={reason}");
        self.kubectl(
            &["get", "events", "-n", ns, "--field-selector", &selector, "-o", "jsonpath={.items[*].message}"],
            None,
        )
    }

    /// Applies the records example (`yaml`), starts the operator and takes one restore
    /// point on request; returns its name once it is complete in both regions.
    pub fn protected_point(&mut self, yaml: &str) -> String {
        self.apply(yaml);
        self.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
        self.start_operator(system_clock());
        self.kubectl(
            &["annotate", "backuppolicy/records", "-n", "records", "lifeline.io/run-now=before-the-loss"],
            None,
        );
        let name = self.new_point("records", &[], 60);
        let st = self.finished_point("records", &name, 120).status.unwrap();
        assert_eq!(st.phase, RunPhase::Completed, "{:?}", st.message);
        let api: Api<RestorePoint> = Api::namespaced(self.client.clone(), "records");
        self.eventually(90, "replication to the second region", || async {
            let p = api.get_opt(&name).await.ok()??;
            p.status?.locations.iter().any(|l| l.name == "us" && l.present).then_some(())
        });
        name
    }

    /// Asserts that each records pod `records-<i>` holds every record of `recorded[i]`
    /// (a restore point's logs, see [`recorded_logs`]), byte for byte, as a prefix.
    pub fn holds_records(&self, recorded: &[String]) {
        for (i, log) in recorded.iter().enumerate() {
            let now = self
                .kubectl(&["exec", "-n", "records", &format!("records-{i}"), "--", "cat", "/data/records.log"], None);
            assert!(now.starts_with(log.as_str()), "records-{i} lacks records of the restore point");
        }
    }

    /// Runs a shell script in a pod of the records namespace.
    pub fn exec(&self, pod: &str, script: &str) -> String {
        self.kubectl(&["exec", "-n", "records", pod, "--", "sh", "-c", script], None)
    }

    /// Takes a restore point of the records policy on request (annotation value `token`),
    /// waits until it is complete and replicated to the second region; returns its name.
    /// Points in `except` and catalog copies are not it.
    pub fn take_point(&self, token: &str, except: &[String]) -> String {
        self.kubectl(
            &[
                "annotate",
                "--overwrite",
                "backuppolicy/records",
                "-n",
                "records",
                &format!("lifeline.io/run-now={token}"),
            ],
            None,
        );
        let api: Api<RestorePoint> = Api::namespaced(self.client.clone(), "records");
        let name = self.eventually(60, "a new restore point", || async {
            api.list(&ListParams::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| !p.annotations().contains_key("lifeline.io/catalog-location"))
                .map(|p| p.name_any())
                .find(|n| !except.contains(n))
        });
        let st = self.finished_point("records", &name, 180).status.unwrap();
        assert_eq!(st.phase, RunPhase::Completed, "{:?}", st.message);
        self.eventually(120, "replication to the second region", || async {
            let p = api.get_opt(&name).await.ok()??;
            p.status?.locations.iter().any(|l| l.name == "us" && l.present).then_some(())
        });
        name
    }

    /// Waits until restore point `name` is in this cluster's catalog, complete.
    pub fn in_catalog(&self, name: &str) {
        let api: Api<RestorePoint> = Api::namespaced(self.client.clone(), "records");
        self.eventually(90, &format!("restore point {name} in the catalog"), || async {
            (api.get_opt(name).await.ok()??.status?.phase == RunPhase::Completed).then_some(())
        });
    }

    /// The reasons of a plan's Events, oldest first.
    pub fn plan_story(&self, ns: &str, plan: &str) -> Vec<String> {
        self.plan_events(ns, plan, "{.reason}").lines().map(String::from).collect()
    }

    /// The plan's Events in order with their times and messages, a line each.
    pub fn plan_timeline(&self, ns: &str, plan: &str) -> String {
        self.plan_events(ns, plan, "{.eventTime} {.reason}: {.note}{.message}")
    }

    /// `line` (a jsonpath template) for each of the plan's Events, in order.
    fn plan_events(&self, ns: &str, plan: &str, line: &str) -> String {
        let selector = format!("involvedObject.name={plan}");
        let template = format!("jsonpath={{range .items[*]}}{line}{{\"\\n\"}}{{end}}");
        self.kubectl(
            &["get", "events", "-n", ns, "--field-selector", &selector, "--sort-by=.eventTime", "-o", &template],
            None,
        )
    }

    /// Waits until RestorePlan `name` ends (Completed or Failed) and returns its status.
    pub fn finished_plan(&self, ns: &str, name: &str, secs: u64) -> lifeline::api::RestorePlanStatus {
        let plans: Api<lifeline::api::RestorePlan> = Api::namespaced(self.client.clone(), ns);
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.block_on(plans.get_opt(name)).ok().flatten().and_then(|p| p.status);
            if let Some(s) = &s
                && matches!(
                    s.phase,
                    lifeline::api::restore_plan::PlanPhase::Completed | lifeline::api::restore_plan::PlanPhase::Failed
                )
            {
                return s.clone();
            }
            if std::time::Instant::now() > deadline {
                panic!("RestorePlan {name} did not finish: {s:#?}\nevents: {:?}", self.plan_story(ns, name));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until RestorePlan `name` ends and asserts that it completed (naming its
    /// message, its Events and any failure Event otherwise); returns its status.
    pub fn completed_plan(&self, ns: &str, name: &str, secs: u64) -> lifeline::api::RestorePlanStatus {
        let st = self.finished_plan(ns, name, secs);
        assert_eq!(
            st.phase,
            lifeline::api::restore_plan::PlanPhase::Completed,
            "{name}: {:?}\n{:?}\n{}",
            st.message,
            self.plan_story(ns, name),
            self.event_messages(ns, "RestoreFailed")
        );
        st
    }

    pub fn points(&self, ns: &str) -> Vec<RestorePoint> {
        let api: Api<RestorePoint> = Api::namespaced(self.client.clone(), ns);
        self.block_on(api.list(&ListParams::default())).unwrap().items
    }

    /// Waits until restore point `name` ends (Completed or Failed) and returns it.
    pub fn finished_point(&self, ns: &str, name: &str, secs: u64) -> RestorePoint {
        let api: Api<RestorePoint> = Api::namespaced(self.client.clone(), ns);
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let p = self.block_on(api.get_opt(name)).ok().flatten();
            if let Some(p) = &p
                && let Some(s) = &p.status
                && matches!(s.phase, RunPhase::Completed | RunPhase::Failed)
                && s.cleaned_up
            {
                return p.clone();
            }
            if std::time::Instant::now() > deadline {
                let events = crate::sim::kubectl(
                    &self.kubeconfig,
                    &[
                        "get",
                        "events.v1.events.k8s.io",
                        "-n",
                        ns,
                        "-o",
                        "jsonpath={range .items[*]}{.regarding.name} {.reason}: {.note}{\"\\n\"}{end}",
                    ],
                    None,
                )
                .1;
                panic!("restore point {name} did not finish: {:#?}\nevents:\n{events}", p.and_then(|p| p.status));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the only restore point of a policy to appear and returns its name.
    pub fn new_point(&self, ns: &str, except: &[String], secs: u64) -> String {
        self.eventually(secs, "a new restore point", || async {
            self_points(&self.client, ns).await.into_iter().map(|p| p.name_any()).find(|n| !except.contains(n))
        })
    }
}

/// One operator replica of [`Env::start_replica`].
pub struct Replica {
    pub metrics: Arc<lifeline::telemetry::Metrics>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Replica {
    /// Reconciles this replica made, all controllers together.
    pub fn reconciles(&self) -> u64 {
        let text = self.metrics.encode();
        text.lines()
            .filter(|l| l.starts_with("lifeline_reconciles_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

/// The value of metric `lifeline_<name>` whose labels include all of `labels`, from the
/// OpenMetrics text the operator serves.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let prefix = format!("lifeline_{name}{{");
    text.lines().filter(|l| l.starts_with(&prefix)).find_map(|l| {
        let (head, value) = l.rsplit_once(' ')?;
        labels.iter().all(|(k, v)| head.contains(&format!("{k}=\"{v}\""))).then(|| value.parse().ok())?
    })
}

impl Env {
    /// The value of one of this operator's metrics (see [`metric`]).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        metric(&self.metrics.as_ref().expect("an operator started in process").encode(), name, labels)
    }
}

async fn self_points(client: &Client, ns: &str) -> Vec<RestorePoint> {
    let api: Api<RestorePoint> = Api::namespaced(client.clone(), ns);
    api.list(&ListParams::default()).await.map(|l| l.items).unwrap_or_default()
}

impl Drop for Env {
    fn drop(&mut self) {
        self.kill_operator();
    }
}

/// A cluster running the whole records example (its policy included) with one replica,
/// its operator on the system clock; returns the cluster and its S3 prefix.
pub fn records_one_replica(name: &str) -> (Env, String) {
    let (mut env, prefix) = records_rolled_out(name, SimOptions::default(), true);
    env.start_operator(system_clock());
    (env, prefix)
}

/// A cluster started with `opts`, the records example (with its policy or not) applied
/// with one replica and rolled out, no operator yet; returns the cluster and its S3 prefix.
fn records_rolled_out(name: &str, opts: SimOptions, policy: bool) -> (Env, String) {
    let env = Env::start(opts);
    let prefix = s3::unique(name);
    let yaml = example("records-two-regions.yaml", &prefix).replace("  replicas: 3\n", "  replicas: 1\n");
    let objects: Vec<&str> = yaml.split("\n---\n").filter(|d| policy || !d.contains("kind: BackupPolicy")).collect();
    env.apply(&objects.join("\n---\n"));
    env.kubectl(&["rollout", "status", "statefulset/records", "-n", "records", "--timeout=90s"], None);
    (env, prefix)
}

/// A cluster running the records example with one replica and no policy, its operator
/// on a manual clock started now (objects are created at real times; the clock then
/// jumps), and `policy` applied; returns the cluster, its S3 prefix, the clock and its
/// start. The start is taken again once the policy exists, and the clock set to it: the
/// schedule counts from the policy's creation (a real time), and a slot between the
/// clock's first time and that creation is, rightly, never run. Under load, starting the
/// operator and applying the policy could cross a minute's boundary, and the first slot a
/// test waited for never came.
pub fn one_replica_on_a_clock(name: &str, policy: &str) -> (Env, String, ManualClock, jiff::Timestamp) {
    one_replica_on_a_clock_with(name, policy, SimOptions::default())
}

/// [`one_replica_on_a_clock`] on a cluster started with `opts`.
pub fn one_replica_on_a_clock_with(
    name: &str,
    policy: &str,
    opts: SimOptions,
) -> (Env, String, ManualClock, jiff::Timestamp) {
    let (mut env, prefix) = records_rolled_out(name, opts, false);
    let clock = ManualClock::at(jiff::Timestamp::now());
    env.start_operator(Arc::new(clock.clone()) as Arc<dyn Clock>);
    env.apply(policy);
    let start = jiff::Timestamp::now();
    clock.set(start);
    (env, prefix, clock, start)
}

/// What a standby cluster of the records example applies: the namespace, the Secrets
/// (but the workload's own, which comes with a restore) and both locations, read-only,
/// checked every 2 s.
pub fn standby_locations(yaml: &str) -> String {
    yaml.split("\n---\n")
        .filter(|d| d.contains("kind: Namespace") || d.contains("kind: Secret") || d.contains("kind: BackupLocation"))
        .filter(|d| !d.contains("name: records-auth"))
        .collect::<Vec<_>>()
        .join("\n---\n")
        .replace("  keySecret:\n", "  accessMode: ReadOnly\n  checkInterval: 2s\n  keySecret:\n")
}

/// The operator's settings in tests: movers run this build's binary, heartbeats every
/// second.
fn test_config() -> Config {
    Config {
        mover_command: vec![env!("CARGO_BIN_EXE_lifeline").to_string()],
        mover_image: "lifeline:test".into(),
        heartbeat_interval: Duration::from_secs(1),
        // The namespaces these tests restore the records namespace into, granted as an
        // administrator would (operator::tenancy starts without them).
        grants: lifeline::controller::grants::Grants::parse(
            &["records-copy", "records-cold", "records-stale", "records-broken"].map(|t| format!("{t}=records")),
        )
        .unwrap(),
        ..Config::default()
    }
}

/// A client from a kubeconfig's text (its CA and token, when it has them).
pub async fn client_for(kubeconfig: &str) -> Client {
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await.unwrap();
    Client::try_from(config).unwrap()
}

/// The system clock, for tests that do not move time.
pub fn system_clock() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// The operators' log lines at info and above in this test binary so far (the tests'
/// output shows warnings only), for tests of what the logs never say.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOGS.lock().unwrap_or_else(|e| e.into_inner())).into_owned()
}

static LOGS: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// Appends to [`LOGS`].
struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        LOGS.lock().unwrap_or_else(|e| e.into_inner()).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An example file with its placeholders filled for the test's S3 regions and prefix.
pub fn example(file: &str, prefix: &str) -> String {
    let (eu, us) = s3::regions();
    example_at(file, prefix, &eu.endpoint, &us.endpoint)
}

/// [`example`] for two given S3 endpoints (servers of one test's own).
pub fn example_at(file: &str, prefix: &str, eu: &str, us: &str) -> String {
    let text = std::fs::read_to_string(support::path(&format!("manifests/examples/{file}"))).unwrap();
    // Tests take their runs on request: the example's hourly schedule would add a run
    // whenever a test crosses the hour (and make its counts wrong), so it becomes yearly.
    assert!(!file.starts_with("records") || text.contains("  schedule: \"0 * * * *\"\n  rpo: 2h\n"));
    text.replace("  schedule: \"0 * * * *\"\n  rpo: 2h\n", "  schedule: \"0 0 1 1 *\"\n  rpo: 9000h\n")
        .replace("REPLACE_WITH_A_LONG_RANDOM_PASSPHRASE", "test passphrase for the operator tests")
        .replace("REPLACE_WITH_THE_APPLICATION_TOKEN", "application-token-4711")
        .replace("REPLACE_WITH_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .replace("REPLACE_WITH_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .replace(
            "  url: s3://records-backups-eu/records\n",
            &format!("  url: s3://lifeline/{prefix}-eu\n  endpoint: {eu}\n  forcePathStyle: true\n"),
        )
        .replace(
            "  url: s3://records-backups-us/records\n",
            &format!("  url: s3://lifeline/{prefix}-us\n  endpoint: {us}\n  forcePathStyle: true\n"),
        )
}

/// Runs the standalone CLI with the tests' passphrase and S3 credentials; panics with its
/// output on failure.
pub fn lifeline_cli(args: &[&str]) -> std::process::Output {
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_lifeline"))
        .args(args)
        .env("LIFELINE_PASSWORD", "test passphrase for the operator tests")
        .env("LIFELINE_S3_PATH_STYLE", "true")
        .env("AWS_ACCESS_KEY_ID", s3::ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", s3::SECRET_KEY)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "lifeline {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

/// Asserts that the first occurrences of `order` come in that order, all of them.
pub fn in_order(story: &[String], order: &[&str]) {
    let at: Vec<usize> = order.iter().map(|r| story.iter().position(|x| x == r).unwrap_or(usize::MAX)).collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]) && !at.contains(&usize::MAX), "{order:?} not in order in {story:?}");
}

/// The `records.log` each of the records example's three volumes holds in restore point
/// `point` at `url`, read with the CLI alone.
pub fn recorded_logs(url: &str, endpoint: &str, point: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    (0..3)
        .map(|i| {
            let id = volume_at(url, endpoint, point, &format!("records/data-records-{i}"));
            let target = dir.path().join(format!("r{i}"));
            lifeline_cli(&["repo", "restore", url, &id, target.to_str().unwrap(), "--endpoint", endpoint]);
            let log = std::fs::read_to_string(target.join("records.log")).unwrap();
            assert!(log.contains("record 1\n"), "{log}");
            log
        })
        .collect()
}

/// The restore points stored at a location, as the CLI lists them.
pub fn points_at(url: &str, endpoint: &str) -> Vec<serde_json::Value> {
    let o = lifeline_cli(&["repo", "points", url, "--json", "--endpoint", endpoint]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    v["result"]["points"].as_array().or(v["points"].as_array()).cloned().unwrap_or_default()
}

/// The repository snapshot of one claim (`namespace/pvc`) in a restore point, at a location.
pub fn volume_at(url: &str, endpoint: &str, point: &str, pvc: &str) -> String {
    points_at(url, endpoint)
        .into_iter()
        .find(|p| p["tags"]["lifeline.io/point"] == point && p["tags"]["lifeline.io/pvc"] == pvc)
        .and_then(|p| p["id"].as_str().map(String::from))
        .unwrap_or_else(|| panic!("no snapshot of {pvc} in {point} at {url}"))
}
