//! The spec (`versions/<id>.json`, schema version 2) and its parts: the
//! ComfyUI core, custom nodes, models, the Python settings and options.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The schema version this build reads and writes.
pub const CURRENT_SCHEMA_VERSION: u64 = 2;

/// A version: `versions/<id>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "comfyver version spec")]
pub struct VersionSpec {
    /// Always 2.
    pub schema_version: u64,
    /// The version's id: a safe name equal to the file's stem.
    pub version_id: String,
    /// Free text shown by `comfyver list` and `show`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The ComfyUI core.
    pub comfy: ComfyCore,
    /// Custom node packs, linked into `<home>/custom_nodes/<name>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub custom_nodes: Vec<CustomNode>,
    /// Models, stored once in the shared model store.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<Model>,
    /// The Python environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<PythonSettings>,
    /// Environment variables set for ComfyUI and install scripts.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Behaviour switches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Options>,
}

/// The ComfyUI core repository and the revision to pin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ComfyCore {
    /// Git URL: https, http, ssh, `git@host:owner/repo`, git://, file:// or an absolute path.
    pub repo: String,
    /// Branch, tag or commit prefix; absent means the remote's HEAD.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// A full 40-hex commit; when given it wins over `ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
}

/// A custom node pack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CustomNode {
    /// Git URL (same forms as `comfy.repo`).
    pub repo: String,
    /// Branch, tag or commit prefix; absent means the remote's HEAD.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// A full 40-hex commit; when given it wins over `ref`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// Directory name under `custom_nodes/`; defaults to the repo's last path segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Run the pack's `install.py` after installing requirements (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_script: Option<bool>,
    /// The pack writes into its own directory at run time: give each home
    /// its own copy instead of the shared read-only checkout (default
    /// false; a pack whose `install.py` runs always gets one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writable: Option<bool>,
}

impl CustomNode {
    /// The directory name of this pack: `name`, else the repo's last path
    /// segment without `.git`.
    pub fn effective_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => crate::repo_url::last_segment(&self.repo),
        }
    }

    /// Whether the pack's `install.py` runs (default true).
    pub fn runs_install_script(&self) -> bool {
        self.install_script.unwrap_or(true)
    }

    /// Whether the spec asks for a per-home copy of the pack (`writable`,
    /// default false).
    pub fn is_writable(&self) -> bool {
        self.writable.unwrap_or(false)
    }
}

/// A model file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// http(s) URL, `hf://owner/repo/path[@revision]`, file:// URL or absolute path.
    pub source: String,
    /// File name in the store; defaults to the source's last path segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// ComfyUI model folder (e.g. `checkpoints`, `loras`); default `checkpoints`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_subdir: Option<String>,
    /// Expected SHA-256 (64 hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Expected BLAKE3 (64 hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Expected size in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

impl Model {
    /// The file name in the store: `name`, else derived from the source.
    /// Only meaningful on a validated spec.
    pub fn effective_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => crate::model_source::ModelSource::parse(&self.source)
                .map(|s| s.default_name())
                .unwrap_or_default(),
        }
    }

    /// The model folder, with legacy names mapped (`clip` → `text_encoders`,
    /// `unet` → `diffusion_models`); `checkpoints` when absent.
    pub fn effective_subdir(&self) -> String {
        match &self.target_subdir {
            Some(s) => crate::model_folders::map_legacy(s.trim_matches('/')).to_string(),
            None => crate::model_folders::DEFAULT_FOLDER.to_string(),
        }
    }

    /// `<subdir>/<name>`, the model's path relative to the store.
    pub fn relative_path(&self) -> String {
        format!("{}/{}", self.effective_subdir(), self.effective_name())
    }
}

/// The Python environment of a version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PythonSettings {
    /// Interpreter version for uv (e.g. `3.11`), or an interpreter path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Extra requirement lines (PEP 508), added to the core's and the nodes'.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requirements: Vec<String>,
    /// Constraint lines (e.g. `torch==2.5.1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    /// Requirement lines that replace every requirement on the same package,
    /// from the core, the packs or `requirements` (e.g. `torch==1.13.1` to let
    /// a pack downgrade torch on purpose).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
    /// The primary package index URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_url: Option<String>,
    /// Additional index URLs (e.g. a PyTorch CUDA index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_index_urls: Vec<String>,
    /// Local directories or URLs with wheels (find-links).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub find_links: Vec<String>,
    /// The PyTorch build: `auto` (uv detects the machine's GPU driver), `cpu`,
    /// `cu126`, `cu128`, … (CUDA), `rocm6.3`, … or `xpu`. Unset: torch comes
    /// from the primary index like any package (on Linux x86_64 PyPI's torch
    /// is a CUDA build), which suits a GPU worker whose image was built
    /// without a GPU. The torch family (torch, torchvision, torchaudio, …)
    /// comes from the backend's index; every other package from the primary
    /// index, even when the torch index also hosts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_backend: Option<String>,
    /// Base URL of the PyTorch indexes (`<base>/<backend>` is the index of one
    /// backend), for a mirror or a local copy; needs an explicit
    /// `torch_backend` (not `auto`). Unset: uv's built-in PyTorch indexes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_index_url: Option<String>,
    /// Let the venv see the base interpreter's packages (reuse a torch baked into an image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_site_packages: Option<bool>,
}

/// Behaviour switches of a version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Never use the network for this version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline: Option<bool>,
    /// Do not download models (missing ones are warnings).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip_models: Option<bool>,
    /// Resolve even when a custom node's `[tool.comfy] requires-comfyui`
    /// does not admit the core's version (a warning instead of an error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_comfyui_mismatch: Option<bool>,
}

impl VersionSpec {
    /// Whether `options.offline` is set.
    pub fn offline(&self) -> bool {
        self.options
            .as_ref()
            .and_then(|o| o.offline)
            .unwrap_or(false)
    }

    /// Whether `options.skip_models` is set.
    pub fn skip_models(&self) -> bool {
        self.options
            .as_ref()
            .and_then(|o| o.skip_models)
            .unwrap_or(false)
    }

    /// The spec with credentials removed from repository URLs and model
    /// sources, for printing (`show --json`). Not for fetching.
    pub fn redacted(&self) -> VersionSpec {
        let mut out = self.clone();
        out.comfy.repo = crate::redact(&out.comfy.repo);
        for n in &mut out.custom_nodes {
            n.repo = crate::redact(&n.repo);
        }
        for m in &mut out.models {
            m.source = crate::redact(&m.source);
        }
        out
    }

    /// The spec's digest: BLAKE3 of its canonical JSON, so formatting changes
    /// do not count as changes.
    pub fn digest(&self) -> crate::digest::Digest {
        crate::digest::digest_json(self)
    }
}
