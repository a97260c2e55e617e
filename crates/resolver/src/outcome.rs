use std::fmt;
use std::path::PathBuf;

use comfyver_spec::ResolvedLock;

/// Where an entry's commit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Kept from the existing lock (the spec entry did not change).
    Locked,
    /// The spec pinned a full `commit` (or a 40-hex `ref`).
    Pinned,
    /// Listed from the remote (or expanded through the mirror after a fetch).
    Remote,
    /// Read from the local mirror without network (`--offline`).
    Mirror,
    /// Dry run: would be resolved by fetching history into the mirror.
    Pending,
}

impl Source {
    /// A short word for output.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Locked => "locked",
            Source::Pinned => "pinned",
            Source::Remote => "remote",
            Source::Mirror => "mirror",
            Source::Pending => "pending",
        }
    }
}

/// One repository of the version after resolution, in spec order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryOutcome {
    /// `comfy` or the node's name (what `--update NAME` takes).
    pub key: String,
    /// `comfy` or `custom_nodes[<i>] (<name>)`.
    pub label: String,
    /// The spec's repository URL, credentials redacted.
    pub repo: String,
    /// The spec's `ref` (absent: the remote's HEAD).
    pub git_ref: Option<String>,
    /// The full commit; `None` only for [`Source::Pending`].
    pub commit: Option<String>,
    /// Where the commit came from.
    pub source: Source,
}

impl EntryOutcome {
    /// What the spec asked for: the ref, else `HEAD`.
    pub fn wanted(&self) -> &str {
        self.git_ref.as_deref().unwrap_or("HEAD")
    }
}

/// What happened to one entry of the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// New in the spec.
    Added,
    /// Gone from the spec.
    Removed,
    /// Its repo, ref, requested commit or resolved commit changed.
    Changed,
}

/// One entry-level difference between the old lock and the new one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockChange {
    /// `comfy` or the node's name.
    pub entry: String,
    /// Added, removed or changed.
    pub kind: ChangeKind,
    /// The old ref (`HEAD` when absent), for removed and changed entries.
    pub old_ref: Option<String>,
    /// The old commit, for removed and changed entries.
    pub old_commit: Option<String>,
    /// The new ref (`HEAD` when absent), for added and changed entries.
    pub new_ref: Option<String>,
    /// The new commit; `None` when it is not known yet ("would resolve").
    pub new_commit: Option<String>,
}

fn short(c: &Option<String>) -> &str {
    match c {
        Some(c) => &c[..c.len().min(12)],
        None => "(would resolve)",
    }
}

impl fmt::Display for LockChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = |r: &Option<String>| r.clone().unwrap_or_default();
        match self.kind {
            ChangeKind::Added => write!(
                f,
                "+ {}  {} -> {}",
                self.entry,
                r(&self.new_ref),
                short(&self.new_commit)
            ),
            ChangeKind::Removed => write!(
                f,
                "- {}  {} {}",
                self.entry,
                r(&self.old_ref),
                short(&self.old_commit)
            ),
            ChangeKind::Changed => write!(
                f,
                "~ {}  {} {} -> {} {}",
                self.entry,
                r(&self.old_ref),
                short(&self.old_commit),
                r(&self.new_ref),
                short(&self.new_commit)
            ),
        }
    }
}

/// The result of [`crate::resolve`].
#[derive(Debug, Clone)]
pub struct ResolveOutcome {
    /// Every repository, in spec order (the core first).
    pub entries: Vec<EntryOutcome>,
    /// The lock as it now stands (or would be written by a dry run);
    /// `None` only for a dry run with entries still to resolve.
    pub lock: Option<ResolvedLock>,
    /// Entry-level differences from the previous lock (all `Added` when there was none).
    pub changes: Vec<LockChange>,
    /// Whether the lock file was (re)written.
    pub written: bool,
    /// The lock file.
    pub lock_path: PathBuf,
    /// What the user should know about the new lock: `requires-comfyui`
    /// mismatches the spec allows, pack files that could not be checked.
    pub warnings: Vec<String>,
}
