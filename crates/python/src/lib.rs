//! The Python environment of a comfyver version home: `<home>/.venv`.
//!
//! `comfyver-realize` composes this crate; nothing here knows about node
//! checkouts, models or stamps.
//!
//! - [`collect_requirements`] reads the core's `requirements.txt`, each
//!   node's `requirements.txt` (or its `pyproject.toml`
//!   `[project].dependencies`) and the spec's `python` section into one
//!   [`Requirements`], every line annotated with its origin. Option lines in
//!   node files are hoisted (`--extra-index-url`, `--find-links`) or refused
//!   with a clear error (`-e`, `-r`, local paths, other pip options).
//! - [`build_env`] installs them in ONE resolution (uv: one `uv pip install`
//!   that resolves, downloads and installs, packages hard-linked from
//!   `<cache>/uv`; else `python -m venv` + pip), or replays a
//!   [`LockedPython`] exactly (`uv pip sync`). A clash becomes one
//!   [`PythonError::Conflict`] naming the packs involved.
//! - [`prepare_venv`] creates the venv early (from the spec's settings
//!   alone), so a caller can overlap it with checking out node packs;
//!   [`warm_cache`] downloads a locked set into uv's cache before its
//!   inputs are all known, so a replay's downloads overlap git work that
//!   the install has to wait for.
//! - [`run_install_scripts`] runs nodes' `install.py` once per home and commit,
//!   confined by Landlock to the pack's directory, the venv and uv's cache.
//! - [`freeze`] lists what a venv holds; [`plan`] says what would happen.
//!
//! Every child process runs hermetically: no `VIRTUAL_ENV`, `PYTHONPATH`,
//! `UV_*` or `PIP_*` from the caller except transport tuning, no uv or pip
//! config files; URLs in messages are redacted.
//!
//! [`LockedPython`]: comfyver_spec::lock::LockedPython

mod conflict;
mod error;
mod fixups;
mod freeze;
mod install;
mod install_script;
mod limits;
mod pip_shim;
mod plan;
mod pyproject;
mod requirements;
mod script_area;
mod tool;
mod torch;
mod venv;
mod warm;

pub use error::PythonError;
pub use freeze::freeze;
pub use install::{build_env, prepare_venv, record_after_scripts};
pub use install_script::{
    InstallScript, ScriptContext, ScriptStatus, ScriptsRun, run_install_scripts,
};
pub use limits::Limits;
pub use plan::{EnvState, PlannedInstall, PythonPlan, plan};
pub use requirements::{PythonInputs, Requirements, collect_requirements};
pub use tool::Installer;
pub use venv::{venv_dir, venv_python};
pub use warm::{WarmedCache, warm_cache};
