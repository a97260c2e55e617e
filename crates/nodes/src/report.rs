//! Progress events, so the CLI can draw what the library does.

use std::path::Path;

/// Receives progress events from fetches and checkouts. Every method has an
/// empty default; implementations must be cheap and thread-safe (events come
/// from worker threads).
pub trait Reporter: Send + Sync {
    /// A network fetch into the mirror of `repo` starts (`what`: refspecs or
    /// "all branches and tags"). Exactly one call per network fetch.
    fn fetching(&self, repo: &str, what: &str) {
        let _ = (repo, what);
    }

    /// `paths` of `repo` at `commit` are read from the remote, without
    /// fetching the commit into the mirror (its trees and those files only).
    fn reading_remote(&self, repo: &str, commit: &str, paths: &[&str]) {
        let _ = (repo, commit, paths);
    }

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

impl Reporter for NoReporter {}
