//! The repositories of a spec, how each is to be resolved given the existing
//! lock, and the differences between two locks.

use comfyver_spec::{ResolvedLock, VersionSpec, lock::LockedRepo};

use crate::{ChangeKind, LockChange, ResolveError, UpdatePolicy};

/// One repository of a spec: the core or a node.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// `comfy` or the node name.
    pub key: String,
    /// `comfy` or `custom_nodes[i] (name)`.
    pub label: String,
    /// Node name (None for the core).
    pub name: Option<String>,
    /// The spec's URL.
    pub repo: String,
    /// The spec's ref.
    pub git_ref: Option<String>,
    /// The spec's commit.
    pub commit: Option<String>,
}

impl Entry {
    /// The lock record of this entry at `commit`.
    pub(crate) fn locked(&self, commit: &str) -> LockedRepo {
        LockedRepo {
            name: self.name.clone(),
            repo: self.repo.clone(),
            git_ref: self.git_ref.clone(),
            requested_commit: self.commit.clone(),
            commit: commit.to_ascii_lowercase(),
        }
    }

    /// Whether `l` was resolved from exactly this request.
    pub(crate) fn same_request(&self, l: &LockedRepo) -> bool {
        (l.repo == comfyver_spec::redact(&self.repo) || l.repo == self.repo)
            && l.git_ref == self.git_ref
            && l.requested_commit == self.commit
    }

    /// The commit the spec pins itself: `commit`, or a `ref` of 40 hex digits.
    pub(crate) fn pinned(&self) -> Option<String> {
        self.commit
            .clone()
            .or_else(|| {
                self.git_ref
                    .clone()
                    .filter(|r| comfyver_spec::is_full_commit(r))
            })
            .map(|c| c.to_ascii_lowercase())
    }

    /// The repository for messages (credentials redacted).
    pub(crate) fn repo_redacted(&self) -> String {
        comfyver_spec::redact(&self.repo)
    }
}

/// The core then every node, in spec order.
pub(crate) fn entries_of(spec: &VersionSpec) -> Vec<Entry> {
    let mut out = vec![Entry {
        key: "comfy".into(),
        label: "comfy".into(),
        name: None,
        repo: spec.comfy.repo.clone(),
        git_ref: spec.comfy.git_ref.clone(),
        commit: spec.comfy.commit.clone(),
    }];
    for (i, n) in spec.custom_nodes.iter().enumerate() {
        let name = n.effective_name();
        out.push(Entry {
            key: name.clone(),
            label: format!("custom_nodes[{i}] ({name})"),
            name: Some(name),
            repo: n.repo.clone(),
            git_ref: n.git_ref.clone(),
            commit: n.commit.clone(),
        });
    }
    out
}

/// The locked record with the same key, if any.
pub(crate) fn locked_entry<'a>(lock: &'a ResolvedLock, key: &str) -> Option<&'a LockedRepo> {
    if key == "comfy" {
        return Some(&lock.comfy);
    }
    lock.custom_nodes
        .iter()
        .find(|n| n.name.as_deref() == Some(key))
}

/// How one entry gets its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// Keep the locked commit.
    Keep(String),
    /// The spec pins it.
    Pinned(String),
    /// Look it up (remote, or mirror when offline).
    Resolve,
}

/// Decides each entry's step: pinned commits are taken as given, unchanged
/// locked entries keep their commit unless `update` covers them, the rest
/// are resolved.
pub(crate) fn steps(
    entries: &[Entry],
    old: Option<&ResolvedLock>,
    update: &UpdatePolicy,
) -> Vec<Step> {
    entries
        .iter()
        .map(|e| {
            if let Some(c) = e.pinned() {
                return Step::Pinned(c);
            }
            match old.and_then(|l| locked_entry(l, &e.key)) {
                Some(l) if e.same_request(l) && !update.covers(&e.key) => {
                    Step::Keep(l.commit.clone())
                }
                _ => Step::Resolve,
            }
        })
        .collect()
}

