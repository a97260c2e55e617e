//! Filling uv's cache with a locked set before the home exists.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use comfyver_fs::{CacheLayout, TempDir};
use comfyver_spec::lock::LockedPython;

use super::error::PythonError;
use super::install::source_args;
use super::requirements::{PythonInputs, collect_requirements};
use super::tool::{Installer, hermetic, run_unless, with_git_rewrites};
use super::torch;
use super::venv;

/// Downloads and unpacks the packages of `locked` into uv's cache
/// (`<cache>/uv`), so that the replay of the same set by [`build_env`] that
/// follows only links files. For a caller that has the lock before the
/// checkouts the venv's inputs are read from: realize runs it while the core
/// is fetched (when its requirements cannot be read before that), so the
/// downloads overlap git work the install would wait for. Beside an install
/// that could start anyway it only costs time: the throwaway tree is a link
/// and an unlink per file of the set.
///
/// The packages are installed with `--no-deps` into a temporary directory
/// beside the cache (`<cache>/.tmp-uv.*`, deleted when the returned
/// [`WarmedCache`] is dropped, or by a later warm-up once its writer is
/// provably gone); nothing of it is part of any home. Only the
/// spec's sources are known this early (a pack's index line is not), so a
/// package this cannot find is simply left to the replay, which reports what
/// it cannot install: callers may ignore the error. With pip, or with a torch
/// index pinned by `python.torch_index_url`, or when `home` already has a
/// complete venv, this does nothing. Setting `stop` kills the uv run (for
/// a caller whose other steps failed: their error need not wait for it).
///
/// [`build_env`]: crate::build_env
pub fn warm_cache(
    layout: &CacheLayout,
    home: &Path,
    locked: &LockedPython,
    inputs: &PythonInputs,
    installer: &Installer,
    stop: &AtomicBool,
) -> Result<WarmedCache, PythonError> {
    let nothing = || Ok(WarmedCache { _throwaway: None });
    let Installer::Uv { uv } = installer else {
        return nothing();
    };
    if inputs.settings.torch_index_url.is_some() || locked.packages.is_empty() {
        return nothing();
    }
    // A home whose venv was completed on this cache: its packages are in
    // uv's cache already (or the venv is kept as it is).
    if venv::completed(home).is_some() {
        return nothing();
    }
    // The spec's settings only: no core or node files (they are not there yet).
    let spec_only = PythonInputs {
        core_dir: layout.uv_cache().join("no-core"),
        nodes: Vec::new(),
        ..inputs.clone()
    };
    let reqs = collect_requirements(&spec_only)?;
    // What a killed warm-up left (only when its writer is provably gone).
    let _ = comfyver_fs::remove_stale_temps(layout.root(), Some("uv"));
    let tmp = TempDir::beside(&layout.uv_cache())?;
    let mut list = String::from("# comfyver: the locked set, to fill uv's cache\n");
    for p in &locked.packages {
        list.push_str(p);
        list.push('\n');
    }
    let file = tmp.path().join("locked.txt");
    comfyver_fs::write_atomic(&file, list.as_bytes())?;
    let mut cmd = hermetic(uv);
    with_git_rewrites(&mut cmd, &reqs.rewrites);
    cmd.env("UV_CACHE_DIR", layout.uv_cache())
        .current_dir(tmp.path())
        .args(["pip", "install", "--no-config", "--quiet", "--no-deps"])
        .args(["--link-mode", "hardlink", "--target", "site"]);
    if let Some(v) = &reqs.python_version {
        cmd.arg("--python").arg(v);
    }
    cmd.args(["-r", "locked.txt"])
        .args(source_args(&reqs, installer))
        .args(torch::uv_args(&reqs));
    run_unless(
        &mut cmd,
        "filling uv's cache with the locked Python packages",
        reqs.limits.tool_limit(),
        stop,
    )?;
    Ok(WarmedCache {
        _throwaway: Some(tmp),
    })
}

/// The throwaway install of [`warm_cache`]; dropping it deletes it (thousands
/// of files for a large set: drop it off the critical path, e.g. on a thread
/// while the venv is installed).
#[derive(Debug)]
#[must_use = "dropping it deletes the throwaway install"]
pub struct WarmedCache {
    _throwaway: Option<TempDir>,
}
