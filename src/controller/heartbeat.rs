//! The heartbeat writer: on a cadence (`--heartbeat-interval`), for each writable
//! BackupLocation this operator has checked since it started (so it has read the
//! fencing markers there), one beat per namespace naming the policies that are active
//! here and use the location (see [`crate::repo::heartbeat`]). A suspended policy, or
//! one fenced by another cluster (by the markers each location's check found, and by
//! those at the location itself, read before each beat), is not named: a site that
//! stood down, or has just come back to find it was taken over, stays silent.
//!
//! Locations are written concurrently, so one slow location never delays the beats of
//! another. A beat that is still being written when the next one is due is not joined
//! by a second write to the same place: that beat is skipped (one warning when a write
//! outlasts the interval, not one per tick), so a slow or unreachable location never
//! gathers writes, and each write's epoch is recorded when it lands, however late, so
//! the next one continues from it.
//!
//! Locations and policies come from the watch caches of the controllers' scope (all
//! namespaces, or one watched namespace): a beat costs no API request, and each scope
//! beats only for its own locations.

use super::Context;
use crate::api::location::AccessMode;
use crate::api::{BackupLocation, BackupPolicy};
use crate::controller::location::access;
use crate::repo::heartbeat::{self, Beat};
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Runs until `shutdown`, once both caches hold their first listing.
pub async fn run<S>(ctx: Arc<Context>, locations: Store<BackupLocation>, policies: Store<BackupPolicy>, shutdown: S)
where
    S: std::future::Future<Output = ()>,
{
    let epochs: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
    let mut writing = Writing::default();
    let interval = ctx.config.heartbeat_interval;
    tokio::pin!(shutdown);
    tokio::select! {
        _ = &mut shutdown => return,
        r = futures::future::try_join(locations.wait_until_ready(), policies.wait_until_ready()) => {
            if r.is_err() {
                return;
            }
        }
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut shutdown => {
                // A write under way may still land (as after a crash); none starts.
                writing.tasks.abort_all();
                return;
            }
            _ = tick.tick() => {}
        }
        if let Err(e) = beat(&ctx, &locations, &policies, &epochs, &mut writing).await {
            tracing::warn!(error = %e, "could not write heartbeats");
        }
    }
}

/// Beats being written: the tasks, and the places (location uid and namespace) they
/// write to.
#[derive(Default)]
struct Writing {
    tasks: tokio::task::JoinSet<()>,
    slots: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
}

/// Frees a beat's place (`<location uid>/<namespace>`) when its write ends, however it ends.
struct SlotFree {
    slots: Arc<std::sync::Mutex<std::collections::HashSet<String>>>,
    slot: String,
}

impl Drop for SlotFree {
    fn drop(&mut self) {
        self.slots.lock().unwrap_or_else(|e| e.into_inner()).remove(&self.slot);
    }
}

/// The policies of `ns` that beat at `loc`.
pub fn active(
    loc: &BackupLocation,
    policies: &[Arc<BackupPolicy>],
    fenced: &std::collections::BTreeSet<String>,
) -> Vec<String> {
    let (ns, name) = (loc.namespace().unwrap_or_default(), loc.name_any());
    let mut out: Vec<String> = policies
        .iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()))
        .filter(|p| !p.spec.suspend && !fenced.contains(&p.name_any()))
        .filter(|p| p.spec.locations.iter().any(|l| l.name == name))
        .map(|p| p.name_any())
        .collect();
    out.sort();
    out
}

