//! Test fixtures for comfyver, built from real parts at test time.
//!
//! - [`git`]: real git repositories (bare remotes with branches, lightweight
//!   and annotated tags, several commits, submodules) made with the `git`
//!   binary, and [`git::GitDaemon`], git's own daemon serving them over the
//!   `git://` protocol on loopback.

pub mod git;
