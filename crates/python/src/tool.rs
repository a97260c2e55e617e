//! Which installer builds the environment, and running it hermetically.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::AtomicBool;

use comfyver_spec::UrlRewrites;

use super::error::{PythonError, ToolOutput, redact_text};
use super::limits::Limit;

/// The program that creates the venv and installs packages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Installer {
    /// uv: `uv venv` + `uv pip install` (a replay: `uv pip sync`), packages
    /// linked from its cache.
    Uv {
        /// The uv binary.
        uv: PathBuf,
    },
    /// The fallback: `python -m venv` + pip.
    Pip {
        /// The base interpreter the venv is made from.
        python: PathBuf,
    },
}

impl Installer {
    /// uv when `UV` names it or it is on `PATH`, else pip with the base
    /// interpreter for `python_version` (`python3`, `python3.X`, or a path).
    pub fn detect(python_version: Option<&str>) -> Result<Installer, PythonError> {
        Self::detect_in(
            std::env::var_os("PATH").as_deref(),
            std::env::var_os(comfyver_env::UV).as_deref(),
            python_version,
        )
    }

    /// [`Installer::detect`] with an explicit `PATH` and `UV` value.
    pub fn detect_in(
        path: Option<&OsStr>,
        uv_env: Option<&OsStr>,
        python_version: Option<&str>,
    ) -> Result<Installer, PythonError> {
        if let Some(uv) = uv_env.filter(|v| !v.is_empty()) {
            return Ok(Installer::Uv { uv: uv.into() });
        }
        if let Some(uv) = which("uv", path) {
            return Ok(Installer::Uv { uv });
        }
        Self::pip_in(path, python_version)
    }

    /// The pip fallback, with the base interpreter found on `path`.
    pub fn pip_in(
        path: Option<&OsStr>,
        python_version: Option<&str>,
    ) -> Result<Installer, PythonError> {
        let name = match python_version {
            Some(v) if v.contains('/') => {
                return Ok(Installer::Pip {
                    python: PathBuf::from(v),
                });
            }
            Some(v) => format!("python{v}"),
            None => "python3".to_string(),
        };
        match which(&name, path) {
            Some(python) => Ok(Installer::Pip { python }),
            None => Err(PythonError::NoInterpreter { name }),
        }
    }

    /// `uv` or `pip`, for messages and plans.
    pub fn kind(&self) -> &'static str {
        match self {
            Installer::Uv { .. } => "uv",
            Installer::Pip { .. } => "pip",
        }
    }
}

fn which(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    let path = path?;
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `UV_*`/`PIP_*` variables kept: transport tuning and where uv keeps its
/// own Pythons, none of which changes what is resolved.
const KEPT: &[&str] = &[
    "UV_HTTP_TIMEOUT",
    "UV_HTTP_RETRIES",
    "UV_CONCURRENT_DOWNLOADS",
    "UV_CONCURRENT_BUILDS",
    "UV_CONCURRENT_INSTALLS",
    "UV_NATIVE_TLS",
    "UV_PYTHON_INSTALL_DIR",
    "UV_PYTHON_INSTALL_MIRROR",
    "PIP_CERT",
    "PIP_CLIENT_CERT",
    "PIP_DEFAULT_TIMEOUT",
    "PIP_RETRIES",
];

/// Variables that would point a child at another environment or code.
const SCRUBBED: &[&str] = &[
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONUSERBASE",
    "PYTHONEXECUTABLE",
    "__PYVENV_LAUNCHER__",
];

/// A command with an environment that cannot change resolution: no
/// `VIRTUAL_ENV`/`PYTHONPATH`, no `UV_*`/`PIP_*` except transport tuning.
pub(crate) fn hermetic(program: &Path) -> Command {
    let mut c = Command::new(program);
    for name in SCRUBBED {
        c.env_remove(name);
    }
    for (key, _) in std::env::vars_os() {
        let k = key.to_string_lossy();
        if (k.starts_with("UV_") || k.starts_with("PIP_")) && !KEPT.contains(&k.as_ref()) {
            c.env_remove(&key);
        }
    }
    c.env("PIP_CONFIG_FILE", "/dev/null");
    c
}

/// Gives `cmd` the URL rewrite rules as git configuration in its
/// environment (numbered after an inherited `GIT_CONFIG_COUNT`), so the git
/// it runs (uv and pip for `git+` requirements, install scripts) fetches
/// through the same mirrors as comfyver. The values may hold credentials;
/// [`describe`] shows arguments only, never the environment.
pub(crate) fn with_git_rewrites(cmd: &mut Command, rewrites: &UrlRewrites) {
    let inherited = std::env::var("GIT_CONFIG_COUNT").ok();
    cmd.envs(rewrites.git_config_env(inherited.as_deref()));
}

/// Runs `cmd` in its own process group (killed if comfyver dies, stopped on
/// SIGINT/SIGTERM), capturing its output, for at most `limit`. A non-zero
/// exit is a [`PythonError::Tool`], the limit a [`PythonError::TimedOut`].
pub(crate) fn run(cmd: &mut Command, what: &str, limit: Limit) -> Result<Output, PythonError> {
    run_unless(cmd, what, limit, &AtomicBool::new(false))
}

/// [`run`], the child killed as soon as `stop` is set (an error of kind
/// `Interrupted` in [`PythonError::Spawn`]).
pub(crate) fn run_unless(
    cmd: &mut Command,
    what: &str,
    limit: Limit,
    stop: &AtomicBool,
) -> Result<Output, PythonError> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let done =
        comfyver_fs::child::run_bounded_unless(cmd, limit.duration, stop).map_err(|source| {
            PythonError::Spawn {
                program: cmd.get_program().into(),
                source,
            }
        })?;
    let Some(status) = done.status else {
        return Err(PythonError::TimedOut {
            what: what.to_string(),
            command: describe(cmd),
            seconds: limit.duration.as_secs(),
            variable: limit.variable,
        });
    };
    let out = Output {
        status,
        stdout: done.stdout,
        stderr: done.stderr,
    };
    if out.status.success() {
        Ok(out)
    } else {
        Err(PythonError::Tool {
            what: what.to_string(),
            command: describe(cmd),
            status: out.status.to_string(),
            output: output_of(&out),
        })
    }
}

/// A command line for messages, with tokens redacted.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts: Vec<OsString> = vec![cmd.get_program().to_os_string()];
    parts.extend(cmd.get_args().map(OsStr::to_os_string));
    let text: Vec<String> = parts
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    redact_text(&text.join(" "))
}

/// A process's stderr then stdout, redacted.
pub(crate) fn output_of(out: &Output) -> ToolOutput {
    let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !stdout.trim().is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&stdout);
    }
    ToolOutput(redact_text(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uv_env_wins_then_path_then_pip() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path();
        let python = bin.join("python3");
        std::fs::write(&python, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&python, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = bin.as_os_str();
        assert_eq!(
            Installer::detect_in(Some(path), None, None).unwrap(),
            Installer::Pip {
                python: python.clone()
            }
        );
        assert_eq!(
            Installer::detect_in(Some(path), Some(OsStr::new("/opt/uv")), None).unwrap(),
            Installer::Uv {
                uv: "/opt/uv".into()
            }
        );
        let uv = bin.join("uv");
        std::fs::copy(&python, &uv).unwrap();
        assert_eq!(
            Installer::detect_in(Some(path), None, None).unwrap(),
            Installer::Uv { uv }
        );
        let err = Installer::pip_in(Some(path), Some("3.99")).unwrap_err();
        assert!(err.to_string().contains("python3.99"), "{err}");
    }
}
