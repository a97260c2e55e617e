//! The realized stamp: proof that a home is complete for one lock, checked
//! on the warm path with a handful of stats.

use comfyver_fs::CacheLayout;
use comfyver_spec::{ResolvedLock, TOOL_VERSION, digest::Digest, lock::LockedModel};
use serde::{Deserialize, Serialize};

use crate::Home;

/// What `.comfyver/realized.json` records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Stamp {
    /// Digest of the lock's commits and models (its `python` part excluded,
    /// since realize itself records that).
    pub lock_digest: String,
    /// Digest of the Python requirement inputs the venv was built from.
    pub python_inputs_digest: String,
    /// The comfyver version that realized the home.
    pub tool_version: String,
    /// The model store the home's `extra_model_paths.yaml` points at.
    pub models_dir: String,
    /// Whether models were skipped (`skip_models`): then missing models do not
    /// make the home stale.
    pub skip_models: bool,
}

/// The digest a stamp records for `lock`: everything but its `python` part.
pub(crate) fn lock_key(lock: &ResolvedLock) -> Digest {
    let mut l = lock.clone();
    l.python = None;
    l.digest()
}

/// Reads the stamp of `home`, if there is a readable one.
pub(crate) fn read_stamp(home: &Home) -> Option<Stamp> {
    let bytes = std::fs::read(home.stamp_file()).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Writes the stamp (atomically): the last step of a realize.
pub(crate) fn write_stamp(home: &Home, stamp: &Stamp) -> Result<(), comfyver_fs::FsError> {
    let mut bytes = serde_json::to_vec_pretty(stamp).expect("a stamp serializes");
    bytes.push(b'\n');
    comfyver_fs::write_atomic(&home.stamp_file(), &bytes)
}

/// Removes the stamp: the first step of any change to a home, so a crash
/// half-way never leaves a home that looks complete.
pub(crate) fn clear_stamp(home: &Home) -> Result<(), comfyver_fs::FsError> {
    let path = home.stamp_file();
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(comfyver_fs::FsError::Remove { path, source }),
    }
}

/// The warm path: whether `home` is complete for `lock`. Reads the stamp and
/// stats the core marker (through `<home>/core` on a shared core), the venv's interpreter, each node link and its
/// cache entry, and each model; runs nothing and hashes no model file.
pub(crate) fn is_warm(home: &Home, lock: &ResolvedLock, layout: &CacheLayout) -> bool {
    warm_check(home, lock, layout, None)
}

/// [`is_warm`] for a realize that does (`skip_models` false) or does not want
/// the models: a home stamped with `skip_models` is warm only for a realize
/// that skips them too, else it would never get its models.
pub(crate) fn is_warm_for(
    home: &Home,
    lock: &ResolvedLock,
    layout: &CacheLayout,
    skip_models: bool,
) -> bool {
    warm_check(home, lock, layout, Some(skip_models))
}

fn warm_check(
    home: &Home,
    lock: &ResolvedLock,
    layout: &CacheLayout,
    skip_models: Option<bool>,
) -> bool {
    let Some(stamp) = read_stamp(home) else {
        return false;
    };
    if stamp.tool_version != TOOL_VERSION
        || stamp.lock_digest != lock_key(lock).as_str()
        || stamp.models_dir != layout.models_dir().to_string_lossy()
    {
        return false;
    }
    if !comfyver_nodes::is_checkout_complete(&home.core_dir()) || !home.python().exists() {
        return false;
    }
    let links_ok = lock.custom_nodes.iter().all(|n| {
        let Some(name) = &n.name else { return false };
        let link = home.custom_nodes_dir().join(name);
        comfyver_nodes::node_source(&link)
            .is_some_and(|target| comfyver_nodes::is_checkout_complete(&target))
    });
    let may_miss_models = stamp.skip_models && skip_models.unwrap_or(true);
    links_ok && (may_miss_models || models_present(&lock.models, layout))
}

/// Every model is in the store and unchanged since it was verified (size,
/// mtime and inode against the store's index: the stats the warm path makes
/// anyway, plus one read of the index).
fn models_present(models: &[LockedModel], layout: &CacheLayout) -> bool {
    comfyver_models::models_intact(layout, models)
}
