//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};

/// The repository root.
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A path relative to the repository root.
pub fn path(rel: &str) -> PathBuf {
    root().join(rel)
}

pub mod s3;
