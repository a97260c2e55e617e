//! The layout of a version home: the core checkout with comfyver's own
//! entries beside ComfyUI's files.

use std::path::{Path, PathBuf};

/// A version home. It *is* the core checkout (ComfyUI writes into its own
/// tree, so every version has its own), with:
/// `custom_nodes/<name>` → links into the node cache (or per-home copies of
/// packs whose install.py runs), `.venv/`,
/// `extra_model_paths.yaml`, and `.comfyver/` (stamp, logs, python freeze,
/// per-run data directories).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// The home's root (the core checkout).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `.comfyver/`: everything comfyver keeps about this home.
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join(".comfyver")
    }

    /// `.comfyver/realized.json`: the stamp of a complete realize.
    pub fn stamp_file(&self) -> PathBuf {
        self.meta_dir().join("realized.json")
    }

    /// `.comfyver/logs/`.
    pub fn logs_dir(&self) -> PathBuf {
        self.meta_dir().join("logs")
    }

    /// `.comfyver/run/`: ComfyUI's input, output, temp and user directories.
    pub fn data_dir(&self) -> PathBuf {
        self.meta_dir().join("run")
    }

    /// `extra_model_paths.yaml`.
    pub fn extra_model_paths(&self) -> PathBuf {
        self.root.join("extra_model_paths.yaml")
    }

    /// `custom_nodes/`.
    pub fn custom_nodes_dir(&self) -> PathBuf {
        self.root.join("custom_nodes")
    }

    /// The venv's interpreter.
    pub fn python(&self) -> PathBuf {
        comfyver_python::venv_python(&self.root)
    }

    /// Whether this directory is a home comfyver made (it has `.comfyver/`).
    pub fn is_ours(&self) -> bool {
        self.meta_dir().is_dir()
    }
}
