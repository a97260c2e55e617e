use std::path::{Path, PathBuf};

/// Where a RunPod network volume is mounted; when it exists it holds the cache.
pub const RUNPOD_VOLUME: &str = "/runpod-volume";

/// The cache root used when neither a flag nor `COMFY_CACHE` names one:
/// `/runpod-volume/.comfy-cache` on RunPod, else `~/.comfy-cache`.
pub fn default_cache_root() -> PathBuf {
    let volume = Path::new(RUNPOD_VOLUME);
    if volume.is_dir() {
        return volume.join(".comfy-cache");
    }
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
        .join(".comfy-cache")
}

/// Names every path inside a comfyver cache root. Pure: it creates nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheLayout {
    root: PathBuf,
    models: PathBuf,
    custom_nodes: PathBuf,
    homes: PathBuf,
}

impl CacheLayout {
    /// A layout rooted at `root` with the default places for models, node
    /// checkouts and version homes.
    pub fn new(root: impl Into<PathBuf>) -> CacheLayout {
        let root = root.into();
        CacheLayout {
            models: root.join("models"),
            custom_nodes: root.join("custom_nodes"),
            homes: root.join("versions"),
            root,
        }
    }

    /// Overrides the model store directory (`MODELS_DIR`).
    pub fn with_models_dir(mut self, dir: impl Into<PathBuf>) -> CacheLayout {
        self.models = dir.into();
        self
    }

    /// Overrides the node checkout directory (`CUSTOM_NODES_CACHE`).
    pub fn with_custom_nodes_dir(mut self, dir: impl Into<PathBuf>) -> CacheLayout {
        self.custom_nodes = dir.into();
        self
    }

    /// Overrides the directory that holds version homes (`comfy-<id>`).
    pub fn with_homes_dir(mut self, dir: impl Into<PathBuf>) -> CacheLayout {
        self.homes = dir.into();
        self
    }

    /// The cache root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<cache>/resolved`: the resolved locks.
    pub fn resolved_dir(&self) -> PathBuf {
        self.root.join("resolved")
    }

    /// `<cache>/resolved/<id>.lock.json`.
    pub fn lock_file(&self, version_id: &str) -> PathBuf {
        self.resolved_dir().join(format!("{version_id}.lock.json"))
    }

    /// `<cache>/git`: bare mirrors.
    pub fn git_dir(&self) -> PathBuf {
        self.root.join("git")
    }

    /// `<cache>/git/<slug>.git`.
    pub fn git_mirror(&self, slug: &str) -> PathBuf {
        self.git_dir().join(format!("{slug}.git"))
    }

    /// The node checkout directory (`<cache>/custom_nodes` by default).
    pub fn custom_nodes_dir(&self) -> &Path {
        &self.custom_nodes
    }

    /// `<custom_nodes>/<slug>@<commit>`.
    pub fn node_checkout(&self, slug: &str, commit: &str) -> PathBuf {
        self.custom_nodes.join(format!("{slug}@{commit}"))
    }

    /// The model store (`MODELS_DIR`, `<cache>/models` by default).
    pub fn models_dir(&self) -> &Path {
        &self.models
    }

    /// The directory holding version homes.
    pub fn homes_dir(&self) -> &Path {
        &self.homes
    }

    /// The default home of a version: `<homes>/comfy-<id>`.
    pub fn version_home(&self, version_id: &str) -> PathBuf {
        self.homes.join(format!("comfy-{version_id}"))
    }

    /// `<cache>/uv`: uv's package cache, on the same filesystem as the homes.
    pub fn uv_cache(&self) -> PathBuf {
        self.root.join("uv")
    }

    /// `<cache>/locks/<kind>/<key>.lock`: a per-resource lock file.
    pub fn lock_path(&self, kind: &str, key: &str) -> PathBuf {
        self.root
            .join("locks")
            .join(kind)
            .join(format!("{key}.lock"))
    }

    /// `<cache>/config.json`: optional settings such as URL rewrite rules.
    pub fn config_file(&self) -> PathBuf {
        self.root.join("config.json")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let l = CacheLayout::new("/c").with_models_dir("/m");
        assert_eq!(l.lock_file("x"), Path::new("/c/resolved/x.lock.json"));
        assert_eq!(l.git_mirror("s"), Path::new("/c/git/s.git"));
        assert_eq!(
            l.node_checkout("s", "ab"),
            Path::new("/c/custom_nodes/s@ab")
        );
        assert_eq!(l.models_dir(), Path::new("/m"));
        assert_eq!(l.version_home("v"), Path::new("/c/versions/comfy-v"));
    }
}
