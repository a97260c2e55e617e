//! The venv of a home: where it is, its completion marker, (re)creating it.

use std::path::{Path, PathBuf};

use comfyver_fs::CacheLayout;
use comfyver_spec::LockedPython;

use super::error::PythonError;
use super::requirements::Requirements;
use super::tool::{Installer, hermetic, run};

/// The venv directory of a home: `<home>/.venv`.
pub fn venv_dir(home: &Path) -> PathBuf {
    home.join(".venv")
}

/// The interpreter of a home's venv: `<home>/.venv/bin/python`.
pub fn venv_python(home: &Path) -> PathBuf {
    venv_dir(home).join("bin").join("python")
}

/// `<home>/.comfyver`: comfyver's own files inside a home.
pub(crate) fn state_dir(home: &Path) -> PathBuf {
    home.join(".comfyver")
}

/// `<home>/.comfyver/python`: the combined requirement files of the last build.
pub(crate) fn work_dir(home: &Path) -> PathBuf {
    state_dir(home).join("python")
}

/// `<home>/.comfyver/install-scripts`: done-markers of install scripts.
pub(crate) fn scripts_dir(home: &Path) -> PathBuf {
    state_dir(home).join("install-scripts")
}

/// The completion marker: written last, holding the installed set. A venv
/// without it is a half-built venv and is deleted before the next build.
fn marker(home: &Path) -> PathBuf {
    venv_dir(home).join("comfyver-complete.json")
}

/// The environment recorded by the completion marker, when the venv is complete.
pub(crate) fn completed(home: &Path) -> Option<LockedPython> {
    let bytes = std::fs::read(marker(home)).ok()?;
    let done: LockedPython = serde_json::from_slice(&bytes).ok()?;
    venv_python(home).exists().then_some(done)
}

/// Records the venv as complete (the last step of a build).
pub(crate) fn mark_complete(home: &Path, env: &LockedPython) -> Result<(), PythonError> {
    let bytes = serde_json::to_vec_pretty(env).expect("plain data serializes");
    comfyver_fs::write_atomic(&marker(home), &bytes)?;
    Ok(())
}

/// Deletes whatever venv is there (marker first, so a crash mid-delete never
/// leaves a venv that looks complete) and the install-script markers that
/// belonged to it, then creates an empty venv.
pub(crate) fn recreate(
    home: &Path,
    layout: &CacheLayout,
    reqs: &Requirements,
    installer: &Installer,
) -> Result<(), PythonError> {
    let venv = venv_dir(home);
    remove_file_if_exists(&marker(home))?;
    std::fs::create_dir_all(home).map_err(|source| comfyver_fs::FsError::CreateDir {
        path: home.to_path_buf(),
        source,
    })?;
    discard(&venv)?;
    remove_dir_if_exists(&scripts_dir(home))?;
    let mut cmd = match installer {
        Installer::Uv { uv } => {
            let mut c = hermetic(uv);
            c.env("UV_CACHE_DIR", layout.uv_cache())
                .args(["venv", "--no-config", "--quiet"]);
            if let Some(v) = &reqs.python_version {
                c.arg("--python").arg(v);
            }
            if reqs.offline {
                c.args(["--offline", "--no-python-downloads"]);
            }
            if reqs.system_site_packages {
                c.arg("--system-site-packages");
            }
            c.arg(&venv);
            c
        }
        Installer::Pip { python } => {
            let mut c = hermetic(python);
            c.args(["-I", "-m", "venv"]);
            if reqs.system_site_packages {
                c.arg("--system-site-packages");
            }
            c.arg(&venv);
            c
        }
    };
    cmd.current_dir(home);
    run(
        &mut cmd,
        "creating the Python environment",
        reqs.limits.tool_limit(),
    )?;
    Ok(())
}

/// Moves an old or half-built venv out of the way by one rename, then deletes
/// it. A venv left by a killed build may still be written to for a moment (its
/// uv child dying after it); deleting it in place then fails with "Directory
/// not empty", and a `.venv` that exists makes `uv venv` refuse. After the
/// rename `.venv` is free whatever happens to the old tree; a tree that
/// cannot be deleted now stays in a `.tmp-` sibling that the stale-temp
/// cleanup removes later.
fn discard(venv: &Path) -> Result<(), PythonError> {
    // Trees an earlier discard could not delete (we hold the home's python
    // lock, so none belongs to a live build). Best effort: a tree that still
    // cannot be deleted must not stop this build.
    if let Some(home) = venv.parent() {
        let _ = comfyver_fs::remove_stale_temps(home, Some(".venv"));
    }
    if std::fs::symlink_metadata(venv).is_err() {
        return Ok(());
    }
    let trash = comfyver_fs::TempDir::beside(venv)?;
    std::fs::rename(venv, trash.path().join("old")).map_err(|source| {
        comfyver_fs::FsError::Remove {
            path: venv.to_path_buf(),
            source,
        }
    })?;
    drop(trash);
    Ok(())
}

fn remove_file_if_exists(path: &Path) -> Result<(), PythonError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(comfyver_fs::FsError::Remove {
            path: path.to_path_buf(),
            source: e,
        }
        .into()),
        _ => Ok(()),
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<(), PythonError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(comfyver_fs::FsError::Remove {
            path: path.to_path_buf(),
            source: e,
        }
        .into()),
        _ => Ok(()),
    }
}
