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
    "GCS_BUCKET",
    "GCS_PREFIX",
    "GCS_PUBLIC",
    "GCS_RETRIES",
    "GCS_RETRY_BASE_SLEEP",
    "GCS_SIGNED_URL_TTL",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "STORAGE_EMULATOR_HOST",
    "BUCKET_ENDPOINT_URL",
    "BUCKET_ACCESS_KEY_ID",
    "BUCKET_SECRET_ACCESS_KEY",
    "BUCKET_NAME",
    "BUCKET_REGION",
    "BUCKET_PREFIX",
    "BUCKET_RETRIES",
    "BUCKET_RETRY_BASE_SLEEP",
    "BUCKET_SIGNED_URL_TTL",
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
