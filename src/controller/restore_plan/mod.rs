//! The RestorePlan controller (recovery), built in slices. First slice: choosing the
//! restore point and the location to read it from; preparing the captured manifests for
//! the target.

pub mod manifests;
pub mod select;
