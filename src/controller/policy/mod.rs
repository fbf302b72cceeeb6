//! The BackupPolicy controller's pure parts.

pub mod plan;
