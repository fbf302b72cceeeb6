//! The Lifeline API (`lifeline.io/v1alpha1`): CRD types only, no I/O.
//!
//! Validation happens in three layers, the first two enforced by the API server:
//! the OpenAPI schema (types, enums, ranges, patterns), CEL rules
//! (`x-kubernetes-validations`, cross-field and immutability), and [`validate`]'s
//! semantic checks (cron syntax, time zones, RPO against the schedule, URL details),
//! which controllers run before acting and report as a `Degraded` condition.

pub mod common;
pub mod field;
// Repeated `printcolumn(type_ = ...)` arguments are distinct columns, not duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod location;
pub mod names;
// Repeated `printcolumn(type_ = ...)` arguments are distinct columns, not duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod policy;
// Repeated `printcolumn(type_ = ...)` arguments are distinct columns, not duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod restore_plan;
// Repeated `printcolumn(type_ = ...)` arguments are distinct columns, not duplicates.
#[allow(clippy::duplicated_attributes)]
pub mod restore_point;
pub mod schedule;
pub mod validate;

pub use field::{FieldError, FieldErrorKind};
pub use location::{BackupLocation, BackupLocationSpec, BackupLocationStatus};
pub use policy::{BackupPolicy, BackupPolicySpec, BackupPolicyStatus};
pub use restore_plan::{RestorePlan, RestorePlanSpec, RestorePlanStatus};
pub use restore_point::{RestorePoint, RestorePointSpec, RestorePointStatus};
pub use validate::Validate;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every Lifeline CRD, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![BackupLocation::crd(), BackupPolicy::crd(), RestorePoint::crd(), RestorePlan::crd()]
}
