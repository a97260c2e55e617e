//! Running the `comfyver` binary hermetically: the test's own cache and
//! versions directories, and none of the caller's comfyver settings.

use std::path::Path;
use std::process::{Command, Stdio};

/// Environment variables comfyver reads that a test must never inherit.
pub const AMBIENT_ENV: &[&str] = &[
    "COMFY_CACHE",
    "COMFY_VERSIONS_DIR",
    "COMFY_HOME",
    "CUSTOM_NODES_CACHE",
    "MODELS_DIR",
    "COMFYVER_OFFLINE",
    "COMFYVER_JOBS",
    "COMFYVER_WHEELS_DIR",
    "COMFYVER_URL_REWRITES",
    "COMFYVER_TEST_PAUSE_AT",
    "HF_TOKEN",
    "HF_ENDPOINT",
    "CIVITAI_TOKEN",
    "UV",
    "VIRTUAL_ENV",
    "COMFYVER_VERSION_ID",
    "COMFYVER_LISTEN",
    "REFRESH_WORKER",
    "RUNPOD_WEBHOOK_GET_JOB",
    "RUNPOD_WEBHOOK_POST_OUTPUT",
    "RUNPOD_WEBHOOK_PING",
    "RUNPOD_PING_INTERVAL",
    "RUNPOD_AI_API_KEY",
    "RUNPOD_POD_ID",
];

/// `bin --cache-dir <cache> --versions-dir <versions>` with [`AMBIENT_ENV`]
/// removed, no stdin, no colors and no git prompts; add the arguments.
pub fn comfyver_command(bin: &Path, cache: &Path, versions: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("--cache-dir")
        .arg(cache)
        .arg("--versions-dir")
        .arg(versions)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("NO_COLOR", "1");
    for var in AMBIENT_ENV {
        c.env_remove(var);
    }
    c
}
