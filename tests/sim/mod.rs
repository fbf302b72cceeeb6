//! The simulated cluster, held to the real API server's recorded behaviour.

mod api;
mod cluster;
mod conformance;
mod server;
