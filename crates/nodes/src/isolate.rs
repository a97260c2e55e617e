//! Per-home copies of node packs whose `install.py` runs, and detecting a
//! shared checkout that something changed.
//!
//! An `install.py` writes into its own directory (downloads, generated
//! files, a config holding the venv's path). Run in the shared
//! `<cache>/custom_nodes/<slug>@<commit>`, that would change every version
//! using the commit, concurrently. So a home that runs a pack's install.py
//! gets its own copy at `<home>/custom_nodes/<name>` instead of a link, and
//! the shared entry stays as checked out.

use std::path::{Path, PathBuf};

use comfyver_fs::TempDir;

use crate::NodesError;
use crate::checkout::COMPLETE_MARKER;

/// The file in a per-home copy naming the checkout it was copied from.
pub(crate) const COPY_MARKER: &str = ".comfyver-copy-of";

/// Makes `<home>/custom_nodes/<name>` a real copy of `checkout` (built in a
/// temporary sibling, then renamed over the link; symlinks inside are copied
/// as symlinks). A copy of the same checkout that is already there is kept
/// (with whatever its install.py wrote). Returns the copy's path.
pub fn isolate_node(home: &Path, name: &str, checkout: &Path) -> Result<PathBuf, NodesError> {
    if let Some(reason) = comfyver_spec::names::unsafe_component_reason(name) {
        return Err(NodesError::BadName {
            name: name.to_string(),
            reason,
        });
    }
    let dest = home.join("custom_nodes").join(name);
    if copy_source(&dest).as_deref() == Some(checkout) {
        return Ok(dest);
    }
    let tmp = TempDir::beside(&dest)?;
    let work = tmp.path().join("copy");
    copy_tree(checkout, &work)?;
    let marker = work.join(COPY_MARKER);
    std::fs::write(&marker, checkout.as_os_str().as_encoded_bytes())
        .map_err(|e| NodesError::io("could not write", &marker, e))?;
    // A directory cannot be renamed over a link or a non-empty directory:
    // the old entry (link or copy) is moved away first, the copy is in place
    // one rename later. This runs under the home's lock, with its stamp
    // cleared, so nobody loads the home in between.
    if std::fs::symlink_metadata(&dest).is_ok() {
        std::fs::rename(&dest, tmp.path().join("old"))
            .map_err(|e| NodesError::io("could not move away the old entry", &dest, e))?;
    }
    std::fs::rename(&work, &dest)
        .map_err(|e| NodesError::io("could not put the copy in place", &dest, e))?;
    Ok(dest)
}

/// The checkout a per-home copy was made from, when `dir` is such a copy.
pub(crate) fn copy_source(dir: &Path) -> Option<PathBuf> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    if !meta.is_dir() {
        return None;
    }
    let bytes = std::fs::read(dir.join(COPY_MARKER)).ok()?;
    Some(PathBuf::from(String::from_utf8_lossy(&bytes).into_owned()))
}

/// Where `<home>/custom_nodes/<name>` comes from: the link's target, or the
/// checkout a per-home copy was made from. `None` for anything else.
pub fn node_source(entry: &Path) -> Option<PathBuf> {
    std::fs::read_link(entry)
        .ok()
        .or_else(|| copy_source(entry))
}

/// The paths (relative to `checkout`) changed since the checkout was
/// published: anything whose inode change time is later than the completion
/// marker's (written as the last step of the checkout), outside `.git`. A
/// change time cannot be set back by a writer, so a script that restores
/// mtimes is seen too. Empty for a pristine entry.
pub fn checkout_changes(checkout: &Path) -> Result<Vec<PathBuf>, NodesError> {
    use std::os::unix::fs::MetadataExt;
    let marker = checkout.join(COMPLETE_MARKER);
    let m = std::fs::metadata(&marker)
        .map_err(|e| NodesError::io("could not read the completion marker", &marker, e))?;
    let published = (m.ctime(), m.ctime_nsec());
    let mut changed = Vec::new();
    let mut stack = vec![checkout.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| NodesError::io("could not read", &dir, e))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if dir == checkout && entry.file_name() == ".git" {
                continue;
            }
            let Ok(meta) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            if (meta.ctime(), meta.ctime_nsec()) > published {
                changed.push(path.strip_prefix(checkout).unwrap_or(&path).to_path_buf());
            }
            if meta.is_dir() {
                stack.push(path);
            }
        }
    }
    changed.sort();
    Ok(changed)
}

