//! The node cache as a whole: its entries, what they use on disk, and which
//! of them (checkouts and mirrors) no lock references any more.
//!
//! This crate owns `<custom_nodes>/<slug>@<commit>` and `<cache>/core/`: the
//! names of its entries, their completion markers and their lock names are
//! decided here, and every other crate lists or removes them through these
//! functions. The mirrors in `<cache>/git/` are `comfyver-git`'s; gc lists
//! them and takes their lock through its functions.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use comfyver_fs::{CacheLayout, FileLock};
use comfyver_spec::{RepoUrl, ResolvedLock};

use crate::NodesError;
use crate::checkout::{is_checkout_complete, resolve_submodule_url};

/// The cross-process lock kind of a node checkout (key: `<slug>@<commit>`).
pub(crate) const CHECKOUT_LOCK: &str = "checkout";

/// How deep gc follows nested submodules (the checkout code's own limit).
const MAX_DEPTH: usize = 8;

/// One checkout in the node cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// `<slug>@<commit>`.
    pub name: String,
    /// The repository's cache slug.
    pub slug: String,
    /// The commit checked out.
    pub commit: String,
    /// Where it is.
    pub path: PathBuf,
    /// Whether its completion marker is there (an incomplete entry is rebuilt
    /// by the next realize that needs it).
    pub complete: bool,
}

/// Every `<slug>@<commit>` checkout of the node cache, sorted by name
/// (temporary siblings of entries being built are not entries).
pub fn cache_entries(layout: &CacheLayout) -> Result<Vec<CacheEntry>, NodesError> {
    let dir = layout.custom_nodes_dir();
    let mut out = Vec::new();
    for (name, path) in subdirs(dir)? {
        let Some((slug, commit)) = name.rsplit_once('@') else {
            continue;
        };
        if !comfyver_spec::is_full_commit(commit) {
            continue;
        }
        out.push(CacheEntry {
            slug: slug.to_string(),
            commit: commit.to_string(),
            complete: is_checkout_complete(&path),
            name,
            path,
        });
    }
    Ok(out)
}

/// The cache name (`<slug>@<commit>`) of a locked repository's checkout.
pub fn entry_name(url: &RepoUrl, commit: &str) -> String {
    format!("{}@{}", url.slug(), commit.to_ascii_lowercase())
}

impl CacheEntry {
    /// The bytes removing this entry alone would free: its regular files
    /// (symlinks not followed), each counted once, except those with a link
    /// outside it (a checkout's git packs are its mirror's).
    pub fn own_bytes(&self) -> u64 {
        freed_bytes(&[self.path.as_path()])[0]
    }
}

/// For each of `dirs`, the bytes that removing all of them frees, each file
/// counted once, for the first of `dirs` that holds a link to it, and only
/// when every link to it is inside `dirs`: a checkout's git packs are hard
/// links to its mirror's, and removing the checkout alone frees none of them.
fn freed_bytes(dirs: &[&Path]) -> Vec<u64> {
    use std::os::unix::fs::MetadataExt;
    // (device, inode) -> (first dir, size, links, links seen in dirs)
    let mut files: HashMap<(u64, u64), (usize, u64, u64, u64)> = HashMap::new();
    for (i, dir) in dirs.iter().enumerate() {
        let found = walkdir::WalkDir::new(dir)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file())
            .filter_map(|e| e.metadata().ok());
        for m in found {
            files
                .entry((m.dev(), m.ino()))
                .or_insert((i, m.len(), m.nlink(), 0))
                .3 += 1;
        }
    }
    let mut bytes = vec![0; dirs.len()];
    for (first, len, links, seen) in files.into_values() {
        if seen >= links {
            bytes[first] += len;
        }
    }
    bytes
}

/// What a node cache entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A checkout `<custom_nodes>/<slug>@<commit>`.
    Checkout,
    /// A bare mirror `<cache>/git/<slug>.git`.
    Mirror,
    /// A shared core checkout `<cache>/core/<slug>@<commit>`.
    Core,
}

impl EntryKind {
    /// `checkout` or `mirror`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Checkout => "checkout",
            EntryKind::Mirror => "mirror",
            EntryKind::Core => "core",
        }
    }
}

/// An entry no lock references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unused {
    /// Checkout, mirror or shared core.
    pub kind: EntryKind,
    /// Its name in its directory (`<slug>@<commit>` or `<slug>.git`).
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
    /// What removing it with the rest of the plan frees: its files, except
    /// those linked from outside the plan (each file counted in one entry).
    pub bytes: u64,
}

/// The entries [`gc_plan`] found unused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodesGcPlan {
    /// Unused checkouts and mirrors, sorted by path.
    pub unused: Vec<Unused>,
}

impl NodesGcPlan {
    /// Bytes the plan frees.
    pub fn bytes(&self) -> u64 {
        self.unused.iter().map(|u| u.bytes).sum()
    }
}

