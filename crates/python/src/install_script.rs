//! Running custom nodes' `install.py` once per version and node commit, the
//! way ComfyUI-Manager runs it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use comfyver_fs::{CacheLayout, ConfineMode, ConfineStatus, LandlockSupport};
use comfyver_spec::UrlRewrites;
use serde::Serialize;

use super::error::{PythonError, redact_text};
use super::requirements::Requirements;
use super::script_area::{self, Scratch};
use super::tool::{Installer, describe, hermetic, with_git_rewrites};
use super::venv::{scripts_dir, state_dir, venv_dir, venv_python};
use super::{install, pip_shim};

/// Variables holding credentials, never passed to an install script unless
/// the spec's `env` sets them itself.
const SECRETS: &[&str] = &[
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "CIVITAI_TOKEN",
    "CIVITAI_API_KEY",
    "RUNPOD_API_KEY",
    "RUNPOD_AI_API_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "GITHUB_TOKEN",
    "GH_TOKEN",
];

/// Words in the output of a script that exited 0 which mean it failed anyway
/// (Manager-style scripts print the error and carry on).
const FAILURE_WORDS: &[&str] = &[
    "Traceback (most recent call last)",
    "ERROR",
    "Error:",
    "FAILED",
    "failed",
];

/// Everything an install script runs with, besides its own directory.
#[derive(Debug, Clone, Copy)]
pub struct ScriptContext<'a> {
    /// The spec's `env` (applied last: it may also pass a secret on purpose).
    pub env: &'a BTreeMap<String, String>,
    /// The model store (`COMFYUI_MODEL_PATH`); `None`: `<home>/models`.
    pub models_dir: Option<&'a Path>,
    /// The cache (uv's cache for the pip shim).
    pub layout: &'a CacheLayout,
    /// The installer that built the venv: with uv, `python -m pip` is a shim
    /// that installs through uv into the same venv.
    pub installer: &'a Installer,
    /// The version's requirement inputs: package sources and time limits.
    pub reqs: &'a Requirements,
    /// URL rewrite rules, given to the script's git as `url.<base>.insteadOf`
    /// configuration (a pack cloning a public URL reaches the mirror).
    pub rewrites: &'a UrlRewrites,
    /// Whether scripts run confined by Landlock (see `docs/run.md`, "What a
    /// job can touch").
    pub confine: ConfineMode,
    /// What the kernel offers, instead of asking it (`None`: probe it, see
    /// [`LandlockSupport::probe`]).
    pub landlock: Option<&'a LandlockSupport>,
    /// What scripts may read beside the home: the core checkout and the node
    /// checkouts the home links (a confined script is refused everything
    /// else outside its area).
    pub readable: &'a [PathBuf],
}

/// What [`run_install_scripts`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptsRun {
    /// Each node's script status, in order.
    pub statuses: Vec<(String, ScriptStatus)>,
    /// Scripts that exited 0 but printed a failure, with their log path.
    pub warnings: Vec<String>,
    /// Whether the scripts that ran were confined, and why; `None` when none
    /// ran.
    pub confined: Option<ConfineStatus>,
}

