//! The simulated node (profile `full`): a scheduler that binds Pods to the one node once
//! their claims are bound, and a kubelet that runs each container's command as a real
//! local process.
//!
//! Containers have no image of their own: the command runs on this machine. A container
//! without a `command` runs its image's entrypoint when the node knows the image
//! (`Options::images`: its `args`, else the image's `CMD`, follow it, and the image's
//! directories lead `PATH`), and otherwise an idle process, so image-only Pods still start
//! and become Ready.
//! Volumes are not mounted; paths are mapped instead: every occurrence of a volume
//! mount's `mountPath` in the command, arguments, environment values and `workingDir`
//! is rewritten to the host directory behind the volume (a PVC's volume directory, a
//! Secret's or ConfigMap's files, an emptyDir). Processes get `KUBECONFIG` pointing at
//! the cluster (in-cluster configuration needs fixed paths a process cannot be given),
//! their own process group, and logs in files read back through `pods/log`.

use super::client::{self, ns_name};
use super::meta;
use super::store::Store;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const NODE: &str = "sim-node-0";
const SCHEDULER: &str = "default-scheduler";
/// The kubelet's first restart back-off; it doubles per restart up to five minutes.
const RESTART_BACKOFF: Duration = Duration::from_secs(10);
const RESTART_BACKOFF_MAX: Duration = Duration::from_secs(300);

/// What a container runs with: the same for its main process and for `exec`.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub env: Vec<(String, String)>,
    /// `(mountPath, host path)`, longest mount path first.
    pub mapping: Vec<(String, PathBuf)>,
    pub cwd: PathBuf,
}

impl Context {
    /// Rewrites the mount paths a string mentions to their host paths.
    pub fn map(&self, s: &str) -> String {
        let mut out = s.to_string();
        for (mount, host) in &self.mapping {
            out = replace_path(&out, mount, &host.to_string_lossy());
        }
        out
    }

    /// A command ready to spawn: mapped, in its own process group, with the signal
    /// dispositions a container starts with (this process ignores SIGXFSZ, and ignored
    /// signals would stay ignored across `exec`).
    pub fn command(&self, argv: &[String]) -> Command {
        let argv: Vec<String> = argv.iter().map(|a| self.map(a)).collect();
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]).env_clear().envs(self.env.iter().cloned()).current_dir(&self.cwd).process_group(0);
        // SAFETY: signal(2) is async-signal-safe, as the child side of a fork needs.
        unsafe {
            cmd.pre_exec(|| {
                libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
                Ok(())
            });
        }
        cmd
    }
}

