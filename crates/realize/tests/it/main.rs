//! The realize crate's integration tests, one binary: gc against a realize
//! that starts using an entry meanwhile, and realize used as a library (no
//! CLI) recording the installed Python set in the version's lock.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

mod gc;
mod lock_record;
