//! The simulated cluster: a Kubernetes API server over HTTP on 127.0.0.1 with the
//! control-plane controllers a DR operator depends on, held to recordings of a real
//! kube-apiserver (`../shared/conformance` style goldens; see README "Simulated cluster").
//! Only `main.rs` (`lifeline sim`, `lifeline demo`) and the tests use it.
//!
//! Each [`Cluster`] runs on its own Tokio runtime, so several run side by side in one
//! process and [`Cluster::kill`] stops one abruptly (its API goes away mid-request).

mod api;
mod apply;
mod builtin;
mod client;
mod controllers;
mod custom;
mod deployments;
mod errors;
mod events;
mod groupsnapshots;
mod kubelet;
mod kubelet_api;
mod managed;
mod meta;
mod network;
pub(crate) mod openapi;
mod patch;
mod portforward;
mod protobuf;
mod rbac;
mod registry;
mod review;
mod selector;
mod snapshots;
mod storage;
pub use storage::volume_path;
mod store;
mod table;
mod table_docs;
pub mod tls;
mod watch;
mod workloads;
mod write;

use api::{Reply, Req, Target};
use errors::ApiResult;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Which controllers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Profile {
    /// Every simulated controller.
    #[default]
    Full,
    /// A control plane with no nodes and no storage, as the conformance goldens were
    /// recorded against.
    Bare,
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// 0 picks a free port.
    pub port: u16,
    pub profile: Profile,
    /// Where volumes, Pod logs and files live; a fresh temporary directory (removed with
    /// the cluster) when unset.
    pub state_dir: Option<PathBuf>,
    /// Controllers switched off, for tests that drive a step by hand.
    pub disabled: Vec<Controller>,
    /// Require bearer tokens and enforce RBAC (see `rbac`); otherwise every request is
    /// allowed, as with `--authorization-mode=AlwaysAllow`.
    pub rbac: bool,
    /// Images the node "has pulled": what a container of one runs when it names no
    /// `command` (see `kubelet`).
    pub images: Vec<Image>,
    /// How long after a change its watch event goes out. A real API server serves watches
    /// from a cache that trails storage, by milliseconds idle and by seconds under load,
    /// while reads and writes see storage at once: a controller whose next reconcile
    /// starts before its own status write has come back through the watch sees the older
    /// object. Zero (the default) sends each event as soon as the change is made.
    pub watch_lag: std::time::Duration,
}

/// An image as the simulated node knows it: its entrypoint and default arguments, and
/// where its programs are (put in front of `PATH`).
#[derive(Debug, Clone, Default)]
pub struct Image {
    /// The reference without tag or digest, as in `ghcr.io/lifeline-dr/lifeline`.
    pub repository: String,
    /// The image's `ENTRYPOINT`.
    pub entrypoint: Vec<String>,
    /// The image's `CMD`: the arguments when the container gives none.
    pub cmd: Vec<String>,
    pub path: Vec<PathBuf>,
}

impl Image {
    /// An image whose entrypoint is one program on this machine (and whose `PATH` has its
    /// directory), as `REPOSITORY=PROGRAM` of `lifeline sim --image`.
    pub fn program(repository: &str, program: &Path) -> Image {
        Image {
            repository: repository.to_string(),
            entrypoint: vec![program.to_string_lossy().into_owned()],
            cmd: Vec::new(),
            path: program.parent().map(Path::to_path_buf).into_iter().collect(),
        }
    }

    /// Whether a container's `image` reference names this image (any tag or digest).
    pub fn names(&self, reference: &str) -> bool {
        let r = reference.split('@').next().unwrap_or_default();
        let r = match r.rfind(':') {
            Some(i) if !r[i..].contains('/') => &r[..i],
            _ => r,
        };
        r == self.repository
    }
}

/// The simulated cluster controllers that can be switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Controller {
    GarbageCollector,
    Jobs,
    StatefulSets,
    /// Deployments and their ReplicaSets.
    Deployments,
    /// Provisioning and reclaiming volumes (profile `full`).
    Volumes,
    /// The snapshot controller and the simulated CSI driver's snapshots (profile `full`).
    Snapshots,
    /// The scheduler and the kubelet (profile `full`).
    Kubelet,
}

