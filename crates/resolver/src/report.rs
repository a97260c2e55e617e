use crate::{EntryOutcome, ResolveError};

/// Receives progress while repositories are resolved (called from worker
/// threads, one call per event).
pub trait Reporter: Sync {
    /// `entry`'s refs are about to be listed from `repo` (redacted), or read
    /// from its local mirror when offline.
    fn resolving(&self, entry: &str, repo: &str) {
        let _ = (entry, repo);
    }

    /// An entry got its commit (or, in a dry run, is known to need one).
    fn resolved(&self, entry: &EntryOutcome) {
        let _ = entry;
    }

    /// An entry could not be resolved.
    fn failed(&self, entry: &str, error: &ResolveError) {
        let _ = (entry, error);
    }
}

/// A [`Reporter`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

impl Reporter for NoReporter {}
