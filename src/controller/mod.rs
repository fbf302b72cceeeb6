//! The controllers: fetch -> validate -> plan -> apply -> status.
//!
//! - [`location`]: BackupLocation: reachability, the repository, catalog sync.
//! - [`policy`]: BackupPolicy: schedules runs (missed runs once), on-demand runs,
//!   replication and retention, and the policy's status.
//! - [`restore_point`]: the backup run, a state machine in the RestorePoint's status.
//! - [`gate`]: the fence gate, which holds a returning site's Pods until the fencing
//!   markers say the site may write.
//! - [`grants`]: namespace boundaries: what may reach a namespace from another.
//! - [`clock`]: the time controllers read, controllable in tests.

pub mod clock;
pub mod error;
pub mod gate;
pub mod grants;
pub mod heartbeat;
pub mod location;
pub mod movers;
pub mod policy;
pub mod restore_plan;
pub mod restore_point;

use crate::k8s::events::Events;
use crate::telemetry::Metrics;
use clock::Clock;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use error::{Error, Result};

/// Settings of the operator (`lifeline run` flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// Image of the mover Jobs.
    pub mover_image: String,
    /// Command that starts `lifeline` in the mover image.
    pub mover_command: Vec<String>,
    /// Most mover Jobs running at once in the cluster.
    pub max_movers: usize,
    /// Resources and security contexts of every mover Pod.
    pub mover_pod: crate::mover::job::MoverPod,
    /// Namespaces whose Lifeline objects this operator reconciles; empty: every namespace.
    pub watch_namespaces: Vec<String>,
    /// How long snapshots may take to be cut and to become ready.
    pub snapshot_timeout: Duration,
    /// How long a clone of a snapshot may take to bind.
    pub clone_timeout: Duration,
    /// How long one mover Job may run.
    pub mover_timeout: Duration,
    /// Retries of a mover Job after a retryable error.
    pub mover_retries: i32,
    /// This cluster's identity in fencing markers; default: the uid of the `kube-system`
    /// namespace.
    pub cluster_id: Option<String>,
    /// How often this cluster's heartbeat is written to the locations of its active
    /// policies (see [`heartbeat`]).
    pub heartbeat_interval: Duration,
    /// Cross-namespace restores an administrator allowed in the operator's settings
    /// (besides the annotations on Namespaces; see [`grants`]).
    pub grants: grants::Grants,
    /// Namespaces (`*`: every one) whose locations without `spec.credentialsSecret` may use
    /// the operator's own cloud identity (its environment, web identity or instance
    /// metadata); elsewhere such a location's requests go unsigned (see [`grants`]).
    pub ambient_credentials: grants::Namespaces,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            mover_image: format!("ghcr.io/lifeline-dr/lifeline:{}", env!("CARGO_PKG_VERSION")),
            mover_command: vec!["lifeline".into()],
            max_movers: 4,
            mover_pod: Default::default(),
            watch_namespaces: Vec::new(),
            snapshot_timeout: Duration::from_secs(600),
            clone_timeout: Duration::from_secs(600),
            mover_timeout: Duration::from_secs(6 * 3600),
            mover_retries: 2,
            cluster_id: None,
            heartbeat_interval: Duration::from_secs(10),
            grants: Default::default(),
            ambient_credentials: Default::default(),
        }
    }
}

/// What every reconcile gets.
pub struct Context {
    pub client: kube::Client,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    pub clock: Arc<dyn Clock>,
    pub config: Config,
    /// Repositories opened (key derivation is slow on purpose): by location uid, URL and
    /// the key Secret's resourceVersion, so a changed key or location opens again.
    pub repos: Mutex<HashMap<String, Arc<crate::repo::Repository>>>,
    /// This cluster's identity, once known (see [`Config::cluster_id`]).
    pub cluster: tokio::sync::OnceCell<String>,
    /// Locations (by uid) this process has checked: each is checked once when the
    /// operator starts, whatever its interval, so a returning site reads its fencing
    /// markers before it does anything else.
    pub checked: Mutex<std::collections::HashSet<String>>,
    /// The resourceVersion this process last wrote (or read afresh) of each object (by
    /// uid) whose watch-cache copy has not caught up with it yet (see [`Context::newest`]).
    pub seen: Mutex<Seen>,
}

/// How long [`Seen`] keeps an entry at most. A live object's entry goes at its next
/// reconcile (at most five minutes away); one deleted before that is never looked at
/// again, and long before this the cache has caught up with any write.
const SEEN_FOR: Duration = Duration::from_secs(15 * 60);