/// One API server's state.
pub struct Server {
    store: Mutex<store::Store>,
    kubelet: Mutex<kubelet::Kubelet>,
    dir: PathBuf,
    owns_dir: bool,
    opts: Options,
    links: Mutex<Vec<Arc<network::Link>>>,
    /// With authentication on, the cluster serves HTTPS (see `tls`).
    tls: Option<tls::Tls>,
    /// Requests served, for measuring a client's cost (`Cluster::requests`).
    requests: std::sync::atomic::AtomicU64,
    /// With RBAC on, every resource request's authorization (`Cluster::audit`).
    audit: Mutex<std::collections::BTreeMap<Access, u64>>,
}

/// One kind of resource request a user made, and whether RBAC allowed it: what a
/// component's roles must grant, and nothing more.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Access {
    pub user: String,
    pub verb: String,
    /// API group (empty for the core group).
    pub group: String,
    /// Resource, with `/subresource` when there is one.
    pub resource: String,
    /// Namespace of the request (empty at the cluster scope).
    pub namespace: String,
    pub allowed: bool,
}

impl Server {
    fn new(opts: &Options) -> std::io::Result<Self> {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let (dir, owns_dir) = match &opts.state_dir {
            Some(d) => (d.clone(), false),
            None => {
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n == 0 {
                    remove_orphans(&std::env::temp_dir());
                }
                (std::env::temp_dir().join(format!("lifeline-sim-{}-{n}", std::process::id())), true)
            }
        };
        std::fs::create_dir_all(&dir)?;
        let tls = if opts.rbac { Some(tls::Tls::new()?) } else { None };
        let mut s = store::Store::new(registry::builtin());
        s.ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        bootstrap(&mut s, opts.profile);
        // Etcd compacts its early history: a watch from resourceVersion 1 is too old.
        s.compact();
        Ok(Self {
            store: Mutex::new(s),
            kubelet: Mutex::new(kubelet::Kubelet::new(&dir, dir.join("kubeconfig"), opts.images.clone())),
            dir,
            owns_dir,
            opts: opts.clone(),
            links: Mutex::new(Vec::new()),
            requests: std::sync::atomic::AtomicU64::new(0),
            audit: Mutex::default(),
            tls,
        })
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn kubelet(&self) -> MutexGuard<'_, kubelet::Kubelet> {
        self.kubelet.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn runs(&self, c: Controller) -> bool {
        let node = matches!(c, Controller::Volumes | Controller::Snapshots | Controller::Kubelet);
        !self.opts.disabled.contains(&c) && (self.opts.profile == Profile::Full || !node)
    }

    /// With RBAC on, a request needs a valid token (401 otherwise).
    /// Who a request acts as: with RBAC off every request is the admin (or whom it
    /// impersonates); with RBAC on, its token's user.
    pub(crate) fn user(&self, req: &Req) -> ApiResult<rbac::User> {
        let store = self.store();
        let real = if self.opts.rbac { rbac::authenticate(&store, &req.authorization)? } else { rbac::User::admin() };
        rbac::impersonate(&store, self.opts.rbac, real, req)
    }

    pub(crate) fn rbac(&self) -> bool {
        self.opts.rbac
    }

    /// With RBAC on, `user` needs a rule that allows the resource request (403
    /// otherwise).
    fn authorize(&self, user: &rbac::User, req: &Req, t: &Target) -> ApiResult<()> {
        self.authorize_verb(user, rbac::verb(req, t), t)
    }

    /// A server-side apply that would create its object needs `create` too, as the real
    /// patch handler checks (handlers/patch.go `createAuthorizerAttributes`).
    pub(crate) fn authorize_create_by_patch(&self, user: &rbac::User, req: &Req, t: &Target) -> ApiResult<()> {
        let apply = req.content_type.split(';').next().unwrap_or_default().trim() == write::APPLY_PATCH;
        let Some(name) = t.name.as_deref() else { return Ok(()) };
        if !self.opts.rbac || !apply || t.sub.is_some() {
            return Ok(());
        }
        let ns = t.namespace.clone().unwrap_or_default();
        if self.store().get(&t.rt.key(), &ns, name).is_some() {
            return Ok(());
        }
        self.authorize_verb(user, "create", t)
    }

    fn authorize_verb(&self, user: &rbac::User, verb: &str, t: &Target) -> ApiResult<()> {
        if !self.opts.rbac {
            return Ok(());
        }
        let result = rbac::authorize_verb(&self.store(), user, verb, t);
        let resource = match &t.sub {
            Some(sub) => format!("{}/{sub}", t.rt.plural),
            None => t.rt.plural.clone(),
        };
        let access = Access {
            user: user.name.clone(),
            verb: verb.to_string(),
            group: t.rt.group.clone(),
            resource,
            namespace: if t.rt.namespaced { t.namespace.clone().unwrap_or_default() } else { String::new() },
            allowed: result.is_ok(),
        };
        *self.audit.lock().unwrap_or_else(|e| e.into_inner()).entry(access).or_default() += 1;
        result
    }
}

/// Removes the temporary directories of simulated clusters whose process is gone: a
/// cluster kept for a whole test binary (a `static`) is never dropped, and a killed run
/// drops none, so each left its volumes and logs behind in the temporary directory.
fn remove_orphans(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("lifeline-sim-")).and_then(|n| n.split_once('-'))
        else {
            continue;
        };
        let Ok(pid) = pid.0.parse::<u32>() else { continue };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kubelet().kill_all();
        if self.owns_dir {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What every cluster starts with: its namespaces; with a node, the Node and the default
/// StorageClass.
fn bootstrap(s: &mut store::Store, profile: Profile) {
    let ns = s.find("", "v1", "namespaces").expect("namespaces");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let mut obj = json!({"metadata": {"name": name}, "spec": {}});
        builtin::default(&ns, &mut obj);
        builtin::on_create(&ns, &mut obj);
        controllers::put_new(s, &ns, obj, "kube-apiserver");
    }
    // The API server's own Service (its bootstrap controller keeps it): the first address
    // of the service range.
    let svc = s.find("", "v1", "services").expect("services");
    controllers::put_new(
        s,
        &svc,
        json!({
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": "10.96.0.1", "clusterIPs": ["10.96.0.1"], "internalTrafficPolicy": "Cluster",
                     "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
                     "sessionAffinity": "None", "type": "ClusterIP"},
            "status": {"loadBalancer": {}},
        }),
        "kube-apiserver",
    );
    for (plural, obj) in rbac::bootstrap_objects() {
        let rt = s.find("rbac.authorization.k8s.io", "v1", plural).expect("rbac types");
        controllers::put_new(s, &rt, obj, "kube-apiserver");
    }
    if profile == Profile::Full {
        let node = s.find("", "v1", "nodes").expect("nodes");
        controllers::put_new(s, &node, kubelet::node(), "kubelet");
        let sc = s.find("storage.k8s.io", "v1", "storageclasses").expect("storageclasses");
        controllers::put_new(s, &sc, storage::default_class(), "kube-apiserver");
        // The snapshot CRDs are installed and served from the start, as on a cluster
        // with the external snapshotter.
        let crd_rt = s.find("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("crds");
        for mut crd in snapshots::crds().into_iter().chain(groupsnapshots::crds()) {
            builtin::on_create(&crd_rt, &mut crd);
            controllers::put_new(s, &crd_rt, crd, "kube-apiserver");
        }
        controllers::crds(s);
        let vsc = s.find(snapshots::GROUP, "v1", "volumesnapshotclasses").expect("snapshot classes");
        controllers::put_new(s, &vsc, snapshots::default_class(), "kube-apiserver");
        let vgsc = s.find(groupsnapshots::GROUP, "v1", "volumegroupsnapshotclasses").expect("group snapshot classes");
        controllers::put_new(s, &vgsc, groupsnapshots::default_class(), "kube-apiserver");
    }
}

/// A label selector as `labels.Selector.String()` prints it (Scale status, `kubectl get`
/// columns, selectors handed to the selector parser): `matchLabels` as `k=v`, expressions
/// as `k in (a,b)`, `k notin (a,b)`, `k`, `!k`, all sorted by key.
pub(crate) fn selector_string(sel: &Value) -> String {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut reqs: Vec<(String, String)> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.clone(), format!("{k}={}", text(v))))
        .collect();
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = text(&e["key"]);
        let mut values: Vec<String> = e["values"].as_array().into_iter().flatten().map(text).collect();
        values.sort_unstable();
        let req = match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.clone(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key, req));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    reqs.into_iter().map(|(_, t)| t).collect::<Vec<_>>().join(",")
}

