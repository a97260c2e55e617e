//! `python -m pip` in a uv-built venv: a small `pip` module that installs
//! through uv into the same venv, so install scripts that call pip work.
//!
//! uv venvs carry no pip, and seeding a real one needs a pip wheel from an
//! index (not there offline). The shim has no `.dist-info`, so it is not part
//! of the recorded package set, and `uv pip sync` leaves it alone.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::error::PythonError;
use super::venv::venv_dir;

/// Writes (or refreshes) the shim into the venv's `site-packages`, configured
/// with the uv binary, its cache and the version's package sources.
pub(crate) fn install(
    home: &Path,
    uv: &Path,
    uv_cache: &Path,
    source_args: &[OsString],
) -> Result<(), PythonError> {
    let Some(site) = site_packages(&venv_dir(home)) else {
        return Ok(());
    };
    let dir = site.join("pip");
    if dir.join("__init__.py").exists() && !dir.join(CONFIG).exists() {
        // A real pip (pip-built venv, or a script installed one): keep it.
        return Ok(());
    }
    std::fs::create_dir_all(&dir).map_err(|source| comfyver_fs::FsError::CreateDir {
        path: dir.clone(),
        source,
    })?;
    let config = serde_json::json!({
        "uv": uv,
        "uv_cache": uv_cache,
        "source_args": without_credentials(source_args),
    });
    comfyver_fs::write_atomic(&dir.join(CONFIG), config.to_string().as_bytes())?;
    comfyver_fs::write_atomic(&dir.join("__init__.py"), SHIM.as_bytes())?;
    comfyver_fs::write_atomic(
        &dir.join("__main__.py"),
        b"import sys\nfrom pip import main\nsys.exit(main())\n",
    )?;
    Ok(())
}

const CONFIG: &str = "comfyver-uv.json";

/// The source arguments minus every index or find-links URL that carries a
/// credential: the shim's configuration is a file in the venv, and secrets
/// are never written to disk (a script then cannot install from that index).
fn without_credentials(args: &[OsString]) -> Vec<String> {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut out = Vec::with_capacity(args.len());
    let mut i = 0;
    while i < args.len() {
        let takes_value =
            args[i].starts_with("--") && !matches!(args[i].as_str(), "--offline" | "--no-index");
        match args.get(i + 1) {
            Some(value) if takes_value => {
                if comfyver_spec::redact(value) == *value {
                    out.push(args[i].clone());
                    out.push(value.clone());
                }
                i += 2;
            }
            _ => {
                out.push(args[i].clone());
                i += 1;
            }
        }
    }
    out
}

/// `<venv>/lib/python3.X/site-packages`, when there is exactly one.
fn site_packages(venv: &Path) -> Option<PathBuf> {
    let lib = venv.join("lib");
    let mut found = std::fs::read_dir(&lib)
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path().join("site-packages"))
        .filter(|p| p.is_dir());
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

const SHIM: &str = r#""""comfyver's pip: installs through uv into this venv (see comfyver's docs)."""
import json, os, subprocess, sys

__version__ = "0+comfyver.uv"
_CFG = json.load(open(os.path.join(os.path.dirname(__file__), "comfyver-uv.json")))
# pip options uv does not take (or that mean nothing in a venv), with whether they take a value.
_DROP = {"--user": False, "--no-cache-dir": False, "--disable-pip-version-check": False,
         "--no-warn-script-location": False, "--prefer-binary": False, "--isolated": False,
         "--no-input": False, "--progress-bar": True, "--trusted-host": True,
         "--timeout": True, "--root-user-action": True, "--retries": True}
_COMMANDS = ("install", "uninstall", "list", "freeze", "show")


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    kept, i = [], 0
    while i < len(args):
        a = args[i]
        name = a.split("=", 1)[0]
        if name in _DROP:
            i += 2 if (_DROP[name] and "=" not in a) else 1
            continue
        kept.append(a)
        i += 1
    if kept in (["--version"], ["-V"]):
        print("pip %s (comfyver shim over uv)" % __version__)
        return 0
    if not kept or kept[0] not in _COMMANDS:
        sys.stderr.write("comfyver's pip shim supports only: %s (got %r)\n" % (", ".join(_COMMANDS), kept[:1]))
        return 2
    cmd, rest = kept[0], kept[1:]
    if cmd == "uninstall":
        rest = [a for a in rest if a not in ("-y", "--yes")]
    line = [_CFG["uv"], "pip", cmd, "--no-config", "--python", sys.executable]
    if cmd == "install":
        line += _CFG["source_args"]
    env = dict(os.environ, UV_CACHE_DIR=_CFG["uv_cache"])
    return subprocess.call(line + rest, env=env)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_with_credentials_are_left_out() {
        let args: Vec<OsString> = [
            "--offline",
            "--index-url",
            "https://user:s3cret@idx.example/simple",
            "--extra-index-url",
            "https://idx.example/other",
            "--find-links",
            "/srv/wheels",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        assert_eq!(
            without_credentials(&args),
            [
                "--offline",
                "--extra-index-url",
                "https://idx.example/other",
                "--find-links",
                "/srv/wheels"
            ]
        );
    }
}
