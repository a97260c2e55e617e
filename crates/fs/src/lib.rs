//! Filesystem primitives shared by every comfyver stage.
//!
//! Every write that another process may observe goes through this crate:
//! [`write_atomic`] (temp file in the same directory, fsync, rename), directory
//! publication by rename ([`TempDir`] + [`TempDir::publish`]), and cross-process
//! locks ([`FileLock`]). Child processes are started through [`child`]: own
//! process group, killed with us, bounded by a timeout; a [`Confinement`]
//! limits what one may read and write (Landlock, applied in the child). [`CacheLayout`] names every path inside the cache root so
//! that the stages agree on where things live.

mod atomic;
pub mod child;
mod confine;
mod error;
mod inside;
mod layout;
mod lock;
mod pause;
mod tempdir;

pub use atomic::{write_atomic, write_atomic_if_changed};
pub use confine::{ConfineMode, ConfineStatus, Confinement, LandlockSupport};
pub use error::FsError;
pub use inside::read_inside;
pub use layout::{CacheLayout, RUNPOD_VOLUME, default_cache_root};
pub use lock::{FileLock, TEST_NO_LOCKS_ENV, lock_timeout};
pub use pause::test_pause;
pub use tempdir::{STALE_TEMP_AGE, TempDir, discard, host_id, remove_stale_temps, temp_sibling};