/// A kubeconfig for `url`, authenticating with `token` if given, in namespace `ns`.
pub(crate) fn kubeconfig_for(url: &str, ca_data: Option<&str>, token: Option<&str>, ns: &str) -> String {
    let user = match token {
        Some(t) => format!("{{token: {t}}}"),
        None => "{}".into(),
    };
    let ca = ca_data.map(|c| format!("\n    certificate-authority-data: {c}")).unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: lifeline-sim\n  cluster:\n    server: {url}{ca}\ncontexts:\n- name: lifeline-sim\n  context:\n    cluster: lifeline-sim\n    user: user\n    namespace: {ns}\ncurrent-context: lifeline-sim\nusers:\n- name: user\n  user: {user}\n"
    )
}

/// Binds 127.0.0.1:`port`. A fixed port may still be held for a moment by a killed
/// runtime winding down in the background, so that is retried for up to two seconds.
async fn bind(port: u16) -> std::io::Result<tokio::net::TcpListener> {
    let mut tries = 0;
    loop {
        match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
            Err(e) if port != 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < 40 => {
                tries += 1;
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            other => return other,
        }
    }
}

/// A running simulated cluster.
pub struct Cluster {
    server: Arc<Server>,
    runtime: Option<tokio::runtime::Runtime>,
    port: u16,
    opts: Options,
}

