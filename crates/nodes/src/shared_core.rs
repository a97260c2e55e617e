//! The shared core checkouts: `<cache>/core/<slug>@<commit>`, one checkout of
//! the ComfyUI core per commit, which every home on that commit links to as
//! `<home>/core` and starts with `--base-directory <home>`. Nothing writes
//! into it after it is published (ComfyUI gets its own directories through the
//! base directory, Python's bytecode goes to a per-home prefix), so
//! [`crate::checkout_changes`] reports any change.

use std::path::{Path, PathBuf};

use comfyver_fs::CacheLayout;
use comfyver_git::{Mirror, TreeFile};
use comfyver_spec::RepoUrl;

use crate::cache::entry_name;
use crate::checkout::{ensure_cached_checkout, is_checkout_complete};
use crate::{NodesError, NodesOptions, Reporter};

/// The cross-process lock kind of a shared core checkout (key: `<slug>@<commit>`).
pub(crate) const CORE_LOCK: &str = "core-checkout";

/// `<home>/core`: the link from a home to its shared core checkout.
const CORE_LINK: &str = "core";

/// Directories ComfyUI's `folder_paths` makes in its base at import (the
/// default `input/`, before `--input-directory` applies). A process that
/// imports it without a base directory (an install script) would make them
/// in the shared checkout: they are made before the checkout is published.
const IMPORT_MADE_DIRS: &[&str] = &["input"];

/// Where a core declares its command-line flags.
const CLI_ARGS: &str = "comfy/cli_args.py";
/// The flag a core must define there to be shared.
const BASE_DIRECTORY_FLAG: &str = "\"--base-directory\"";

/// `<cache>/core`: the shared core checkouts.
pub fn core_cache_dir(layout: &CacheLayout) -> PathBuf {
    layout.root().join("core")
}

/// Makes sure `<cache>/core/<slug>@<commit>` is the complete checkout of the
/// core at `commit` (built beside and renamed in, with its completion
/// marker, like a node checkout) and returns its path.
pub fn ensure_shared_core(
    layout: &CacheLayout,
    repo: &RepoUrl,
    commit: &str,
    opts: &NodesOptions,
    reporter: &dyn Reporter,
) -> Result<PathBuf, NodesError> {
    let dest = shared_core_path(layout, repo, commit);
    if !is_checkout_complete(&dest) {
        comfyver_fs::test_pause("shared-core-checkout");
    }
    ensure_cached_checkout(
        layout,
        repo,
        &commit.to_ascii_lowercase(),
        &dest,
        CORE_LOCK,
        IMPORT_MADE_DIRS,
        opts,
        reporter,
        "comfy",
    )?;
    Ok(dest)
}

/// What a caller learns of a core commit before its checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreProbe {
    /// Whether it can run from a shared checkout: its `comfy/cli_args.py`
    /// defines `--base-directory` (older pins do not; their homes get their
    /// own copy of the core).
    pub shared: bool,
    /// The files asked for (relative, `/`-separated paths), in their order.
    pub files: Vec<TreeFile>,
}

/// Reads what [`CoreProbe`] tells of the core at `commit`, and the files at
/// `paths` (e.g. its `requirements.txt`), before its checkout is there, so
/// an older core never enters the core cache and the Python install need
/// not wait for the checkout: as [`peek_core`] reads them or, when that
/// cannot, by fetching the commit into the mirror (which the checkout needs
/// anyway) and reading them there.
pub fn probe_core(
    layout: &CacheLayout,
    repo: &RepoUrl,
    commit: &str,
    paths: &[&str],
    opts: &NodesOptions,
    reporter: &dyn Reporter,
) -> Result<CoreProbe, NodesError> {
    if let Some(probe) = peek_core(layout, repo, commit, paths, opts, reporter)? {
        return Ok(probe);
    }
    let commit = commit.to_ascii_lowercase();
    let mirror = Mirror::open(layout, repo, &opts.rewrites)?;
    mirror.ensure_commit_with(&commit, opts.offline, reporter)?;
    Ok(probe_of(read_mirror(&mirror, &commit, &wanted(paths))?))
}

/// [`probe_core`] without fetching the commit: read from the shared checkout
/// when it is there, else from the core's mirror when it has the commit,
/// else from the remote, its trees and these files only (see
/// `Mirror::peek_files`). `None` when only fetching the commit can tell
/// (the remote cannot serve that, or offline, a mirror without the commit).
pub fn peek_core(
    layout: &CacheLayout,
    repo: &RepoUrl,
    commit: &str,
    paths: &[&str],
    opts: &NodesOptions,
    reporter: &dyn Reporter,
) -> Result<Option<CoreProbe>, NodesError> {
    let wanted = wanted(paths);
    let commit = commit.to_ascii_lowercase();
    let dest = shared_core_path(layout, repo, &commit);
    if is_checkout_complete(&dest) {
        let files = wanted
            .iter()
            .map(|path| read_checkout_file(&dest, path))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Some(probe_of(files)));
    }
    let mirror = Mirror::open(layout, repo, &opts.rewrites)?;
    if mirror.has_commit(&commit) {
        return Ok(Some(probe_of(read_mirror(&mirror, &commit, &wanted)?)));
    }
    if opts.offline {
        return Ok(None);
    }
    Ok(mirror.peek_files(&commit, &wanted, reporter)?.map(probe_of))
}

