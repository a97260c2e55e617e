//! Running custom nodes' `install.py` once per version and node commit.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use serde::Serialize;

use super::error::{PythonError, redact_text};
use super::tool::hermetic;
use super::venv::{scripts_dir, state_dir, venv_dir, venv_python};

/// A node pack whose `install.py` may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallScript {
    /// The node's directory name under `custom_nodes/`.
    pub name: String,
    /// The node's directory (the script's working directory).
    pub dir: PathBuf,
    /// The node's locked commit (the script runs once per commit).
    pub commit: String,
    /// The spec's switch (`CustomNode::runs_install_script()`).
    pub enabled: bool,
}

/// What happened (or, in a plan, would happen) to a node's `install.py`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScriptStatus {
    /// It ran (in a plan: it will run).
    Run,
    /// It already ran for this version and commit.
    Done,
    /// The spec turned it off.
    Disabled,
    /// The node has no `install.py`.
    Absent,
}

/// `<home>/.comfyver/logs/install-<name>.log`: a node's install.py output.
pub fn install_log(home: &Path, name: &str) -> PathBuf {
    state_dir(home)
        .join("logs")
        .join(format!("install-{name}.log"))
}

fn done_marker(home: &Path, script: &InstallScript) -> PathBuf {
    scripts_dir(home).join(format!("{}@{}.done", script.name, script.commit))
}

/// The status each script has now, without running anything.
pub(crate) fn status(home: &Path, script: &InstallScript) -> Result<ScriptStatus, PythonError> {
    check_name(script)?;
    Ok(if !script.dir.join("install.py").is_file() {
        ScriptStatus::Absent
    } else if !script.enabled {
        ScriptStatus::Disabled
    } else if done_marker(home, script).exists() {
        ScriptStatus::Done
    } else {
        ScriptStatus::Run
    })
}

/// Runs each enabled node's `install.py` that has not run for this home and
/// commit, in order: `<venv>/bin/python install.py` with cwd = the node's
/// directory, the venv activated (`VIRTUAL_ENV`, `PATH`) and `env` (the
/// spec's `env`) set. Output goes to [`install_log`]; a done-marker
/// `<home>/.comfyver/install-scripts/<name>@<commit>.done` is written after
/// success. Rebuilding the venv clears the markers, so scripts rerun then.
pub fn run_install_scripts(
    home: &Path,
    scripts: &[InstallScript],
    env: &BTreeMap<String, String>,
) -> Result<Vec<(String, ScriptStatus)>, PythonError> {
    let mut report = Vec::with_capacity(scripts.len());
    for script in scripts {
        let status = status(home, script)?;
        if status == ScriptStatus::Run {
            run_one(home, script, env)?;
            comfyver_fs::write_atomic(
                &done_marker(home, script),
                format!("{}\n", script.commit).as_bytes(),
            )?;
        }
        report.push((script.name.clone(), status));
    }
    Ok(report)
}

fn check_name(script: &InstallScript) -> Result<(), PythonError> {
    let key = format!("{}@{}", script.name, script.commit);
    match comfyver_spec::names::unsafe_component_reason(&key) {
        Some(reason) => Err(PythonError::BadName { name: key, reason }),
        None => Ok(()),
    }
}

fn run_one(
    home: &Path,
    script: &InstallScript,
    env: &BTreeMap<String, String>,
) -> Result<(), PythonError> {
    let log = install_log(home, &script.name);
    let partial = log.with_extension("log.partial");
    let logs_dir = log.parent().unwrap_or(home);
    std::fs::create_dir_all(logs_dir).map_err(|source| comfyver_fs::FsError::CreateDir {
        path: logs_dir.to_path_buf(),
        source,
    })?;
    let write_err = |source| comfyver_fs::FsError::Write {
        path: partial.clone(),
        source,
    };
    let out = File::create(&partial).map_err(write_err)?;
    let err = out.try_clone().map_err(write_err)?;
    let venv = venv_dir(home);
    let bin = venv.join("bin");
    let path = match std::env::var_os("PATH") {
        Some(p) => {
            let mut dirs = vec![bin.clone()];
            dirs.extend(std::env::split_paths(&p));
            std::env::join_paths(dirs).unwrap_or_else(|_| bin.clone().into_os_string())
        }
        None => bin.clone().into_os_string(),
    };
    let python = venv_python(home);
    let status = hermetic(&python)
        .arg("install.py")
        .current_dir(&script.dir)
        .env("VIRTUAL_ENV", &venv)
        .env("PATH", path)
        .envs(env)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .map_err(|source| PythonError::Spawn {
            program: python.clone(),
            source,
        })?;
    std::fs::rename(&partial, &log).map_err(|source| comfyver_fs::FsError::Publish {
        from: partial.clone(),
        to: log.clone(),
        source,
    })?;
    if status.success() {
        return Ok(());
    }
    Err(PythonError::InstallScript {
        name: script.name.clone(),
        status: status.to_string(),
        tail: tail(&log, 20),
        log,
    })
}

/// The last `n` lines of a file (at most its last 64 KiB are read).
fn tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut bytes = Vec::new();
        let _ = f.read_to_end(&mut bytes);
        text = String::from_utf8_lossy(&bytes).into_owned();
    }
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    redact_text(&lines[start..].join("\n"))
}
