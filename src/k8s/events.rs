//! Kubernetes Events: the audit trail. Every run start, finish and failure is an Event on
//! the object it concerns, naming what triggered it. Reasons are the constants below.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const RUN_STARTED: &str = "RunStarted";
pub const RUN_COMPLETED: &str = "RunCompleted";
pub const RUN_FAILED: &str = "RunFailed";
pub const RUNS_MISSED: &str = "RunsMissed";
pub const HOOK_FAILED: &str = "HookFailed";
pub const HOOKS_RAN: &str = "HooksRan";
pub const SNAPSHOTS_CUT: &str = "SnapshotsCut";
pub const UPLOADED: &str = "Uploaded";
pub const REPLICATED: &str = "Replicated";
pub const REPLICATION_FAILED: &str = "ReplicationFailed";
pub const RETENTION: &str = "RetentionApplied";
pub const PRUNED: &str = "Pruned";
pub const PRUNE_FAILED: &str = "PruneFailed";
pub const VERIFIED: &str = "Verified";
pub const VERIFICATION_FAILED: &str = "VerificationFailed";
pub const VERIFICATION_STARTED: &str = "VerificationStarted";
pub const DRILL_SCHEDULED: &str = "DrillScheduled";
pub const DRILL_SKIPPED: &str = "DrillSkipped";
pub const DATA_DELETED: &str = "DataDeleted";
pub const DATA_DELETE_BLOCKED: &str = "DataDeleteBlocked";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const LOCATION_UNREACHABLE: &str = "LocationUnreachable";
pub const REACHABLE: &str = "Reachable";
pub const REPOSITORY_CREATED: &str = "RepositoryCreated";
pub const CATALOG_SYNCED: &str = "CatalogSynced";
pub const RECONCILE_ERROR: &str = "ReconcileError";
pub const FENCED: &str = "Fenced";
pub const FENCING: &str = "Fencing";
pub const RESTORE_STARTED: &str = "RestoreStarted";
pub const RESTORE_WAITING: &str = "RestoreWaiting";
pub const RESTORE_POINT_CHOSEN: &str = "RestorePointChosen";
pub const VOLUME_RESTORED: &str = "VolumeRestored";
pub const VOLUMES_RESTORED: &str = "VolumesRestored";
pub const WORKLOADS_STARTED: &str = "WorkloadStarted";
pub const RESTORE_COMPLETED: &str = "RestoreCompleted";
pub const RESTORE_FAILED: &str = "RestoreFailed";
pub const NODE_PORTS_REASSIGNED: &str = "NodePortsReassigned";

/// How long a repeat of the same Event counts into the first one's series.
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);

/// Publishes Events (`events.k8s.io/v1`) for one controller. A failure to publish is
/// logged, never fatal: the audit trail must not stop the work it describes.
///
/// An exact repeat (same object, type, reason, action and note) within a few minutes
/// counts into the first Event's series, as client-go does; an Event with another note is
/// a new Event. (kube's `Recorder` keys series without the note, so a second, different
/// note on the same object and reason — retention at another location, a deletion of
/// another restore point, a new validation error — would be folded into the first and
/// lost from the audit trail.)
#[derive(Clone)]
pub struct Events {
    client: kube::Client,
    controller: String,
    instance: String,
    series: Arc<Mutex<HashMap<Key, Seen>>>,
}

/// The Event an exact repeat counts into.
struct Seen {
    name: String,
    count: i32,
    at: Instant,
}

#[derive(Hash, PartialEq, Eq)]
struct Key {
    uid: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    type_: &'static str,
    reason: String,
    action: String,
    note: String,
}

impl Events {
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Events {
            client,
            controller: controller.to_string(),
            instance: instance.unwrap_or_else(|| controller.to_string()),
            series: Arc::default(),
        }
    }

    pub async fn normal(&self, on: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(on, "Normal", reason, action, note).await
    }

    pub async fn warning(&self, on: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(on, "Warning", reason, action, note).await
    }

    async fn publish(&self, on: &ObjectReference, type_: &'static str, reason: &str, action: &str, note: String) {
        // The API refuses notes over 1 kB.
        let note: String = note.chars().take(1000).collect();
        let ns = on.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &ns);
        let key = Key {
            uid: on.uid.clone(),
            namespace: on.namespace.clone(),
            name: on.name.clone(),
            kind: on.kind.clone(),
            type_,
            reason: reason.into(),
            action: action.into(),
            note: note.clone(),
        };
        let now = jiff::Timestamp::now();
        let repeat = {
            let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
            series.retain(|_, s| s.at.elapsed() < SERIES_TTL);
            series.get_mut(&key).map(|s| {
                s.count += 1;
                s.at = Instant::now();
                (s.name.clone(), s.count)
            })
        };
        let result = match repeat {
            Some((name, count)) => {
                let patch = serde_json::json!({"series": {"count": count, "lastObservedTime": MicroTime(now)}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
            }
            None => {
                let name = format!("{}.{:x}", on.name.as_deref().unwrap_or(&self.controller), now.as_nanosecond());
                let ev = K8sEvent {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(ns.clone()),
                        ..Default::default()
                    },
                    event_time: Some(MicroTime(now)),
                    type_: Some(type_.into()),
                    reason: Some(reason.into()),
                    action: Some(action.into()),
                    note: Some(note),
                    regarding: Some(on.clone()),
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    ..Default::default()
                };
                let created = api.create(&PostParams::default(), &ev).await.map(|_| ());
                if created.is_ok() {
                    self.series
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, Seen { name, count: 1, at: Instant::now() });
                }
                created
            }
        };
        if let Err(e) = result {
            tracing::warn!(reason, object = ?on.name, error = %e, "failed to publish an Event");
        }
    }
}
pub const HEARTBEAT_LOST: &str = "HeartbeatLost";
pub const HEARTBEAT_RESUMED: &str = "HeartbeatResumed";
pub const STANDBY_REFRESHING: &str = "StandbyRefreshing";
pub const STANDBY_READY: &str = "StandbyReady";
pub const PROMOTING: &str = "Promoting";
pub const PROMOTION_REFUSED: &str = "PromotionRefused";
pub const FAILBACK: &str = "Failback";
pub const FENCE_GATE_CLEARED: &str = "FenceGateCleared";
pub const FENCE_GATE_HELD: &str = "FenceGateHeld";
/// A request that would cross a namespace boundary without a grant.
pub const NOT_PERMITTED: &str = "NotPermitted";
