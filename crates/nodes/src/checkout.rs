//! Checkouts of one commit, built from a mirror in a temporary sibling and
//! renamed into place with a completion marker, submodules included.

use std::path::{Path, PathBuf};

use comfyver_fs::{CacheLayout, FileLock, TempDir, remove_stale_temps};
use comfyver_git::Mirror;
use comfyver_spec::RepoUrl;

use crate::{NodesError, NodesOptions, Reporter};

/// The completion marker inside a checkout, relative to its root. It sits in
/// `.git/`, where neither git nor the node pack looks, and it is written
/// before the rename that publishes the entry, so an entry is whole exactly
/// when the marker exists. It holds the commit id.
pub(crate) const COMPLETE_MARKER: &str = ".git/comfyver-complete";

/// How deep submodules may nest before comfyver gives up (a cycle guard).
const MAX_SUBMODULE_DEPTH: usize = 8;

/// Whether `path` is a complete checkout (one `stat`: the marker exists).
pub fn is_checkout_complete(path: &Path) -> bool {
    path.join(COMPLETE_MARKER).is_file()
}

/// Makes sure `<custom_nodes>/<slug>@<commit>` exists and is complete; returns
/// its path and whether it was already there.
pub(crate) fn ensure_node_checkout(
    layout: &CacheLayout,
    repo: &RepoUrl,
    commit: &str,
    opts: &NodesOptions,
    reporter: &dyn Reporter,
    label: &str,
) -> Result<(PathBuf, bool), NodesError> {
    check_commit(commit)?;
    let dest = layout.node_checkout(&repo.slug(), commit);
    let existed = ensure_cached_checkout(
        layout,
        repo,
        commit,
        &dest,
        crate::cache::CHECKOUT_LOCK,
        &[],
        opts,
        reporter,
        label,
    )?;
    Ok((dest, existed))
}

/// Makes sure the cache entry `dest` is the complete checkout of `commit`,
/// built beside it (with the directories `empty_dirs` made inside, before
/// the marker) and renamed in under the lock `<lock_kind>/<entry name>`;
/// returns whether it was already there.
#[allow(clippy::too_many_arguments)]
pub(crate) fn ensure_cached_checkout(
    layout: &CacheLayout,
    repo: &RepoUrl,
    commit: &str,
    dest: &Path,
    lock_kind: &str,
    empty_dirs: &[&str],
    opts: &NodesOptions,
    reporter: &dyn Reporter,
    label: &str,
) -> Result<bool, NodesError> {
    check_commit(commit)?;
    let dest = dest.to_path_buf();
    if is_checkout_complete(&dest) {
        return Ok(true);
    }
    let mirror = Mirror::open(layout, repo, &opts.rewrites)?;
    mirror.ensure_commit_with(commit, opts.offline, reporter)?;
    let _lock = FileLock::acquire(&layout.lock_path(lock_kind, &file_name(&dest)))?;
    if is_checkout_complete(&dest) {
        return Ok(true);
    }
    reporter.checking_out(label, commit);
    let parent = dest.parent().unwrap_or(Path::new("."));
    remove_stale_temps(parent, Some(&file_name(&dest)))?;
    if dest.exists() {
        // Ours (it has our name in our cache) but without its marker: rebuild.
        std::fs::remove_dir_all(&dest)
            .map_err(|e| NodesError::io("could not remove the incomplete checkout", &dest, e))?;
    }
    build_and_publish(
        layout, repo, &mirror, commit, &dest, empty_dirs, opts, reporter,
    )?;
    Ok(false)
}

/// Gives a version its own checkout of the ComfyUI core at `commit` in `dest`
/// (which must not exist yet, or be an empty directory, or already be the
/// complete checkout of that commit). Built from the core's mirror in a
/// temporary sibling with the completion marker, then renamed into place
/// under a lock, so a crash never leaves a half core that looks whole.
/// Returns whether the checkout was already there.
pub fn checkout_core(
    layout: &CacheLayout,
    repo: &RepoUrl,
    commit: &str,
    dest: &Path,
    opts: &NodesOptions,
    reporter: &dyn Reporter,
) -> Result<bool, NodesError> {
    check_commit(commit)?;
    let commit = commit.to_ascii_lowercase();
    if core_is_at(dest, &commit) {
        return Ok(true);
    }
    let mirror = Mirror::open(layout, repo, &opts.rewrites)?;
    mirror.ensure_commit_with(&commit, opts.offline, reporter)?;
    let key = RepoUrl::parse(&dest.to_string_lossy())
        .map(|u| u.slug())
        .unwrap_or_else(|_| file_name(dest));
    let _lock = FileLock::acquire(&layout.lock_path("core", &key))?;
    if core_is_at(dest, &commit) {
        return Ok(true);
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    remove_stale_temps(parent, Some(&file_name(dest)))?;
    if dest.exists() {
        let empty = std::fs::read_dir(dest).is_ok_and(|mut d| d.next().is_none());
        if !empty {
            return Err(NodesError::CoreInTheWay {
                path: dest.to_path_buf(),
                commit,
            });
        }
        std::fs::remove_dir(dest)
            .map_err(|e| NodesError::io("could not remove the empty directory", dest, e))?;
    }
    reporter.checking_out("comfy", &commit);
    build_and_publish(layout, repo, &mirror, &commit, dest, &[], opts, reporter)?;
    Ok(false)
}

/// A commit becomes part of a cache path: only a full hex id may.
fn check_commit(commit: &str) -> Result<(), NodesError> {
    if comfyver_spec::is_full_commit(commit) {
        return Ok(());
    }
    Err(NodesError::BadName {
        name: commit.escape_debug().to_string(),
        reason: "a locked commit must be a full 40-hex-digit id; run `comfyver resolve` again"
            .into(),
    })
}

fn core_is_at(dest: &Path, commit: &str) -> bool {
    checkout_commit(dest).is_some_and(|c| c == commit)
}

/// The commit the complete checkout at `dir` holds (as its completion
/// marker records it); `None` when `dir` is not a complete checkout.
pub fn checkout_commit(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(COMPLETE_MARKER))
        .ok()
        .map(|c| c.trim().to_string())
}

