//! Building a home's venv: one resolution of all inputs, or a replay of a
//! locked set.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

use comfyver_fs::{CacheLayout, FileLock};
use comfyver_spec::lock::LockedPython;

use super::conflict;
use super::error::PythonError;
use super::freeze::freeze;
use super::requirements::{PythonInputs, Requirements};
use super::tool::{Installer, hermetic, run, with_git_rewrites};
use super::torch;
use super::venv::{self, state_dir, venv_dir, work_dir};

/// The file (inside a home) that records the installed set: `.comfyver/python-freeze.txt`.
pub(crate) const FREEZE_FILE: &str = ".comfyver/python-freeze.txt";

/// Makes `<home>/.venv` hold the environment for `reqs` and returns the
/// installed set.
///
/// - When the venv is complete for the same inputs (and, with `locked`, the
///   same packages), nothing runs: the completion marker is the answer.
/// - With `locked` whose `inputs_digest` matches `reqs`, exactly
///   `locked.packages` are installed (no resolution), so a lock replays the
///   same set on every machine. A `locked` for other inputs is ignored and a
///   fresh resolution runs; the caller sees the difference in the returned
///   value (and fails under `--locked`).
/// - Otherwise core, nodes and spec requirements are resolved together once.
///
/// A venv is not relocatable, so it is built in place; the completion marker
/// is written last, and a venv without it is deleted and rebuilt. The install
/// set is also written to `<home>/.comfyver/python-freeze.txt`.
pub fn build_env(
    home: &Path,
    layout: &CacheLayout,
    reqs: &Requirements,
    locked: Option<&LockedPython>,
    installer: &Installer,
) -> Result<LockedPython, PythonError> {
    let _guard = FileLock::acquire(&state_dir(home).join("python.lock"))?;
    let inputs_digest = reqs.inputs_digest().to_string();
    let replay = locked.filter(|l| l.inputs_digest == inputs_digest);
    if let Some(done) = venv::completed(home)
        && done.inputs_digest == inputs_digest
        && replay.is_none_or(|l| l.packages == done.packages)
    {
        return Ok(done);
    }
    let settings = venv::VenvSettings::of(reqs, installer);
    if !venv::is_empty_for(home, &settings) {
        venv::recreate(home, layout, &settings)?;
    }
    let seeded = match installer {
        // `uv venv` (without `--seed`) puts no package into the venv: no
        // interpreter start is needed to learn that.
        Installer::Uv { .. } => Vec::new(),
        Installer::Pip { .. } => freeze(&venv_dir(home))?,
    };
    venv::take_empty(home)?;
    let work = work_dir(home);
    std::fs::create_dir_all(&work).map_err(|source| comfyver_fs::FsError::CreateDir {
        path: work.clone(),
        source,
    })?;
    comfyver_fs::write_atomic(&work.join(SEED_FILE), lines(&seeded).as_bytes())?;
    match replay {
        Some(l) => install_exact(home, layout, reqs, &l.packages, installer)?,
        None => resolve_and_install(home, layout, reqs, installer)?,
    }
    let packages = without_seed(freeze(&venv_dir(home))?, &seeded);
    if let Some(l) = replay
        && l.packages != packages
    {
        return Err(PythonError::LockNotReproduced {
            missing: difference(&l.packages, &packages),
            unexpected: difference(&packages, &l.packages),
        });
    }
    let env = LockedPython {
        inputs_digest,
        packages,
        torch_backend: reqs.torch_backend.clone(),
    };
    record(home, &env)?;
    Ok(env)
}

/// What the venv held right after its creation (pip/setuptools of `python -m
/// venv`), in the work directory.
const SEED_FILE: &str = "seed.txt";

/// Freezes the venv again after install scripts ran (they may `pip install`
/// things) and records the result: the freeze file, the completion marker
/// and the returned set (which goes into the lock) then hold what the
/// scripts installed too.
pub fn record_after_scripts(home: &Path, env: &LockedPython) -> Result<LockedPython, PythonError> {
    let seeded: Vec<String> = std::fs::read_to_string(work_dir(home).join(SEED_FILE))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect();
    let packages = without_seed(freeze(&venv_dir(home))?, &seeded);
    if packages == env.packages {
        return Ok(env.clone());
    }
    let env = LockedPython {
        inputs_digest: env.inputs_digest.clone(),
        packages,
        torch_backend: env.torch_backend.clone(),
    };
    record(home, &env)?;
    Ok(env)
}