/// `comfy/cli_args.py`, then `paths`.
fn wanted<'a>(paths: &[&'a str]) -> Vec<&'a str> {
    std::iter::once(CLI_ARGS)
        .chain(paths.iter().copied())
        .collect()
}

fn read_mirror(
    mirror: &Mirror,
    commit: &str,
    wanted: &[&str],
) -> Result<Vec<TreeFile>, NodesError> {
    wanted
        .iter()
        .map(|path| mirror.read_file(commit, path).map_err(NodesError::from))
        .collect()
}

/// The probe of the files [`wanted`] names, in that order.
fn probe_of(mut files: Vec<TreeFile>) -> CoreProbe {
    let cli_args = files.remove(0);
    CoreProbe {
        shared: matches!(cli_args, TreeFile::Blob(b) if defines_base_directory(&b)),
        files,
    }
}

/// `path` in a complete checkout, as [`TreeFile`] tells a tree's entry.
fn read_checkout_file(checkout: &Path, path: &str) -> Result<TreeFile, NodesError> {
    let file = checkout.join(path);
    match std::fs::symlink_metadata(&file) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TreeFile::Absent),
        Err(e) => Err(NodesError::io("could not read", &file, e)),
        Ok(meta) if meta.is_file() => std::fs::read(&file)
            .map(TreeFile::Blob)
            .map_err(|e| NodesError::io("could not read", &file, e)),
        Ok(_) => Ok(TreeFile::Other),
    }
}

fn defines_base_directory(cli_args: &[u8]) -> bool {
    String::from_utf8_lossy(cli_args).contains(BASE_DIRECTORY_FLAG)
}

/// `<cache>/core/<slug>@<commit>`: where the shared checkout of `commit` is
/// (or would be). Pure: it creates nothing.
pub fn shared_core_path(layout: &CacheLayout, repo: &RepoUrl, commit: &str) -> PathBuf {
    core_cache_dir(layout).join(entry_name(repo, commit))
}

/// `<home>/core` when it is a link (a home on a shared core), else `None`
/// (one `lstat`).
pub fn core_link(home: &Path) -> Option<PathBuf> {
    let link = home.join(CORE_LINK);
    std::fs::symlink_metadata(&link)
        .is_ok_and(|m| m.file_type().is_symlink())
        .then_some(link)
}

/// Points `<home>/core` at the shared checkout `core` (a link made at a
/// temporary name and renamed over the old one), and gives the home's
/// `custom_nodes/` the core's own entries (such as `websocket_image_save.py`)
/// as relative links through `core/`, since ComfyUI with a base directory
/// looks for custom nodes only there. Links of core entries the core no
/// longer has are removed; nothing else in `custom_nodes/` is touched.
pub fn link_core(home: &Path, core: &Path) -> Result<(), NodesError> {
    let link = home.join(CORE_LINK);
    if std::fs::read_link(&link).ok().as_deref() != Some(core) {
        if std::fs::symlink_metadata(&link).is_ok_and(|m| !m.file_type().is_symlink()) {
            return Err(NodesError::CoreInTheWay {
                path: link,
                commit: crate::checkout::checkout_commit(core).unwrap_or_default(),
            });
        }
        crate::link::replace_link(home, CORE_LINK, core)?;
    }
    let nodes = home.join("custom_nodes");
    std::fs::create_dir_all(&nodes)
        .map_err(|e| NodesError::io("could not create directory", &nodes, e))?;
    let via = Path::new("..").join(CORE_LINK).join("custom_nodes");
    let own: Vec<String> = std::fs::read_dir(core.join("custom_nodes"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "__pycache__" && !n.starts_with('.'))
        .collect();
    for name in &own {
        let entry = nodes.join(name);
        let target = via.join(name);
        match std::fs::read_link(&entry) {
            Ok(current) if current == target => {}
            // A pack of the same name wins: the version asked for it.
            _ if std::fs::symlink_metadata(&entry).is_ok() => {}
            _ => crate::link::replace_link(&nodes, name, &target)?,
        }
    }
    let entries = std::fs::read_dir(&nodes)
        .map_err(|e| NodesError::io("could not read directory", &nodes, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let stale =
            std::fs::read_link(&path).is_ok_and(|t| t.starts_with(&via)) && !own.contains(&name);
        if stale {
            std::fs::remove_file(&path)
                .map_err(|e| NodesError::io("could not remove the stale link", &path, e))?;
        }
    }
    Ok(())
}
