//! The RestorePlan controller (recovery), built in slices. First slice: choosing the
//! restore point and the location to read it from.

pub mod select;