async fn beat(
    ctx: &Arc<Context>,
    locations: &Store<BackupLocation>,
    policies: &Store<BackupPolicy>,
    epochs: &Arc<Mutex<HashMap<String, u64>>>,
    writing: &mut Writing,
) -> super::Result<()> {
    while writing.tasks.try_join_next().is_some() {}
    let own = ctx.cluster_id().await?;
    let locations = locations.state();
    let policies = policies.state();
    // Policies fenced by another cluster, by namespace, from every location's markers.
    let mut fenced: HashMap<String, std::collections::BTreeSet<String>> = HashMap::new();
    for l in &locations {
        for f in l.status.iter().flat_map(|s| s.fences.iter()) {
            if f.cluster_id != own {
                fenced.entry(f.namespace.clone()).or_default().insert(f.policy.clone());
            }
        }
    }
    let checked = ctx.checked.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let interval = ctx.config.heartbeat_interval;
    for loc in locations {
        if loc.spec.access_mode != AccessMode::ReadWrite || !checked.contains(&loc.uid().unwrap_or_default()) {
            continue;
        }
        let ns = loc.namespace().unwrap_or_default();
        let names = active(&loc, &policies, fenced.get(&ns).unwrap_or(&Default::default()));
        if names.is_empty() {
            continue;
        }
        let slot = format!("{}/{ns}", loc.uid().unwrap_or_default());
        if !writing.slots.lock().unwrap_or_else(|e| e.into_inner()).insert(slot.clone()) {
            tracing::debug!(location = %loc.name_any(), namespace = %ns, "previous heartbeat still being written; beat skipped");
            continue;
        }
        let (ctx, epochs, own) = (ctx.clone(), epochs.clone(), own.clone());
        let done = SlotFree { slots: writing.slots.clone(), slot };
        writing.tasks.spawn(async move {
            let write = write_one(&ctx, &loc, &ns, &done.slot, names, &own, &epochs);
            tokio::pin!(write);
            let result = match tokio::time::timeout(interval, &mut write).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!(
                        location = %loc.name_any(),
                        namespace = %ns,
                        interval_seconds = interval.as_secs_f64(),
                        "heartbeat write is taking longer than the heartbeat interval; beats to this location wait for it"
                    );
                    write.await
                }
            };
            if let Err(e) = result {
                tracing::warn!(location = %loc.name_any(), namespace = %ns, error = %e, "heartbeat not written");
            }
        });
    }
    Ok(())
}

async fn write_one(
    ctx: &Context,
    loc: &BackupLocation,
    ns: &str,
    slot: &str,
    policies: Vec<String>,
    own: &str,
    epochs: &Mutex<HashMap<String, u64>>,
) -> super::Result<()> {
    let opts = access::options(ctx, loc).await?;
    let url = loc.spec.url.clone();
    let known = epochs.lock().await.get(slot).copied();
    let beat = Beat {
        epoch: 0,
        cluster_id: own.to_string(),
        namespace: ns.to_string(),
        policies,
        time: ctx.now().to_string(),
        interval_seconds: ctx.config.heartbeat_interval.as_secs().max(1),
    };
    let epoch = crate::mover::inline::run(move || {
        let b = access::backend(&url, &opts)?;
        // The markers as they are now, not as the last check saw them: a site that has
        // just come back must not beat for a policy another cluster took over.
        let fenced: Vec<String> = crate::repo::fence::read_namespace(b.as_ref(), &beat.namespace)?
            .into_iter()
            .filter(|m| m.cluster_id != beat.cluster_id)
            .map(|m| m.policy)
            .collect();
        let beat = Beat { policies: beat.policies.into_iter().filter(|p| !fenced.contains(p)).collect(), ..beat };
        if beat.policies.is_empty() {
            return Ok(None);
        }
        // The first beat of this process continues from what is stored.
        let epoch = match known {
            Some(e) => e + 1,
            None => heartbeat::last_epoch(b.as_ref(), &beat.namespace, &beat.cluster_id)? + 1,
        };
        heartbeat::write(b.as_ref(), &Beat { epoch, ..beat })?;
        Ok(Some(epoch))
    })
    .await
    .map_err(super::Error::repo(format!("write a heartbeat to BackupLocation {}", loc.name_any())))?;
    if let Some(epoch) = epoch {
        epochs.lock().await.insert(slot.to_string(), epoch);
    }
    Ok(())
}
