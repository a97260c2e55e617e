//! The layout of a version home: a link to the shared core checkout (or, for
//! cores without `--base-directory`, its own copy of the core) with the
//! version's own parts beside it.

use std::path::{Path, PathBuf};

use comfyver_fs::CacheLayout;

use crate::RealizeError;

/// A version home. On a core that takes `--base-directory` (shared mode):
/// `core` → the shared checkout `<cache>/core/<slug>@<commit>`, and ComfyUI
/// runs from there with `--base-directory <home>`. On an older core (copy
/// mode) the home *is* its own core checkout. Both have:
/// `custom_nodes/<name>` → links into the node cache (or per-home copies of
/// packs whose install.py runs; in shared mode also links to the core's own
/// `custom_nodes/` files), `models/<top>` links for packs' own folders,
/// `.venv/`, `extra_model_paths.yaml`, and `.comfyver/` (marker, stamp,
/// recorded lock, logs, python freeze, bytecode cache, per-run data
/// directories).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// The home at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Home {
        Home { root: root.into() }
    }

    /// The home's root (the base directory ComfyUI runs with).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where ComfyUI's own files are (`main.py`; its working directory):
    /// `<home>/core` on a shared core, else the home itself. One `lstat`.
    pub fn core_dir(&self) -> PathBuf {
        comfyver_nodes::shared_core::core_link(&self.root).unwrap_or_else(|| self.root.clone())
    }

    /// ComfyUI's `--base-directory`: the home, when its core is shared (a
    /// copied core is its own base).
    pub fn base_dir(&self) -> Option<PathBuf> {
        comfyver_nodes::shared_core::core_link(&self.root).map(|_| self.root.clone())
    }

    /// The `extra_model_paths.yaml` to pass with `--extra-model-paths-config`:
    /// only on a shared core. A copied core loads the one in its root by
    /// itself, and passing it again would register every path twice.
    pub fn model_paths_config(&self) -> Option<PathBuf> {
        self.base_dir().map(|_| self.extra_model_paths())
    }

    /// The environment every Python process of this home runs with (ComfyUI
    /// and install scripts): `PYTHONPYCACHEPREFIX` = `.comfyver/pycache`, so
    /// that no bytecode is written into the shared core or node checkouts.
    pub fn python_env(&self) -> Vec<(String, String)> {
        vec![(
            "PYTHONPYCACHEPREFIX".to_string(),
            self.meta_dir()
                .join("pycache")
                .to_string_lossy()
                .into_owned(),
        )]
    }

    /// `.comfyver/`: everything comfyver keeps about this home.
    pub fn meta_dir(&self) -> PathBuf {
        self.root.join(".comfyver")
    }

    /// `.comfyver/realized.json`: the stamp of a complete realize.
    pub fn stamp_file(&self) -> PathBuf {
        self.meta_dir().join("realized.json")
    }

    /// `.comfyver/lock.json`: the lock the home was realized from (with the
    /// Python set it installed).
    pub fn lock_file(&self) -> PathBuf {
        self.meta_dir().join("lock.json")
    }

    /// `.comfyver/node-index.json`: the node classes its ComfyUI reported
    /// (written by the handler, valid only under [`Home::stamp_key`]).
    pub fn node_index_file(&self) -> PathBuf {
        self.meta_dir().join("node-index.json")
    }

    /// The key of the home as realized now (from its stamp: the lock's
    /// commits and models, the Python inputs, the comfyver version); `None`
    /// while it has no complete realize. Anything recorded from a running
    /// ComfyUI is valid only under the key it was recorded with.
    pub fn stamp_key(&self) -> Option<String> {
        let stamp = crate::stamp::read_stamp(self)?;
        Some(format!(
            "{}+{}+{}",
            stamp.lock_digest, stamp.python_inputs_digest, stamp.tool_version
        ))
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

    /// `.comfyver/home.json`: the marker that says "a comfyver home".
    pub fn marker_file(&self) -> PathBuf {
        self.meta_dir().join(HOME_MARKER)
    }

    /// Whether this directory is a home comfyver made: it carries the home
    /// marker, or (a copy-mode realize killed between publishing the core
    /// checkout and writing the marker, or a home made before markers
    /// existed) it is comfyver's own core checkout. A shared-mode home writes
    /// its marker before anything else. A `.comfyver/` directory alone proves
    /// nothing: the model store has one too.
    pub fn is_ours(&self) -> bool {
        let marked = std::fs::read(self.marker_file())
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["kind"] == HOME_KIND);
        marked || comfyver_nodes::is_checkout_complete(&self.root)
    }

    /// Writes the home marker (atomically). A home without `.comfyver/` gets
    /// it with the marker inside, built beside and renamed in: a kill never
    /// leaves a `.comfyver/` without its marker, which would make the home
    /// look like somebody else's directory to the next realize.
    pub(crate) fn mark(&self, version_id: &str) -> Result<(), RealizeError> {
        let marker = serde_json::json!({"kind": HOME_KIND, "version_id": version_id});
        let mut bytes = serde_json::to_vec_pretty(&marker).expect("plain JSON");
        bytes.push(b'\n');
        let meta = self.meta_dir();
        if meta.is_dir() {
            comfyver_fs::write_atomic_if_changed(&self.marker_file(), &bytes)?;
            return Ok(());
        }
        std::fs::create_dir_all(&self.root)
            .map_err(|e| RealizeError::io("could not create", &self.root, e))?;
        let building = comfyver_fs::TempDir::beside(&meta)?;
        comfyver_fs::write_atomic(&building.path().join(HOME_MARKER), &bytes)?;
        comfyver_fs::test_pause("home-before-marker");
        building.publish(&meta)?;
        Ok(())
    }

    /// Removes what a killed [`Home::mark`] left beside `.comfyver/` (only
    /// temps whose writer is provably gone).
    pub(crate) fn remove_stale_marks(&self) -> Result<(), RealizeError> {
        comfyver_fs::remove_stale_temps(&self.root, Some(".comfyver"))?;
        Ok(())
    }

    /// Refuses a place that must never be a home, because realizing into it
    /// or removing it would destroy what others use: `/`, `$HOME`, the cache
    /// root, the model store, the node cache, the homes directory itself, any
    /// directory that holds one of these, and anything inside the shared
    /// caches.
    pub fn check_place(&self, layout: &CacheLayout) -> Result<(), RealizeError> {
        let me = canonical(&self.root);
        let mut holders: Vec<(PathBuf, &'static str)> = vec![
            (PathBuf::from("/"), "the filesystem root"),
            (layout.root().to_path_buf(), "the cache root"),
            (layout.models_dir().to_path_buf(), "the model store"),
            (layout.custom_nodes_dir().to_path_buf(), "the node cache"),
            (layout.git_dir(), "the git mirror cache"),
            (
                comfyver_nodes::shared_core::core_cache_dir(layout),
                "the shared core cache",
            ),
            (
                layout.homes_dir().to_path_buf(),
                "the directory of all homes",
            ),
        ];
        if let Some(h) = std::env::var_os("HOME") {
            holders.push((PathBuf::from(h), "your home directory ($HOME)"));
        }
        for (place, what) in &holders {
            let place = canonical(place);
            if place.starts_with(&me) {
                return Err(RealizeError::NotAHome {
                    path: self.root.clone(),
                    what: if place == me {
                        what.to_string()
                    } else {
                        format!("a directory that holds {what}")
                    },
                });
            }
        }
        for (inside, what) in [
            (layout.models_dir().to_path_buf(), "the model store"),
            (layout.custom_nodes_dir().to_path_buf(), "the node cache"),
            (layout.git_dir(), "the git mirror cache"),
            (
                comfyver_nodes::shared_core::core_cache_dir(layout),
                "the shared core cache",
            ),
            (layout.resolved_dir(), "the lock directory"),
        ] {
            if me.starts_with(canonical(&inside)) {
                return Err(RealizeError::NotAHome {
                    path: self.root.clone(),
                    what: format!("inside {what}"),
                });
            }
        }
        Ok(())
    }
}

/// The kind written in the home marker.
const HOME_KIND: &str = "comfyver-home";
/// The marker's file name in `.comfyver/`.
const HOME_MARKER: &str = "home.json";

/// `path` with symlinks resolved as far as it exists (a home that does not
/// exist yet is compared by its nearest existing ancestor).
fn canonical(path: &Path) -> PathBuf {
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut existing = abs.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = std::fs::canonicalize(existing) {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return abs,
        }
    }
}
