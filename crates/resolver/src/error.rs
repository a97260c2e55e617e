use std::fmt;
use std::path::PathBuf;

use crate::LockChange;

/// Why resolving a version failed.
///
/// Every variant that concerns one repository names the entry
/// (`comfy` or `custom_nodes[2] (name)`) and the repository URL with any
/// credentials redacted.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The `ref` is neither a branch, a tag nor a commit prefix of the remote.
    #[error("{entry}: `{git_ref}` is not a branch or tag of {repo}{}", suggestion_text(.suggestions, .available))]
    UnknownRef {
        /// The entry.
        entry: String,
        /// The repository (redacted).
        repo: String,
        /// The ref as written in the spec.
        git_ref: String,
        /// Branch and tag names close to `git_ref` (edit distance), closest first.
        suggestions: Vec<String>,
        /// Some of the remote's branches and tags, shown when none is close.
        available: Vec<String>,
    },
    /// A branch and a tag share the name given as `ref`.
    #[error(
        "{entry}: `{git_ref}` is both a branch and a tag of {repo}; write `refs/heads/{git_ref}` or `refs/tags/{git_ref}` in the spec"
    )]
    AmbiguousRef {
        /// The entry.
        entry: String,
        /// The repository (redacted).
        repo: String,
        /// The ref as written in the spec.
        git_ref: String,
    },
    /// A short hex `ref` matches several commits.
    #[error(
        "{entry}: the commit prefix `{prefix}` is ambiguous in {repo}; candidates: {}; write more hex digits or the full commit",
        .candidates.join(", ")
    )]
    AmbiguousPrefix {
        /// The entry.
        entry: String,
        /// The repository (redacted).
        repo: String,
        /// The prefix as written.
        prefix: String,
        /// The full commits it matches.
        candidates: Vec<String>,
    },
    /// The remote has no HEAD to resolve an absent `ref` against (an empty repository).
    #[error(
        "{entry}: {repo} has no HEAD commit (an empty repository?); set `ref` or `commit` in the spec"
    )]
    NoHead {
        /// The entry.
        entry: String,
        /// The repository (redacted).
        repo: String,
    },
    /// The remote could not be reached or refused the connection.
    #[error(
        "{entry}: could not list the refs of {repo}; check the URL and your network, or use --offline to resolve from the lock and local mirrors"
    )]
    Unreachable {
        /// The entry.
        entry: String,
        /// The repository (redacted; the rewritten URL too when a rule applied).
        repo: String,
        /// What the transport reported (redacted).
        #[source]
        cause: RemoteCause,
    },
    /// The remote asked for credentials.
    #[error(
        "{entry}: {repo} needs authentication; put a token in the URL (https://<token>@host/...), configure a git credential helper, or use an ssh:// URL with a loaded key"
    )]
    AuthRequired {
        /// The entry.
        entry: String,
        /// The repository (redacted).
        repo: String,
        /// What the transport reported (redacted).
        #[source]
        cause: RemoteCause,
    },
    /// Listing the refs took longer than the timeout.
    #[error(
        "{entry}: {repo} did not answer within {seconds} s; retry, raise COMFYVER_GIT_TIMEOUT, or use --offline"
    )]
    Timeout {
        /// The entry.
        entry: String,
        /// The repository (redacted).
        repo: String,
        /// The timeout that elapsed.
        seconds: u64,
    },
    /// The repository URL is not one comfyver accepts.
    #[error("{entry}: invalid repository URL")]
    InvalidUrl {
        /// The entry.
        entry: String,
        /// The parse error.
        #[source]
        source: comfyver_spec::RepoUrlError,
    },
    /// Fetching into the local mirror (to expand a commit prefix) failed.
    #[error(
        "{entry}: could not expand the commit prefix `{prefix}` through the local mirror of {repo}"
    )]
    Mirror {
        /// The entry.
        entry: String,
        /// The repository (redacted).
        repo: String,
        /// The prefix being expanded.
        prefix: String,
        /// The mirror's error.
        #[source]
        source: Box<comfyver_git::GitError>,
    },
    /// Packs whose `[tool.comfy] requires-comfyui` the locked core does not meet.
    #[error(
        "version `{version_id}`: {}\nchoose a core ref that satisfies them, other refs of the packs, \
         or set `options.allow_comfyui_mismatch` to resolve anyway with a warning",
        .mismatches.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    RequiresComfyui {
        /// The version.
        version_id: String,
        /// Each pack, its requirement and the core's version.
        mismatches: Vec<crate::ComfyuiMismatch>,
    },
    /// Several entries failed; the CLI lists each with its causes.
    #[error("{} entries could not be resolved", .0.len())]
    Several(Vec<ResolveError>),
    /// `--offline` and some entries are neither locked nor resolvable from local mirrors.
    #[error(
        "offline: could not resolve {} of version `{version_id}` without the network:\n{}\nrun without --offline once, or pin `commit` in the spec",
        if .entries.len() == 1 { "1 entry".to_string() } else { format!("{} entries", .entries.len()) },
        .entries.iter().map(|(e, why)| format!("  - {e}: {why}")).collect::<Vec<_>>().join("\n")
    )]
    OfflineUnresolved {
        /// The version.
        version_id: String,
        /// Each entry that could not be resolved, with the reason.
        entries: Vec<(String, String)>,
    },
    /// `--locked` but there is no lock.
    #[error(
        "--locked: version `{version_id}` has no lock ({}); run `comfyver resolve {version_id}` without --locked first",
        .path.display()
    )]
    LockMissing {
        /// The version.
        version_id: String,
        /// Where the lock was expected.
        path: PathBuf,
    },
    /// `--locked` but the lock would change.
    #[error(
        "--locked: the lock of version `{version_id}` would change:\n{}\nrun `comfyver resolve {version_id}` without --locked to update it",
        describe_changes(.changes)
    )]
    LockWouldChange {
        /// The version.
        version_id: String,
        /// What would change (empty when only the spec digest would).
        changes: Vec<LockChange>,
    },
    /// `--update NAME` names neither `comfy` nor a node of the spec.
    #[error("--update {name}: the version has no entry `{name}`{}; use `comfy` or a node name", .suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownUpdateName {
        /// The name given.
        name: String,
        /// The closest entry name.
        suggestion: Option<String>,
    },
    /// The existing lock file could not be read.
    #[error("could not read the lock {}", .path.display())]
    ReadLock {
        /// The lock file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The existing lock file is not a lock this comfyver reads.
    #[error(transparent)]
    BadLock(#[from] comfyver_spec::lock::LockParseError),
    /// Writing the lock, or taking its file lock, failed.
    #[error("could not write the lock of version `{version_id}`")]
    WriteLock {
        /// The version.
        version_id: String,
        /// The filesystem error.
        #[source]
        source: comfyver_fs::FsError,
    },
    /// The scratch repository used to talk to remotes could not be created.
    #[error("could not create a scratch git repository in the temporary directory (check TMPDIR)")]
    Scratch {
        /// What failed (redacted).
        #[source]
        cause: RemoteCause,
    },
}

/// The transport's own description of a failure, with credentials removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteCause(pub(crate) String);

impl RemoteCause {
    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RemoteCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RemoteCause {}

impl ResolveError {
    /// The errors inside, flattening [`ResolveError::Several`].
    pub fn flatten(&self) -> Vec<&ResolveError> {
        match self {
            ResolveError::Several(all) => all.iter().flat_map(|e| e.flatten()).collect(),
            other => vec![other],
        }
    }
}

fn suggestion_text(suggestions: &[String], available: &[String]) -> String {
    if !suggestions.is_empty() {
        let quoted: Vec<String> = suggestions.iter().map(|s| format!("`{s}`")).collect();
        format!("; did you mean {}?", quoted.join(" or "))
    } else if !available.is_empty() {
        format!("; it has: {}", available.join(", "))
    } else {
        "; the remote advertises no branches or tags".to_string()
    }
}

fn describe_changes(changes: &[LockChange]) -> String {
    if changes.is_empty() {
        return "  the spec changed outside the repositories (models, python, env or description), so the lock's spec digest would change".to_string();
    }
    changes
        .iter()
        .map(|c| format!("  {c}"))
        .collect::<Vec<_>>()
        .join("\n")
}
