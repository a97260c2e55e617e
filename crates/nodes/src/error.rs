use std::path::PathBuf;

/// Everything that can go wrong while fetching, checking out or linking nodes.
#[derive(Debug, thiserror::Error)]
pub enum NodesError {
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
    /// A repository URL in the lock (or a submodule URL) is not usable.
    #[error("invalid repository URL for {what}")]
    Url {
        /// Which repository ("node `x`", "submodule `y` of ...").
        what: String,
        /// The parse error.
        #[source]
        source: comfyver_spec::RepoUrlError,
    },
    /// A git operation on a checkout (reading its submodules, its config) failed.
    #[error(
        "git {action} failed for {repo}; check that the repository is reachable (URL rewrites: COMFYVER_URL_REWRITES) and that `git` is installed"
    )]
    Git {
        /// What was being done.
        action: &'static str,
        /// The repository (credentials removed).
        repo: String,
        /// gix's error.
        #[source]
        source: gix::Error,
    },
    /// A mirror could not be created, fetched or read, or a checkout could
    /// not be built from it.
    #[error(transparent)]
    Mirror(comfyver_git::GitError),
    /// Offline, and some commits are not in the mirrors.
    #[error("offline (--offline / COMFYVER_OFFLINE) and {} commit(s) are not in the local git mirrors:\n{}\nrun once with network access (e.g. `comfyver nodes fetch <id>`) to fill the cache", missing.len(), format_missing(missing))]
    OfflineMissing {
        /// Every missing repository and commit.
        missing: Vec<MissingCommit>,
    },
    /// A submodule could not be fetched or checked out.
    #[error("submodule `{path}` of {parent} ({url}) could not be prepared")]
    Submodule {
        /// The submodule's path inside its parent.
        path: String,
        /// The parent repository (credentials removed).
        parent: String,
        /// The submodule's URL (credentials removed).
        url: String,
        /// Why.
        #[source]
        source: Box<NodesError>,
    },
    /// Something that comfyver did not create is in the way of a link.
    #[error(
        "{path} exists and was not created by comfyver, so it is left alone; move it away or remove `{name}` from the spec (or add the directory to the spec as a node)"
    )]
    ForeignEntry {
        /// The node name.
        name: String,
        /// The entry in the way.
        path: PathBuf,
    },
    /// The core destination holds something else.
    #[error(
        "{path} already exists but is not comfyver's checkout of the core at {commit}; move it away (or remove the version's home) and retry"
    )]
    CoreInTheWay {
        /// The destination.
        path: PathBuf,
        /// The wanted commit.
        commit: String,
    },
    /// A node name from the lock is not a safe directory name.
    #[error("node name `{name}` cannot be used as a directory name: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A worker thread panicked.
    #[error("a node worker thread panicked (a bug); please report it")]
    WorkerPanicked,
    /// Several independent failures; the CLI lists each with its causes.
    #[error("{} node operations failed", .0.len())]
    Many(Vec<NodesError>),
}

/// One repository commit that is not available offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingCommit {
    /// The repository (credentials removed).
    pub repo: String,
    /// The commit.
    pub commit: String,
    /// Whether the repository has no mirror at all (else: mirror lacks the commit).
    pub no_mirror: bool,
}

fn format_missing(missing: &[MissingCommit]) -> String {
    missing
        .iter()
        .map(|m| {
            let why = if m.no_mirror {
                "no mirror"
            } else {
                "commit not in mirror"
            };
            format!("  - {} @ {} ({why})", m.repo, m.commit)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A mirror's error, except that a commit missing offline joins the others
/// in [`NodesError::OfflineMissing`].
impl From<comfyver_git::GitError> for NodesError {
    fn from(e: comfyver_git::GitError) -> Self {
        match e {
            comfyver_git::GitError::Offline { repo, commit } => NodesError::OfflineMissing {
                missing: vec![MissingCommit {
                    repo,
                    commit,
                    no_mirror: false,
                }],
            },
            other => NodesError::Mirror(other),
        }
    }
}

impl NodesError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        NodesError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn git(action: &'static str, repo: &str, source: impl Into<gix::Error>) -> Self {
        NodesError::Git {
            action,
            repo: repo.to_string(),
            source: source.into(),
        }
    }

    /// Folds several errors into one (`Many` only when there is more than one).
    pub(crate) fn combine(mut errors: Vec<NodesError>) -> Option<NodesError> {
        match errors.len() {
            0 => None,
            1 => errors.pop(),
            _ => Some(NodesError::Many(errors)),
        }
    }
}
