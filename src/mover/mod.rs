//! The seam between the controllers and the data path.
//!
//! - [`result`]: the typed [`MoverResult`] every `lifeline repo …`/`lifeline mover …`
//!   run writes (`--result-file`) and the controllers parse. The exit code alone never
//!   means success: a controller reads the result.
//! - [`inline`]: the one bridge for the light repository calls the controllers make
//!   themselves (open, list points, forget). The data path is synchronous and drives its
//!   own runtime, so calling it on a reconciler's thread panics; heavy work (backup,
//!   restore, copy) runs in mover Jobs instead.
//! - [`job`]: the mover Job a controller creates (pure: plan in, `batch/v1` Job out).
//! - [`record`]: how a restore point is laid out in a repository (tags and record), so
//!   any cluster with the location lists it.

pub mod inline;
pub mod job;
pub mod record;
pub mod result;

pub use result::{BackupFigures, MoverError, MoverResult};