/// The checkouts and mirrors that `locks` reference: the core's and every
/// node's mirror, every node's checkout, the core's shared checkout (the same
/// `<slug>@<commit>` name in `<cache>/core`), and the mirrors of their
/// submodules (nested and relative ones included).
fn referenced(layout: &CacheLayout, locks: &[ResolvedLock]) -> BTreeSet<String> {
    let mut keep = BTreeSet::new();
    for lock in locks {
        for repo in std::iter::once(&lock.comfy).chain(&lock.custom_nodes) {
            let Ok(url) = RepoUrl::parse(&repo.repo) else {
                continue;
            };
            keep.insert(comfyver_git::mirror_name(&url));
            let name = entry_name(&url, &repo.commit);
            let dir = layout.custom_nodes_dir().join(&name);
            let core_dir = crate::shared_core::core_cache_dir(layout).join(&name);
            keep.insert(name);
            for sub in submodule_repos(&dir, &url, 0)
                .into_iter()
                .chain(submodule_repos(&core_dir, &url, 0))
            {
                keep.insert(comfyver_git::mirror_name(&sub));
            }
        }
    }
    keep
}

/// Lists the checkouts, shared cores and mirrors that no lock in `locks`
/// references. Reads only.
pub fn gc_plan(layout: &CacheLayout, locks: &[ResolvedLock]) -> Result<NodesGcPlan, NodesError> {
    let keep = referenced(layout, locks);
    let mut unused = Vec::new();
    for entry in cache_entries(layout)? {
        if !keep.contains(&entry.name) {
            unused.push(Unused {
                kind: EntryKind::Checkout,
                bytes: 0,
                name: entry.name,
                path: entry.path,
            });
        }
    }
    for (name, path) in subdirs(&crate::shared_core::core_cache_dir(layout))? {
        let is_entry = name
            .rsplit_once('@')
            .is_some_and(|(_, c)| comfyver_spec::is_full_commit(c));
        if is_entry && !keep.contains(&name) {
            unused.push(Unused {
                kind: EntryKind::Core,
                bytes: 0,
                name,
                path,
            });
        }
    }
    for (name, path) in comfyver_git::mirror_dirs(layout)? {
        if !keep.contains(&name) {
            unused.push(Unused {
                kind: EntryKind::Mirror,
                bytes: 0,
                name,
                path,
            });
        }
    }
    unused.sort_by(|a, b| a.path.cmp(&b.path));
    let dirs: Vec<&Path> = unused.iter().map(|u| u.path.as_path()).collect();
    let freed = freed_bytes(&dirs);
    for (entry, bytes) in unused.iter_mut().zip(freed) {
        entry.bytes = bytes;
    }
    Ok(NodesGcPlan { unused })
}

/// Removes what `plan` lists. Each entry is removed under its own lock, and
/// only when no lock of `current_locks` (asked under that lock, so a realize
/// that has just linked the entry is seen) references it any more; `None`
/// from `current_locks` (the locks cannot all be read) keeps the entry.
/// Returns the bytes freed.
pub fn gc_apply(
    layout: &CacheLayout,
    plan: &NodesGcPlan,
    current_locks: &dyn Fn() -> Option<Vec<ResolvedLock>>,
) -> Result<u64, NodesError> {
    let still_unused = |entry: &Unused| {
        current_locks().is_some_and(|locks| !referenced(layout, &locks).contains(&entry.name))
    };
    let mut freed = 0;
    for entry in &plan.unused {
        let _guard = match entry.kind {
            EntryKind::Checkout => {
                FileLock::acquire(&layout.lock_path(CHECKOUT_LOCK, &entry.name))?
            }
            EntryKind::Core => {
                FileLock::acquire(&layout.lock_path(crate::shared_core::CORE_LOCK, &entry.name))?
            }
            EntryKind::Mirror => comfyver_git::lock_mirror(layout, &entry.name)?,
        };
        if entry.path.exists() && still_unused(entry) {
            let bytes = freed_bytes(&[entry.path.as_path()])[0];
            comfyver_fs::discard(&entry.path)?;
            freed += bytes;
        }
    }
    Ok(freed)
}

/// The repositories of the submodules of the checkout at `dir` (whose origin
/// is `parent`), recursively; relative URLs are resolved against the parent.
fn submodule_repos(dir: &Path, parent: &RepoUrl, depth: usize) -> Vec<RepoUrl> {
    if depth >= MAX_DEPTH {
        return Vec::new();
    }
    let Ok(bytes) = std::fs::read(dir.join(".gitmodules")) else {
        return Vec::new();
    };
    let Ok(config) = gix::config::File::from_bytes_no_includes(
        &bytes,
        gix::config::file::Metadata::from(gix::config::Source::Local),
        Default::default(),
    ) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for section in config.sections_by_name("submodule").into_iter().flatten() {
        let (Some(path), Some(url)) = (section.value("path"), section.value("url")) else {
            continue;
        };
        let url = resolve_submodule_url(parent.as_str(), &url.to_string());
        let Ok(repo) = RepoUrl::parse(&url) else {
            continue;
        };
        let path = path.to_string();
        if comfyver_spec::names::unsafe_relative_path_reason(&path).is_none() {
            out.extend(submodule_repos(&dir.join(&path), &repo, depth + 1));
        }
        out.push(repo);
    }
    out
}

/// The subdirectories of `dir` that are not temporary siblings, sorted.
fn subdirs(dir: &Path) -> Result<Vec<(String, PathBuf)>, NodesError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(NodesError::io("could not list", dir, e)),
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !name.starts_with('.'))
        .collect();
    out.sort();
    Ok(out)
}
