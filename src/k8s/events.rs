//! Kubernetes Events: the audit trail. Every run start, finish and failure is an Event on
//! the object it concerns, naming what triggered it. Reasons are the constants below.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

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
pub const DATA_DELETED: &str = "DataDeleted";
pub const DATA_DELETE_BLOCKED: &str = "DataDeleteBlocked";
pub const INVALID_SPEC: &str = "InvalidSpec";
pub const LOCATION_UNREACHABLE: &str = "LocationUnreachable";
pub const REACHABLE: &str = "Reachable";
pub const REPOSITORY_CREATED: &str = "RepositoryCreated";
pub const CATALOG_SYNCED: &str = "CatalogSynced";
pub const RECONCILE_ERROR: &str = "ReconcileError";

/// Publishes Events for one controller. A failure to publish is logged, never fatal: the
/// audit trail must not stop the work it describes.
#[derive(Clone)]
pub struct Events {
    recorder: Recorder,
}

impl Events {
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Events { recorder: Recorder::new(client, Reporter { controller: controller.to_string(), instance }) }
    }

    pub async fn normal(&self, on: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(on, EventType::Normal, reason, action, note).await
    }

    pub async fn warning(&self, on: &ObjectReference, reason: &str, action: &str, note: String) {
        self.publish(on, EventType::Warning, reason, action, note).await
    }

    async fn publish(&self, on: &ObjectReference, type_: EventType, reason: &str, action: &str, note: String) {
        let note: String = note.chars().take(1000).collect();
        let ev = Event { type_, reason: reason.into(), note: Some(note), action: action.into(), secondary: None };
        if let Err(e) = self.recorder.publish(&ev, on).await {
            tracing::warn!(reason, object = ?on.name, error = %e, "failed to publish an Event");
        }
    }
}