#[allow(clippy::too_many_arguments)]
fn build_and_publish(
    layout: &CacheLayout,
    repo: &RepoUrl,
    mirror: &Mirror,
    commit: &str,
    dest: &Path,
    empty_dirs: &[&str],
    opts: &NodesOptions,
    reporter: &dyn Reporter,
) -> Result<(), NodesError> {
    let tmp = TempDir::beside(dest)?;
    let work = tmp.path().join("tree");
    build_tree(layout, repo, mirror, commit, &work, opts, reporter, 0)?;
    for dir in empty_dirs {
        let d = work.join(dir);
        std::fs::create_dir_all(&d).map_err(|e| NodesError::io("could not create", &d, e))?;
    }
    comfyver_fs::test_pause("checkout-before-marker");
    let marker = work.join(COMPLETE_MARKER);
    comfyver_fs::write_atomic(&marker, format!("{commit}\n").as_bytes())?;
    comfyver_fs::test_pause("checkout-before-publish");
    // Publish the finished tree itself; the (now empty) temp dir goes on drop.
    if let Err(source) = std::fs::rename(&work, dest) {
        // A worker whose lock we did not see published the same commit first:
        // its entry is whole (the marker is written before the rename).
        if core_is_at(dest, commit) {
            return Ok(());
        }
        return Err(comfyver_fs::FsError::Publish {
            from: work.clone(),
            to: dest.to_path_buf(),
            source,
        }
        .into());
    }
    if let Ok(d) = std::fs::File::open(dest.parent().unwrap_or(Path::new("."))) {
        let _ = d.sync_all();
    }
    drop(tmp);
    Ok(())
}

/// Clones `commit` from `mirror` into `work` (one commit deep, HEAD detached
/// at it), points `origin` at the real repository, then does the same for
/// every submodule, recursively.
#[allow(clippy::too_many_arguments)]
fn build_tree(
    layout: &CacheLayout,
    repo: &RepoUrl,
    mirror: &Mirror,
    commit: &str,
    work: &Path,
    opts: &NodesOptions,
    reporter: &dyn Reporter,
    depth: usize,
) -> Result<(), NodesError> {
    let shown = repo.redacted();
    let checked_out = mirror.check_out(commit, work)?;
    set_origin_url(&work.join(".git/config"), &shown)?;
    comfyver_fs::test_pause("checkout-after-clone");
    let submodules = read_submodules(&checked_out, work)?;
    drop(checked_out);
    for sub in submodules {
        let wrap = |source: NodesError| NodesError::Submodule {
            path: sub.path.clone(),
            parent: shown.clone(),
            url: comfyver_spec::redact(&sub.url),
            source: Box::new(source),
        };
        if depth >= MAX_SUBMODULE_DEPTH {
            return Err(wrap(NodesError::BadName {
                name: sub.path.clone(),
                reason: format!("submodules nest deeper than {MAX_SUBMODULE_DEPTH} levels"),
            }));
        }
        let Some(sub_commit) = sub.commit.clone() else {
            continue; // Listed in .gitmodules but not recorded in the tree.
        };
        let url = resolve_submodule_url(repo.as_str(), &sub.url);
        let sub_repo = RepoUrl::parse(&url).map_err(|source| {
            wrap(NodesError::Url {
                what: format!("submodule `{}`", sub.path),
                source,
            })
        })?;
        let sub_mirror =
            Mirror::open(layout, &sub_repo, &opts.rewrites).map_err(|e| wrap(e.into()))?;
        sub_mirror
            .ensure_commit_with(&sub_commit, opts.offline, reporter)
            .map_err(|e| wrap(e.into()))?;
        reporter.checking_out(&sub.path, &sub_commit);
        let sub_work = work.join(&sub.path);
        if sub_work.is_dir() {
            std::fs::remove_dir(&sub_work).map_err(|e| {
                wrap(NodesError::io(
                    "could not prepare the submodule directory",
                    &sub_work,
                    e,
                ))
            })?;
        }
        build_tree(
            layout,
            &sub_repo,
            &sub_mirror,
            &sub_commit,
            &sub_work,
            opts,
            reporter,
            depth + 1,
        )
        .map_err(wrap)?;
    }
    Ok(())
}

