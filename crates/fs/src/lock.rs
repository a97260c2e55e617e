use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::FsError;

/// TEST ONLY: when `1`, [`FileLock`] takes no lock at all in this process, so
/// a test can run two workers whose locks cannot see each other (as on a
/// network volume that does not pass `flock` between hosts) and check that
/// correctness does not depend on the locks. Never set it in production.
pub use comfyver_env::COMFYVER_TEST_NO_LOCKS as TEST_NO_LOCKS_ENV;

/// An exclusive cross-process lock on a lock file (`flock(2)` on Unix).
///
/// The lock is released when the value is dropped or the process dies, so a
/// crashed holder never blocks others. Locks taken through separate
/// `FileLock::acquire` calls exclude each other within one process too.
#[derive(Debug)]
pub struct FileLock {
    /// `None` when locking is disabled for a test ([`TEST_NO_LOCKS_ENV`]).
    file: Option<File>,
    path: PathBuf,
}

impl FileLock {
    /// Takes the lock at `path`, creating the file and its directory when
    /// missing, waiting up to `COMFYVER_LOCK_TIMEOUT` seconds (default one hour).
    pub fn acquire(path: &Path) -> Result<FileLock, FsError> {
        Self::acquire_with_timeout(path, lock_timeout())
    }

    /// Takes the lock at `path`, waiting at most `timeout`.
    pub fn acquire_with_timeout(path: &Path, timeout: Duration) -> Result<FileLock, FsError> {
        if locking_disabled() {
            return Ok(FileLock::blind(path));
        }
        let file = open_lock_file(path)?;
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match file.try_lock() {
                Ok(()) => {
                    return Ok(FileLock {
                        file: Some(file),
                        path: path.to_path_buf(),
                    });
                }
                Err(fs::TryLockError::WouldBlock) => {
                    if start.elapsed() >= timeout {
                        return Err(FsError::LockTimeout {
                            path: path.to_path_buf(),
                            seconds: timeout.as_secs(),
                        });
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(fs::TryLockError::Error(source)) => {
                    return Err(FsError::Lock {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
    }

    /// Takes the lock at `path` in shared mode, waiting up to
    /// `COMFYVER_LOCK_TIMEOUT` seconds: any number of shared holders at once,
    /// none while someone holds it exclusively (an exclusive taker waits for
    /// every shared holder to let go). For "in use, do not change it".
    pub fn acquire_shared(path: &Path) -> Result<FileLock, FsError> {
        if locking_disabled() {
            return Ok(FileLock::blind(path));
        }
        let file = open_lock_file(path)?;
        let timeout = lock_timeout();
        let start = Instant::now();
        let mut pause = Duration::from_millis(5);
        loop {
            match file.try_lock_shared() {
                Ok(()) => {
                    return Ok(FileLock {
                        file: Some(file),
                        path: path.to_path_buf(),
                    });
                }
                Err(fs::TryLockError::WouldBlock) if start.elapsed() < timeout => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(100));
                }
                Err(fs::TryLockError::WouldBlock) => {
                    return Err(FsError::LockTimeout {
                        path: path.to_path_buf(),
                        seconds: timeout.as_secs(),
                    });
                }
                Err(fs::TryLockError::Error(source)) => {
                    return Err(FsError::Lock {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
    }

    /// Takes the lock only if nobody holds it; `Ok(None)` when it is busy.
    pub fn try_acquire(path: &Path) -> Result<Option<FileLock>, FsError> {
        if locking_disabled() {
            return Ok(Some(FileLock::blind(path)));
        }
        let file = open_lock_file(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock {
                file: Some(file),
                path: path.to_path_buf(),
            })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(source)) => Err(FsError::Lock {
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn blind(path: &Path) -> FileLock {
        FileLock {
            file: None,
            path: path.to_path_buf(),
        }
    }
}

fn locking_disabled() -> bool {
    std::env::var(TEST_NO_LOCKS_ENV).is_ok_and(|v| v == "1")
}

impl Drop for FileLock {
    fn drop(&mut self) {
        if let Some(file) = &self.file {
            let _ = file.unlock();
        }
    }
}

/// How long to wait for another process's lock: `COMFYVER_LOCK_TIMEOUT`
/// seconds (default one hour).
pub fn lock_timeout() -> Duration {
    let seconds = std::env::var(comfyver_env::COMFYVER_LOCK_TIMEOUT)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3600);
    Duration::from_secs(seconds)
}

fn open_lock_file(path: &Path) -> Result<File, FsError> {
    let dir = crate::atomic::parent_of(path);
    fs::create_dir_all(dir).map_err(|source| FsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    // Never truncate: another process may hold this file.
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|source| FsError::Lock {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_waits_and_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("locks/x.lock");
        let first = FileLock::acquire(&p).unwrap();
        assert!(FileLock::try_acquire(&p).unwrap().is_none());
        let err = FileLock::acquire_with_timeout(&p, Duration::from_millis(50)).unwrap_err();
        assert!(matches!(err, FsError::LockTimeout { .. }), "{err}");
        drop(first);
        assert!(FileLock::try_acquire(&p).unwrap().is_some());
    }

    #[test]
    fn shared_holders_coexist_and_keep_an_exclusive_taker_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("locks/home.lock");
        let a = FileLock::acquire_shared(&p).unwrap();
        let b = FileLock::acquire_shared(&p).unwrap();
        assert!(FileLock::try_acquire(&p).unwrap().is_none(), "in use");
        drop(a);
        assert!(FileLock::try_acquire(&p).unwrap().is_none(), "still in use");
        drop(b);
        let exclusive = FileLock::try_acquire(&p).unwrap().expect("free");
        drop(exclusive);
    }
}
