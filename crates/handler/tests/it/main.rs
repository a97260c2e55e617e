//! The handler's integration tests: sessions of the stand-in ComfyUI (a real
//! Python process on loopback, `crates/testkit/fixtures/fake-comfyui`).
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

mod cloud;
mod common;
mod compat;
mod failures;
mod node_index;
mod process;
mod run;
mod session;
