//! Where things live inside the model store.

use std::path::{Path, PathBuf};

use comfyver_fs::CacheLayout;
use comfyver_spec::lock::LockedModel;

use crate::ModelsError;

/// The store's private directory (index, partial downloads).
pub(crate) const META_DIR: &str = ".comfyver";

/// Lock kind of per-model locks (`<cache>/locks/models/<key>.lock`).
pub(crate) const LOCK_KIND: &str = "models";

/// The key of a model: a hash of its source with credentials redacted (the
/// form stored in locks), so the key is the same whether it is computed from
/// the spec or from the lock, and does not change when a token is rotated.
/// Two versions naming the same source share one file.
pub fn source_key(source: &str) -> String {
    let h = blake3::hash(comfyver_spec::redact(source.trim()).as_bytes());
    h.to_hex()[..32].to_string()
}

/// The absolute path of a model in the store, after checking that its
/// relative path cannot escape the store.
pub(crate) fn model_file(models_dir: &Path, model: &LockedModel) -> Result<PathBuf, ModelsError> {
    check_path(&model.path)?;
    Ok(models_dir.join(&model.path))
}

/// Refuses a relative store path that is absolute, empty, or has an unsafe
/// component (`..`, hidden names, separators).
pub(crate) fn check_path(path: &str) -> Result<(), ModelsError> {
    if let Some(reason) = comfyver_spec::names::unsafe_relative_path_reason(path) {
        return Err(ModelsError::UnsafePath {
            path: path.to_string(),
            reason,
        });
    }
    if path.ends_with('/') || !path.contains('/') {
        return Err(ModelsError::UnsafePath {
            path: path.to_string(),
            reason: "it must be `<target_subdir>/<name>`".into(),
        });
    }
    Ok(())
}

/// `<models>/.comfyver/partial`.
pub(crate) fn partial_dir(models_dir: &Path) -> PathBuf {
    models_dir.join(META_DIR).join("partial")
}

/// `<models>/.comfyver/damaged`: files moved aside by a repair.
pub(crate) fn damaged_dir(models_dir: &Path) -> PathBuf {
    models_dir.join(META_DIR).join("damaged")
}

/// `<models>/.comfyver/index.json`.
pub(crate) fn index_file(models_dir: &Path) -> PathBuf {
    models_dir.join(META_DIR).join("index.json")
}

/// The per-model cross-process lock.
pub(crate) fn model_lock(layout: &CacheLayout, key: &str) -> PathBuf {
    layout.lock_path(LOCK_KIND, key)
}

/// The cross-process lock of one store path (`<target_subdir>/<name>`),
/// whatever source lands there.
pub(crate) fn path_lock(layout: &CacheLayout, path: &str) -> PathBuf {
    layout.lock_path(LOCK_KIND, &format!("path-{}", source_key(path)))
}

/// The lock guarding the index's read-modify-write.
pub(crate) fn index_lock(layout: &CacheLayout) -> PathBuf {
    layout.lock_path(LOCK_KIND, "index")
}

/// Modification time in nanoseconds since the epoch (0 when unknown).
pub(crate) fn mtime_ns(meta: &std::fs::Metadata) -> u64 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Seconds since the epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(path: &str) -> LockedModel {
        LockedModel {
            source: "https://h.example/a".into(),
            path: path.into(),
            sha256: None,
            blake3: None,
            size: None,
        }
    }

    #[test]
    fn unsafe_paths_are_refused() {
        let dir = Path::new("/store");
        assert_eq!(
            model_file(dir, &m("loras/a.safetensors")).unwrap(),
            Path::new("/store/loras/a.safetensors")
        );
        for bad in [
            "../x/a",
            "loras/../../a",
            "/etc/passwd",
            "loras/.hidden",
            "a",
            ".comfyver/index.json",
            "loras/",
        ] {
            assert!(
                matches!(
                    model_file(dir, &m(bad)),
                    Err(ModelsError::UnsafePath { .. })
                ),
                "{bad}"
            );
        }
        assert_ne!(source_key("a"), source_key("b"));
        assert_eq!(source_key(" a "), source_key("a"));
    }
}
