//! The CLI's integration tests, one binary (`cargo test -p comfyver --test it`): each module
//! runs the real `comfyver` binary against real fixtures. One binary links once, which keeps
//! CI's link steps few; `cargo test -p comfyver --test it realize::` runs one module.

mod docker;
mod faults;
mod import;
mod import_install;
mod interop;
mod launch;
mod model_folders;
mod models;
mod nodes;
mod realize;
mod reproduce;
mod resolve;
mod run;
mod serve;
mod shared_core;
mod sinks;
mod validate;