fn record(home: &Path, env: &LockedPython) -> Result<(), PythonError> {
    comfyver_fs::write_atomic(&home.join(FREEZE_FILE), lines(&env.packages).as_bytes())?;
    venv::mark_complete(home, env)
}

fn lines(items: &[String]) -> String {
    let mut text = items.join("\n");
    text.push('\n');
    text
}

/// Creates the home's venv ahead of [`build_env`], for a caller that knows
/// the spec's settings before every requirement (the node packs may still be
/// checking out): an empty venv made here, marked with the settings it was
/// made with, is taken by the next `build_env` with the same settings instead
/// of being made again. A complete venv, or an empty one for these settings,
/// is left as it is; anything else there is deleted first.
pub fn prepare_venv(
    home: &Path,
    layout: &CacheLayout,
    inputs: &PythonInputs,
    installer: &Installer,
) -> Result<(), PythonError> {
    let _guard = FileLock::acquire(&state_dir(home).join("python.lock"))?;
    let settings = venv::VenvSettings::of_inputs(inputs, installer);
    if venv::completed(home).is_some() || venv::is_empty_for(home, &settings) {
        return Ok(());
    }
    venv::recreate(home, layout, &settings)
}

/// What `python -m venv` put there itself (pip, setuptools) is not part of
/// the environment unless the install changed it.
fn without_seed(frozen: Vec<String>, seeded: &[String]) -> Vec<String> {
    frozen.into_iter().filter(|l| !seeded.contains(l)).collect()
}

fn difference(a: &[String], b: &[String]) -> Vec<String> {
    a.iter().filter(|x| !b.contains(x)).cloned().collect()
}

fn resolve_and_install(
    home: &Path,
    layout: &CacheLayout,
    reqs: &Requirements,
    installer: &Installer,
) -> Result<(), PythonError> {
    let work = work_dir(home);
    comfyver_fs::write_atomic(
        &work.join("requirements.in"),
        reqs.combined_file().as_bytes(),
    )?;
    let constraints = !reqs.constraints.is_empty();
    if constraints {
        comfyver_fs::write_atomic(
            &work.join("constraints.txt"),
            reqs.constraints_file().as_bytes(),
        )?;
    }
    let python = venv::venv_python(home);
    let result = match installer {
        Installer::Uv { uv } => {
            // With a pinned torch index the inputs go in as a pyproject.toml
            // (its sources pin the torch family), else as requirements.in.
            let pin = torch::pinned_index(reqs);
            let input = match &pin {
                Some(index) => {
                    let lines: Vec<String> =
                        reqs.requirements.iter().map(|r| r.line.clone()).collect();
                    comfyver_fs::write_atomic(
                        &work.join("pyproject.toml"),
                        torch::pyproject(&lines, index).as_bytes(),
                    )?;
                    "pyproject.toml"
                }
                None => "requirements.in",
            };
            // One pass: one uv process resolves, downloads and installs
            // (no second start, no second round of index requests, no
            // resolved file in between). The freeze that follows records
            // exactly what was installed, and a replay installs that set
            // with `uv pip sync`. The venv was just created empty, so
            // install leaves the set a sync of the resolution would.
            let mut install = uv_command(uv, layout, reqs, &work);
            install
                .args(["pip", "install", "--no-config", "--quiet"])
                .args(["--link-mode", "hardlink", "--python"])
                .arg(&python)
                .args(["-r", input])
                .args(source_args(reqs, installer))
                .args(torch::uv_args(reqs));
            if constraints {
                install.args(["-c", "constraints.txt"]);
            }
            run(
                &mut install,
                "installing the Python packages (uv pip install)",
                reqs.limits.tool_limit(),
            )
        }
        Installer::Pip { .. } => {
            let mut install = pip_command(&python, reqs, &work);
            install
                .args(["install", "-r", "requirements.in"])
                .args(source_args(reqs, installer));
            if constraints {
                install.args(["-c", "constraints.txt"]);
            }
            run(
                &mut install,
                "installing the Python packages (pip install)",
                reqs.limits.tool_limit(),
            )
        }
    };
    match result {
        Ok(_) => Ok(()),
        Err(PythonError::Tool { output, .. }) if conflict::is_resolution_failure(&output.0) => {
            Err(conflict::attribute(&reqs.requirements, output))
        }
        Err(e) => Err(e),
    }
}

