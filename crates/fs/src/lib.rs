//! Filesystem primitives shared by every comfyver stage.
//!
//! Every write that another process may observe goes through this crate:
//! [`write_atomic`] (temp file in the same directory, fsync, rename), directory
//! publication by rename ([`TempDir`] + [`TempDir::publish`]), and cross-process
//! locks ([`FileLock`]). [`CacheLayout`] names every path inside the cache root so
//! that the stages agree on where things live. [`child`] runs child processes
//! so that none outlives comfyver.

mod atomic;
pub mod child;
mod error;
mod layout;
mod lock;
mod tempdir;

pub use atomic::{write_atomic, write_atomic_if_changed};
pub use error::FsError;
pub use layout::{CacheLayout, RUNPOD_VOLUME, default_cache_root};
pub use lock::FileLock;
pub use tempdir::{TempDir, remove_stale_temps};
