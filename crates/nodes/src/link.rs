//! `<home>/custom_nodes/<name>` symlinks into the node cache.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::NodesError;

/// What [`link_nodes`] changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkOutcome {
    /// Links created or re-pointed.
    pub linked: Vec<String>,
    /// Stale links removed (nodes no longer in the spec).
    pub removed: Vec<String>,
}

/// Makes `<home>/custom_nodes/<name>` a symlink to each checkout (created
/// atomically: a link at a temporary name renamed over the old one), and
/// removes links of nodes that are no longer listed — only symlinks that
/// point into `node_cache` (comfyver's own). A real directory, file or
/// foreign symlink at a node's place is never touched: that is an error
/// naming it (all such conflicts at once), after the other links are done.
pub fn link_nodes(
    home: &Path,
    nodes: &[(String, PathBuf)],
    node_cache: &Path,
) -> Result<LinkOutcome, NodesError> {
    let dir = home.join("custom_nodes");
    std::fs::create_dir_all(&dir)
        .map_err(|e| NodesError::io("could not create directory", &dir, e))?;
    let cache_real = std::fs::canonicalize(node_cache).unwrap_or_else(|_| node_cache.to_path_buf());
    let ours = |target: &Path| target.starts_with(node_cache) || target.starts_with(&cache_real);
    let mut outcome = LinkOutcome::default();
    let mut errors = Vec::new();
    let mut wanted = HashSet::new();
    for (name, target) in nodes {
        if let Some(reason) = comfyver_spec::names::unsafe_component_reason(name) {
            errors.push(NodesError::BadName {
                name: name.clone(),
                reason,
            });
            continue;
        }
        wanted.insert(name.as_str());
        let link = dir.join(name);
        match std::fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let current = std::fs::read_link(&link)
                    .map_err(|e| NodesError::io("could not read the link", &link, e))?;
                if current == *target {
                    continue;
                }
                if !ours(&current) {
                    errors.push(NodesError::ForeignEntry {
                        name: name.clone(),
                        path: link,
                    });
                    continue;
                }
            }
            // A per-home copy of the same checkout (its install.py ran here): kept.
            Ok(_) if crate::isolate::copy_source(&link).as_deref() == Some(target.as_path()) => {
                continue;
            }
            // A per-home copy of another commit: replaced by the link.
            Ok(_) if crate::isolate::copy_source(&link).is_some_and(|t| ours(&t)) => {
                discard_copy(&link)?;
            }
            Ok(_) => {
                errors.push(NodesError::ForeignEntry {
                    name: name.clone(),
                    path: link,
                });
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NodesError::io("could not inspect", &link, e)),
        }
        replace_link(&dir, name, target)?;
        outcome.linked.push(name.clone());
    }
    let entries =
        std::fs::read_dir(&dir).map_err(|e| NodesError::io("could not read directory", &dir, e))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let is_link = entry.file_type().is_ok_and(|t| t.is_symlink());
        if !is_link || wanted.contains(name.as_str()) {
            continue;
        }
        // Temporary links are left to `remove_stale_temps` below.
        let temp = name.starts_with(".tmp-");
        if !temp && std::fs::read_link(&path).is_ok_and(|t| ours(&t)) {
            std::fs::remove_file(&path)
                .map_err(|e| NodesError::io("could not remove the stale link", &path, e))?;
            outcome.removed.push(name);
        }
    }
    // Only temporary links whose writer is provably gone.
    comfyver_fs::remove_stale_temps(&dir, None)?;
    match NodesError::combine(errors) {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

/// Moves a per-home copy out of the way by a rename, then deletes it.
fn discard_copy(copy: &Path) -> Result<(), NodesError> {
    let trash = comfyver_fs::TempDir::beside(copy)?;
    std::fs::rename(copy, trash.path().join("old"))
        .map_err(|e| NodesError::io("could not move away the old copy", copy, e))?;
    Ok(())
}

/// Makes `dir/name` a link to `target`: created at a temporary name, renamed
/// over whatever link was there.
pub(crate) fn replace_link(dir: &Path, name: &str, target: &Path) -> Result<(), NodesError> {
    let tmp = comfyver_fs::temp_sibling(&dir.join(name));
    std::os::unix::fs::symlink(target, &tmp)
        .map_err(|e| NodesError::io("could not create the link", &tmp, e))?;
    let link = dir.join(name);
    std::fs::rename(&tmp, &link).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        NodesError::io("could not put the link in place", &link, e)
    })
}
