//! Resolves a comfyver version's repositories to exact commits and keeps its
//! resolved lock (`<cache>/resolved/<id>.lock.json`).
//!
//! - [`resolve`]: the core and every custom node. A `ref` that is a branch, a
//!   lightweight or annotated tag (peeled), or absent (the remote's HEAD) is
//!   resolved by listing the remote's refs through gix, without cloning, in
//!   git's DWIM order; a full `commit` is taken as given; a short hex `ref`
//!   naming no branch or tag is a commit prefix (advertised tips first, then
//!   the repository's mirror after a fetch). Repositories are resolved in
//!   parallel; URL rewrite rules apply before any network access.
//! - Cargo-like lock behaviour: a lock matching the spec costs nothing (no
//!   network, no write); a changed spec re-resolves only changed entries;
//!   [`UpdatePolicy`] forces re-resolution; `locked`, `offline` and `dry_run`
//!   options as in [`ResolveOptions`].
//! - [`read_lock`] / [`write_lock`]: the lock file, written atomically under a
//!   per-version cross-process lock; [`locks`]: every lock in the cache, with
//!   the files that could not be read; [`replace_lock`] writes it back only if
//!   it is still the one the caller read (compare-and-swap: locks only move
//!   forward).
//! - A new lock is checked against each pack's `[tool.comfy]
//!   requires-comfyui` (its `pyproject.toml` at the locked commit) and the
//!   core's version there: a mismatch is [`ResolveError::RequiresComfyui`]
//!   naming each pack ([`ComfyuiMismatch`]), or a warning in
//!   [`ResolveOutcome::warnings`] under `options.allow_comfyui_mismatch`.

mod error;
mod lockfile;
mod mirror;
mod options;
mod outcome;
mod plan;
mod refs;
mod remote;
mod report;
mod requires_comfyui;
mod resolve;

pub use error::ResolveError;
pub use lockfile::{LockScan, LockWrite, locks, read_lock, replace_lock, write_lock};
pub use options::{ResolveOptions, UpdatePolicy};
pub use outcome::{ChangeKind, EntryOutcome, LockChange, ResolveOutcome, Source};
pub use report::{NoReporter, Reporter};
pub use requires_comfyui::ComfyuiMismatch;
pub use resolve::resolve;
