//! Metrics read from the objects' status at each scrape, as kube-state-metrics reads
//! Deployments: always as fresh as the operator's caches, ages computed at the scrape, and
//! no series left behind by a deleted policy or plan. Only the leader has caches; a
//! replica waiting for the Lease exports none of these.
//!
//! Labels stay bounded: `policy`, `plan` and `location` are `namespace/name`, `kind`,
//! `part`, `phase`, `state` and `mode` are from fixed sets.

use super::{FloatGauge, Labels};
use crate::api::{BackupPolicy, RestorePlan, RestorePoint};
use crate::controller::clock::Clock;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::family::Family;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// What the collector reads: the controllers' caches and their clock.
#[derive(Clone)]
pub struct Sources {
    pub policies: Store<BackupPolicy>,
    pub points: Store<RestorePoint>,
    pub plans: Store<RestorePlan>,
    pub clock: Arc<dyn Clock>,
}

/// Every metric this collector writes, with its help text (a test checks that the alert
/// rules and the dashboard use only exported names).
pub const METRICS: &[(&str, &str)] = &[
    ("rpo_target_seconds", "The RPO a policy promises (spec.rpo)"),
    ("rpo_achieved_seconds", "Age of the data of a policy's newest restore point: what losing the site now would lose"),
    ("rpo_breached", "1 while a policy's newest restore point is older than its RPO"),
    ("backup_last_success_timestamp_seconds", "When a policy's newest completed run completed"),
    ("backup_last_failure_timestamp_seconds", "When a policy's newest failed run ended"),
    (
        "backup_bytes",
        "Bytes of a policy's last run: protected (volume contents), new (stored by the run), stored (all kept points at the primary)",
    ),
    ("backup_last_duration_seconds", "How long a policy's newest completed run took"),
    ("backup_runs", "A policy's runs known in this cluster, by phase"),
    ("policy_fenced", "1 while this site stands down for a policy because another cluster took it over"),
    ("replica_lag_seconds", "Age of the data of the newest restore point present at a location of a policy"),
    ("replica_state", "1 for a location's replication state (InSync, Lagging, Failing, Pending)"),
    ("verification_last_passed", "1 when a policy's newest verification found nothing damaged, 0 when it did"),
    ("verification_last_timestamp_seconds", "When a policy's newest verification finished"),
    ("drill_last_passed", "1 when a policy's newest drill passed, 0 when it failed"),
    ("drill_last_timestamp_seconds", "When a policy's newest drill finished"),
    ("drill_next_timestamp_seconds", "When a policy's next scheduled drill starts"),
    ("drill_rto_seconds", "The recovery time a policy's newest drill measured"),
    ("restore_phase", "1 for a RestorePlan's phase"),
    ("restore_rto_seconds", "A finished RestorePlan's recovery time, by part (detection, decision, execution, total)"),
    ("standby_lag_seconds", "Age of the data a warm standby holds"),
    ("standby_last_refresh_bytes", "Bytes the newest refresh of a warm standby wrote"),
];

/// The collector; holds no sources until the controllers start (one set of caches per
/// watched namespace, or one for the cluster).
#[derive(Default)]
pub struct StatusMetrics {
    sources: RwLock<Vec<Sources>>,
}

impl std::fmt::Debug for StatusMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusMetrics").finish_non_exhaustive()
    }
}

impl StatusMetrics {
    /// Starts exporting from these caches too (the leader, once its controllers run).
    pub fn add(&self, sources: Sources) {
        self.sources.write().unwrap_or_else(|e| e.into_inner()).push(sources);
    }

