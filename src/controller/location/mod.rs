//! The BackupLocation controller: checks reachability and credentials on the location's
//! interval, reports whether a repository exists there, and (with the location's key)
//! keeps the catalog in sync: restore points stored there appear as RestorePoint objects.

pub mod access;
pub mod catalog;

use crate::api::common::condition::{DEGRADED, READY};
use crate::api::location::AccessMode;
use crate::api::{BackupLocation, BackupLocationStatus};
use crate::controller::{Context, Error, Result};
use crate::k8s::{apply, conditions, events};
use crate::repo::{RepoError, Repository};
use crate::telemetry::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

pub const NAME: &str = "location";

/// What one check found.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub reachable: bool,
    pub initialized: Option<bool>,
    pub repository_id: Option<String>,
    pub latency_ms: i64,
    /// Condition reason and message when something is wrong.
    pub problem: Option<(String, String)>,
}

/// Checks a location: options and credentials, then the repository's config object.
pub async fn probe(ctx: &Context, loc: &BackupLocation) -> Probe {
    let started = std::time::Instant::now();
    let opts = match access::options(ctx, loc).await {
        Ok(o) => o,
        Err(e) => {
            let reason = if matches!(e, Error::Invalid(_)) { "SecretMissing" } else { e.category() };
            return Probe {
                reachable: false,
                initialized: None,
                repository_id: None,
                latency_ms: 0,
                problem: Some((reason.into(), e.to_string())),
            };
        }
    };
    let url = loc.spec.url.clone();
    let unsigned = opts.unsigned(&loc.spec.url);
    let res = crate::mover::inline::run(move || {
        let b = access::backend(&url, &opts)?;
        match Repository::read_config(b.as_ref()) {
            Ok(c) => Ok(Some(c.id)),
            Err(RepoError::NotInitialized { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await;
    let latency_ms = started.elapsed().as_millis() as i64;
    match res {
        Ok(id) => {
            Probe { reachable: true, initialized: Some(id.is_some()), repository_id: id, latency_ms, problem: None }
        }
        Err(e) => {
            let (category, hint) = (e.category(), e.hint());
            let mut message = if hint.is_empty() { e.to_string() } else { format!("{e} ({hint})") };
            if unsigned {
                message.push_str(&format!(
                    "; requests were sent unsigned: spec.credentialsSecret names no credentials, and the operator lends its own cloud identity only to the namespaces of its ambientCredentials setting, not {}",
                    loc.namespace().unwrap_or_default()
                ));
            }
            let reason = match category {
                "BucketMissing" | "InvalidLocation" | "PermissionDenied" => category,
                _ => "LocationUnreachable",
            };
            Probe {
                reachable: false,
                initialized: None,
                repository_id: None,
                latency_ms,
                problem: Some((reason.into(), message)),
            }
        }
    }
}

/// The status a probe gives.
pub fn status_of(loc: &BackupLocation, p: &Probe, now: jiff::Timestamp) -> BackupLocationStatus {
    let mut s = loc.status.clone().unwrap_or_default();
    let generation = loc.meta().generation;
    s.observed_generation = generation;
    s.reachable = Some(p.reachable);
    s.last_check_time = Some(Time(now));
    s.latency_ms = Some(p.latency_ms);
    s.repository_initialized = p.initialized;
    if p.repository_id.is_some() {
        s.repository_id = p.repository_id.clone();
    }
    match &p.problem {
        None => {
            let msg = match p.initialized {
                Some(true) => format!("repository {} reachable", p.repository_id.as_deref().unwrap_or("?")),
                _ if loc.spec.access_mode == AccessMode::ReadOnly => "reachable; no repository here yet".to_string(),
                _ => "reachable; the repository is created by the first backup".to_string(),
            };
            s.message = Some(msg.clone());
            conditions::set(&mut s.conditions, READY, true, "Reachable", &msg, generation, now);
            conditions::set(&mut s.conditions, DEGRADED, false, "Reachable", "", generation, now);
        }
        Some((reason, msg)) => {
            s.message = Some(msg.clone());
            conditions::set(&mut s.conditions, READY, false, reason, msg, generation, now);
            conditions::set(&mut s.conditions, DEGRADED, true, reason, msg, generation, now);
        }
    }
    s
}

/// A marker as the API shows it.
pub fn fence_record(m: crate::repo::fence::Marker) -> crate::api::location::FenceRecord {
    crate::api::location::FenceRecord {
        namespace: m.namespace,
        policy: m.policy,
        epoch: m.epoch as i64,
        cluster_id: m.cluster_id,
        time: m.time,
        plan: m.plan,
    }
}

/// Reads the fencing markers at a location now and records them in its status (a site
/// that just wrote its own marker must not keep acting on the last one it saw).
pub async fn refresh_fences(ctx: &Context, loc: &BackupLocation) -> Result<()> {
    let f = fences(ctx, loc).await?;
    let mut status = loc.status.clone().unwrap_or_default();
    if status.fences != f {
        status.fences = f;
        let api: Api<BackupLocation> = Api::namespaced(ctx.client.clone(), &loc.namespace().unwrap_or_default());
        apply::apply_status(&api, NAME, &loc.name_any(), &status)
            .await
            .map_err(Error::kube(format!("update the status of BackupLocation {}", loc.name_any())))?;
    }
    Ok(())
}

/// The fencing markers at a location (newest per policy).
async fn fences(ctx: &Context, loc: &BackupLocation) -> Result<Vec<crate::api::location::FenceRecord>> {
    let opts = access::options(ctx, loc).await?;
    let url = loc.spec.url.clone();
    let markers = crate::mover::inline::run(move || {
        let b = access::backend(&url, &opts)?;
        Ok(crate::repo::fence::read(b.as_ref())?)
    })
    .await
    .map_err(Error::repo(format!("read the fencing markers at BackupLocation {}", loc.name_any())))?;
    Ok(markers.into_iter().map(fence_record).collect())
}

/// When the next check is due: the interval after the last one, sooner while failing.
fn next_check(loc: &BackupLocation, now: jiff::Timestamp) -> Option<Duration> {
    let interval: Duration = loc.spec.check_interval.into();
    let st = loc.status.as_ref()?;
    if st.observed_generation != loc.meta().generation {
        return None;
    }
    let last = st.last_check_time.as_ref()?.0;
    let every = if st.reachable == Some(true) { interval } else { interval.min(Duration::from_secs(30)) };
    let elapsed = now.duration_since(last).try_into().unwrap_or(Duration::ZERO);
    every.checked_sub(elapsed).filter(|d| !d.is_zero())
}

pub async fn reconcile(loc: Arc<BackupLocation>, ctx: Arc<Context>) -> Result<Action> {
    ctx.metrics.reconciles.get_or_create(&Metrics::controller(NAME)).inc();
    let ns = loc.namespace().unwrap_or_default();
    let name = loc.name_any();
    let now = ctx.now();
    let first = ctx.checked.lock().unwrap_or_else(|e| e.into_inner()).insert(loc.uid().unwrap_or_default());
    if let Some(wait) = next_check(&loc, now).filter(|_| !first) {
        return Ok(Action::requeue(wait));
    }
    let p = probe(&ctx, &loc).await;
    let labels = Metrics::location(&ns, &name);
    ctx.metrics.location_reachable.get_or_create(&labels).set(p.reachable as i64);
    let was = loc.status.as_ref().and_then(|s| s.reachable);
    let oref = loc.object_ref(&());
    match (&p.problem, was) {
        (Some((reason, msg)), w) if w != Some(false) => {
            ctx.events.warning(&oref, reason, "Check", msg.clone()).await;
        }
        (None, Some(false)) => {
            ctx.events.normal(&oref, events::REACHABLE, "Check", format!("{} is reachable again", loc.spec.url)).await;
        }
        _ => {}
    }
    let mut status = status_of(&loc, &p, now);
    if p.reachable {
        match fences(&ctx, &loc).await {
            Ok(f) => status.fences = f,
            // Kept as they were: a marker never disappears because one read failed.
            Err(e) => tracing::warn!(location = %name, error = %e, "could not read the fencing markers"),
        }
    }
    if loc.status.as_ref() != Some(&status) {
        let api: Api<BackupLocation> = Api::namespaced(ctx.client.clone(), &ns);
        apply::apply_status(&api, NAME, &name, &status)
            .await
            .map_err(Error::kube(format!("update the status of BackupLocation {name}")))?;
        ctx.metrics.status_writes.get_or_create(&Metrics::controller(NAME)).inc();
    }
    if p.reachable && p.initialized == Some(true) && loc.spec.key_secret.is_some() {
        catalog::sync(&ctx, &loc).await?;
    }
    let interval: Duration = loc.spec.check_interval.into();
    Ok(Action::requeue(if p.reachable { interval } else { interval.min(Duration::from_secs(30)) }))
}
