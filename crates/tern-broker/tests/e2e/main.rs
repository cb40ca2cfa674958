//! End-to-end tests: a broker started in-process on `127.0.0.1:0`, spoken
//! to over real TCP by the raw client in `common`. Every test stops by
//! itself within seconds.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod connect;
mod pubsub;
mod retained;
mod robustness;
mod sessions;
mod sys;
