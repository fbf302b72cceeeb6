//! The controllers (fetch -> validate -> plan -> apply -> status). Arriving piece by
//! piece: first the pure parts every controller relies on.
//!
//! - [`clock`]: the time a controller reads, controllable in tests so that a month of
//!   schedules and retention runs in seconds.
//! - [`policy::plan`]: when a BackupPolicy's next run is due, missed runs included.

pub mod clock;
pub mod policy;