/// Replaces `mount` where it stands as a whole path prefix (followed by `/`, the end, or
/// a character that cannot be part of a path).
fn replace_path(s: &str, mount: &str, host: &str) -> String {
    if mount.is_empty() || mount == "/" {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(mount) {
        let before_ok = out.is_empty() && i == 0
            || rest[..i].chars().last().or_else(|| out.chars().last()).is_none_or(|c| !is_path_char(c));
        let after = &rest[i + mount.len()..];
        let after_ok = after.chars().next().is_none_or(|c| c == '/' || !is_path_char(c));
        out.push_str(&rest[..i]);
        if before_ok && after_ok {
            out.push_str(host);
        } else {
            out.push_str(mount);
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

fn is_path_char(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/')
}

#[derive(Debug, Clone)]
struct Term {
    code: i32,
    started: String,
    finished: String,
    /// The termination message (`state.terminated.message`).
    message: Option<String>,
}

#[derive(Debug)]
struct Ctr {
    name: String,
    child: Option<Child>,
    started: Option<String>,
    restarts: i64,
    term: Option<Term>,
    last: Option<Term>,
    next_start: Option<Instant>,
    waiting: Option<(String, String)>,
    ctx: Context,
    /// The process's stdin, for `attach`, when the container asks for one (`stdin`).
    stdin: Option<Stdin>,
}

/// A container's stdin, shared with attach sessions.
pub type Stdin = std::sync::Arc<std::sync::Mutex<Option<std::process::ChildStdin>>>;

impl Ctr {
    fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            child: None,
            started: None,
            restarts: 0,
            term: None,
            last: None,
            next_start: None,
            waiting: Some(("ContainerCreating".into(), String::new())),
            ctx: Context::default(),
            stdin: None,
        }
    }
}

#[derive(Debug)]
struct PodRun {
    dir: PathBuf,
    init: Vec<Ctr>,
    main: Vec<Ctr>,
    /// Ephemeral containers (`kubectl debug`), started once each, never restarted.
    ephemeral: Vec<Ctr>,
    started: String,
    term_sent: Option<Instant>,
    killed: bool,
}

impl PodRun {
    /// Signals every running process of the Pod.
    fn signal(&self, sig: i32) {
        for ch in self.all().filter_map(|c| c.child.as_ref()) {
            signal(ch, sig);
        }
    }

    /// Kills every process of the Pod at once and reaps it.
    fn all(&self) -> impl Iterator<Item = &Ctr> {
        self.init.iter().chain(self.main.iter()).chain(self.ephemeral.iter())
    }

    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        for c in self.init.iter_mut().chain(self.main.iter_mut()).chain(self.ephemeral.iter_mut()) {
            if let Some(mut ch) = c.child.take() {
                let _ = ch.wait();
            }
        }
    }
}

/// The node's running Pods.
pub struct Kubelet {
    dir: PathBuf,
    kubeconfig: PathBuf,
    pods: HashMap<String, PodRun>,
    /// The API server's URL, and whether Pods must authenticate as their ServiceAccount.
    url: String,
    /// The API server's CA (`certificate-authority-data`) when it serves HTTPS.
    ca_data: Option<String>,
    rbac: bool,
    images: Vec<super::Image>,
    /// The node is lost ([`Kubelet::kill_all`]) until the cluster starts again: a pass
    /// still under way on a thread of the stopped cluster must not start its Pods again
    /// (their processes would outlive the cluster).
    stopped: bool,
}

impl Kubelet {
    pub fn new(dir: &Path, kubeconfig: PathBuf, images: Vec<super::Image>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            kubeconfig,
            images,
            pods: HashMap::new(),
            url: String::new(),
            ca_data: None,
            rbac: false,
            stopped: false,
        }
    }

    /// Where the (re)started cluster's API is; the node runs Pods again.
    pub fn set_api(&mut self, url: &str, ca_data: Option<String>, rbac: bool) {
        self.url = url.to_string();
        self.ca_data = ca_data;
        self.rbac = rbac;
        self.stopped = false;
    }

    /// Kills every process at once (the node is lost).
    pub fn kill_all(&mut self) {
        self.stopped = true;
        for run in self.pods.values_mut() {
            run.kill();
        }
        self.pods.clear();
    }

    /// The log file of a container (`previous`: the run before the last restart).
    pub fn log_path(&self, uid: &str, container: &str, previous: bool) -> Option<PathBuf> {
        let run = self.pods.get(uid)?;
        let p = run.dir.join(format!("{container}.log{}", if previous { ".prev" } else { "" }));
        Some(p)
    }

    /// What `attach` joins: the container's log (its output) and stdin, while it runs.
    pub fn attach_target(&self, uid: &str, container: &str) -> Option<(PathBuf, Option<Stdin>)> {
        let run = self.pods.get(uid)?;
        let c = run.all().find(|c| c.name == container)?;
        c.child.as_ref()?;
        Some((run.dir.join(format!("{container}.log")), c.stdin.clone()))
    }

    /// Whether a container's process is running.
    pub fn running(&self, uid: &str, container: &str) -> bool {
        self.pods.get(uid).and_then(|r| r.all().find(|c| c.name == container)).is_some_and(|c| c.child.is_some())
    }

    /// How to run a command in a running container, for `exec`.
    pub fn exec_context(&self, uid: &str, container: &str) -> Option<Context> {
        let run = self.pods.get(uid)?;
        let c = run.main.iter().chain(run.ephemeral.iter()).find(|c| c.name == container)?;
        c.child.as_ref()?;
        Some(c.ctx.clone())
    }

    /// One pass: schedule, start, watch and stop processes, write Pod status.
    pub fn pass(&mut self, store: &mut Store) {
        if self.stopped {
            return;
        }
        schedule(store);
        let pod_rt = client::rt(store, "", "pods");
        let pods: Vec<Value> =
            store.list(&pod_rt.key(), None).filter(|p| p["spec"]["nodeName"] == NODE).cloned().collect();
        let mut seen = std::collections::HashSet::new();
        for pod in pods {
            let uid = pod["metadata"]["uid"].as_str().unwrap_or_default().to_string();
            seen.insert(uid.clone());
            self.drive(store, &pod, &uid);
        }
        // Pods gone from the API: their processes go too.
        let gone: Vec<String> = self.pods.keys().filter(|u| !seen.contains(*u)).cloned().collect();
        for uid in gone {
            if let Some(mut run) = self.pods.remove(&uid) {
                run.kill();
                let _ = std::fs::remove_dir_all(&run.dir);
            }
        }
    }

    fn drive(&mut self, store: &mut Store, pod: &Value, uid: &str) {
        let terminal = matches!(pod["status"]["phase"].as_str(), Some("Succeeded" | "Failed"));
        let deleting = pod["metadata"].get("deletionTimestamp").is_some_and(|v| !v.is_null());
        if !self.pods.contains_key(uid) {
            if terminal {
                if deleting {
                    finish_delete(store, pod);
                }
                return;
            }
            let dir = self.dir.join("pods").join(uid);
            let _ = std::fs::create_dir_all(&dir);
            let names = |k: &str| -> Vec<Ctr> {
                pod["spec"][k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|c| Ctr::new(c["name"].as_str().unwrap_or_default()))
                    .collect()
            };
            self.pods.insert(
                uid.to_string(),
                PodRun {
                    dir,
                    init: names("initContainers"),
                    main: names("containers"),
                    ephemeral: Vec::new(),
                    started: meta::now(),
                    term_sent: None,
                    killed: false,
                },
            );
        }
        let mut kubeconfig = self.kubeconfig.clone();
        if self.rbac {
            // With RBAC, a Pod's processes act as its ServiceAccount.
            let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
            let sa = pod["spec"]["serviceAccountName"].as_str().unwrap_or("default");
            let token = super::rbac::service_account_token(store, ns, sa).unwrap_or_default();
            let path = self.dir.join("pods").join(uid).join("kubeconfig");
            if !path.exists() {
                let _ =
                    std::fs::write(&path, super::kubeconfig_for(&self.url, self.ca_data.as_deref(), Some(&token), ns));
            }
            kubeconfig = path;
        }
        let run = self.pods.get_mut(uid).expect("present");
        // Ephemeral containers are added to a running Pod.
        for e in pod["spec"]["ephemeralContainers"].as_array().into_iter().flatten() {
            let n = e["name"].as_str().unwrap_or_default();
            if !run.ephemeral.iter().any(|c| c.name == n) {
                run.ephemeral.push(Ctr::new(n));
            }
        }
        // Reap what exited.
        let dir = run.dir.clone();
        for c in run.init.iter_mut().chain(run.main.iter_mut()).chain(run.ephemeral.iter_mut()) {
            if let Some(ch) = &mut c.child
                && let Ok(Some(st)) = ch.try_wait()
            {
                let code =
                    st.code().unwrap_or_else(|| 128 + std::os::unix::process::ExitStatusExt::signal(&st).unwrap_or(9));
                let spec = ["containers", "initContainers", "ephemeralContainers"]
                    .iter()
                    .flat_map(|k| pod["spec"][*k].as_array().cloned().unwrap_or_default())
                    .find(|s| s["name"] == c.name.as_str())
                    .unwrap_or_default();
                let message = termination_message(&dir, &spec, code);
                c.term =
                    Some(Term { code, started: c.started.clone().unwrap_or_default(), finished: meta::now(), message });
                c.child = None;
            }
        }
        if deleting {
            let grace = pod["metadata"]["deletionGracePeriodSeconds"].as_u64().unwrap_or(30);
            let running = run.all().any(|c| c.child.is_some());
            match run.term_sent {
                None => {
                    run.signal(libc::SIGTERM);
                    run.term_sent = Some(Instant::now());
                }
                Some(at) if running && !run.killed && at.elapsed() >= Duration::from_secs(grace) => {
                    run.signal(libc::SIGKILL);
                    run.killed = true;
                }
                _ => {}
            }
            if !running {
                write_status(store, pod, run, true);
                finish_delete(store, pod);
            }
            return;
        }
        if !terminal {
            let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always").to_string();
            advance(store, pod, run, &policy, &kubeconfig, &self.images);
        }
        write_status(store, pod, run, false);
    }
}