impl Cluster {
    /// Starts a cluster on 127.0.0.1; returns once it accepts requests.
    pub fn start(opts: Options) -> std::io::Result<Self> {
        Self::start_with(Arc::new(Server::new(&opts)?), opts)
    }

    fn start_with(server: Arc<Server>, opts: Options) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lifeline-sim")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(bind(opts.port))?;
        let port = listener.local_addr()?.port();
        // Processes the kubelet runs reach the cluster through this file.
        let scheme = if server.tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let ca = server.tls.as_ref().map(tls::Tls::ca_data);
        let admin = opts.rbac.then_some(rbac::ADMIN_TOKEN);
        std::fs::write(server.dir.join("kubeconfig"), kubeconfig_for(&url, ca.as_deref(), admin, "default"))?;
        server.kubelet().set_api(&url, ca.clone(), opts.rbac);
        let app = axum::Router::new().fallback(http_handler).with_state(server.clone());
        match &server.tls {
            Some(t) => {
                runtime.spawn(tls::serve(listener, t.acceptor.clone(), app));
            }
            None => {
                runtime.spawn(async move {
                    let _ = axum::serve(listener, app).await;
                });
            }
        }
        runtime.spawn(controllers::run(server.clone()));
        // Links come back with the cluster, on their old ports.
        let links: Vec<Arc<network::Link>> = server.links.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for link in links {
            let l = runtime.block_on(bind(link.port))?;
            let up = Arc::new(link.up.clone());
            runtime.spawn(network::relay(l, link.target, up));
        }
        Ok(Self { server, runtime: Some(runtime), port, opts: Options { port, ..opts } })
    }

    /// How many API requests the cluster has served (watches count once).
    pub fn requests(&self) -> u64 {
        self.server.requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// With RBAC on: every kind of resource request made so far, by user, verb, resource
    /// and namespace, whether it was allowed, and how often.
    pub fn audit(&self) -> Vec<(Access, u64)> {
        self.server.audit.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(a, n)| (a.clone(), *n)).collect()
    }

    /// A network path from this cluster to `target` (an object-storage endpoint): the
    /// address its workloads should use for it. The same target gets the same address.
    pub fn link(&self, target: SocketAddr) -> std::io::Result<SocketAddr> {
        let mut links = self.server.links.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(l) = links.iter().find(|l| l.target == target) {
            return Ok(SocketAddr::from(([127, 0, 0, 1], l.port)));
        }
        let rt = self.runtime.as_ref().ok_or_else(|| std::io::Error::other("the cluster is not running"))?;
        let listener = rt.block_on(tokio::net::TcpListener::bind(("127.0.0.1", 0)))?;
        let port = listener.local_addr()?.port();
        let (tx, _) = tokio::sync::watch::channel(true);
        let link = Arc::new(network::Link { target, port, up: tx });
        rt.spawn(network::relay(listener, target, Arc::new(link.up.clone())));
        links.push(link);
        Ok(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    /// Cuts (`false`) or restores (`true`) the path to `target` made by [`Cluster::link`].
    pub fn set_link(&self, target: SocketAddr, up: bool) {
        let links = self.server.links.lock().unwrap_or_else(|e| e.into_inner());
        for l in links.iter().filter(|l| l.target == target) {
            l.up.send_replace(up);
        }
    }

    /// The API server's URL: `https://` when authentication is on (see `tls`).
    pub fn url(&self) -> String {
        let scheme = if self.server.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The CA of the cluster's serving certificate (PEM), when it serves HTTPS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.server.tls.as_ref().map(|t| t.ca_pem.as_str())
    }

    fn ca_data(&self) -> Option<String> {
        self.server.tls.as_ref().map(tls::Tls::ca_data)
    }

    /// A kubeconfig with no credentials (an anonymous client).
    pub fn anonymous_kubeconfig(&self) -> String {
        kubeconfig_for(&self.url(), self.ca_data().as_deref(), None, "default")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the cluster abruptly: its API goes away, its tasks stop and the processes
    /// of its Pods are killed.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
            self.server.kubelet().kill_all();
        }
    }

    /// The directory with the cluster's volumes, Pod logs and files.
    pub fn state_dir(&self) -> &Path {
        &self.server.dir
    }

    /// Starts a killed cluster again on the same port, with its state.
    pub fn restart(&mut self) -> std::io::Result<()> {
        self.kill();
        let again = Self::start_with(self.server.clone(), self.opts.clone())?;
        *self = again;
        Ok(())
    }

    /// A kubeconfig for this cluster (context `lifeline-sim`).
    pub fn kubeconfig(&self) -> String {
        kubeconfig_for(&self.url(), self.ca_data().as_deref(), self.opts.rbac.then_some(rbac::ADMIN_TOKEN), "default")
    }

    /// A kubeconfig that authenticates as a ServiceAccount (which must exist), for running
    /// a component with only the permissions its roles grant.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Option<String> {
        let token = rbac::service_account_token(&self.server.store(), namespace, name)?;
        Some(kubeconfig_for(&self.url(), self.ca_data().as_deref(), Some(&token), namespace))
    }

    /// Writes the kubeconfig atomically.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, self.kubeconfig())?;
        std::fs::rename(tmp, path)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn http_handler(
    axum::extract::State(server): axum::extract::State<Arc<Server>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    server.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let (mut parts, body) = request.into_parts();
    if let Some(resp) = kubelet_upgrade(&server, &mut parts).await {
        return resp;
    }
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    let header = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let query =
        parts.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let req = Req {
        method: parts.method.as_str().to_string(),
        path: parts.uri.path().to_string(),
        query,
        content_type: header("content-type"),
        accept: header("accept"),
        user_agent: header("user-agent"),
        authorization: header("authorization"),
        impersonate_user: header("impersonate-user"),
        impersonate_groups: parts
            .headers
            .get_all("impersonate-group")
            .iter()
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect(),
        body,
    };
    let reply = { api::handle(&server, req) };
    render(&server, reply)
}