/// Copies `from` into `to`, except git's packs (`.git/objects/pack/*`), which
/// are hard-linked where the filesystem allows: git never writes into a pack
/// once it exists, so the copy's history costs no disk.
fn copy_tree(from: &Path, to: &Path) -> Result<(), NodesError> {
    std::fs::create_dir_all(to).map_err(|e| NodesError::io("could not create", to, e))?;
    let entries = std::fs::read_dir(from).map_err(|e| NodesError::io("could not read", from, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| NodesError::io("could not read", from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let kind = entry
            .file_type()
            .map_err(|e| NodesError::io("could not inspect", &src, e))?;
        if kind.is_symlink() {
            let target =
                std::fs::read_link(&src).map_err(|e| NodesError::io("could not read", &src, e))?;
            std::os::unix::fs::symlink(target, &dst)
                .map_err(|e| NodesError::io("could not create the link", &dst, e))?;
        } else if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if !(from.ends_with(".git/objects/pack") && std::fs::hard_link(&src, &dst).is_ok()) {
            std::fs::copy(&src, &dst).map_err(|e| NodesError::io("could not copy", &src, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory that looks like a published checkout: files, then the marker.
    fn fake_checkout(dir: &Path) {
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("install.py"), "print('hi')\n").unwrap();
        std::fs::write(dir.join("sub/data.txt"), "data\n").unwrap();
        std::fs::create_dir_all(dir.join(".git/objects/pack")).unwrap();
        std::fs::write(dir.join(".git/objects/pack/pack-1.pack"), "PACK").unwrap();
        std::fs::write(dir.join(".git/config"), "[core]\n").unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(dir.join(COMPLETE_MARKER), "c\n").unwrap();
    }

    #[test]
    fn a_copy_isolates_writes_and_a_changed_shared_entry_is_seen() {
        let tmp = tempfile::tempdir().unwrap();
        let shared = tmp.path().join("cache/custom_nodes/pack@c");
        fake_checkout(&shared);
        let home = tmp.path().join("home");
        std::fs::create_dir_all(home.join("custom_nodes")).unwrap();
        std::os::unix::fs::symlink(&shared, home.join("custom_nodes/pack")).unwrap();
        assert_eq!(checkout_changes(&shared).unwrap(), Vec::<PathBuf>::new());

        let copy = isolate_node(&home, "pack", &shared).unwrap();
        assert!(!std::fs::symlink_metadata(&copy).unwrap().is_symlink());
        assert_eq!(node_source(&copy).as_deref(), Some(shared.as_path()));
        use std::os::unix::fs::MetadataExt;
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let pack = ".git/objects/pack/pack-1.pack";
        assert_eq!(
            ino(&copy.join(pack)),
            ino(&shared.join(pack)),
            "packs linked"
        );
        assert_ne!(
            ino(&copy.join(".git/config")),
            ino(&shared.join(".git/config"))
        );
        std::fs::write(copy.join("sub/data.txt"), "written by install.py\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(shared.join("sub/data.txt")).unwrap(),
            "data\n"
        );
        assert_eq!(checkout_changes(&shared).unwrap(), Vec::<PathBuf>::new());
        // Again: the existing copy (with what the script wrote) is kept.
        isolate_node(&home, "pack", &shared).unwrap();
        assert!(
            std::fs::read_to_string(copy.join("sub/data.txt"))
                .unwrap()
                .contains("install.py")
        );

        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(shared.join("sub/data.txt"), "changed\n").unwrap();
        std::fs::write(shared.join("new.txt"), "x").unwrap();
        assert_eq!(
            checkout_changes(&shared).unwrap(),
            [PathBuf::from("new.txt"), PathBuf::from("sub/data.txt")]
        );
    }
}
