//! What an install script may touch: the [`Confinement`] of one
//! `install.py`, its private scratch directory, and the hint for a path the
//! kernel refused it.

use std::path::{Path, PathBuf};
use std::process::Command;

use comfyver_fs::{Confinement, TempDir};

use super::error::PythonError;
use super::install_script::{InstallScript, ScriptContext};
use super::tool::Installer;
use super::venv::{state_dir, venv_dir, venv_python};

/// The name the scratch directories of scripts are made beside, in
/// `<home>/.comfyver/` (as `.tmp-script-scratch.<host>-<pid>-<random>`).
const SCRATCH: &str = "script-scratch";

/// A script's private scratch directory: `tmp/` is its `TMPDIR`; confined,
/// `home/` is its `HOME` and `cache/` its `XDG_CACHE_HOME` (so git, pip and
/// friends find no configuration of the user and keep their caches inside
/// the script's area). Removed when dropped.
pub(crate) struct Scratch {
    dir: TempDir,
}

impl Scratch {
    /// Makes the scratch directory of one script run in `home` (and removes
    /// those of runs whose writer is provably gone).
    pub(crate) fn new(home: &Path) -> Result<Scratch, PythonError> {
        let state = state_dir(home);
        comfyver_fs::remove_stale_temps(&state, Some(SCRATCH))?;
        let dir = TempDir::beside(&state.join(SCRATCH))?;
        for sub in ["tmp", "home", "cache"] {
            let path = dir.path().join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|source| comfyver_fs::FsError::CreateDir { path, source })?;
        }
        Ok(Scratch { dir })
    }

    /// Points `cmd`'s temporary files (and, when `confined`, its home and
    /// caches) into the scratch directory.
    pub(crate) fn apply(&self, cmd: &mut Command, confined: bool) {
        let dir = self.dir.path();
        cmd.env("TMPDIR", dir.join("tmp"));
        if confined {
            cmd.env("HOME", dir.join("home"))
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .env_remove("XDG_CONFIG_HOME")
                .env_remove("XDG_DATA_HOME")
                .env_remove("XDG_STATE_HOME");
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The paths of `script`'s `install.py` (see `docs/run.md`, "What a job can
/// touch", install scripts):
///
/// - read: the system paths, the home, the core and node checkouts it links
///   (`ctx.readable`), the model store, the venv and the Python it was built
///   from, uv's install root, the local package sources (wheel
///   directories) and the local targets of the URL rewrites (mirrors);
/// - read and write: the pack's per-home copy (`script.dir`), the venv, uv's
///   cache (the pip shim installs through it), the home's bytecode cache
///   (`PYTHONPYCACHEPREFIX` in the spec's environment) and the scratch
///   directory.
pub(crate) fn plan(
    home: &Path,
    script: &InstallScript,
    ctx: &ScriptContext<'_>,
    scratch: &Scratch,
) -> Result<Confinement, PythonError> {
    let mut c = Confinement::new();
    c.read(home).python(&venv_python(home));
    for path in ctx.readable {
        c.read(path);
    }
    c.read(ctx.models_dir.unwrap_or(&home.join("models")));
    if let Installer::Uv { uv } = ctx.installer {
        // Its install root: uv may be a launcher (a pyenv shim) that runs
        // what lies beside it.
        let real = std::fs::canonicalize(uv).unwrap_or_else(|_| uv.clone());
        c.read(real.parent().and_then(Path::parent).unwrap_or(&real));
        let cache = ctx.layout.uv_cache();
        std::fs::create_dir_all(&cache).map_err(|source| comfyver_fs::FsError::CreateDir {
            path: cache.clone(),
            source,
        })?;
        c.write(cache);
    }
    for source in local_sources(ctx)
        .into_iter()
        .chain(ctx.rewrites.local_targets())
    {
        c.read(source);
    }
    c.write(&script.dir)
        .write(venv_dir(home))
        .write(scratch.path());
    if let Some(prefix) = ctx.env.get("PYTHONPYCACHEPREFIX") {
        c.write(prefix);
    }
    Ok(c)
}

/// The package sources on this machine (the wheel directory, `file://` or
/// absolute find-links and indexes), which the pip shim's uv reads.
fn local_sources(ctx: &ScriptContext<'_>) -> Vec<PathBuf> {
    let reqs = ctx.reqs;
    let urls = reqs
        .find_links
        .iter()
        .chain(reqs.index_url.iter())
        .chain(reqs.extra_index_urls.iter());
    let mut out: Vec<PathBuf> = reqs.wheels_dir.iter().cloned().collect();
    out.extend(urls.filter_map(|u| {
        let path = u.strip_prefix("file://").unwrap_or(u);
        path.starts_with('/').then(|| PathBuf::from(path))
    }));
    out
}

/// The path a confined script was refused, when its output says so: the
/// last `'...'`-quoted absolute path of a "Permission denied" line (Python's
/// `[Errno 13] Permission denied: '/x'`, git's `could not create ... '/x'`),
/// `Some(None)` for a refusal without a path, `None` for no refusal or a
/// refused path inside the script's writable area (file modes, not
/// Landlock).
pub(crate) fn refused_path(output: &str, confinement: &Confinement) -> Option<Option<PathBuf>> {
    let refusals: Vec<&str> = output
        .lines()
        .filter(|l| {
            l.contains("Permission denied")
                || l.contains("[Errno 13]")
                || l.contains("PermissionError")
        })
        .collect();
    if refusals.is_empty() {
        return None;
    }
    let path = refusals
        .iter()
        .rev()
        .find_map(|l| Confinement::quoted_path(l));
    match path {
        Some(p) if confinement.allows_write(&p) => None,
        p => Some(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_last_quoted_path_outside_the_area() {
        let area = tempfile::tempdir().unwrap();
        let mut c = Confinement::new();
        c.write(area.path());
        let out = "Traceback (most recent call last):\n  File \"install.py\", line 2\n\
                   PermissionError: [Errno 13] Permission denied: '/srv/elsewhere/x.txt'\n";
        assert_eq!(
            refused_path(out, &c),
            Some(Some(PathBuf::from("/srv/elsewhere/x.txt")))
        );
        let inside = format!(
            "PermissionError: [Errno 13] Permission denied: '{}'",
            area.path().join("ro.txt").display()
        );
        assert_eq!(refused_path(&inside, &c), None, "file modes, not Landlock");
        assert_eq!(
            refused_path("fatal: Permission denied", &c),
            Some(None),
            "a refusal without a path"
        );
        assert_eq!(refused_path("ModuleNotFoundError: no module x", &c), None);
    }
}