/// Per object uid, the resourceVersion this process last wrote or read afresh, and when.
/// Entries older than [`SEEN_FOR`] are swept out as new ones come in, so objects deleted
/// between a write and their next reconcile do not pile up over the process's life.
#[derive(Default)]
pub struct Seen {
    map: HashMap<String, (String, std::time::Instant)>,
    swept: Option<std::time::Instant>,
}

impl Seen {
    fn get(&self, uid: &str) -> Option<&String> {
        self.map.get(uid).map(|(rv, _)| rv)
    }

    fn insert(&mut self, uid: String, rv: String) {
        self.insert_at(uid, rv, std::time::Instant::now());
    }

    fn insert_at(&mut self, uid: String, rv: String, now: std::time::Instant) {
        if self.swept.is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(60)) {
            self.map.retain(|_, (_, at)| now.saturating_duration_since(*at) < SEEN_FOR);
            self.swept = Some(now);
        }
        self.map.insert(uid, (rv, now));
    }

    fn remove(&mut self, uid: &str) {
        self.map.remove(uid);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }
}

impl Context {
    pub fn now(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// The object a reconcile builds on: the watch cache's copy unless this process has
    /// written the object since and the cache does not show it yet, else a fresh read.
    /// The cache trails the API server; a reconcile started by a change the previous one
    /// made (a Job, a restore point) can run before the cache has that reconcile's status
    /// write, and a status derived from the older one would undo it. `None` when the
    /// object is gone.
    pub async fn newest<K>(&self, cached: Arc<K>) -> Result<Option<Arc<K>>>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let meta = cached.meta();
        let uid = meta.uid.clone().unwrap_or_default();
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            match seen.get(&uid) {
                None => return Ok(Some(cached)),
                // Caught up: nothing to remember until the next write.
                Some(rv) if Some(rv) == meta.resource_version.as_ref() => {
                    seen.remove(&uid);
                    return Ok(Some(cached));
                }
                Some(_) => {}
            }
        }
        let api: kube::Api<K> =
            kube::Api::namespaced(self.client.clone(), meta.namespace.as_deref().unwrap_or_default());
        let name = meta.name.clone().unwrap_or_default();
        let fresh = api.get_opt(&name).await.map_err(Error::kube(format!("read {} {name}", K::kind(&()))))?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        match fresh.as_ref().and_then(|f| f.meta().resource_version.clone()) {
            Some(rv) if meta.resource_version.as_ref() != Some(&rv) => seen.insert(uid, rv),
            _ => seen.remove(&uid),
        }
        Ok(fresh.map(Arc::new))
    }

    /// Records a status write's result, for [`Context::newest`].
    pub fn wrote<K: kube::Resource>(&self, obj: &K) {
        let (Some(uid), Some(rv)) = (obj.meta().uid.clone(), obj.meta().resource_version.clone()) else { return };
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).insert(uid, rv);
    }

    /// This cluster's identity: the configured one, else the `kube-system` namespace's uid.
    pub async fn cluster_id(&self) -> Result<String> {
        self.cluster
            .get_or_try_init(|| async {
                if let Some(id) = &self.config.cluster_id {
                    return Ok(id.clone());
                }
                let api: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(self.client.clone());
                let ns = api.get("kube-system").await.map_err(Error::kube("read Namespace kube-system"))?;
                Ok(ns.metadata.uid.unwrap_or_default())
            })
            .await
            .cloned()
    }

    /// Counts an error of a controller by category, and logs it.
    pub fn count_error(&self, controller: &str, e: &Error) {
        self.metrics.reconcile_errors.get_or_create(&Metrics::error(controller, e.category())).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An object deleted between a status write and its next reconcile is never looked at
    /// again: its entry goes once it is older than `SEEN_FOR`, while newer ones stay.
    #[test]
    fn remembered_writes_of_objects_never_reconciled_again_are_swept_out() {
        let mut seen = Seen::default();
        let start = std::time::Instant::now();
        seen.insert_at("deleted".into(), "41".into(), start);
        seen.insert_at("recent".into(), "7".into(), start + SEEN_FOR - Duration::from_secs(120));
        assert_eq!(seen.len(), 2);
        seen.insert_at("new".into(), "9".into(), start + SEEN_FOR + Duration::from_secs(1));
        assert_eq!(seen.get("deleted"), None, "kept past {SEEN_FOR:?}");
        assert_eq!(seen.get("recent").map(String::as_str), Some("7"));
        assert_eq!(seen.get("new").map(String::as_str), Some("9"));
        // Sweeps run at most once a minute, and never drop what is younger than SEEN_FOR.
        seen.insert_at("later".into(), "3".into(), start + SEEN_FOR + Duration::from_secs(30));
        assert_eq!(seen.len(), 3);
        seen.remove("new");
        assert_eq!(seen.get("new"), None);
    }
}
