//! The venv of a home: where it is, its completion marker, (re)creating it.

use std::path::{Path, PathBuf};

use comfyver_fs::CacheLayout;
use comfyver_spec::lock::LockedPython;

use super::error::PythonError;
use super::limits::Limits;
use super::requirements::{PythonInputs, Requirements};
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

/// The marker of a venv created empty and not installed into yet, holding
/// the [`VenvSettings`] it was made with (see [`prepare`]). Removed before
/// anything is installed, so a half-installed venv never passes for empty.
fn empty_marker(home: &Path) -> PathBuf {
    venv_dir(home).join("comfyver-empty.json")
}

/// What the venv itself is made from (not what is installed into it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VenvSettings {
    /// `python.version`.
    pub(crate) python_version: Option<String>,
    /// `python.system_site_packages`.
    pub(crate) system_site_packages: bool,
    /// The installer (uv or the base interpreter of pip).
    pub(crate) installer: Installer,
    /// Offline (uv may not download an interpreter).
    pub(crate) offline: bool,
    /// How long creating it may take.
    pub(crate) limits: Limits,
}

impl VenvSettings {
    pub(crate) fn of(reqs: &Requirements, installer: &Installer) -> VenvSettings {
        VenvSettings {
            python_version: reqs.python_version.clone(),
            system_site_packages: reqs.system_site_packages,
            installer: installer.clone(),
            offline: reqs.offline,
            limits: reqs.limits,
        }
    }

    pub(crate) fn of_inputs(inputs: &PythonInputs, installer: &Installer) -> VenvSettings {
        VenvSettings {
            python_version: inputs.settings.version.clone(),
            system_site_packages: inputs.settings.system_site_packages.unwrap_or(false),
            installer: installer.clone(),
            offline: inputs.offline,
            limits: inputs.limits,
        }
    }

    /// What the empty marker holds: the settings that shape the venv.
    fn key(&self) -> String {
        let (kind, program) = match &self.installer {
            Installer::Uv { uv } => ("uv", uv),
            Installer::Pip { python } => ("pip", python),
        };
        serde_json::json!({
            "installer": kind,
            "program": program.to_string_lossy(),
            "python_version": self.python_version,
            "system_site_packages": self.system_site_packages,
        })
        .to_string()
    }
}

/// Whether the venv was created empty with these settings and nothing has
/// been installed into it since.
pub(crate) fn is_empty_for(home: &Path, settings: &VenvSettings) -> bool {
    std::fs::read_to_string(empty_marker(home)).is_ok_and(|k| k == settings.key())
        && venv_python(home).exists()
        && !marker(home).exists()
}

/// Marks the venv as about to be installed into: it is no longer empty.
pub(crate) fn take_empty(home: &Path) -> Result<(), PythonError> {
    remove_file_if_exists(&empty_marker(home))
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
    settings: &VenvSettings,
) -> Result<(), PythonError> {
    let venv = venv_dir(home);
    remove_file_if_exists(&marker(home))?;
    std::fs::create_dir_all(home).map_err(|source| comfyver_fs::FsError::CreateDir {
        path: home.to_path_buf(),
        source,
    })?;
    discard(&venv)?;
    remove_dir_if_exists(&scripts_dir(home))?;
    let mut cmd = match &settings.installer {
        Installer::Uv { uv } => {
            let mut c = hermetic(uv);
            c.env("UV_CACHE_DIR", layout.uv_cache())
                .args(["venv", "--no-config", "--quiet"]);
            if let Some(v) = &settings.python_version {
                c.arg("--python").arg(v);
            }
            if settings.offline {
                c.args(["--offline", "--no-python-downloads"]);
            }
            if settings.system_site_packages {
                c.arg("--system-site-packages");
            }
            c.arg(&venv);
            c
        }
        Installer::Pip { python } => {
            let mut c = hermetic(python);
            c.args(["-I", "-m", "venv"]);
            if settings.system_site_packages {
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
        settings.limits.tool_limit(),
    )?;
    comfyver_fs::write_atomic(&empty_marker(home), settings.key().as_bytes())?;
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