/// One submodule listed in `.gitmodules` with the commit its parent records.
struct Submodule {
    path: String,
    url: String,
    commit: Option<String>,
}

fn read_submodules(repo: &gix::Repository, work: &Path) -> Result<Vec<Submodule>, NodesError> {
    let file = work.join(".gitmodules");
    let Some(bytes) = comfyver_fs::read_inside(work, ".gitmodules")? else {
        return Ok(Vec::new());
    };
    let shown = file.display().to_string();
    let config = gix::config::File::from_bytes_no_includes(
        &bytes,
        gix::config::file::Metadata::from(gix::config::Source::Local),
        Default::default(),
    )
    .map_err(|e| NodesError::git("parsing .gitmodules", &shown, e))?;
    let tree = repo
        .head_commit()
        .and_then(|c| c.tree())
        .map_err(|e| NodesError::git("reading the checked-out tree", &shown, e))?;
    let mut out = Vec::new();
    for section in config.sections_by_name("submodule").into_iter().flatten() {
        let (Some(path), Some(url)) = (section.value("path"), section.value("url")) else {
            continue;
        };
        let path = path.to_string();
        if comfyver_spec::names::unsafe_relative_path_reason(&path).is_some() {
            return Err(NodesError::BadName {
                name: path.clone(),
                reason: "a submodule path in .gitmodules points outside the checkout".into(),
            });
        }
        let commit = tree
            .lookup_entry_by_path(&path)
            .ok()
            .flatten()
            .filter(|e| e.mode().is_commit())
            .map(|e| e.object_id().to_string());
        out.push(Submodule {
            path,
            url: url.to_string(),
            commit,
        });
    }
    Ok(out)
}

/// Resolves a submodule URL against its parent's URL when it is relative
/// (`./x`, `../x`), as git does; other URLs are returned unchanged.
pub(crate) fn resolve_submodule_url(parent: &str, url: &str) -> String {
    if !(url.starts_with("./") || url.starts_with("../")) {
        return url.to_string();
    }
    let mut base = parent.trim_end_matches('/').to_string();
    let mut rel = url;
    loop {
        if let Some(rest) = rel.strip_prefix("./") {
            rel = rest;
        } else if let Some(rest) = rel.strip_prefix("../") {
            rel = rest;
            // Never pop into the scheme or host of a URL.
            let floor = base.find("://").map(|i| i + 3).unwrap_or(0);
            if let Some(i) = base[floor..].rfind('/') {
                base.truncate(floor + i);
            } else if let Some(i) = base[floor..].rfind(':') {
                base.truncate(floor + i + 1);
            }
        } else {
            break;
        }
    }
    if base.ends_with(':') {
        format!("{base}{rel}")
    } else {
        format!("{base}/{rel}")
    }
}

/// Points the checkout's `origin` at the real repository (credentials
/// removed) instead of the mirror it was cloned from, for nodes that read it.
fn set_origin_url(config_path: &Path, url: &str) -> Result<(), NodesError> {
    let text = std::fs::read_to_string(config_path)
        .map_err(|e| NodesError::io("could not read", config_path, e))?;
    let mut out = String::new();
    let mut in_origin = false;
    let mut wrote = false;
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_origin = t == "[remote \"origin\"]";
        }
        if in_origin && t.starts_with("url") && t.contains('=') {
            out.push_str(&format!("\turl = {url}\n"));
            wrote = true;
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if !wrote {
        out.push_str(&format!("[remote \"origin\"]\n\turl = {url}\n"));
    }
    comfyver_fs::write_atomic(config_path, out.as_bytes())?;
    Ok(())
}

/// The last component of `path`, for lock keys and temporary siblings.
pub(crate) fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::resolve_submodule_url as r;

    #[test]
    fn relative_submodule_urls() {
        assert_eq!(
            r("https://h/o/parent.git", "../sub.git"),
            "https://h/o/sub.git"
        );
        assert_eq!(r("https://h/o/parent", "./sub"), "https://h/o/parent/sub");
        assert_eq!(
            r("file:///srv/a/p.git", "../../b/s.git"),
            "file:///srv/b/s.git"
        );
        assert_eq!(r("git@h:o/p.git", "../s.git"), "git@h:o/s.git");
        assert_eq!(r("git@h:p.git", "../s.git"), "git@h:s.git");
        assert_eq!(r("https://h/o/p", "https://x/y"), "https://x/y");
    }
}
