//! Every name Lifeline puts into the cluster, in one place.

/// API group of all Lifeline kinds.
pub const GROUP: &str = "lifeline.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";
/// `apiVersion` of all Lifeline objects.
pub const API_VERSION: &str = "lifeline.io/v1alpha1";
/// The `kubectl get lifeline` category.
pub const CATEGORY: &str = "lifeline";

/// Field manager prefix; each controller appends its own name (`lifeline-policy`).
pub const FIELD_MANAGER: &str = "lifeline";
/// Finalizer on objects that own state outside the cluster (object-storage data, fencing).
pub const FINALIZER: &str = "lifeline.io/cleanup";

/// Label on every object Lifeline creates.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "lifeline";
/// Label naming the BackupPolicy a child object belongs to.
pub const LABEL_POLICY: &str = "lifeline.io/policy";
/// Label naming the RestorePlan a child object belongs to.
pub const LABEL_PLAN: &str = "lifeline.io/restore-plan";
/// Label naming the RestorePoint (backup run) a child object belongs to.
pub const LABEL_RESTORE_POINT: &str = "lifeline.io/restore-point";

/// Annotation a user sets to request an on-demand run (any new value triggers one).
pub const ANNOTATION_RUN_NOW: &str = "lifeline.io/run-now";
/// Annotation a user sets on one RestorePoint to delete its data from every location this
/// cluster can write (the value is the reason, recorded in the audit trail). The only way,
/// besides retention, that Lifeline deletes backup data.
pub const ANNOTATION_DELETE_DATA: &str = "lifeline.io/delete-data";
/// Annotation recording who requested an operation, for the audit trail.
pub const ANNOTATION_REQUESTED_BY: &str = "lifeline.io/requested-by";
