use std::path::PathBuf;

use crate::Unreadable;

/// Why a version could not be realized, verified or removed.
#[derive(Debug, thiserror::Error)]
pub enum RealizeError {
    /// Getting the core or the node packs failed.
    #[error("could not check out the version's repositories")]
    Nodes(#[from] comfyver_nodes::NodesError),
    /// Getting the models failed.
    #[error("could not bring the version's models into the store")]
    Models(#[from] comfyver_models::ModelsError),
    /// Building the Python environment failed.
    #[error("could not build the version's Python environment")]
    Python(#[from] comfyver_python::PythonError),
    /// Reading the locks, or recording the installed Python set in the
    /// version's lock, failed (the resolver owns `<cache>/resolved/`).
    #[error(transparent)]
    Lock(#[from] comfyver_resolver::ResolveError),
    /// Reading the specs failed.
    #[error(transparent)]
    Spec(#[from] comfyver_spec::SpecError),
    /// gc refuses: what these files reference is unknown.
    #[error(
        "nothing was deleted: {} spec or lock file(s) could not be read, so what they use is unknown; \
         fix or move them, or pass --force to ignore them (what only they use is then deleted)",
        .0.len()
    )]
    Unreadable(Vec<Unreadable>),
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] comfyver_fs::FsError),
    /// The home exists but comfyver did not make it.
    #[error(
        "{} exists and is not a comfyver home (it has no .comfyver/home.json marker): move it away or \
         choose another home with --home / COMFY_HOME", .path.display()
    )]
    NotOurs {
        /// The directory in the way.
        path: PathBuf,
    },
    /// The place given as a home must never be one.
    #[error(
        "{} is {what}, not a version home: comfyver never realizes into it or removes it; give another --home / COMFY_HOME",
        .path.display()
    )]
    NotAHome {
        /// The place.
        path: PathBuf,
        /// What it is.
        what: String,
    },
    /// A directory named as a home is not one.
    #[error(
        "{path} is not a realized comfyver home (no .comfyver/home.json inside): name a home \
         that `comfyver realize` made"
    )]
    NotRealized {
        /// The directory.
        path: PathBuf,
    },
    /// The home has no recorded lock to describe it against.
    #[error(
        "{path} cannot be read: the home was realized by an older comfyver or not completed; \
         run `comfyver realize` for it again"
    )]
    NoRecordedLock {
        /// The missing file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The home's recorded lock is damaged.
    #[error("the home's recorded lock {path} is damaged: run `comfyver realize` for it again")]
    BadRecordedLock {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: comfyver_spec::lock::LockParseError,
    },
    /// Another process (maybe on another host) kept building the home.
    #[error(
        "another comfyver has been building this home for over {seconds} s (its lease {} is fresh); wait for it, or raise COMFYVER_LOCK_TIMEOUT",
        .lease.display()
    )]
    BuildLeaseHeld {
        /// The lease file.
        lease: PathBuf,
        /// How long we waited.
        seconds: u64,
    },
    /// An I/O error on a path.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl RealizeError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RealizeError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