/// Checks that every `--update NAME` names an entry.
pub(crate) fn check_update_names(
    entries: &[Entry],
    update: &UpdatePolicy,
) -> Result<(), ResolveError> {
    let UpdatePolicy::Names(names) = update else {
        return Ok(());
    };
    for name in names {
        if !entries.iter().any(|e| &e.key == name) {
            let suggestion = entries
                .iter()
                .map(|e| {
                    (
                        comfyver_spec::suggest::levenshtein(name, &e.key),
                        e.key.clone(),
                    )
                })
                .filter(|(d, k)| *d <= (k.len() / 3).max(2))
                .min()
                .map(|(_, k)| k);
            return Err(ResolveError::UnknownUpdateName {
                name: name.clone(),
                suggestion,
            });
        }
    }
    Ok(())
}

/// Entry-level differences between `old` and the new records (a new record
/// with `None` commit is still to be resolved).
pub(crate) fn changes(
    old: Option<&ResolvedLock>,
    entries: &[Entry],
    new_commits: &[Option<String>],
) -> Vec<LockChange> {
    let wanted = |r: &Option<String>, c: &Option<String>| {
        Some(
            r.clone()
                .or_else(|| c.clone())
                .unwrap_or_else(|| "HEAD".into()),
        )
    };
    let mut out = Vec::new();
    for (e, new) in entries.iter().zip(new_commits) {
        let prev = old.and_then(|l| locked_entry(l, &e.key));
        match prev {
            None => out.push(LockChange {
                entry: e.key.clone(),
                kind: ChangeKind::Added,
                old_ref: None,
                old_commit: None,
                new_ref: wanted(&e.git_ref, &e.commit),
                new_commit: new.clone(),
            }),
            Some(p) if !e.same_request(p) || new.as_deref() != Some(p.commit.as_str()) => {
                out.push(LockChange {
                    entry: e.key.clone(),
                    kind: ChangeKind::Changed,
                    old_ref: wanted(&p.git_ref, &p.requested_commit),
                    old_commit: Some(p.commit.clone()),
                    new_ref: wanted(&e.git_ref, &e.commit),
                    new_commit: new.clone(),
                })
            }
            Some(_) => {}
        }
    }
    if let Some(old) = old {
        for p in std::iter::once(&old.comfy).chain(&old.custom_nodes) {
            let key = p.name.clone().unwrap_or_else(|| "comfy".into());
            if !entries.iter().any(|e| e.key == key) {
                out.push(LockChange {
                    entry: key,
                    kind: ChangeKind::Removed,
                    old_ref: wanted(&p.git_ref, &p.requested_commit),
                    old_commit: Some(p.commit.clone()),
                    new_ref: None,
                    new_commit: None,
                });
            }
        }
    }
    out
}

/// The new lock: `records` in spec order (core first); the old lock's Python
/// set is kept only when every repository kept its commit.
pub(crate) fn build_lock(
    spec: &VersionSpec,
    mut records: Vec<LockedRepo>,
    old: Option<&ResolvedLock>,
) -> ResolvedLock {
    let comfy = records.remove(0);
    let python = old.and_then(|o| {
        let same_commits = o.comfy.commit == comfy.commit
            && o.custom_nodes.len() == records.len()
            && o.custom_nodes
                .iter()
                .zip(&records)
                .all(|(a, b)| a.name == b.name && a.commit == b.commit);
        if same_commits { o.python.clone() } else { None }
    });
    ResolvedLock {
        lock_version: comfyver_spec::lock::LOCK_VERSION,
        version_id: spec.version_id.clone(),
        spec_digest: spec.digest().as_str().to_string(),
        tool_version: comfyver_spec::TOOL_VERSION.to_string(),
        comfy,
        custom_nodes: records,
        models: ResolvedLock::models_from(spec),
        python,
    }
    // The lock never holds a secret: the spec does.
    .redacted()
}
