//! Network events of the mirrors, so a caller can show when the network is used.

/// Receives the mirrors' network events. Every method has an empty default;
/// implementations must be cheap and thread-safe (events come from worker
/// threads).
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
}