fn signal(ch: &Child, sig: i32) {
    // The whole process group: a shell's children go too.
    unsafe {
        libc::kill(-(ch.id() as i32), sig);
    }
}

/// Removes a Pod whose containers have all stopped (the kubelet's final delete).
fn finish_delete(store: &mut Store, pod: &Value) {
    let pod_rt = client::rt(store, "", "pods");
    let (ns, name) = ns_name(pod);
    let Some(cur) = store.get(&pod_rt.key(), &ns, &name).cloned() else { return };
    if cur["metadata"]["uid"] != pod["metadata"]["uid"] {
        return;
    }
    if cur["metadata"]["finalizers"].as_array().is_none_or(|f| f.is_empty()) {
        store.remove(&pod_rt.key(), &ns, &name);
    } else if cur["metadata"]["deletionGracePeriodSeconds"] != 0 {
        // Finalizers still hold it: it goes when they are removed.
        let mut next = cur;
        next["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        store.put(&pod_rt.key(), next);
    }
}

fn backoff(restarts: i64) -> Duration {
    (RESTART_BACKOFF * 2u32.pow(restarts.clamp(0, 8) as u32)).min(RESTART_BACKOFF_MAX)
}

/// Starts init containers one by one, then every container; restarts per policy.
fn advance(store: &Store, pod: &Value, run: &mut PodRun, policy: &str, kubeconfig: &Path, images: &[super::Image]) {
    let specs = |k: &str| pod["spec"][k].as_array().cloned().unwrap_or_default();
    let init_specs = specs("initContainers");
    for (i, c) in run.init.iter_mut().enumerate() {
        match &c.term {
            Some(t) if t.code == 0 => continue,
            Some(_) if policy == "Never" => return,
            _ => {}
        }
        if c.child.is_some() {
            return;
        }
        if c.term.is_some() {
            // A failed init container restarts (after a back-off).
            let at = *c.next_start.get_or_insert_with(|| Instant::now() + backoff(c.restarts));
            if Instant::now() < at {
                return;
            }
            c.restarts += 1;
            c.last = c.term.take();
        }
        start(store, pod, &init_specs[i], c, &run.dir, kubeconfig, images);
        return;
    }
    let main_specs = specs("containers");
    for (i, c) in run.main.iter_mut().enumerate() {
        if c.child.is_some() {
            continue;
        }
        if let Some(t) = &c.term {
            let again = match policy {
                "Always" => true,
                "OnFailure" => t.code != 0,
                _ => false,
            };
            if !again {
                continue;
            }
            let at = *c.next_start.get_or_insert_with(|| Instant::now() + backoff(c.restarts));
            if Instant::now() < at {
                c.waiting = Some((
                    "CrashLoopBackOff".into(),
                    format!(
                        "back-off {}s restarting failed container={} pod={}",
                        backoff(c.restarts).as_secs(),
                        c.name,
                        pod["metadata"]["name"].as_str().unwrap_or_default()
                    ),
                ));
                continue;
            }
            c.restarts += 1;
            c.last = c.term.take();
            let log = run.dir.join(format!("{}.log", c.name));
            let _ = std::fs::rename(&log, run.dir.join(format!("{}.log.prev", c.name)));
        }
        start(store, pod, &main_specs[i], c, &run.dir, kubeconfig, images);
    }
    let eph_specs = specs("ephemeralContainers");
    for c in run.ephemeral.iter_mut().filter(|c| c.child.is_none() && c.term.is_none() && c.started.is_none()) {
        if let Some(spec) = eph_specs.iter().find(|s| s["name"] == c.name.as_str()) {
            start(store, pod, spec, c, &run.dir, kubeconfig, images);
        }
    }
}

fn start(
    store: &Store,
    pod: &Value,
    spec: &Value,
    c: &mut Ctr,
    dir: &Path,
    kubeconfig: &Path,
    images: &[super::Image],
) {
    c.next_start = None;
    let image = spec["image"].as_str().and_then(|r| images.iter().find(|i| i.names(r)));
    let ctx = match context(store, pod, spec, dir, kubeconfig, image) {
        Ok(ctx) => ctx,
        Err((reason, message)) => {
            c.waiting = Some((reason, message));
            return;
        }
    };
    let list = |k: &str| -> Vec<String> {
        spec[k].as_array().into_iter().flatten().filter_map(|v| v.as_str()).map(|s| expand(s, &ctx.env)).collect()
    };
    let (command, args) = (list("command"), list("args"));
    let argv: Vec<String> = match image {
        _ if !command.is_empty() => command.into_iter().chain(args).collect(),
        Some(i) if args.is_empty() => i.entrypoint.iter().chain(&i.cmd).cloned().collect(),
        Some(i) => i.entrypoint.iter().cloned().chain(args).collect(),
        // No image to take an entrypoint from: an idle process stands in.
        None => vec!["sleep".into(), "infinity".into()],
    };
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{}.log", c.name)));
    let (out, err) = match log.and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((a, b)) => (Stdio::from(a), Stdio::from(b)),
        Err(_) => (Stdio::null(), Stdio::null()),
    };
    // Each run of a container starts with an empty termination message.
    let _ = std::fs::remove_file(termination_file(dir, &c.name));
    let wants_stdin = spec["stdin"].as_bool() == Some(true);
    let stdin = if wants_stdin { Stdio::piped() } else { Stdio::null() };
    match ctx.command(&argv).stdin(stdin).stdout(out).stderr(err).spawn() {
        Ok(mut child) => {
            c.stdin = child.stdin.take().map(|s| std::sync::Arc::new(std::sync::Mutex::new(Some(s))));
            c.child = Some(child);
            c.started = Some(meta::now());
            c.waiting = None;
        }
        Err(e) => {
            let now = meta::now();
            c.term = Some(Term { code: 128, started: now.clone(), finished: now, message: None });
            c.waiting =
                Some(("StartError".into(), format!("failed to create containerd task: exec: {:?}: {e}", argv[0])));
        }
    }
    c.ctx = ctx;
}

