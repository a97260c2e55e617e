use std::path::PathBuf;

use comfyver_fs::{CacheLayout, FileLock};
use comfyver_spec::ResolvedLock;

use crate::ResolveError;

/// The cross-process lock kind that guards `<cache>/resolved/<id>.lock.json`.
pub(crate) const LOCK_KIND: &str = "resolve";

/// Reads `<cache>/resolved/<id>.lock.json`; `Ok(None)` when it does not exist.
pub fn read_lock(
    layout: &CacheLayout,
    version_id: &str,
) -> Result<Option<ResolvedLock>, ResolveError> {
    let path = layout.lock_file(version_id);
    match std::fs::read(&path) {
        Ok(bytes) => Ok(Some(ResolvedLock::from_json(&bytes, &path)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ResolveError::ReadLock { path, source }),
    }
}

/// Every lock in `<cache>/resolved/`, sorted by version id, and the lock
/// files that could not be read, each with its reason. A missing directory
/// holds no lock. Callers decide what an unreadable lock means (`gc` refuses
/// to delete anything, `nodes list` warns), but none is ever skipped silently.
pub fn locks(layout: &CacheLayout) -> Result<LockScan, ResolveError> {
    let dir = layout.resolved_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LockScan::default()),
        Err(source) => return Err(ResolveError::ReadLock { path: dir, source }),
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(LOCK_SUFFIX))
        .collect();
    paths.sort();
    let mut scan = LockScan::default();
    for path in paths {
        let read = std::fs::read(&path)
            .map_err(|source| ResolveError::ReadLock {
                path: path.clone(),
                source,
            })
            .and_then(|bytes| Ok(ResolvedLock::from_json(&bytes, &path)?));
        match read {
            Ok(lock) => scan.locks.push(lock),
            Err(err) => scan.unreadable.push((path, err)),
        }
    }
    Ok(scan)
}

/// What [`locks`] found.
#[derive(Debug, Default)]
pub struct LockScan {
    /// The locks that parsed, sorted by file name.
    pub locks: Vec<ResolvedLock>,
    /// Lock files that could not be read or parsed, with the reason.
    pub unreadable: Vec<(PathBuf, ResolveError)>,
}

/// The suffix of a lock file in `<cache>/resolved/`.
const LOCK_SUFFIX: &str = ".lock.json";

/// Writes `lock` to `<cache>/resolved/<id>.lock.json` atomically, under the
/// same cross-process lock that [`crate::resolve`] holds, leaving the file
/// untouched when it already has these bytes. For later stages that record
/// data in the lock (the realized Python set).
pub fn write_lock(layout: &CacheLayout, lock: &ResolvedLock) -> Result<(), ResolveError> {
    let _guard = take(layout, &lock.version_id)?;
    store(layout, lock).map(|_| ())
}

/// What [`replace_lock`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum LockWrite {
    /// The file held the expected lock and now holds the new one.
    Written,
    /// The file already held exactly the new lock.
    Unchanged,
    /// The file changed since it was read (a `resolve --update` meanwhile, or
    /// it was removed): it was kept as it is, the new lock was not written.
    Superseded,
}

/// Compare-and-swap of `<cache>/resolved/<id>.lock.json`: writes `new` only
/// if the file still holds `expected` (the lock the caller started from), so
/// a realize that took minutes never undoes a `resolve --update` made
/// meanwhile: locks only move forward. Runs under the per-version lock.
pub fn replace_lock(
    layout: &CacheLayout,
    expected: &ResolvedLock,
    new: &ResolvedLock,
) -> Result<LockWrite, ResolveError> {
    let _guard = take(layout, &new.version_id)?;
    let current = read_lock(layout, &new.version_id)?;
    match current {
        Some(c) if c == *new => Ok(LockWrite::Unchanged),
        Some(c) if c == *expected => {
            store(layout, new)?;
            Ok(LockWrite::Written)
        }
        _ => Ok(LockWrite::Superseded),
    }
}

/// Takes the per-version cross-process lock.
pub(crate) fn take(layout: &CacheLayout, version_id: &str) -> Result<FileLock, ResolveError> {
    FileLock::acquire(&layout.lock_path(LOCK_KIND, version_id)).map_err(|source| {
        ResolveError::WriteLock {
            version_id: version_id.to_string(),
            source,
        }
    })
}

/// Writes the lock (caller holds the file lock); returns whether bytes changed.
pub(crate) fn store(layout: &CacheLayout, lock: &ResolvedLock) -> Result<bool, ResolveError> {
    comfyver_fs::write_atomic_if_changed(&layout.lock_file(&lock.version_id), &lock.to_json())
        .map_err(|source| ResolveError::WriteLock {
            version_id: lock.version_id.clone(),
            source,
        })
}
