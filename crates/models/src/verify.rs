//! Checking the models of a version against the spec: presence, size, and
//! checksums (from the index when the file is unchanged, else by hashing).

use comfyver_fs::CacheLayout;
use comfyver_spec::{lock::LockedModel, redact};

use crate::ModelsError;
use crate::fetch::entry_satisfies;
use crate::hash::{first_mismatch, hash_file};
use crate::index::{Index, IndexEntry, record};
use crate::store::{model_file, mtime_ns, now_secs, source_key};

/// The state of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifyStatus {
    /// Present and matching the spec (`hashed`: its content was read now).
    Ok {
        /// Whether the file was hashed by this check.
        hashed: bool,
    },
    /// Present, but there is no checksum to compare (none in the spec, not indexed).
    Unverified,
    /// Not in the store.
    Missing,
    /// Present with other content than expected.
    Mismatch {
        /// `size`, `sha256` or `blake3`.
        what: &'static str,
        /// Expected value.
        expected: String,
        /// Found value.
        actual: String,
    },
}

impl VerifyStatus {
    /// Whether this is a problem (missing or mismatching).
    pub fn is_problem(&self) -> bool {
        matches!(self, VerifyStatus::Missing | VerifyStatus::Mismatch { .. })
    }
}

/// One model's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// `<target_subdir>/<name>` in the store.
    pub path: String,
    /// The source, redacted.
    pub source: String,
    /// The result.
    pub status: VerifyStatus,
}

/// Checks every model. Without `rehash`, a file whose size and mtime match its
/// index entry is judged by the recorded checksums; with it (or when the file
/// changed), the content is hashed again.
pub fn verify_models(
    models: &[LockedModel],
    layout: &CacheLayout,
    rehash: bool,
) -> Result<Vec<VerifyReport>, ModelsError> {
    let index = Index::read(layout.models_dir()).unwrap_or_default();
    let mut out = Vec::new();
    for m in models {
        let status = verify_one(layout, &index, m, rehash)?;
        out.push(VerifyReport {
            path: m.path.clone(),
            source: redact(&m.source),
            status,
        });
    }
    Ok(out)
}

/// What the store holds for `m` right now, as a locked entry: its size and
/// checksums (from the index when the file is unchanged since it was
/// indexed, with SHA-256 only when the index has it; else both hashed now;
/// nothing is written). `None` when the file is
/// not in the store.
pub fn actual_model(
    layout: &CacheLayout,
    m: &LockedModel,
) -> Result<Option<LockedModel>, ModelsError> {
    let dest = model_file(layout.models_dir(), m)?;
    let meta = match std::fs::metadata(&dest) {
        Ok(meta) if meta.is_file() => meta,
        _ => return Ok(None),
    };
    let index = Index::read(layout.models_dir()).unwrap_or_default();
    let key = source_key(&m.source);
    // A fresh entry without SHA-256 (the spec asked for none) still gives
    // BLAKE3: no multi-gigabyte file is hashed just to be described.
    let fresh = index
        .models
        .get(&m.path)
        .filter(|e| e.key == key && e.size == meta.len() && e.mtime_ns == mtime_ns(&meta));
    let (sha256, blake3) = match fresh {
        Some(e) => (e.sha256.clone(), e.blake3.clone()),
        None => {
            let d = hash_file(&dest, true)?;
            (d.sha256, d.blake3)
        }
    };
    Ok(Some(LockedModel {
        source: m.source.clone(),
        path: m.path.clone(),
        sha256,
        blake3: Some(blake3),
        size: Some(meta.len()),
    }))
}

fn verify_one(
    layout: &CacheLayout,
    index: &Index,
    m: &LockedModel,
    rehash: bool,
) -> Result<VerifyStatus, ModelsError> {
    let dest = model_file(layout.models_dir(), m)?;
    let meta = match std::fs::metadata(&dest) {
        Ok(meta) if meta.is_file() => meta,
        _ => return Ok(VerifyStatus::Missing),
    };
    if let Some(size) = m.size
        && size != meta.len()
    {
        return Ok(VerifyStatus::Mismatch {
            what: "size",
            expected: size.to_string(),
            actual: meta.len().to_string(),
        });
    }
    let key = source_key(&m.source);
    let entry = index.models.get(&m.path).filter(|e| e.key == key);
    let fresh = entry.filter(|e| crate::fetch::stat_matches(e, &meta));
    if !rehash && let Some(e) = fresh {
        if entry_satisfies(e, m) {
            return Ok(VerifyStatus::Ok { hashed: false });
        }
        if m.sha256.is_none() || e.sha256.is_some() {
            let (what, expected, actual) = mismatch_vs_entry(e, m);
            return Ok(VerifyStatus::Mismatch {
                what,
                expected,
                actual,
            });
        }
    }
    let has_expectation = m.sha256.is_some() || m.blake3.is_some();
    if !has_expectation && entry.is_none() {
        return Ok(VerifyStatus::Unverified);
    }
    let d = hash_file(
        &dest,
        m.sha256.is_some() || entry.is_some_and(|e| e.sha256.is_some()),
    )?;
    // Compare with the spec, else with what was recorded at download time.
    let (sha, b3) = if has_expectation {
        (m.sha256.clone(), m.blake3.clone())
    } else {
        let e = entry.expect("checked above");
        (e.sha256.clone(), Some(e.blake3.clone()))
    };
    if let Some((what, expected, actual)) =
        first_mismatch(&d, m.size, sha.as_deref(), b3.as_deref())
    {
        return Ok(VerifyStatus::Mismatch {
            what,
            expected,
            actual,
        });
    }
    let previous = entry.cloned();
    record(
        layout,
        &m.path,
        IndexEntry {
            url: redact(&m.source),
            key,
            size: d.len,
            blake3: d.blake3,
            sha256: d.sha256,
            etag: previous.as_ref().and_then(|e| e.etag.clone()),
            last_modified: previous.and_then(|e| e.last_modified),
            mtime_ns: mtime_ns(&meta),
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
            verified_at: now_secs(),
            job_only: false,
            last_used: 0,
        },
    )?;
    Ok(VerifyStatus::Ok { hashed: true })
}

fn mismatch_vs_entry(e: &IndexEntry, m: &LockedModel) -> (&'static str, String, String) {
    if let Some(s) = &m.sha256
        && e.sha256
            .as_ref()
            .is_some_and(|h| !h.eq_ignore_ascii_case(s))
    {
        return ("sha256", s.clone(), e.sha256.clone().unwrap_or_default());
    }
    if let Some(b) = &m.blake3
        && !b.eq_ignore_ascii_case(&e.blake3)
    {
        return ("blake3", b.clone(), e.blake3.clone());
    }
    let size = m.size.unwrap_or(e.size);
    ("size", size.to_string(), e.size.to_string())
}
