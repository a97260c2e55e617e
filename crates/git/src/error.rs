use std::path::PathBuf;

/// Everything that can go wrong creating repositories, talking to remotes
/// or reading and writing the mirrors.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    /// A filesystem primitive (lock, temp dir, publish) failed.
    #[error(transparent)]
    Fs(#[from] comfyver_fs::FsError),
    /// An I/O operation on a path failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done ("could not read", ...).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A git operation (init, open, fetch, object lookup) failed.
    #[error(
        "git {action} failed for {repo}; check that the repository is reachable (URL rewrites: COMFYVER_URL_REWRITES) and that `git` is installed"
    )]
    Git {
        /// What was being done.
        action: &'static str,
        /// The repository (credentials removed) or directory.
        repo: String,
        /// gix's error.
        #[source]
        source: gix::Error,
    },
    /// A fetch received nothing for the git timeout and was stopped.
    #[error(
        "fetching {repo} stopped: nothing received for {seconds} s (the server stalled); retry, raise COMFYVER_GIT_TIMEOUT, or check the server"
    )]
    FetchTimeout {
        /// The repository (credentials removed).
        repo: String,
        /// The limit.
        seconds: u64,
    },
    /// `COMFYVER_GIT_TIMEOUT` is not a positive whole number of seconds.
    #[error(
        "COMFYVER_GIT_TIMEOUT=`{value}` is not valid: expected a positive whole number of seconds (every git network call needs a limit; unset it for the default of 120 s)"
    )]
    BadTimeout {
        /// The variable's value.
        value: String,
    },
    /// A commit is not in the mirror and the remote does not serve it.
    #[error(
        "commit {commit} of {repo} could not be fetched: the remote no longer has it (force-pushed or deleted) or refuses fetching it by id; pin a commit the remote still has, or restore the mirror {mirror}"
    )]
    CommitUnavailable {
        /// The repository (credentials removed).
        repo: String,
        /// The wanted commit.
        commit: String,
        /// The mirror that was searched.
        mirror: PathBuf,
    },
    /// Offline, and the commit is not in the mirror.
    #[error(
        "offline (--offline / COMFYVER_OFFLINE) and commit {commit} of {repo} is not in its local git mirror; run once with network access (e.g. `comfyver nodes fetch <id>`) to fill the cache"
    )]
    Offline {
        /// The repository (credentials removed).
        repo: String,
        /// The wanted commit.
        commit: String,
    },
}

impl GitError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        GitError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn git(action: &'static str, repo: &str, source: impl Into<gix::Error>) -> Self {
        GitError::Git {
            action,
            repo: repo.to_string(),
            source: source.into(),
        }
    }
}