/// `$(VAR)` references expanded as the kubelet does (`$$` escapes).
fn expand(s: &str, env: &[(String, String)]) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(t) = tail.strip_prefix("$$") {
            out.push('$');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("$(")
            && let Some(end) = t.find(')')
        {
            let name = &t[..end];
            match env.iter().rev().find(|(k, _)| k == name) {
                Some((_, v)) => out.push_str(v),
                None => out.push_str(&tail[..end + 3]),
            }
            rest = &t[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

fn decode_b64(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap_or_default()
}

/// The value a key of a Secret (decoded) or ConfigMap holds.
fn key_of(store: &Store, ns: &str, kind: &str, name: &str, key: &str) -> Result<Option<String>, String> {
    let res = if kind == "secret" { "/secrets" } else { "/configmaps" };
    let Some(obj) = store.get(res, ns, name) else { return Err(format!("{kind} {name:?} not found")) };
    Ok(if kind == "secret" {
        obj["data"][key].as_str().map(|v| String::from_utf8_lossy(&decode_b64(v)).into_owned())
    } else {
        obj["data"][key].as_str().map(String::from)
    })
}

/// A Pod's own IP: a loopback address derived from its uid (127.1.0.1 to 127.254.255.254),
/// so Pods that listen on their IP (not on every address) do not contend for a port, as
/// Pods with their own network would not. Processes still share the host's network: two
/// that listen on every address contend. A host-network Pod has the node's address.
pub fn pod_ip(pod: &Value) -> String {
    if pod["spec"]["hostNetwork"] == true {
        return "127.0.0.1".into();
    }
    let h = blake3::hash(pod["metadata"]["uid"].as_str().unwrap_or_default().as_bytes());
    let b = h.as_bytes();
    format!("127.{}.{}.{}", 1 + b[0] % 254, b[1], 1 + b[2] % 254)
}

fn field_ref(pod: &Value, path: &str) -> String {
    let v = match path {
        "metadata.name" => &pod["metadata"]["name"],
        "metadata.namespace" => &pod["metadata"]["namespace"],
        "metadata.uid" => &pod["metadata"]["uid"],
        "spec.nodeName" => &pod["spec"]["nodeName"],
        "spec.serviceAccountName" => &pod["spec"]["serviceAccountName"],
        "status.podIP" => return pod_ip(pod),
        "status.hostIP" => return "127.0.0.1".into(),
        p => {
            if let Some(k) = p.strip_prefix("metadata.labels['").and_then(|k| k.strip_suffix("']")) {
                &pod["metadata"]["labels"][k]
            } else if let Some(k) = p.strip_prefix("metadata.annotations['").and_then(|k| k.strip_suffix("']")) {
                &pod["metadata"]["annotations"][k]
            } else {
                &Value::Null
            }
        }
    };
    v.as_str().unwrap_or_default().to_string()
}

type Waiting = (String, String);

fn config_error(msg: String) -> Waiting {
    ("CreateContainerConfigError".into(), msg)
}

/// Environment, path mapping and working directory of one container.
fn context(
    store: &Store,
    pod: &Value,
    spec: &Value,
    dir: &Path,
    kubeconfig: &Path,
    image: Option<&super::Image>,
) -> Result<Context, Waiting> {
    let (ns, name) = ns_name(pod);
    let host_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let path = image
        .into_iter()
        .flat_map(|i| i.path.iter().map(|p| p.to_string_lossy().into_owned()))
        .chain([host_path])
        .collect::<Vec<_>>()
        .join(":");
    let mut env: Vec<(String, String)> = vec![
        ("PATH".into(), path),
        ("HOSTNAME".into(), name.clone()),
        ("KUBECONFIG".into(), kubeconfig.to_string_lossy().into_owned()),
    ];
    if let Ok(home) = std::env::var("HOME") {
        env.push(("HOME".into(), home));
    }
    for from in spec["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or_default();
        for (kind, key) in [("secret", "secretRef"), ("configmap", "configMapRef")] {
            let Some(n) = from[key]["name"].as_str() else { continue };
            let res = if kind == "secret" { "/secrets" } else { "/configmaps" };
            match store.get(res, &ns, n) {
                Some(obj) => {
                    for (k, v) in obj["data"].as_object().into_iter().flatten() {
                        let v = v.as_str().unwrap_or_default();
                        let v = if kind == "secret" {
                            String::from_utf8_lossy(&decode_b64(v)).into_owned()
                        } else {
                            v.into()
                        };
                        env.push((format!("{prefix}{k}"), v));
                    }
                }
                None if from[key]["optional"] == true => {}
                None => return Err(config_error(format!("{kind} {n:?} not found"))),
            }
        }
    }
    for e in spec["env"].as_array().into_iter().flatten() {
        let k = e["name"].as_str().unwrap_or_default().to_string();
        let from = &e["valueFrom"];
        let v = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else if !from["secretKeyRef"].is_null() || !from["configMapKeyRef"].is_null() {
            let (kind, r) = if from["secretKeyRef"].is_null() {
                ("configmap", &from["configMapKeyRef"])
            } else {
                ("secret", &from["secretKeyRef"])
            };
            let optional = r["optional"] == true;
            let (n, key) = (r["name"].as_str().unwrap_or_default(), r["key"].as_str().unwrap_or_default());
            match key_of(store, &ns, kind, n, key) {
                Ok(Some(v)) => v,
                _ if optional => continue,
                Ok(None) => return Err(config_error(format!("couldn't find key {key} in {kind} {ns}/{n}"))),
                Err(m) => return Err(config_error(m)),
            }
        } else if let Some(p) = from["fieldRef"]["fieldPath"].as_str() {
            field_ref(pod, p)
        } else {
            String::new()
        };
        env.push((k, v));
    }
    let volumes = pod["spec"]["volumes"].as_array().cloned().unwrap_or_default();
    let mut mapping = Vec::new();
    for (list, path_key) in [("volumeMounts", "mountPath"), ("volumeDevices", "devicePath")] {
        for m in spec[list].as_array().into_iter().flatten() {
            let vname = m["name"].as_str().unwrap_or_default();
            let Some(vol) = volumes.iter().find(|v| v["name"] == vname) else { continue };
            let host = volume_host(store, pod, vol, dir)?;
            let host = match m["subPath"].as_str().filter(|s| !s.is_empty()) {
                Some(sub) => {
                    let p = host.join(sub);
                    let _ = std::fs::create_dir_all(&p);
                    p
                }
                None => host,
            };
            mapping.push((m[path_key].as_str().unwrap_or_default().trim_end_matches('/').to_string(), host));
        }
    }
    // The termination-message file is the container's own file on the node.
    let tm = spec["terminationMessagePath"].as_str().unwrap_or("/dev/termination-log");
    mapping.push((tm.to_string(), termination_file(dir, spec["name"].as_str().unwrap_or_default())));
    mapping.sort_by_key(|(m, _)| std::cmp::Reverse(m.len()));
    let mut ctx = Context { env, mapping, cwd: dir.to_path_buf() };
    if let Some(wd) = spec["workingDir"].as_str().filter(|s| !s.is_empty()) {
        let mapped = PathBuf::from(ctx.map(wd));
        if mapped.is_dir() {
            ctx.cwd = mapped;
        }
    }
    let mapped: Vec<(String, String)> = ctx.env.iter().map(|(k, v)| (k.clone(), ctx.map(v))).collect();
    ctx.env = mapped;
    Ok(ctx)
}

/// Where a container's termination message is written on the node.
fn termination_file(dir: &Path, container: &str) -> PathBuf {
    dir.join(format!("{container}.termination-log"))
}

/// The termination message as the kubelet reads it (`kuberuntime_container.go`): the
/// file, at most 4096 bytes; with `FallbackToLogsOnError`, an empty file after a
/// failure falls back to the end of the log (80 lines, 2048 bytes).
fn termination_message(dir: &Path, spec: &Value, code: i32) -> Option<String> {
    let name = spec["name"].as_str().unwrap_or_default();
    let file = std::fs::read(termination_file(dir, name)).unwrap_or_default();
    let mut msg = String::from_utf8_lossy(&file[..file.len().min(4096)]).to_string();
    if msg.is_empty() && code != 0 && spec["terminationMessagePolicy"] == "FallbackToLogsOnError" {
        let log = std::fs::read(dir.join(format!("{name}.log"))).unwrap_or_default();
        let text = String::from_utf8_lossy(&log[log.len().saturating_sub(2048)..]).to_string();
        let lines: Vec<&str> = text.lines().collect();
        msg = lines[lines.len().saturating_sub(80)..].join("\n");
    }
    (!msg.is_empty()).then_some(msg)
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for (path, data) in files {
        let p = dir.join(path);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(p, data)?;
    }
    Ok(())
}

/// The files a Secret or ConfigMap volume shows (all keys, or the listed `items`).
fn object_files(obj: &Value, secret: bool, items: &Value) -> Vec<(String, Vec<u8>)> {
    let mut data: Vec<(String, Vec<u8>)> = Vec::new();
    for (k, v) in obj["data"].as_object().into_iter().flatten() {
        let s = v.as_str().unwrap_or_default();
        data.push((k.clone(), if secret { decode_b64(s) } else { s.as_bytes().to_vec() }));
    }
    for (k, v) in obj["binaryData"].as_object().into_iter().flatten() {
        data.push((k.clone(), decode_b64(v.as_str().unwrap_or_default())));
    }
    match items.as_array() {
        Some(items) => items
            .iter()
            .filter_map(|i| {
                let key = i["key"].as_str()?;
                let d = data.iter().find(|(k, _)| k == key)?;
                Some((i["path"].as_str().unwrap_or(key).to_string(), d.1.clone()))
            })
            .collect(),
        None => data,
    }
}

/// The host path behind a Pod volume, prepared (files written) if needed.
fn volume_host(store: &Store, pod: &Value, vol: &Value, dir: &Path) -> Result<PathBuf, Waiting> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let name = vol["name"].as_str().unwrap_or_default();
    let local = dir.join("volumes").join(name);
    let io = |e: std::io::Error| ("CreateContainerConfigError".to_string(), format!("volume {name:?}: {e}"));
    if let Some(claim) = vol["persistentVolumeClaim"]["claimName"].as_str() {
        let pv = store
            .get("/persistentvolumeclaims", ns, claim)
            .and_then(|c| c["spec"]["volumeName"].as_str())
            .and_then(|v| store.get("/persistentvolumes", "", v));
        return pv
            .and_then(super::storage::volume_path)
            .ok_or_else(|| config_error(format!("persistentvolumeclaim {claim:?} is not bound")));
    }
    if let Some(p) = vol["hostPath"]["path"].as_str() {
        return Ok(PathBuf::from(p));
    }
    if !vol["emptyDir"].is_null() {
        std::fs::create_dir_all(&local).map_err(io)?;
        return Ok(local);
    }
    for (key, secret) in [("secret", true), ("configMap", false)] {
        let v = &vol[key];
        if v.is_null() {
            continue;
        }
        let n = v[if secret { "secretName" } else { "name" }].as_str().unwrap_or_default();
        let res = if secret { "/secrets" } else { "/configmaps" };
        let files = match store.get(res, ns, n) {
            Some(obj) => object_files(obj, secret, &v["items"]),
            None if v["optional"] == true => Vec::new(),
            None => return Err(("ContainerCreating".into(), format!("{} {n:?} not found", key.to_lowercase()))),
        };
        write_files(&local, &files).map_err(io)?;
        return Ok(local);
    }
    if let Some(sources) = vol["projected"]["sources"].as_array() {
        let mut files = Vec::new();
        for s in sources {
            if let Some(p) = s["serviceAccountToken"]["path"].as_str() {
                let sa = pod["spec"]["serviceAccountName"].as_str().unwrap_or("default");
                let token = super::rbac::service_account_token(store, ns, sa).unwrap_or_default();
                files.push((p.to_string(), token.into_bytes()));
            }
            for (key, secret) in [("secret", true), ("configMap", false)] {
                let n = s[key]["name"].as_str().unwrap_or_default();
                if n.is_empty() {
                    continue;
                }
                let res = if secret { "/secrets" } else { "/configmaps" };
                if let Some(obj) = store.get(res, ns, n) {
                    files.extend(object_files(obj, secret, &s[key]["items"]));
                }
            }
            for i in s["downwardAPI"]["items"].as_array().into_iter().flatten() {
                if let (Some(p), Some(f)) = (i["path"].as_str(), i["fieldRef"]["fieldPath"].as_str()) {
                    files.push((p.to_string(), field_ref(pod, f).into_bytes()));
                }
            }
        }
        write_files(&local, &files).map_err(io)?;
        return Ok(local);
    }
    if let Some(items) = vol["downwardAPI"]["items"].as_array() {
        let files: Vec<(String, Vec<u8>)> = items
            .iter()
            .filter_map(|i| {
                Some((
                    i["path"].as_str()?.to_string(),
                    field_ref(pod, i["fieldRef"]["fieldPath"].as_str()?).into_bytes(),
                ))
            })
            .collect();
        write_files(&local, &files).map_err(io)?;
        return Ok(local);
    }
    std::fs::create_dir_all(&local).map_err(io)?;
    Ok(local)
}

fn state_of(c: &Ctr) -> Value {
    if c.child.is_some() {
        return json!({"running": {"startedAt": c.started}});
    }
    if let Some((reason, message)) = &c.waiting {
        let mut w = json!({"reason": reason});
        if !message.is_empty() {
            w["message"] = json!(message);
        }
        return json!({"waiting": w});
    }
    if let Some(t) = &c.term {
        return json!({"terminated": term_json(t)});
    }
    json!({"waiting": {"reason": "PodInitializing"}})
}

fn term_json(t: &Term) -> Value {
    let mut v = json!({
        "exitCode": t.code, "reason": if t.code == 0 { "Completed" } else { "Error" },
        "startedAt": t.started, "finishedAt": t.finished, "containerID": "sim://terminated",
    });
    if let Some(m) = &t.message {
        v["message"] = json!(m);
    }
    v
}

fn container_status(c: &Ctr, spec: &Value) -> Value {
    let mut s = json!({
        "name": c.name, "image": spec["image"], "imageID": "", "restartCount": c.restarts,
        "ready": c.child.is_some(), "started": c.child.is_some(), "state": state_of(c),
        "lastState": {},
    });
    if let Some(ch) = &c.child {
        s["containerID"] = json!(format!("sim://{}", ch.id()));
    }
    if let Some(l) = &c.last {
        s["lastState"] = json!({"terminated": term_json(l)});
    }
    s
}

fn write_status(store: &mut Store, pod: &Value, run: &PodRun, stopping: bool) {
    let pod_rt = client::rt(store, "", "pods");
    let policy = pod["spec"]["restartPolicy"].as_str().unwrap_or("Always");
    let specs = |k: &str| pod["spec"][k].as_array().cloned().unwrap_or_default();
    let (init_specs, main_specs) = (specs("initContainers"), specs("containers"));
    let init_done = run.init.iter().all(|c| c.term.as_ref().is_some_and(|t| t.code == 0));
    let init_failed = policy == "Never" && run.init.iter().any(|c| c.term.as_ref().is_some_and(|t| t.code != 0));
    let all_done = !run.main.is_empty() && run.main.iter().all(|c| c.child.is_none() && c.term.is_some());
    let restartable = |c: &Ctr| match policy {
        "Always" => true,
        "OnFailure" => c.term.as_ref().is_some_and(|t| t.code != 0),
        _ => false,
    };
    let phase = if init_failed {
        "Failed"
    } else if all_done && (stopping || !run.main.iter().any(restartable)) {
        if run.main.iter().all(|c| c.term.as_ref().is_some_and(|t| t.code == 0)) { "Succeeded" } else { "Failed" }
    } else if init_done && run.main.iter().all(|c| c.started.is_some()) {
        "Running"
    } else {
        "Pending"
    };
    let ready = phase == "Running" && run.main.iter().all(|c| c.child.is_some()) && !stopping;
    let cond = |t: &str, ok: bool, reason: Option<&str>| {
        let mut c = json!({"type": t, "status": if ok { "True" } else { "False" }, "lastProbeTime": null, "lastTransitionTime": run.started});
        if let Some(r) = reason.filter(|_| !ok) {
            c["reason"] = json!(r);
        }
        c
    };
    let running_any = run.main.iter().any(|c| c.child.is_some());
    let mut status = json!({
        "phase": phase,
        "conditions": [
            cond("PodReadyToStartContainers", !stopping || running_any, None),
            cond("Initialized", init_done, Some("ContainersNotInitialized")),
            cond("Ready", ready, Some(if matches!(phase, "Succeeded" | "Failed") { "PodCompleted" } else { "ContainersNotReady" })),
            cond("ContainersReady", ready, Some(if matches!(phase, "Succeeded" | "Failed") { "PodCompleted" } else { "ContainersNotReady" })),
            cond("PodScheduled", true, None),
        ],
        "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "podIP": pod_ip(pod), "podIPs": [{"ip": pod_ip(pod)}],
        "startTime": run.started, "qosClass": pod["status"]["qosClass"].as_str().unwrap_or("BestEffort"),
        "containerStatuses": run.main.iter().zip(&main_specs).map(|(c, s)| container_status(c, s)).collect::<Vec<_>>(),
    });
    if !run.init.is_empty() {
        status["initContainerStatuses"] =
            json!(run.init.iter().zip(&init_specs).map(|(c, s)| container_status(c, s)).collect::<Vec<_>>());
    }
    let eph_specs = specs("ephemeralContainers");
    let eph: Vec<Value> = run
        .ephemeral
        .iter()
        .filter_map(|c| eph_specs.iter().find(|s| s["name"] == c.name.as_str()).map(|s| container_status(c, s)))
        .collect();
    if !eph.is_empty() {
        status["ephemeralContainerStatuses"] = json!(eph);
    }
    // Only a real change is written (timestamps of conditions stay put).
    if status == pod["status"] {
        return;
    }
    let (ns, name) = ns_name(pod);
    if let Some(mut cur) = store.get(&pod_rt.key(), &ns, &name).cloned() {
        if cur["status"] == status {
            return;
        }
        cur["status"] = status;
        let _ = client::update_as(store, &pod_rt, cur, Some("status"), "kubelet");
    }
}

/// The scheduler: Pods without a node go to the node once their claims are bound.
fn schedule(store: &mut Store) {
    let pod_rt = client::rt(store, "", "pods");
    let waiting: Vec<Value> = store
        .list(&pod_rt.key(), None)
        .filter(|p| {
            p["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
                && p["metadata"].get("deletionTimestamp").is_none_or(Value::is_null)
                && p["spec"]["schedulerName"].as_str().is_none_or(|s| s == SCHEDULER)
        })
        .cloned()
        .collect();
    for pod in waiting {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
        let unbound: Vec<String> = pod["spec"]["volumes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
            .filter(|c| store.get("/persistentvolumeclaims", ns, c).is_none_or(|c| c["status"]["phase"] != "Bound"))
            .map(String::from)
            .collect();
        let mut next = pod.clone();
        if unbound.is_empty() {
            next["spec"]["nodeName"] = json!(NODE);
            let Ok(mut bound) = client::update_as(store, &pod_rt, next, None, SCHEDULER) else { continue };
            bound["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now()}]);
            let _ = client::update_as(store, &pod_rt, bound, Some("status"), SCHEDULER);
            client::event(
                store,
                &pod,
                "Normal",
                "Scheduled",
                &format!(
                    "Successfully assigned {ns}/{} to {NODE}",
                    pod["metadata"]["name"].as_str().unwrap_or_default()
                ),
                SCHEDULER,
            );
        } else if pod["status"]["conditions"].as_array().is_none_or(|c| c.is_empty()) {
            let msg = "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling.";
            next["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False", "lastProbeTime": null, "lastTransitionTime": meta::now(), "reason": "Unschedulable", "message": msg}]);
            let _ = client::update_as(store, &pod_rt, next, Some("status"), SCHEDULER);
        }
    }
}

/// The Node object of a `full` cluster.
pub fn node() -> Value {
    let now = meta::now();
    json!({
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE, "kubernetes.io/os": "linux", "kubernetes.io/arch": std::env::consts::ARCH, "node-role.kubernetes.io/control-plane": ""}},
        "spec": {},
        "status": {
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": NODE}],
            "nodeInfo": {"kubeletVersion": "v1.36.2", "operatingSystem": "linux", "architecture": std::env::consts::ARCH, "containerRuntimeVersion": "sim://1", "kernelVersion": "", "osImage": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass that reaches the kubelet after its cluster was killed (a controller pass
    /// already under way on a thread of the stopped runtime) starts nothing: the Pod's
    /// process would outlive the cluster. Once the cluster starts again, it runs Pods.
    #[test]
    fn a_lost_node_starts_no_pod_until_its_cluster_starts_again() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let mut store = Store::new(crate::sim::registry::builtin());
        let pods = client::rt(&store, "", "pods");
        let uid = "4c4a6f1e-0000-4000-8000-000000000001";
        store.put(
            &pods.key(),
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "worker", "namespace": "default", "uid": uid},
                "spec": {"nodeName": NODE, "restartPolicy": "Always",
                         "containers": [{"name": "main", "image": "busybox", "command": ["sleep", "30"]}]},
            }),
        );
        let mut kubelet = Kubelet::new(&dir, dir.join("kubeconfig"), Vec::new());
        kubelet.set_api("http://127.0.0.1:1", None, false);
        kubelet.kill_all();
        kubelet.pass(&mut store);
        let started_while_lost = !kubelet.pods.is_empty() || kubelet.running(uid, "main");
        kubelet.kill_all();
        assert!(!started_while_lost, "a lost node started a Pod");

        kubelet.set_api("http://127.0.0.1:1", None, false);
        kubelet.pass(&mut store);
        let started = kubelet.running(uid, "main");
        kubelet.kill_all();
        assert!(started, "the restarted node did not run its Pod");
    }
}