impl ScriptsRun {
    /// Whether any script ran (the venv may have changed: freeze again).
    pub fn any_ran(&self) -> bool {
        self.statuses.iter().any(|(_, s)| *s == ScriptStatus::Run)
    }
}

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
pub(crate) fn install_log(home: &Path, name: &str) -> PathBuf {
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
/// commit, in order, as ComfyUI-Manager does: `<venv>/bin/python install.py`
/// with cwd = the node's directory (the caller gives a per-home copy, never a
/// shared checkout), `COMFYUI_PATH` and `COMFYUI_FOLDERS_BASE_PATH` = the
/// home, `COMFYUI_MODEL_PATH` = the model store, `PYTHONPATH` = the home (so
/// `import folder_paths` works as inside ComfyUI), the venv activated
/// (`VIRTUAL_ENV`, `PATH`), `python -m pip` available, credentials removed,
/// the URL rewrites as git configuration (`GIT_CONFIG_COUNT`, …), a private
/// `TMPDIR` (removed afterwards) and the spec's `env` set. Confined (as
/// `ctx.confine` asks and the kernel allows), a script writes only its
/// directory, the venv, uv's cache and its scratch directory, which is also
/// its `HOME` and `XDG_CACHE_HOME`; a path it is refused fails it with
/// [`PythonError::ScriptRefused`]. Each runs in its own process group for at most
/// the install-script limit. Output goes to `<home>/.comfyver/logs/install-<name>.log`; a done-marker
/// `<home>/.comfyver/install-scripts/<name>@<commit>.done` is written after
/// success. Rebuilding the venv clears the markers, so scripts rerun then.
pub fn run_install_scripts(
    home: &Path,
    scripts: &[InstallScript],
    ctx: &ScriptContext<'_>,
) -> Result<ScriptsRun, PythonError> {
    let mut run = ScriptsRun {
        statuses: Vec::with_capacity(scripts.len()),
        warnings: Vec::new(),
        confined: None,
    };
    let mut support = None;
    for script in scripts {
        let status = status(home, script)?;
        if status == ScriptStatus::Run {
            if let Installer::Uv { uv } = ctx.installer {
                let args = install::source_args(ctx.reqs, ctx.installer);
                pip_shim::install(home, uv, &ctx.layout.uv_cache(), &args)?;
            }
            let support = support.get_or_insert_with(|| {
                ctx.landlock.cloned().unwrap_or_else(LandlockSupport::probe)
            });
            let (warning, confined) = run_one(home, script, ctx, support)?;
            run.warnings.extend(warning);
            run.confined = Some(confined);
            comfyver_fs::write_atomic(
                &done_marker(home, script),
                format!("{}\n", script.commit).as_bytes(),
            )?;
        }
        run.statuses.push((script.name.clone(), status));
    }
    Ok(run)
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
    ctx: &ScriptContext<'_>,
    support: &LandlockSupport,
) -> Result<(Option<String>, ConfineStatus), PythonError> {
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
    let models = ctx
        .models_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| home.join("models"));
    let mut cmd = hermetic(&python);
    for name in SECRETS {
        cmd.env_remove(name);
    }
    with_git_rewrites(&mut cmd, ctx.rewrites);
    cmd.arg("install.py")
        .current_dir(&script.dir)
        .env("VIRTUAL_ENV", &venv)
        .env("PATH", path)
        .env("COMFYUI_PATH", home)
        .env("COMFYUI_FOLDERS_BASE_PATH", home)
        .env("COMFYUI_MODEL_PATH", &models)
        .env("PYTHONPATH", home)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(out)
        .stderr(err);
    let scratch = Scratch::new(home)?;
    let area = script_area::plan(home, script, ctx, &scratch)?;
    let confined = area
        .apply(&mut cmd, ctx.confine, support)
        .map_err(|e| match e {
            comfyver_fs::FsError::ConfineUnavailable { reason } => PythonError::ScriptUnconfined {
                name: script.name.clone(),
                reason,
            },
            other => other.into(),
        })?;
    scratch.apply(&mut cmd, confined.confined);
    // The spec's `env` last: it may set any of these on purpose.
    cmd.envs(ctx.env);
    let limit = ctx.reqs.limits.script_limit();
    let done = comfyver_fs::child::run_bounded(&mut cmd, limit.duration).map_err(|source| {
        PythonError::Spawn {
            program: python.clone(),
            source,
        }
    })?;
    std::fs::rename(&partial, &log).map_err(|source| comfyver_fs::FsError::Publish {
        from: partial.clone(),
        to: log.clone(),
        source,
    })?;
    let Some(status) = done.status else {
        return Err(PythonError::TimedOut {
            what: format!("install.py of custom node `{}`", script.name),
            command: format!("{} (log: {})", describe(&cmd), log.display()),
            seconds: limit.duration.as_secs(),
            variable: limit.variable,
        });
    };
    drop(scratch);
    if status.success() {
        let text = tail(&log, 200);
        let warning = FAILURE_WORDS.iter().any(|w| text.contains(w)).then(|| {
            format!(
                "install.py of custom node `{}` exited 0 but its output reports a failure; \
                 check {} (last lines: {})",
                script.name,
                log.display(),
                tail(&log, 3).replace('\n', " | ")
            )
        });
        return Ok((warning, confined));
    }
    if confined.confined
        && let Some(path) = script_area::refused_path(&tail(&log, 200), &area)
    {
        return Err(PythonError::ScriptRefused {
            name: script.name.clone(),
            status: status.to_string(),
            tail: tail(&log, 20),
            log,
            at: path.map_or_else(String::new, |p| format!(" ({})", p.display())),
        });
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