fn install_exact(
    home: &Path,
    layout: &CacheLayout,
    reqs: &Requirements,
    packages: &[String],
    installer: &Installer,
) -> Result<(), PythonError> {
    let work = work_dir(home);
    let mut text = String::from("# comfyver: the locked Python environment, installed exactly\n");
    for p in packages {
        text.push_str(p);
        text.push('\n');
    }
    comfyver_fs::write_atomic(&work.join("locked.txt"), text.as_bytes())?;
    let python = venv::venv_python(home);
    let mut cmd = match installer {
        Installer::Uv { uv } => {
            let target = match torch::pinned_index(reqs) {
                Some(index) => pinned_pyproject(&work, "locked", packages, &index)?,
                None => "locked.txt".into(),
            };
            let mut c = uv_command(uv, layout, reqs, &work);
            c.args([
                "pip",
                "sync",
                "--no-config",
                "--quiet",
                "--allow-empty-requirements",
            ])
            .args(["--link-mode", "hardlink", "--python"])
            .arg(&python)
            .arg(target)
            .args(torch::uv_args(reqs));
            c
        }
        Installer::Pip { .. } => {
            let mut c = pip_command(&python, reqs, &work);
            c.args(["install", "--no-deps", "-r", "locked.txt"]);
            c
        }
    };
    cmd.args(source_args(reqs, installer));
    run(
        &mut cmd,
        "installing the locked Python packages",
        reqs.limits.tool_limit(),
    )?;
    Ok(())
}

/// Writes `<work>/<dir>/pyproject.toml` listing the exact `pins` with the
/// torch family pinned to `index`; returns its path relative to `work`.
fn pinned_pyproject(
    work: &Path,
    dir: &str,
    pins: &[String],
    index: &str,
) -> Result<std::path::PathBuf, PythonError> {
    let rel = Path::new(dir).join("pyproject.toml");
    let path = work.join(&rel);
    std::fs::create_dir_all(work.join(dir)).map_err(|source| comfyver_fs::FsError::CreateDir {
        path: work.join(dir),
        source,
    })?;
    comfyver_fs::write_atomic(&path, torch::pyproject(pins, index).as_bytes())?;
    Ok(rel)
}

fn uv_command(uv: &Path, layout: &CacheLayout, reqs: &Requirements, cwd: &Path) -> Command {
    let mut c = hermetic(uv);
    with_git_rewrites(&mut c, &reqs.rewrites);
    c.env("UV_CACHE_DIR", layout.uv_cache()).current_dir(cwd);
    c
}

fn pip_command(python: &Path, reqs: &Requirements, cwd: &Path) -> Command {
    let mut c = hermetic(python);
    with_git_rewrites(&mut c, &reqs.rewrites);
    c.args([
        "-I",
        "-m",
        "pip",
        "--isolated",
        "--disable-pip-version-check",
        "--no-input",
    ])
    .current_dir(cwd);
    c
}

/// Where packages come from. Offline, uv gets `--offline` and keeps the
/// spec's indexes: it then resolves from what its cache holds for them (a new
/// version whose packages were all installed before realizes offline);
/// `--no-index` would also stop it from reading that cache. pip has no such
/// cache, so offline it gets `--no-index`. Online, the spec's indexes. The
/// wheel directory and find-links always (URL find-links are dropped offline).
pub(crate) fn source_args(reqs: &Requirements, installer: &Installer) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let uv = matches!(installer, Installer::Uv { .. });
    if reqs.offline && uv {
        args.push("--offline".into());
    }
    if reqs.offline && !uv {
        args.push("--no-index".into());
    } else {
        if let Some(url) = &reqs.index_url {
            args.push("--index-url".into());
            args.push(url.into());
        }
        for url in &reqs.extra_index_urls {
            args.push("--extra-index-url".into());
            args.push(url.into());
        }
        // pip cannot pin packages to an index: the torch index is an extra
        // index there (with the capture problem uv's pin avoids).
        if let (false, Some(pin)) = (uv, &reqs.torch_pin) {
            args.push("--extra-index-url".into());
            args.push(pin.into());
        }
    }
    if let Some(dir) = &reqs.wheels_dir {
        args.push("--find-links".into());
        args.push(dir.into());
    }
    for link in &reqs.find_links {
        if reqs.offline && link.contains("://") && !link.starts_with("file://") {
            continue;
        }
        args.push("--find-links".into());
        args.push(link.into());
    }
    args
}