    /// Stops exporting (leadership lost).
    pub fn clear(&self) {
        self.sources.write().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// One scrape's gauges, by metric name.
#[derive(Default)]
struct Scrape(HashMap<&'static str, Family<Labels, FloatGauge>>);

impl Scrape {
    fn set(&mut self, name: &'static str, labels: Labels, v: f64) {
        debug_assert!(METRICS.iter().any(|(n, _)| *n == name), "{name} is not in METRICS");
        self.0.entry(name).or_default().get_or_create(&labels).set(v);
    }
}

fn ts(t: &Time) -> f64 {
    t.0.as_millisecond() as f64 / 1000.0
}

fn label(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

fn key(ns: Option<String>, name: &str) -> String {
    format!("{}/{name}", ns.unwrap_or_default())
}

/// When a point's data was taken, in seconds (see the policy status's `data_time`).
fn data_time(p: &RestorePoint) -> f64 {
    crate::controller::policy::status::data_time(p).as_millisecond() as f64 / 1000.0
}

fn collect(src: &Sources, s: &mut Scrape) {
    use crate::api::restore_point::RunPhase;
    let now = src.clock.now().as_millisecond() as f64 / 1000.0;
    let points = src.points.state();
    let mut by_policy: HashMap<(String, String), Vec<&RestorePoint>> = HashMap::new();
    for p in &points {
        by_policy.entry((p.namespace().unwrap_or_default(), p.spec.policy.clone())).or_default().push(p);
    }
    for policy in src.policies.state() {
        let ns = policy.namespace().unwrap_or_default();
        let name = policy.name_any();
        let id = key(Some(ns.clone()), &name);
        let l = || vec![label("policy", id.clone())];
        let mine = by_policy.get(&(ns.clone(), name.clone())).cloned().unwrap_or_default();
        let ours: Vec<&&RestorePoint> =
            mine.iter().filter(|p| !p.annotations().contains_key(crate::k8s::ANNOTATION_CATALOG)).collect();
        let target = policy.spec.rpo.map(|r| std::time::Duration::from(r).as_secs_f64());
        if let Some(t) = target {
            s.set("rpo_target_seconds", l(), t);
        }
        let newest = mine
            .iter()
            .filter(|p| p.status.as_ref().is_some_and(|st| st.phase == RunPhase::Completed))
            .map(|p| data_time(p))
            .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
        if let Some(t) = newest {
            let age = (now - t).max(0.0);
            s.set("rpo_achieved_seconds", l(), age);
            if let Some(target) = target {
                s.set("rpo_breached", l(), (age > target) as i64 as f64);
            }
        }
        let mut phases: HashMap<String, f64> = HashMap::new();
        for p in &ours {
            let phase = p.status.as_ref().map(|st| format!("{:?}", st.phase)).unwrap_or_else(|| "Pending".into());
            *phases.entry(phase).or_default() += 1.0;
        }
        for (phase, n) in phases {
            s.set("backup_runs", vec![label("policy", id.clone()), label("phase", phase)], n);
        }
        let failed = ours
            .iter()
            .filter_map(|p| p.status.as_ref().filter(|st| st.phase == RunPhase::Failed))
            .filter_map(|st| st.completion_time.as_ref().or(st.step_start_time.as_ref()).map(ts))
            .fold(None, |a: Option<f64>, t| Some(a.map_or(t, |a| a.max(t))));
        if let Some(t) = failed {
            s.set("backup_last_failure_timestamp_seconds", l(), t);
        }
        let Some(st) = policy.status.as_ref() else { continue };
        if let Some(last) = &st.last_backup {
            if let Some(done) = &last.completion_time {
                s.set("backup_last_success_timestamp_seconds", l(), ts(done));
                if let Some(start) = &last.start_time {
                    s.set("backup_last_duration_seconds", l(), (ts(done) - ts(start)).max(0.0));
                }
            }
            if let Some(b) = last.new_bytes {
                s.set("backup_bytes", vec![label("policy", id.clone()), label("kind", "new")], b as f64);
            }
        }
        for (kind, v) in [("protected", st.protected_bytes), ("stored", st.stored_bytes)] {
            if let Some(b) = v {
                s.set("backup_bytes", vec![label("policy", id.clone()), label("kind", kind)], b as f64);
            }
        }
        let fenced = st.conditions.iter().any(|c| c.type_ == "Degraded" && c.status == "True" && c.reason == "Fenced");
        s.set("policy_fenced", l(), fenced as i64 as f64);
        for loc in &st.locations {
            let ll = || vec![label("policy", id.clone()), label("location", key(Some(ns.clone()), &loc.name))];
            let held = loc
                .last_restore_point
                .as_ref()
                .and_then(|n| mine.iter().find(|p| p.name_any() == *n))
                .map(|p| data_time(p))
                .or(loc.last_sync_time.as_ref().map(ts));
            if let Some(t) = held {
                s.set("replica_lag_seconds", ll(), (now - t).max(0.0));
            }
            for state in ["InSync", "Lagging", "Failing", "Pending"] {
                let mut labels = ll();
                labels.push(label("state", state));
                s.set("replica_state", labels, (format!("{:?}", loc.state) == state) as i64 as f64);
            }
        }
        if let Some(v) = &st.last_verification {
            s.set("verification_last_passed", l(), v.passed as i64 as f64);
            s.set("verification_last_timestamp_seconds", l(), ts(&v.time));
        }
        if let Some(d) = &st.last_drill {
            s.set("drill_last_passed", l(), d.passed as i64 as f64);
            s.set("drill_last_timestamp_seconds", l(), ts(&d.time));
            if let Some(rto) = d.rto {
                s.set("drill_rto_seconds", l(), std::time::Duration::from(rto).as_secs_f64());
            }
        }
        if let Some(next) = &st.next_drill {
            s.set("drill_next_timestamp_seconds", l(), ts(next));
        }
    }
    for plan in src.plans.state() {
        let id = key(plan.namespace(), &plan.name_any());
        let mode = format!("{:?}", plan.spec.mode);
        let l = || vec![label("plan", id.clone()), label("mode", mode.clone())];
        let Some(st) = plan.status.as_ref() else { continue };
        let mut labels = l();
        labels.push(label("phase", format!("{:?}", st.phase)));
        s.set("restore_phase", labels, 1.0);
        if let Some(rto) = &st.rto
            && st.completion_time.is_some()
        {
            for (part, d) in [
                ("detection", rto.detection),
                ("decision", rto.decision),
                ("execution", rto.execution),
                ("total", rto.total),
            ] {
                if let Some(d) = d {
                    let mut labels = l();
                    labels.push(label("part", part));
                    s.set("restore_rto_seconds", labels, std::time::Duration::from(d).as_secs_f64());
                }
            }
        }
        if let Some(sb) = &st.standby
            && sb.promoted.is_none()
        {
            if let Some(t) = &sb.point_time {
                s.set("standby_lag_seconds", l(), (now - ts(t)).max(0.0));
            }
            if let Some(b) = sb.last_refresh_bytes {
                s.set("standby_last_refresh_bytes", l(), b as f64);
            }
        }
    }
}

impl Collector for StatusMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let sources = self.sources.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut scrape = Scrape::default();
        for src in &sources {
            collect(src, &mut scrape);
        }
        for (name, help) in METRICS {
            if let Some(family) = scrape.0.get(name) {
                family.encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)?;
            }
        }
        Ok(())
    }
}
