//! What kube-apiserver does with a CRD schema: structural checks on the schema itself,
//! and validation, defaulting and pruning of objects against it. Used by the admission
//! chain, by `lifeline validate`, by the CRD tests, and by the simulated API server.

pub mod openapi;
pub mod structural;
