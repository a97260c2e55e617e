use std::path::PathBuf;

/// An error from a filesystem primitive. Every variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    /// Writing or replacing a file failed.
    #[error("could not write {path}: check that the directory exists and is writable")]
    Write {
        /// The file that was being written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Creating a directory failed.
    #[error("could not create directory {path}")]
    CreateDir {
        /// The directory that was being created.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Taking a lock failed.
    #[error("could not lock {path}: the filesystem may not support file locks")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A lock was not released by another process in time.
    #[error(
        "timed out after {seconds} s waiting for the lock {path} held by another comfyver process; \
         raise COMFYVER_LOCK_TIMEOUT or stop the other process"
    )]
    LockTimeout {
        /// The lock file.
        path: PathBuf,
        /// How long we waited.
        seconds: u64,
    },
    /// Renaming a finished temporary entry into place failed.
    #[error("could not move {from} into place at {to}")]
    Publish {
        /// The temporary entry.
        from: PathBuf,
        /// The final path.
        to: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Removing a file or directory failed.
    #[error("could not remove {path}")]
    Remove {
        /// What was being removed.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A child process could not be started or waited for.
    #[error("could not run {program}: check that it is installed and on PATH")]
    Spawn {
        /// The program.
        program: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A child process ran longer than its limit and was killed with its group.
    #[error(
        "{program} did not finish within {seconds} s and was stopped; raise {setting} if it needs longer"
    )]
    ChildTimeout {
        /// The program.
        program: String,
        /// The limit.
        seconds: u64,
        /// The environment variable that sets the limit.
        setting: &'static str,
    },
    /// Reading a file failed.
    #[error("could not read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file (or a link on its way) leads outside the directory it belongs to.
    #[error(
        "{path} leads outside {root} (a symbolic link?); comfyver does not follow links out of a checkout"
    )]
    OutsideRoot {
        /// The file asked for.
        path: PathBuf,
        /// The directory it must stay in.
        root: PathBuf,
    },
    /// `--confine required` on a kernel without Landlock.
    #[error(
        "ComfyUI must run confined (--confine required, or COMFYVER_CONFINE=required) but {reason}; \
         use a Linux 5.13+ kernel with Landlock enabled, or `--confine auto` to run unconfined"
    )]
    ConfineUnavailable {
        /// Why the kernel offers no Landlock.
        reason: String,
    },
    /// The Landlock ruleset could not be built.
    #[error("could not build the Landlock ruleset; `--confine off` runs without it")]
    Confine {
        /// What the landlock crate reported.
        #[source]
        source: Box<landlock::RulesetError>,
    },
}
