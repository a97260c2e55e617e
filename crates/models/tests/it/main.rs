//! The model store's integration tests, one binary: downloads against a
//! loopback HTTP server with injected faults, limits, repair, two sources on
//! one store path, and chunked downloads over several connections.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

mod chunked;
mod fetch;
mod limits;
mod repair;
mod same_path;
