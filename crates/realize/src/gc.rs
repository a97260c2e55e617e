//! `gc`: node checkouts, git mirrors and models that no lock references.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use comfyver_fs::{CacheLayout, FileLock};
use comfyver_models::GcPlan;
use comfyver_spec::{LockedModel, RepoUrl, ResolvedLock};

use crate::RealizeError;
use crate::build::discard;

/// One cache entry that nothing references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreferenced {
    /// `checkout`, `mirror` or `model`.
    pub kind: &'static str,
    /// The entry.
    pub path: PathBuf,
    /// Its size on disk.
    pub bytes: u64,
}

/// What a gc would remove.
#[derive(Debug, Clone, Default)]
pub struct CachePlan {
    /// Node checkouts and mirrors.
    pub entries: Vec<Unreferenced>,
    /// Models (the model store's own plan).
    pub models: GcPlan,
}

impl CachePlan {
    /// Bytes the plan frees.
    pub fn bytes(&self) -> u64 {
        self.entries.iter().map(|e| e.bytes).sum::<u64>() + self.models.bytes()
    }
}

/// Finds what no lock in `locks` (and no model in `extra_models`, e.g. from
/// specs not resolved yet) references. Reads only.
pub fn gc_plan(
    layout: &CacheLayout,
    locks: &[ResolvedLock],
    extra_models: &[LockedModel],
) -> Result<CachePlan, RealizeError> {
    let mut keep_checkouts = HashSet::new();
    let mut keep_mirrors = HashSet::new();
    for lock in locks {
        for repo in std::iter::once(&lock.comfy).chain(&lock.custom_nodes) {
            if let Ok(url) = RepoUrl::parse(&repo.repo) {
                keep_mirrors.insert(format!("{}.git", url.slug()));
                keep_checkouts.insert(format!(
                    "{}@{}",
                    url.slug(),
                    repo.commit.to_ascii_lowercase()
                ));
                if repo.name.is_some() {
                    let dir = layout.node_checkout(&url.slug(), &repo.commit.to_ascii_lowercase());
                    for sub in submodule_urls(&dir, &url) {
                        keep_mirrors.insert(format!("{}.git", sub.slug()));
                    }
                }
            }
        }
    }
    let mut entries = Vec::new();
    for (kind, dir, keep) in [
        (
            "checkout",
            layout.custom_nodes_dir().to_path_buf(),
            &keep_checkouts,
        ),
        ("mirror", layout.git_dir(), &keep_mirrors),
    ] {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in rd.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || keep.contains(&name) {
                continue;
            }
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            entries.push(Unreferenced {
                kind,
                bytes: dir_size(&entry.path()),
                path: entry.path(),
            });
        }
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    let referenced: Vec<LockedModel> = locks
        .iter()
        .flat_map(|l| l.models.iter().cloned())
        .chain(extra_models.iter().cloned())
        .collect();
    let models = comfyver_models::gc_plan(layout, &referenced)?;
    Ok(CachePlan { entries, models })
}

/// Removes what `plan` lists, each entry under its cache lock; returns the
/// bytes freed.
pub fn gc_apply(layout: &CacheLayout, plan: &CachePlan) -> Result<u64, RealizeError> {
    let mut freed = 0;
    for e in &plan.entries {
        let name = e
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let lock = match e.kind {
            "mirror" => layout.lock_path("git", name.trim_end_matches(".git")),
            _ => layout.lock_path("checkout", &name),
        };
        let _guard = FileLock::acquire(&lock)?;
        if e.path.exists() {
            discard(&e.path)?;
            freed += e.bytes;
        }
    }
    freed += comfyver_models::gc_apply(layout, &plan.models)?;
    Ok(freed)
}

/// Absolute or parent-relative submodule URLs listed in a checkout's `.gitmodules`.
fn submodule_urls(dir: &Path, parent: &RepoUrl) -> Vec<RepoUrl> {
    let Ok(text) = std::fs::read_to_string(dir.join(".gitmodules")) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("url"))
        .filter_map(|rest| rest.trim_start().strip_prefix('='))
        .map(|u| u.trim())
        .filter_map(|u| {
            if u.starts_with("./") || u.starts_with("../") {
                let mut base: Vec<&str> =
                    parent.as_str().trim_end_matches('/').split('/').collect();
                for part in u.split('/') {
                    match part {
                        "." => {}
                        ".." => {
                            base.pop();
                        }
                        p => base.push(p),
                    }
                }
                RepoUrl::parse(&base.join("/")).ok()
            } else {
                RepoUrl::parse(u).ok()
            }
        })
        .collect()
}

fn dir_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}
