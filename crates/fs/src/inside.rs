use std::path::{Path, PathBuf};

use crate::FsError;

/// Reads `root/relative` only if it resolves to a file inside `root`: a
/// symbolic link (at any level) that leads outside `root` is refused, so a
/// file in a checkout out of a repository cannot make comfyver read
/// `/etc/...` or another cache entry. `Ok(None)` when it (or `root`) does not
/// exist.
pub fn read_inside(root: &Path, relative: &str) -> Result<Option<Vec<u8>>, FsError> {
    let wanted = root.join(relative);
    let real_root = match std::fs::canonicalize(root) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FsError::Read {
                path: root.to_path_buf(),
                source,
            });
        }
    };
    let real = match std::fs::canonicalize(&wanted) {
        Ok(p) => p,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // A dangling link is not "missing": say where it points.
            return match std::fs::symlink_metadata(&wanted) {
                Ok(_) => Err(outside(&wanted, root)),
                Err(_) => Ok(None),
            };
        }
        Err(source) => {
            return Err(FsError::Read {
                path: wanted,
                source,
            });
        }
    };
    if !real.starts_with(&real_root) {
        return Err(outside(&wanted, root));
    }
    std::fs::read(&real)
        .map(Some)
        .map_err(|source| FsError::Read {
            path: wanted,
            source,
        })
}

fn outside(path: &Path, root: &Path) -> FsError {
    FsError::OutsideRoot {
        path: path.to_path_buf(),
        root: PathBuf::from(root),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn links_inside_are_read_and_links_outside_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("checkout");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/real.txt"), b"inside").unwrap();
        std::fs::write(dir.path().join("secret"), b"outside").unwrap();
        symlink("sub/real.txt", root.join("ok.txt")).unwrap();
        symlink("../secret", root.join("bad.txt")).unwrap();
        symlink("/nonexistent/x", root.join("dangling.txt")).unwrap();
        assert_eq!(read_inside(&root, "ok.txt").unwrap().unwrap(), b"inside");
        assert_eq!(
            read_inside(&root, "sub/real.txt").unwrap().unwrap(),
            b"inside"
        );
        assert!(read_inside(&root, "missing.txt").unwrap().is_none());
        for bad in ["bad.txt", "dangling.txt", "../secret"] {
            let err = read_inside(&root, bad).unwrap_err();
            assert!(matches!(err, FsError::OutsideRoot { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }
}
