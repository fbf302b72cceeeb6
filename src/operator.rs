//! `lifeline run`: the operator. Serves `/healthz`, `/readyz` and `/metrics`, takes the
//! leader Lease (two replicas never both act), then runs the BackupLocation,
//! BackupPolicy and RestorePoint controllers until shutdown or until the leadership is
//! lost (then it exits, and its replacement takes over from the state in status).

use crate::api::{BackupLocation, BackupPolicy, RestorePlan, RestorePoint};
use crate::controller::clock::Clock;
use crate::controller::{self, Config, Context, Error};
use crate::k8s::events::Events;
use crate::telemetry::Metrics;
use crate::telemetry::http::{self, Health};
use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::Api;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Leader election settings.
#[derive(Debug, Clone)]
pub struct Leader {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (its Pod name).
    pub identity: String,
    /// Seconds a Lease lasts without renewal; a dead leader's successor waits this long.
    pub duration: u64,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`.
    pub http: Option<SocketAddr>,
    pub leader: Option<Leader>,
    pub clock: Arc<dyn Clock>,
}

/// What the running operator exposes (for tests and the binary).
pub struct Running {
    pub metrics: Arc<Metrics>,
    pub http: Option<SocketAddr>,
    pub ready: Arc<AtomicBool>,
}

type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Starts the HTTP endpoints, then returns the operator's future: it waits for the
/// leadership, runs the controllers, and ends on `shutdown` (or with an error when the
/// leadership is lost).
pub async fn start(
    client: kube::Client,
    opts: Options,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<(Running, impl Future<Output = anyhow::Result<()>>)> {
    let metrics = Arc::new(Metrics::new());
    let ready = Arc::new(AtomicBool::new(false));
    let bound = match opts.http {
        Some(addr) => Some(http::serve(addr, Health { metrics: metrics.clone(), ready: ready.clone() }).await?),
        None => None,
    };
    let running = Running { metrics: metrics.clone(), http: bound, ready: ready.clone() };
    let fut = run(client, opts, metrics, ready, Box::pin(shutdown));
    Ok((running, fut))
}

async fn run(
    client: kube::Client,
    opts: Options,
    metrics: Arc<Metrics>,
    ready: Arc<AtomicBool>,
    shutdown: Shutdown,
) -> anyhow::Result<()> {
    let shutdown = futures::future::FutureExt::shared(shutdown);
    let identity = opts.leader.as_ref().map(|l| l.identity.clone());
    let ctx = Arc::new(Context {
        client: client.clone(),
        events: Events::new(client.clone(), "lifeline", identity),
        metrics,
        clock: opts.clock.clone(),
        config: opts.config.clone(),
        repos: Default::default(),
        cluster: Default::default(),
        checked: Default::default(),
        seen: Default::default(),
    });
    let Some(le) = opts.leader.clone() else {
        ready.store(true, Ordering::Relaxed);
        controllers(ctx, shutdown).await;
        return Ok(());
    };
    let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &le.name)
        .with_namespace(&le.namespace)
        .with_identity(&le.identity)
        .with_duration(le.duration)
        .with_grace((le.duration / 3).max(1))
        .build()
        .await?;
    let (mut leader, lease_task) = manager.watch().await;
    // A standby is ready: it serves and waits to take over.
    ready.store(true, Ordering::Relaxed);
    loop {
        if *leader.borrow_and_update() {
            break;
        }
        tokio::select! {
            r = leader.changed() => r.map_err(|_| anyhow::anyhow!("leader election stopped"))?,
            _ = shutdown.clone() => return Ok(()),
        }
    }
    tracing::info!(identity = %le.identity, lease = %le.name, "took the leader Lease; starting the controllers");
    let lost = async {
        while *leader.borrow() {
            if leader.changed().await.is_err() {
                break;
            }
        }
    };
    let outcome = tokio::select! {
        _ = controllers(ctx, shutdown.clone()) => Ok(()),
        _ = lost => Err(anyhow::anyhow!("lost the leader Lease; stopping so that only the leader acts")),
    };
    drop(leader);
    let _ = tokio::time::timeout(Duration::from_secs(5), lease_task).await;
    outcome
}

/// A hash of a location's fencing markers: the same for every status without markers,
/// so only a change of markers passes the filter (a property of `None` would let every
/// event through).
fn fences_hash(loc: &BackupLocation) -> Option<u64> {
    use std::hash::{Hash, Hasher};
    let fences = loc.status.as_ref().map(|s| s.fences.as_slice()).unwrap_or_default();
    if fences.is_empty() {
        return Some(0);
    }
    let mut h = std::collections::hash_map::DefaultHasher::new();
    serde_json::to_string(fences).unwrap_or_default().hash(&mut h);
    Some(h.finish())
}

fn error_policy<K: Resource<DynamicType = ()>>(
    controller: &'static str,
) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |obj, err, ctx| {
        ctx.count_error(controller, err);
        tracing::warn!(controller, object = %obj.meta().name.clone().unwrap_or_default(), category = err.category(), error = %err, "reconcile failed; retrying");
        let r = obj.object_ref(&());
        let note = err.to_string();
        let category = err.category();
        let c = ctx.clone();
        tokio::spawn(async move { c.events.warning(&r, category, "Reconcile", note).await });
        Action::requeue(Duration::from_secs(if matches!(err, Error::Invalid(_)) { 60 } else { 5 }))
    }
}

fn log_results<S, T, E>(controller: &'static str, s: S) -> impl Future<Output = ()>
where
    S: Stream<Item = Result<T, E>>,
    T: std::fmt::Debug,
    E: std::fmt::Display,
{
    s.for_each(move |r| async move {
        match r {
            Ok(o) => tracing::debug!(controller, object = ?o, "reconciled"),
            Err(e) => tracing::debug!(controller, error = %e, "reconcile stream"),
        }
    })
}

fn jumps(ctx: &Context) -> impl Stream<Item = ()> + Send + 'static {
    match ctx.clock.jumps() {
        Some(rx) => tokio_stream_watch(rx).boxed(),
        None => futures::stream::pending().boxed(),
    }
}

fn tokio_stream_watch(mut rx: tokio::sync::watch::Receiver<jiff::Timestamp>) -> impl Stream<Item = ()> {
    async_stream(move |tx| async move {
        while rx.changed().await.is_ok() {
            if tx.send(()).is_err() {
                break;
            }
        }
    })
}

/// A small stream built from a task feeding a channel.
fn async_stream<F, Fut>(f: F) -> impl Stream<Item = ()>
where
    F: FnOnce(tokio::sync::mpsc::UnboundedSender<()>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(f(tx));
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Every controller: once for the whole cluster, or (with `watch_namespaces`) once per
/// watched namespace, each set with its own watches and caches, so objects elsewhere are
/// neither seen nor touched.
async fn controllers<S>(ctx: Arc<Context>, shutdown: S)
where
    S: Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let scopes: Vec<Option<String>> = if ctx.config.watch_namespaces.is_empty() {
        vec![None]
    } else {
        ctx.config.watch_namespaces.iter().cloned().map(Some).collect()
    };
    futures::future::join_all(scopes.into_iter().map(|scope| controllers_in(ctx.clone(), scope, shutdown.clone())))
        .await;
    // No longer leading (or stopping): the caches go stale, so their metrics go too.
    ctx.metrics.status.clear();
}

/// `Api::all`, or the one namespace of a scoped set.
fn scoped<K>(c: &kube::Client, scope: &Option<String>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    match scope {
        Some(ns) => Api::namespaced(c.clone(), ns),
        None => Api::all(c.clone()),
    }
}

async fn controllers_in<S>(ctx: Arc<Context>, scope: Option<String>, shutdown: S)
where
    S: Future<Output = ()> + Clone + Send + Sync + 'static,
{
    let c = ctx.client.clone();
    let wc = watcher::Config::default();
    let ours = watcher::Config::default().labels(&format!(
        "{}={}",
        crate::api::names::LABEL_MANAGED_BY,
        crate::api::names::MANAGED_BY_VALUE
    ));
    // Bounded concurrency: a thousand policies due at once must not hold a thousand
    // listings in memory (measured with `make bench-operator`).
    let bounded = || kube::runtime::controller::Config::default().concurrency(32);
    let locations = Controller::new(scoped::<BackupLocation>(&c, &scope), wc.clone())
        .with_config(bounded())
        .graceful_shutdown_on(shutdown.clone())
        .run(controller::location::reconcile, error_policy(controller::location::NAME), ctx.clone());
    // A policy is reconciled when its spec or annotations change (an on-demand request),
    // when one of its restore points changes, and on its own timers; not when its own
    // status write comes back through the watch (half of all reconciles at start-up, each
    // with its listings, for nothing). The store still sees every change, so a reconcile
    // compares against the newest status.
    let (policy_store, policy_writer) = kube::runtime::reflector::store();
    let policy_changes = watcher::watcher(scoped::<BackupPolicy>(&c, &scope), wc.clone())
        .default_backoff()
        .reflect(policy_writer)
        .applied_objects()
        .predicate_filter(predicates::generation.combine(predicates::annotations), Default::default());
    // A fencing marker found at a location (its status's `fences` changed) wakes the
    // policies that use the location at once: a returning site stands down before its
    // next run, not at its next periodic look.
    // The same watch feeds the heartbeat writer's view of the scope's locations.
    let (location_store, location_writer) = kube::runtime::reflector::store();
    let fence_changes = watcher::watcher(scoped::<BackupLocation>(&c, &scope), wc.clone())
        .default_backoff()
        .reflect(location_writer)
        .applied_objects()
        .predicate_filter(fences_hash, Default::default());
    let policies_of = policy_store.clone();
    let policy_store_metrics = policy_store.clone();
    let beats = controller::heartbeat::run(ctx.clone(), location_store, policy_store.clone(), shutdown.clone());
    let policies = Controller::for_stream(policy_changes, policy_store)
        .watches_stream(fence_changes, move |loc: BackupLocation| {
            let (ns, name) = (loc.namespace().unwrap_or_default(), loc.name_any());
            policies_of
                .state()
                .into_iter()
                .filter(|p| {
                    p.namespace().as_deref() == Some(ns.as_str()) && p.spec.locations.iter().any(|l| l.name == name)
                })
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        .watches(scoped::<RestorePoint>(&c, &scope), wc.clone(), |p: RestorePoint| {
            Some(ObjectRef::<BackupPolicy>::new(&p.spec.policy).within(&p.namespace().unwrap_or_default()))
        })
        .reconcile_all_on(jumps(&ctx))
        .with_config(bounded())
        .graceful_shutdown_on(shutdown.clone())
        .run(controller::policy::reconcile, error_policy(controller::policy::NAME), ctx.clone());
    let ours_plans = ours.clone();
    let points = Controller::new(scoped::<RestorePoint>(&c, &scope), wc.clone());
    let points_store = points.store();
    let points = points
        .owns(scoped::<Job>(&c, &scope), ours.clone())
        .owns(scoped::<PersistentVolumeClaim>(&c, &scope), ours.clone())
        .reconcile_all_on(jumps(&ctx))
        .with_config(bounded())
        .graceful_shutdown_on(shutdown.clone())
        .run(controller::restore_point::reconcile, error_policy(controller::restore_point::NAME), ctx.clone());
    let plans = Controller::new(scoped::<RestorePlan>(&c, &scope), wc.clone());
    ctx.metrics.status.add(crate::telemetry::status::Sources {
        policies: policy_store_metrics,
        points: points_store,
        plans: plans.store(),
        clock: ctx.clock.clone(),
    });
    let plans = plans
        .owns(scoped::<Job>(&c, &scope), ours_plans.clone())
        // Restored StatefulSets have no owner (they outlive the plan): their readiness
        // reaches the plan through the annotation naming it.
        .watches(scoped::<StatefulSet>(&c, &scope), ours_plans, |s: StatefulSet| {
            let a = s.metadata.annotations.as_ref()?.get(controller::restore_plan::ANNOTATION_PLAN)?;
            let (ns, name) = a.split_once('/')?;
            Some(ObjectRef::<RestorePlan>::new(name).within(ns))
        })
        .with_config(bounded())
        .graceful_shutdown_on(shutdown.clone())
        .run(controller::restore_plan::reconcile, error_policy(controller::restore_plan::NAME), ctx.clone());
    let gates = Controller::new(
        scoped::<Pod>(&c, &scope),
        watcher::Config::default().labels(&format!("{}=true", controller::gate::LABEL)),
    )
    .graceful_shutdown_on(shutdown)
    .run(controller::gate::reconcile, error_policy(controller::gate::NAME), ctx.clone());
    tokio::join!(
        log_results(controller::gate::NAME, gates),
        log_results(controller::location::NAME, locations),
        log_results(controller::policy::NAME, policies),
        log_results(controller::restore_point::NAME, points),
        log_results(controller::restore_plan::NAME, plans),
        beats
    );
}
