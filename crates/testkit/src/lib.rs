//! Test fixtures for comfyver, built from real parts at test time.
//!
//! - [`git`]: real git repositories (bare remotes with branches, lightweight
//!   and annotated tags, several commits, submodules) made with the `git`
//!   binary, [`git::GitDaemon`], git's own daemon serving them over the
//!   `git://` protocol on loopback, and [`git::GitHttp`], git's smart HTTP
//!   protocol (`git http-backend`) on loopback.
//! - [`wheels`]: real pure-Python wheels (and a standard set) that uv and pip
//!   install offline from a local find-links directory, and
//!   [`wheels::SimpleIndex`], a PEP 503 index on loopback serving them.
//! - [`http`]: a real HTTP/1.1 file server on loopback with Range, ETag,
//!   byte counting and fault injection (dropped connections, 5xx, 401, ...).
//! - [`comfy`]: a temp ComfyUI home (a copy of the stand-in ComfyUI with node-pack
//!   fixtures linked into `custom_nodes/`) and a bare stand-in server on a port.
//! - [`cli`]: the `comfyver` binary run hermetically, and [`cli::Sandbox`],
//!   one CLI test's temp cache and versions directories.
//! - [`cloud`]: GCS and S3 emulators, a fault proxy, throwaway service-account keys.
//! - [`world`]: a whole version to realize and run (core and node-pack
//!   repositories, wheels, a model server, a spec).
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

pub mod cli;
pub mod cloud;
pub mod comfy;
pub mod git;
pub mod http;
pub mod wheels;
pub mod world;
