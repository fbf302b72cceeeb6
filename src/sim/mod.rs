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
mod errors;
mod events;
mod kubelet_api;
mod managed;
mod meta;
mod openapi;
mod patch;
mod registry;
mod selector;
mod store;
mod table;
mod watch;
mod workloads;
mod write;

use api::{Reply, Req, Target};
use errors::ApiResult;
use serde_json::{Value, json};
use std::path::Path;
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
}

/// One API server's state.
pub struct Server {
    store: Mutex<store::Store>,
}

impl Server {
    fn new() -> Self {
        let mut s = store::Store::new(registry::builtin());
        bootstrap(&mut s);
        // Etcd compacts its early history: a watch from resourceVersion 1 is too old.
        s.compact();
        Self { store: Mutex::new(s) }
    }

    pub(crate) fn store(&self) -> MutexGuard<'_, store::Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// RBAC is not enforced yet: every request is allowed, as with the real server's
    /// `--authorization-mode=AlwaysAllow`.
    fn authorize(&self, _req: &Req, _t: &Target) -> ApiResult<()> {
        Ok(())
    }
}

/// The namespaces every cluster starts with.
fn bootstrap(s: &mut store::Store) {
    let ns = s.find("", "v1", "namespaces").expect("namespaces");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let mut obj = json!({"metadata": {"name": name}, "spec": {}});
        builtin::default(&ns, &mut obj);
        builtin::on_create(&ns, &mut obj);
        controllers::put_new(s, &ns, obj, "kube-apiserver");
    }
}

/// A `matchLabels` selector as the `a=b,c=d` string Scale status carries.
pub(crate) fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = sel["matchLabels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default())).collect())
        .unwrap_or_default();
    parts.sort();
    parts.join(",")
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
        Self::start_with(Arc::new(Server::new()), opts)
    }

    fn start_with(server: Arc<Server>, opts: Options) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("lifeline-sim")
            .enable_all()
            .build()?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind(("127.0.0.1", opts.port)))?;
        let port = listener.local_addr()?.port();
        let app = axum::Router::new().fallback(http_handler).with_state(server.clone());
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        runtime.spawn(controllers::run(server.clone()));
        Ok(Self { server, runtime: Some(runtime), port, opts: Options { port, ..opts } })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the cluster abruptly: its API goes away and its tasks stop.
    pub fn kill(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
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
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: lifeline-sim\n  cluster:\n    server: {}\ncontexts:\n- name: lifeline-sim\n  context:\n    cluster: lifeline-sim\n    user: admin\n    namespace: default\ncurrent-context: lifeline-sim\nusers:\n- name: admin\n  user: {{}}\n",
            self.url()
        )
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
    use axum::response::IntoResponse;
    let (parts, body) = request.into_parts();
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
        body,
    };
    let reply = { api::handle(&server, req) };
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
