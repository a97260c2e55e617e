//! The realize crate's integration tests, one binary: gc against a realize
//! that starts using an entry meanwhile, and realize used as a library (no
//! CLI) recording the installed Python set in the version's lock.

mod gc;
mod lock_record;
