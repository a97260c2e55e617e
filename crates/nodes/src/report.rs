//! Progress events, so the CLI can draw what the library does.

use std::path::Path;

/// Receives progress events from fetches and checkouts: the mirrors'
/// network events through its supertrait ([`comfyver_git::Reporter`]:
/// `fetching`, `reading_remote`), the checkouts' here. Every method has an
/// empty default; implementations must be cheap and thread-safe (events come
/// from worker threads).
pub trait Reporter: comfyver_git::Reporter {
    /// A checkout of `name` (a node, `comfy` or a submodule path) at `commit` starts.
    fn checking_out(&self, name: &str, commit: &str) {
        let _ = (name, commit);
    }

    /// `name` at `commit` is ready at `path` (built now or already cached).
    fn ready(&self, name: &str, commit: &str, path: &Path, was_cached: bool) {
        let _ = (name, commit, path, was_cached);
    }
}

/// A [`Reporter`] that ignores every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoReporter;

impl comfyver_git::Reporter for NoReporter {}

impl Reporter for NoReporter {}
