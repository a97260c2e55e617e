//! What a build would do, without running anything that writes (`--dry-run`).

use std::path::{Path, PathBuf};

use comfyver_spec::lock::LockedPython;
use serde::Serialize;

use super::error::PythonError;
use super::install_script::{InstallScript, ScriptStatus, status};
use super::requirements::{Requirement, Requirements};
use super::tool::Installer;
use super::venv::{self, venv_dir};

/// The state of a home's venv relative to the wanted environment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EnvState {
    /// Complete for these inputs (and the lock's packages): nothing to do.
    UpToDate,
    /// No venv yet.
    Missing,
    /// A venv without its completion marker (an interrupted build): rebuilt.
    Incomplete,
    /// Complete, but for other inputs or packages: rebuilt.
    Stale,
}

/// What the build would install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "lines")]
pub enum PlannedInstall {
    /// Nothing: the venv is up to date.
    Nothing,
    /// Exactly these locked packages (no resolution).
    Locked(Vec<String>),
    /// One resolution of these requirements.
    Resolve(Vec<Requirement>),
}

/// The Python part of a realize plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PythonPlan {
    /// `<home>/.venv`.
    pub venv: PathBuf,
    /// `uv` or `pip`.
    pub installer: &'static str,
    /// The venv's state.
    pub state: EnvState,
    /// The inputs digest the environment is built for.
    pub inputs_digest: String,
    /// What would be installed.
    pub install: PlannedInstall,
    /// Constraints applied to a resolution.
    pub constraints: Vec<Requirement>,
    /// Each node's install.py: `Run` means it would run.
    pub install_scripts: Vec<(String, ScriptStatus)>,
    /// Notes for the user (e.g. dynamic pyproject dependencies).
    pub warnings: Vec<String>,
}

/// Describes what [`super::build_env`] and [`super::run_install_scripts`]
/// would do for this home; reads only.
pub fn plan(
    home: &Path,
    reqs: &Requirements,
    locked: Option<&LockedPython>,
    installer: &Installer,
    scripts: &[InstallScript],
) -> Result<PythonPlan, PythonError> {
    let inputs_digest = reqs.inputs_digest().to_string();
    let replay = locked.filter(|l| l.inputs_digest == inputs_digest);
    let state = match venv::completed(home) {
        Some(done)
            if done.inputs_digest == inputs_digest
                && replay.is_none_or(|l| l.packages == done.packages) =>
        {
            EnvState::UpToDate
        }
        Some(_) => EnvState::Stale,
        None if venv_dir(home).exists() => EnvState::Incomplete,
        None => EnvState::Missing,
    };
    let install = match (state, replay) {
        (EnvState::UpToDate, _) => PlannedInstall::Nothing,
        (_, Some(l)) => PlannedInstall::Locked(l.packages.clone()),
        (_, None) => PlannedInstall::Resolve(reqs.requirements.clone()),
    };
    let mut install_scripts = Vec::with_capacity(scripts.len());
    for s in scripts {
        let mut st = status(home, s)?;
        // A rebuilt venv clears the done-markers.
        if st == ScriptStatus::Done && state != EnvState::UpToDate {
            st = ScriptStatus::Run;
        }
        install_scripts.push((s.name.clone(), st));
    }
    Ok(PythonPlan {
        venv: venv_dir(home),
        installer: installer.kind(),
        state,
        inputs_digest,
        install,
        constraints: reqs.constraints.clone(),
        install_scripts,
        warnings: reqs.warnings.clone(),
    })
}
