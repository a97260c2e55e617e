//! Progress reporting, decoupled from any terminal library.

/// Receives progress of transfers. Called from worker threads; every method
/// has an empty default.
pub trait Reporter: Sync {
    /// A transfer of the model at `path` starts, with `done` bytes already
    /// on disk (a resume) and `total` bytes expected when known.
    fn start(&self, path: &str, done: u64, total: Option<u64>) {
        let _ = (path, done, total);
    }
    /// `done` bytes of `path` are on disk.
    fn progress(&self, path: &str, done: u64, total: Option<u64>) {
        let _ = (path, done, total);
    }
    /// The transfer of `path` ended (successfully or not).
    fn finish(&self, path: &str) {
        let _ = path;
    }
    /// A note about `path` worth showing (a retry, a restart).
    fn note(&self, path: &str, message: &str) {
        let _ = (path, message);
    }
}

/// A [`Reporter`] that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoReporter;

impl Reporter for NoReporter {}
