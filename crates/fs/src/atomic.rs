use std::fs;
use std::io::Write;
use std::path::Path;

use crate::FsError;

/// Writes `bytes` to `path` atomically: the data goes to a temporary file in the
/// same directory, is flushed to disk, and is renamed over `path`. A reader sees
/// either the old content or the new one, never a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let err = |source| FsError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = parent_of(path);
    fs::create_dir_all(dir).map_err(|source| FsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let tmp = crate::temp_sibling(path);
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(err(source));
    }
    sync_dir(dir);
    Ok(())
}

/// Like [`write_atomic`], but leaves the file untouched (same bytes, same mtime)
/// when it already holds exactly `bytes`. Returns whether the file was written.
pub fn write_atomic_if_changed(path: &Path, bytes: &[u8]) -> Result<bool, FsError> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(false);
    }
    write_atomic(path, bytes)?;
    Ok(true)
}

pub(crate) fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Flushes a directory entry so a rename survives a power loss. Best effort:
/// some filesystems refuse to open directories for sync.
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_skips_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/a.json");
        write_atomic(&p, b"one").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"one");
        assert!(!write_atomic_if_changed(&p, b"one").unwrap());
        assert!(write_atomic_if_changed(&p, b"two").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let leftovers: Vec<_> = fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");
    }
}
