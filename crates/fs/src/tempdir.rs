use std::fs;
use std::path::{Path, PathBuf};

use crate::FsError;
use crate::atomic::{parent_of, sync_dir};

/// Name prefix of every temporary sibling; [`remove_stale_temps`] removes them.
const TEMP_PREFIX: &str = ".tmp-";

/// A temporary directory created next to its final place, so that
/// [`TempDir::publish`] is a single `rename(2)` on one filesystem.
///
/// Dropping it without publishing removes it.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    published: bool,
}

impl TempDir {
    /// Creates an empty temporary sibling of `final_path`.
    pub fn beside(final_path: &Path) -> Result<TempDir, FsError> {
        let dir = parent_of(final_path);
        fs::create_dir_all(dir).map_err(|source| FsError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!("{TEMP_PREFIX}{name}-"))
            .tempdir_in(dir)
            .map_err(|source| FsError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(TempDir {
            path: tmp.keep(),
            published: false,
        })
    }

    /// The temporary directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the finished directory to `final_path`, replacing nothing: the
    /// caller must hold the entry's lock and have removed any stale entry.
    pub fn publish(mut self, final_path: &Path) -> Result<(), FsError> {
        fs::rename(&self.path, final_path).map_err(|source| FsError::Publish {
            from: self.path.clone(),
            to: final_path.to_path_buf(),
            source,
        })?;
        self.published = true;
        sync_dir(parent_of(final_path));
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the directory `dir` safely for concurrent readers of its parent:
/// it is first renamed to a temporary sibling (one atomic step, after which
/// nothing looks for it under its name), then deleted.
pub fn discard(dir: &Path) -> Result<(), FsError> {
    let trash = TempDir::beside(dir)?;
    let target = trash.path().join("old");
    fs::rename(dir, &target).map_err(|source| FsError::Remove {
        path: dir.to_path_buf(),
        source,
    })?;
    drop(trash);
    Ok(())
}

/// Removes temporary siblings left in `dir` by crashed processes for the entry
/// named `name` (or for every entry when `name` is `None`). Call it while
/// holding the entry's lock so that no live writer's temp dir is removed.
pub fn remove_stale_temps(dir: &Path, name: Option<&str>) -> Result<usize, FsError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let prefix = match name {
        Some(n) => format!("{TEMP_PREFIX}{n}-"),
        None => TEMP_PREFIX.to_string(),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        if !file_name.to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(|source| FsError::Remove { path, source })?;
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_and_cleanup() {
        let root = tempfile::tempdir().unwrap();
        let fin = root.path().join("entry");
        let t = TempDir::beside(&fin).unwrap();
        fs::write(t.path().join("f"), b"x").unwrap();
        t.publish(&fin).unwrap();
        assert_eq!(fs::read(fin.join("f")).unwrap(), b"x");

        let abandoned = TempDir::beside(&root.path().join("other")).unwrap();
        let kept = abandoned.path().to_path_buf();
        std::mem::forget(abandoned);
        assert!(kept.exists());
        assert_eq!(remove_stale_temps(root.path(), Some("other")).unwrap(), 1);
        assert!(!kept.exists());
        assert!(fin.exists());
    }
}
