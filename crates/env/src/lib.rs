//! The environment variables comfyver reads, each named once, with its
//! meaning.
//!
//! Libraries read their settings through these constants, the CLI's clap
//! attributes name them (`#[arg(env = comfyver_env::COMFY_CACHE)]`), and the
//! test kit removes every one of [`ALL`] from the environment of the binary it
//! runs, so a developer's own settings never leak into a test. A variable
//! comfyver reads that is not listed here is a bug.

/// One variable: its name and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Var {
    /// The variable's name.
    pub name: &'static str,
    /// What it sets.
    pub doc: &'static str,
}

macro_rules! registry {
    ($($(#[doc = $doc:literal])+ $name:ident,)+) => {
        $(
            $(#[doc = $doc])+
            pub const $name: &str = stringify!($name);
        )+
        /// Every variable comfyver reads.
        pub const ALL: &[Var] = &[$(Var { name: stringify!($name), doc: concat!($($doc),+) }),+];
    };
}

registry! {
    /// Directory holding the version specs (`<id>.json`); default `./versions`.
    COMFY_VERSIONS_DIR,
    /// The cache root; default `/runpod-volume/.comfy-cache` when
    /// `/runpod-volume` exists, else `~/.comfy-cache`.
    COMFY_CACHE,
    /// The shared model store; default `<cache>/models`.
    MODELS_DIR,
    /// The node checkout cache; default `<cache>/custom_nodes`.
    CUSTOM_NODES_CACHE,
    /// The home of the one version a command works on.
    COMFY_HOME,
    /// `1`/`true`: use no network, only the lock, mirrors and stores on disk.
    COMFYVER_OFFLINE,
    /// At most this many git fetches, checkouts and downloads at once (default 4).
    COMFYVER_JOBS,
    /// A directory of wheels Python packages are installed from (find-links).
    COMFYVER_WHEELS_DIR,
    /// URL rewrite rules, `PREFIX=REPLACEMENT;...`, applied before any network access.
    COMFYVER_URL_REWRITES,
    /// Seconds a git network call may go without receiving anything (a fetch)
    /// or in all (listing one remote's refs) before it is stopped: a positive
    /// whole number, 120 when unset; 0 or anything else is an error, since
    /// every network call has a limit (`comfyver_git::git_timeout`).
    COMFYVER_GIT_TIMEOUT,
    /// The command ssh:// and scp-like git remotes are reached with, run by
    /// `sh` with the host and the remote command as arguments (as git reads it).
    GIT_SSH_COMMAND,
    /// The program ssh:// and scp-like git remotes are reached with, when
    /// `GIT_SSH_COMMAND` is unset (as git reads it; default `ssh`).
    GIT_SSH,
    /// Seconds one uv or pip run may take (default 3600).
    COMFYVER_PIP_TIMEOUT,
    /// Seconds one node pack's install.py may take (default 1800).
    COMFYVER_INSTALL_SCRIPT_TIMEOUT,
    /// Seconds to wait for another process's cache lock (default 3600).
    COMFYVER_LOCK_TIMEOUT,
    /// Seconds one job may run before its prompt is interrupted (default 3600).
    COMFYVER_JOB_TIMEOUT,
    /// Seconds ComfyUI may take to start (default 600).
    COMFYVER_START_TIMEOUT,
    /// Test-only fault hook: the name of a point where comfyver pauses.
    COMFYVER_TEST_PAUSE_AT,
    /// Test only: `1` makes this process take no file locks, to show that
    /// correctness does not depend on locks crossing machines.
    COMFYVER_TEST_NO_LOCKS,
    /// The most bytes one model download may write when neither the spec's
    /// `size` nor the server gives the length (default 256 GiB).
    COMFYVER_MAX_MODEL_BYTES,
    /// The budget, in GB, of model files that only jobs brought (`input.models`,
    /// URLs in loader inputs); the least recently used are evicted beyond it.
    COMFYVER_JOB_MODELS_MAX_GB,
    /// Hosts (comma-separated) a job's model URLs may reach although they are
    /// loopback, private or link-local addresses (e.g. `127.0.0.1,models.lan`).
    COMFYVER_JOB_MODEL_HOSTS,
    /// Hugging Face token, sent only to the Hugging Face endpoint.
    HF_TOKEN,
    /// The Hugging Face endpoint `hf://` sources resolve against.
    HF_ENDPOINT,
    /// CivitAI token, sent only to CivitAI.
    CIVITAI_TOKEN,
    /// The uv binary to use instead of the one on `PATH`.
    UV,
    /// Comfy.org API key passed to API nodes as `extra_data.api_key_comfy_org`
    /// when a job gives none (`input.comfy_org_api_key`).
    COMFY_ORG_API_KEY,
    /// Test hook: the directory searched for GPU device files instead of `/dev`.
    COMFYVER_GPU_PROBE_PATH,
    /// Whether ComfyUI and install scripts run confined by Landlock: `auto`
    /// (default: when the kernel has it), `required` (refuse to start
    /// without it) or `off`.
    COMFYVER_CONFINE,
    /// Test hook: `none` simulates a kernel without Landlock; a number, that ABI.
    COMFYVER_LANDLOCK_PROBE,
    /// Set (to anything): no colors on stderr.
    NO_COLOR,
    /// The version `serve` runs when a job names none (also the entrypoint's).
    COMFYVER_VERSION_ID,
    /// The local job API's address for `serve` (default `127.0.0.1:8000`).
    COMFYVER_LISTEN,
    /// `1`/`true`: `serve` stops after each job (RunPod's `refresh_worker`).
    REFRESH_WORKER,
    /// The key every local job API endpoint but `/health` requires
    /// (`Authorization: Bearer <key>` or the raw key; never logged).
    COMFYVER_API_KEY,
    /// `1`/`true`: `serve` listens on a non-loopback address without a key.
    COMFYVER_NO_AUTH,
    /// The most jobs the local job API holds queued (default 8); beyond: 429.
    COMFYVER_MAX_QUEUE,
    /// Comma-separated version ids `serve` may run (default: any).
    COMFYVER_VERSIONS,
    /// How many versions' ComfyUIs `serve` keeps alive at once (default 1);
    /// the least recently used idle one is evicted beyond it.
    COMFYVER_WARM,
    /// Below this many MB of free RAM (`MemAvailable`) or GPU memory, `serve`
    /// evicts an idle ComfyUI before starting another (default 4096; 0: no check).
    COMFYVER_WARM_MIN_FREE_MB,
    /// Test hook: a file read instead of `/proc/meminfo` for `MemAvailable`.
    COMFYVER_MEMINFO_PATH,
    /// A workflow file `serve` runs after every ComfyUI start, before any job
    /// is taken (`/ready` answers 503 until it succeeded).
    COMFYVER_WARMUP,
    /// The Standard Webhooks secret (`whsec_<base64>`) `serve` signs webhook
    /// deliveries with (never logged, never in ComfyUI's environment).
    COMFYVER_WEBHOOK_SECRET,
    /// `1`/`true`: `run` and `serve` keep ComfyUI's metadata (the prompt and
    /// the job's `ui_workflow`) in outputs instead of `--disable-metadata`.
    COMFYVER_KEEP_METADATA,
    /// RunPod: the job-take URL; when set, `serve` is a RunPod worker.
    RUNPOD_WEBHOOK_GET_JOB,
    /// RunPod: the job-done URL (`$ID` is the job id).
    RUNPOD_WEBHOOK_POST_OUTPUT,
    /// RunPod: the heartbeat URL.
    RUNPOD_WEBHOOK_PING,
    /// RunPod: milliseconds between heartbeats (whole seconds are used).
    RUNPOD_PING_INTERVAL,
    /// RunPod: the API key sent as `Authorization` (never logged).
    RUNPOD_AI_API_KEY,
    /// RunPod: this pod's id (`$RUNPOD_POD_ID` in the webhook URLs).
    RUNPOD_POD_ID,
    /// The GCS bucket outputs go to; when set, `gcs` is the default sink.
    GCS_BUCKET,
    /// The object name prefix in the GCS bucket (default `comfyver`).
    GCS_PREFIX,
    /// `1`/`true`: GCS outputs get their public URL instead of a signed one.
    GCS_PUBLIC,
    /// Retries of a GCS request after the first attempt (default 5).
    GCS_RETRIES,
    /// Seconds before the first GCS retry, doubled each time (default 0.5).
    GCS_RETRY_BASE_SLEEP,
    /// Seconds a V4 signed GCS URL stays valid (default 604800).
    GCS_SIGNED_URL_TTL,
    /// The service-account key file (JSON) for GCS.
    GOOGLE_APPLICATION_CREDENTIALS,
    /// `host:port` of a GCS emulator: requests go there with no credentials.
    STORAGE_EMULATOR_HOST,
    /// The S3-compatible endpoint outputs go to (worker-comfyui's name).
    BUCKET_ENDPOINT_URL,
    /// The S3 access key id.
    BUCKET_ACCESS_KEY_ID,
    /// The S3 secret access key.
    BUCKET_SECRET_ACCESS_KEY,
    /// The S3 bucket, when the endpoint URL does not name it.
    BUCKET_NAME,
    /// The S3 region (default `us-east-1`).
    BUCKET_REGION,
    /// The object key prefix in the S3 bucket.
    BUCKET_PREFIX,
    /// Retries of an S3 request after the first attempt (default 5).
    BUCKET_RETRIES,
    /// Seconds before the first S3 retry, doubled each time (default 0.5).
    BUCKET_RETRY_BASE_SLEEP,
    /// Seconds a presigned S3 URL stays valid (default 604800).
    BUCKET_SIGNED_URL_TTL,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_is_listed_once_with_a_doc() {
        let mut names: Vec<&str> = ALL.iter().map(|v| v.name).collect();
        names.sort();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before, "a variable is listed twice");
        assert!(ALL.iter().all(|v| !v.doc.trim().is_empty()));
        assert!(names.contains(&COMFYVER_GIT_TIMEOUT));
        assert_eq!(COMFY_CACHE, "COMFY_CACHE");
    }
}
