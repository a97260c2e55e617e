//! The CLI's integration tests, one binary (`cargo test -p comfyver --test it`): each module
//! runs the real `comfyver` binary against real fixtures. One binary links once, which keeps
//! CI's link steps few; `cargo test -p comfyver --test it realize::` runs one module.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

mod confine;
mod docker;
mod faults;
mod front_door;
mod import;
mod import_install;
mod interop;
mod job_models;
mod launch;
mod model_folders;
mod models;
mod node_index;
mod nodes;
mod realize;
mod reproduce;
mod resolve;
mod run;
mod serve;
mod shared_core;
mod sinks;
mod validate;
mod warm_pool;
