//! Lifeline: disaster recovery for stateful Kubernetes workloads.
//!
//! Architecture (rooms and who may enter them):
//!
//! - [`api`] — the CRD types (`BackupLocation`, `BackupPolicy`, `RestorePoint`,
//!   `RestorePlan`), their schema and CEL rules, and the pure `validate` step. Depends on
//!   nothing else in the crate and does no I/O.
//! - [`schema`] — what kube-apiserver does with a CRD schema: structural checks, and
//!   validation, defaulting and pruning of objects, with the server's messages.
//! - [`admission`] — the whole path of a manifest into the cluster (strict decoding,
//!   defaults, schema, CEL, semantics), used by `lifeline validate` and the tests.
//! - [`store`] — object storage (S3, GCS, Azure, local files) behind one narrow,
//!   create-only interface, with retrying, metered and fault-injecting wrappers.
//! - [`repo`] — the repository on a location: format (`docs/FORMAT.md`), keys,
//!   two-level content-defined chunking, packs and index, backup, restore, verify,
//!   forget/prune, copy, locks. Neither `store` nor `repo` imports `kube`: a location is
//!   readable with no cluster.
//! - [`cli`] — user-facing verbs that need no cluster (`crd`, `validate`, `repo …`).
//!
//! - [`mover`] — the seam to the controllers: the typed result every data-path run
//!   writes, and the one bridge for light repository calls from async code.
//! - [`controller`] — the controllers; so far their pure parts: the clock they read
//!   (controllable in tests) and when a policy's run is due.
//! - [`sim`] — the simulated cluster, named only by `main.rs`, `cli` and tests.
//!
//! Arriving with later work, in the layout of STYLE.md: the controllers themselves
//! (fetch → validate → plan → apply → status, long runs as state machines in status),
//! `k8s/` (server-side apply, conditions, events, leader election), `telemetry/`.
//! `tests/rooms/` keeps these rooms apart.
//!
//! Data flows one way: a `BackupPolicy` schedules runs; each run is a `RestorePoint`
//! whose status is its state machine; movers write to the `BackupLocation`s; a
//! `RestorePlan` reads restore points back and recreates the workloads.

pub mod admission;
pub mod api;
pub mod cli;
pub mod controller;
pub mod k8s;
pub mod mover;
pub mod operator;
pub mod repo;
pub mod schema;
pub mod sim;
pub mod store;
pub mod telemetry;