/// A websocket `pods/exec`, `pods/attach` or `pods/portforward` request, served by the
/// simulated kubelet.
async fn kubelet_upgrade(
    server: &Arc<Server>,
    parts: &mut axum::http::request::Parts,
) -> Option<axum::response::Response> {
    use axum::extract::FromRequestParts;
    use axum::response::IntoResponse;
    let upgrade =
        parts.headers.get("upgrade").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let path = parts.uri.path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (ns, name, sub) = match segs.as_slice() {
        ["api", "v1", "namespaces", ns, "pods", name, sub @ ("exec" | "portforward" | "attach")] => (*ns, *name, *sub),
        _ => return None,
    };
    if !upgrade {
        return None;
    }
    let query: Vec<(String, String)> =
        parts.uri.query().map(|q| url::form_urlencoded::parse(q.as_bytes()).into_owned().collect()).unwrap_or_default();
    let t = api::Target {
        rt: server.store().find("", "v1", "pods").expect("pods"),
        namespace: Some(ns.to_string()),
        name: Some(name.to_string()),
        sub: Some(sub.into()),
    };
    let req = Req {
        method: parts.method.as_str().to_string(),
        path: path.clone(),
        authorization: parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string(),
        impersonate_user: parts
            .headers
            .get("impersonate-user")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
        ..Req::default()
    };
    if let Err(e) = server.user(&req).and_then(|user| server.authorize(&user, &req, &t)) {
        return Some(render(server, e.into()));
    }
    enum Session {
        Exec(kubelet_api::ExecRequest),
        Attach(kubelet_api::AttachRequest),
        PortForward,
    }
    let session = match sub {
        "portforward" => kubelet_api::pod_on_node(server, &t, name).map(|_| Session::PortForward),
        "attach" => kubelet_api::prepare_attach(server, &t, name, &query).map(Session::Attach),
        _ => kubelet_api::prepare_exec(server, &t, name, &query).map(Session::Exec),
    };
    let session = match session {
        Ok(s) => s,
        Err(e) => return Some(render(server, e.into())),
    };
    let ws = match axum::extract::ws::WebSocketUpgrade::from_request_parts(parts, &()).await {
        Ok(ws) => ws,
        Err(rej) => return Some(rej.into_response()),
    };
    const CHANNELS: [&str; 2] = ["v5.channel.k8s.io", "v4.channel.k8s.io"];
    let server = server.clone();
    Some(match session {
        Session::PortForward => ws.protocols([portforward::PROTOCOL]).on_upgrade(portforward::run).into_response(),
        Session::Attach(a) => {
            ws.protocols(CHANNELS).on_upgrade(move |socket| kubelet_api::run_attach(socket, a, server)).into_response()
        }
        Session::Exec(x) => {
            ws.protocols(CHANNELS).on_upgrade(move |socket| kubelet_api::run_exec(socket, x, server)).into_response()
        }
    })
}

fn render(server: &Arc<Server>, reply: Reply) -> axum::response::Response {
    use axum::response::IntoResponse;
    match reply {
        Reply::Json { code, body, warnings } => {
            let mut resp = (
                axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::INTERNAL_SERVER_ERROR),
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response();
            for w in warnings {
                if let Ok(v) = axum::http::HeaderValue::from_str(&format!("299 - {}", crate::api::field::go_quote(&w)))
                {
                    resp.headers_mut().append("warning", v);
                }
            }
            resp
        }
        Reply::Text { code, body, content_type } => (
            axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::NOT_FOUND),
            [(axum::http::header::CONTENT_TYPE, content_type)],
            body,
        )
            .into_response(),
        Reply::Watch(w) => {
            let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(64);
            tokio::spawn(watch::run(server.clone(), w, tx));
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|b| (Ok::<_, std::io::Error>(b), rx))
            });
            (
                axum::http::StatusCode::OK,
                [
                    (axum::http::header::CONTENT_TYPE, "application/json"),
                    (axum::http::header::TRANSFER_ENCODING, "chunked"),
                ],
                axum::body::Body::from_stream(stream),
            )
                .into_response()
        }
    }
}
