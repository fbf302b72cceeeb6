//! Telemetry: one [`Metrics`] struct (prefix `lifeline_`, bounded labels: a policy or a
//! location is `namespace/name`, an error is its category, never its text), and the
//! HTTP endpoints `/metrics`, `/healthz` and `/readyz`.

pub mod http;
pub mod status;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

/// Histogram buckets of run durations.
#[derive(Clone)]
pub struct Buckets;

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        // 1 s to about 9 hours.
        Histogram::new(exponential_buckets(1.0, 2.0, 16))
    }
}

/// Every metric the operator exports: these, counted or set as things happen, and those
/// of [`status::StatusMetrics`], read from the objects' status at each scrape.
pub struct Metrics {
    pub registry: Registry,
    pub backup_duration: Family<Labels, Histogram, Buckets>,
    pub location_reachable: Family<Labels, Gauge>,
    pub mover_jobs_running: Gauge,
    pub reconcile_errors: Family<Labels, Counter>,
    pub reconciles: Family<Labels, Counter>,
    /// Status writes per controller: a reconcile that changes nothing writes nothing.
    pub status_writes: Family<Labels, Counter>,
    /// The status-derived metrics; exported once the controllers give it their caches.
    pub status: std::sync::Arc<status::StatusMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lifeline");
        let m = Metrics {
            registry: Registry::default(),
            backup_duration: Family::new_with_constructor(Buckets),
            location_reachable: Family::default(),
            mover_jobs_running: Gauge::default(),
            reconcile_errors: Family::default(),
            reconciles: Family::default(),
            status_writes: Family::default(),
            status: Default::default(),
        };
        registry.register("backup_duration_seconds", "Duration of backup runs, by policy", m.backup_duration.clone());
        registry.register(
            "location_reachable",
            "1 when the last check reached the location",
            m.location_reachable.clone(),
        );
        registry.register("mover_jobs_running", "Mover Jobs running in this cluster", m.mover_jobs_running.clone());
        registry.register(
            "reconcile_errors",
            "Reconcile errors by controller and category",
            m.reconcile_errors.clone(),
        );
        registry.register("reconciles", "Reconciles by controller", m.reconciles.clone());
        registry.register("status_writes", "Status writes by controller", m.status_writes.clone());
        registry.register_collector(Box::new(m.status.clone()));
        Metrics { registry, ..m }
    }

    pub fn policy(ns: &str, name: &str) -> Labels {
        vec![("policy".into(), format!("{ns}/{name}"))]
    }

    pub fn location(ns: &str, name: &str) -> Labels {
        vec![("location".into(), format!("{ns}/{name}"))]
    }

    pub fn controller(c: &str) -> Labels {
        vec![("controller".into(), c.into())]
    }

    pub fn error(controller: &str, category: &str) -> Labels {
        vec![("controller".into(), controller.into()), ("category".into(), category.into())]
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
