//! The one integration-test binary (one link on small machines); each area is a module.

mod api;
mod chart;
mod cli;
mod demo;
mod mover;
mod operator;
mod repo;
mod rooms;
mod sim;
mod support;
