//! Running the `comfyver` binary hermetically: the test's own cache and
//! versions directories, and none of the caller's comfyver settings.

use std::path::Path;
use std::process::{Command, Stdio};

/// Variables comfyver does not read itself but that change what its
/// children (uv, pip, Python) do, so a test must not inherit them either.
pub const CHILD_ENV: &[&str] = &["VIRTUAL_ENV", "PYTHONPATH", "UV_INDEX_URL", "PIP_INDEX_URL"];

/// `bin --cache-dir <cache> --versions-dir <versions>` with every variable
/// of comfyver's registry (`comfyver_env::ALL`) and [`CHILD_ENV`] removed, no stdin, no colors and no git prompts; add the arguments.
pub fn comfyver_command(bin: &Path, cache: &Path, versions: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("--cache-dir")
        .arg(cache)
        .arg("--versions-dir")
        .arg(versions)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("NO_COLOR", "1");
    for var in comfyver_env::ALL
        .iter()
        .map(|v| v.name)
        .chain(CHILD_ENV.iter().copied())
    {
        c.env_remove(var);
    }
    c
}

/// Removes from `cmd`'s environment every variable of comfyver's registry
/// (`comfyver_env::ALL`) and [`CHILD_ENV`].
pub fn scrub(cmd: &mut Command) {
    for var in comfyver_env::ALL
        .iter()
        .map(|v| v.name)
        .chain(CHILD_ENV.iter().copied())
    {
        cmd.env_remove(var);
    }
}
