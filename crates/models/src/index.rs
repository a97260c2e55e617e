//! The store's index (`.comfyver/index.json`): what each file is, where it
//! came from and when it was last verified. Updated under a lock with atomic
//! writes.

use std::collections::BTreeMap;
use std::path::Path;

use comfyver_fs::{CacheLayout, FileLock, write_atomic};
use serde::{Deserialize, Serialize};

use crate::ModelsError;
use crate::store::{index_file, index_lock};

/// Format version of the index.
const INDEX_VERSION: u64 = 1;

/// What the store knows about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The source (redacted: no token or password).
    pub url: String,
    /// [`crate::source_key`] of the source.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the content.
    pub blake3: String,
    /// SHA-256 of the content, when it was computed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The server's ETag, when downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The server's Last-Modified, when downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// The file's mtime (ns) when it was verified: a changed mtime means re-hash.
    pub mtime_ns: u64,
    /// The file's inode when it was verified (0: not recorded): a file
    /// replaced by rename has another.
    #[serde(default)]
    pub inode: u64,
    /// When the content was last hashed (seconds since the epoch).
    pub verified_at: u64,
    /// Only jobs brought this file (`input.models`, a URL in a loader
    /// input): it counts against the job-model budget and may be evicted.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub job_only: bool,
    /// When a job last used it (seconds since the epoch; 0: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub last_used: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The whole index: entries by store path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// The index format's version, written with every update.
    pub index_version: u64,
    /// Entries by `<target_subdir>/<name>`.
    pub models: BTreeMap<String, IndexEntry>,
}

impl Index {
    /// Reads the index of `models_dir` (empty when absent).
    pub fn read(models_dir: &Path) -> Result<Index, ModelsError> {
        let file = index_file(models_dir);
        let bytes = match std::fs::read(&file) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Index {
                    index_version: INDEX_VERSION,
                    models: BTreeMap::new(),
                });
            }
            Err(e) => return Err(ModelsError::io("read", &file, e)),
        };
        serde_json::from_slice(&bytes).map_err(|e| ModelsError::Index {
            file,
            message: e.to_string(),
        })
    }
}

/// Applies `change` to the index under the index lock and writes it atomically.
pub(crate) fn update_index(
    layout: &CacheLayout,
    change: impl FnOnce(&mut Index),
) -> Result<(), ModelsError> {
    let _lock = FileLock::acquire(&index_lock(layout))?;
    let dir = layout.models_dir();
    let mut index = match Index::read(dir) {
        Ok(i) => i,
        // A corrupt index is rebuilt rather than blocking every fetch.
        Err(ModelsError::Index { .. }) => Index::default(),
        Err(e) => return Err(e),
    };
    index.index_version = INDEX_VERSION;
    change(&mut index);
    let mut bytes = serde_json::to_vec_pretty(&index).expect("the index serializes");
    bytes.push(b'\n');
    write_atomic(&index_file(dir), &bytes)?;
    Ok(())
}

/// Records `entry` at `path`. Whether only jobs brought the file, and when
/// a job last used it, are kept from the entry it replaces (same source).
pub(crate) fn record(
    layout: &CacheLayout,
    path: &str,
    mut entry: IndexEntry,
) -> Result<(), ModelsError> {
    update_index(layout, |i| {
        if let Some(old) = i.models.get(path)
            && old.key == entry.key
        {
            entry.job_only |= old.job_only;
            entry.last_used = entry.last_used.max(old.last_used);
        }
        i.models.insert(path.to_string(), entry);
    })
}
