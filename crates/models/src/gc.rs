//! Listing the store and removing what no version references.

use std::collections::BTreeSet;
use std::path::Path;

use comfyver_fs::{CacheLayout, FileLock};
use comfyver_spec::lock::LockedModel;

use crate::ModelsError;
use crate::index::{Index, IndexEntry, update_index};
use crate::store::{META_DIR, model_lock, partial_dir, source_key};

/// A file in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreEntry {
    /// `<target_subdir>/<name>` (or deeper) relative to the store.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// What the index records about it, if anything.
    pub indexed: Option<IndexEntry>,
}

/// Every model file in the store (not the index or partial downloads), sorted.
pub fn list_store(layout: &CacheLayout) -> Result<Vec<StoreEntry>, ModelsError> {
    let root = layout.models_dir();
    let index = Index::read(root).unwrap_or_default();
    let mut files = Vec::new();
    walk(root, root, &mut files)?;
    files.sort();
    Ok(files
        .into_iter()
        .map(|(path, size)| StoreEntry {
            indexed: index.models.get(&path).cloned(),
            path,
            size,
        })
        .collect())
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, u64)>) -> Result<(), ModelsError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ModelsError::io("list", dir, e)),
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if dir == root && name == META_DIR {
            continue;
        }
        // Temporary siblings of copies in progress.
        if name.starts_with(".tmp-") {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let rel = path
                .strip_prefix(root)
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.push((rel, meta.len()));
        }
    }
    Ok(())
}

/// One thing garbage collection would remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcItem {
    /// Relative to the store (`.comfyver/partial/<key>.part` for partial downloads).
    pub path: String,
    /// Bytes freed.
    pub size: u64,
}

/// What [`gc_apply`] would remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GcPlan {
    /// Model files no version references.
    pub files: Vec<GcItem>,
    /// Partial downloads of sources no version references.
    pub partials: Vec<GcItem>,
}

impl GcPlan {
    /// Total bytes the plan frees.
    pub fn bytes(&self) -> u64 {
        self.files
            .iter()
            .chain(&self.partials)
            .map(|i| i.size)
            .sum()
    }

    /// Whether there is nothing to remove.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.partials.is_empty()
    }
}

/// Plans the removal of every store file and partial download that none of
/// `referenced` (the models of every spec and lock) uses. Removes nothing.
pub fn gc_plan(layout: &CacheLayout, referenced: &[LockedModel]) -> Result<GcPlan, ModelsError> {
    let paths: BTreeSet<&str> = referenced.iter().map(|m| m.path.as_str()).collect();
    let keys: BTreeSet<String> = referenced.iter().map(|m| source_key(&m.source)).collect();
    let mut plan = GcPlan::default();
    for e in list_store(layout)? {
        if !paths.contains(e.path.as_str()) {
            plan.files.push(GcItem {
                path: e.path,
                size: e.size,
            });
        }
    }
    let pdir = partial_dir(layout.models_dir());
    if let Ok(entries) = std::fs::read_dir(&pdir) {
        let mut partials: Vec<GcItem> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let key = name.split('.').next()?.to_string();
                if keys.contains(&key) {
                    return None;
                }
                let size = e.metadata().ok()?.len();
                Some(GcItem {
                    path: format!("{META_DIR}/partial/{name}"),
                    size,
                })
            })
            .collect();
        partials.sort_by(|a, b| a.path.cmp(&b.path));
        plan.partials = partials;
    }
    Ok(plan)
}

/// Carries out `plan`: removes each file while holding its model's lock
/// (a file being fetched right now is skipped) and drops its index entry.
/// Returns the bytes freed.
pub fn gc_apply(layout: &CacheLayout, plan: &GcPlan) -> Result<u64, ModelsError> {
    let root = layout.models_dir();
    let index = Index::read(root).unwrap_or_default();
    let mut freed = 0;
    let mut removed = Vec::new();
    for item in &plan.files {
        let key = index.models.get(&item.path).map(|e| e.key.clone());
        let _guard = match &key {
            Some(k) => match FileLock::try_acquire(&model_lock(layout, k))? {
                Some(g) => Some(g),
                None => continue,
            },
            None => None,
        };
        let file = root.join(&item.path);
        match std::fs::remove_file(&file) {
            Ok(()) => {
                freed += item.size;
                removed.push(item.path.clone());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => removed.push(item.path.clone()),
            Err(e) => return Err(ModelsError::io("remove", &file, e)),
        }
        remove_empty_parents(root, &file);
    }
    for item in &plan.partials {
        let name = item.path.rsplit('/').next().unwrap_or_default();
        let key = name.split('.').next().unwrap_or_default();
        let Some(_guard) = FileLock::try_acquire(&model_lock(layout, key))? else {
            continue;
        };
        let file = root.join(&item.path);
        match std::fs::remove_file(&file) {
            Ok(()) => freed += item.size,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ModelsError::io("remove", &file, e)),
        }
    }
    if !removed.is_empty() {
        update_index(layout, |i| {
            for p in &removed {
                i.models.remove(p);
            }
        })?;
    }
    Ok(freed)
}

/// Removes now-empty directories between `file` and the store root.
fn remove_empty_parents(root: &Path, file: &Path) {
    let mut dir = file.parent();
    while let Some(d) = dir {
        if d == root || !d.starts_with(root) || std::fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}
