//! The comfyver worker (`comfyver serve`): one job function behind two front
//! doors, with a ComfyUI [`Session`](comfyver_handler::Session) started once
//! and kept warm between jobs.
//!
//! - [`serve_runpod`]: the RunPod serverless worker protocol (job-take long
//!   poll, job-done, progress, ping heartbeat), configured from the
//!   environment RunPod injects ([`RunpodConfig::from_env`]).
//! - [`serve_local`]: a local job API shaped like RunPod's (`POST /run`,
//!   `POST /runsync`, `GET /status/{id}`, `POST /cancel/{id}`, `GET /health`,
//!   `GET /ready`) on hyper, configured by [`LocalApiOptions`]: a key, a queue
//!   limit, read timeouts and size caps, so it may face a network.
//!
//! Both run jobs one at a time on the calling thread (ComfyUI runs one prompt
//! at a time, and the ComfyUI child must be spawned by a thread that outlives
//! it). A job may name `input.version_id`; the [`EnvProvider`] turns that id
//! into a [`ComfyEnv`] (the CLI resolves and realizes it). The ComfyUIs of up
//! to [`ServeOptions::warm`] versions stay alive (the warm pool, least
//! recently used evicted, guarded by free memory); switching to a warm
//! version costs a job, not a start. The local API also starts a queued
//! job's version in the background while a job runs (look-ahead).
//!
//! The first SIGINT/SIGTERM stops taking jobs; the current job gets
//! [`ServeOptions::grace`] to finish, then it is interrupted and reported as
//! failed. Queued jobs are failed explicitly. ComfyUI is stopped and the
//! function returns `Ok`. A second signal stops everything at once.

mod local_api;
mod metrics;
mod pool;
mod runpod;
mod webhook;
mod worker;

use std::time::Duration;

use comfyver_handler::{ComfyEnv, HandlerError, Job, JobOptions, StartOptions, failed_job_json};
use serde_json::Value;

pub use local_api::{LocalApiOptions, serve_local};
pub use runpod::{RunpodConfig, serve_runpod};

/// An error of the version provider, kept as the source of [`ServeError::Version`].
pub type ProviderError = Box<dyn std::error::Error + Send + Sync>;

/// Turns a version id into the environment its ComfyUI runs in (the CLI
/// resolves and realizes the version; the warm path when it is realized).
/// Called from the job thread and the look-ahead thread.
pub trait EnvProvider: Sync {
    /// The environment of `version_id`, ready to start.
    fn env_for(&self, version_id: &str) -> Result<ComfyEnv, ProviderError>;

    /// `version_id`'s ComfyUI stopped (evicted, exited, the worker stops):
    /// whatever [`EnvProvider::env_for`] holds for it may go.
    fn release(&self, _version_id: &str) {}
}

impl<F> EnvProvider for F
where
    F: Fn(&str) -> Result<ComfyEnv, ProviderError> + Sync,
{
    fn env_for(&self, version_id: &str) -> Result<ComfyEnv, ProviderError> {
        self(version_id)
    }
}

/// How `serve` runs jobs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The version of jobs that name none (started before the first job is taken).
    pub default_version: String,
    /// How ComfyUI is started.
    pub start: StartOptions,
    /// How each job runs (timeout, sink, ...).
    pub job: JobOptions,
    /// After SIGINT/SIGTERM, how long the current job may still run (default 30 s).
    pub grace: Duration,
    /// Refresh the worker after every job (RunPod: `stopPod`, then exit; local:
    /// a fresh ComfyUI for the next job). A job can also ask with `input.refresh_worker`.
    pub refresh_worker: bool,
    /// The versions jobs may name (empty: any). The default version is always
    /// allowed; a job naming another one fails without anything realized.
    pub versions: Vec<String>,
    /// A workflow run after every ComfyUI start, before any job is taken
    /// (`--warmup`). While it fails, the worker is not ready and the jobs of
    /// that version fail with its error.
    pub warmup: Option<Job>,
    /// How many versions' ComfyUIs stay alive at once (`--warm`, at least 1;
    /// default 1: a switch stops the running one).
    pub warm: usize,
    /// Below this much free memory (MB of RAM, or of the GPU), an idle
    /// ComfyUI is evicted before another one starts (`--warm-min-free-mb`;
    /// 0: no check).
    pub warm_min_free_mb: u64,
}

impl ServeOptions {
    /// The default of [`ServeOptions::warm_min_free_mb`]: a ComfyUI on torch
    /// takes 1-2 GB of RAM to start, and the active job's models need room
    /// beside it.
    pub const DEFAULT_WARM_MIN_FREE_MB: u64 = 4096;

    /// Options for `default_version` with every other default.
    pub fn new(default_version: impl Into<String>) -> ServeOptions {
        ServeOptions {
            default_version: default_version.into(),
            start: StartOptions::default(),
            job: JobOptions::default(),
            grace: Duration::from_secs(30),
            refresh_worker: false,
            versions: Vec::new(),
            warmup: None,
            warm: 1,
            warm_min_free_mb: Self::DEFAULT_WARM_MIN_FREE_MB,
        }
    }

    /// Whether jobs may run `version_id` ([`ServeOptions::versions`]).
    pub(crate) fn allows(&self, version_id: &str) -> Result<(), ServeError> {
        if self.versions.is_empty()
            || version_id == self.default_version
            || self.versions.iter().any(|v| v == version_id)
        {
            return Ok(());
        }
        let mut allowed = vec![self.default_version.clone()];
        allowed.extend(
            self.versions
                .iter()
                .filter(|v| **v != self.default_version)
                .cloned(),
        );
        Err(ServeError::VersionNotAllowed {
            version_id: version_id.to_string(),
            allowed: allowed.join(", "),
        })
    }
}

/// What `serve` reports while it runs: one line per event (the CLI prints them).
pub trait ServeLog: Sync {
    /// Something happened (a job was taken, ComfyUI started, ...).
    fn event(&self, line: &str);
}

impl<F> ServeLog for F
where
    F: Fn(&str) + Sync,
{
    fn event(&self, line: &str) {
        self(line)
    }
}

/// Everything that can go wrong in `serve`, for the worker or for one job.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The job's version could not be prepared (unknown, unresolvable, not realizable).
    #[error(
        "version `{version_id}` could not be prepared for this job; check it with `comfyver realize {version_id}`"
    )]
    Version {
        /// The version the job asked for.
        version_id: String,
        /// What the provider said.
        #[source]
        source: ProviderError,
    },
    /// The job's version is prepared but its ComfyUI did not start.
    #[error(
        "ComfyUI of version `{version_id}` did not start; the worker goes on with the next job"
    )]
    Start {
        /// The version.
        version_id: String,
        /// Why.
        #[source]
        source: Box<HandlerError>,
    },
    /// ComfyUI started but the warm-up workflow failed on it.
    #[error(
        "the warm-up workflow failed on ComfyUI of version `{version_id}`; the worker is not ready until a start and its warm-up succeed (fix the --warmup workflow)"
    )]
    Warmup {
        /// The version.
        version_id: String,
        /// How the warm-up job failed.
        #[source]
        source: Box<HandlerError>,
    },
    /// `COMFYVER_WEBHOOK_SECRET` is not a Standard Webhooks secret.
    #[error(
        "COMFYVER_WEBHOOK_SECRET is not a Standard Webhooks secret: it must be `whsec_` followed by base64 (the key)"
    )]
    WebhookSecret,
    /// The job body is not a valid job.
    #[error("bad job: {0}")]
    BadJob(String),
    /// The worker was stopped and the job did not finish within the grace period.
    #[error(
        "the worker was stopped (signal {signal}) and the job did not finish within the {}s grace period; it was interrupted, submit it again",
        grace.as_secs()
    )]
    Stopped {
        /// The signal that stopped the worker.
        signal: i32,
        /// The grace period.
        grace: Duration,
        /// How the interrupted job ended.
        #[source]
        source: Box<HandlerError>,
    },
    /// The job was stopped before it ran (the worker stopped).
    #[error("the worker stopped (signal {signal}) before this job ran; submit it again")]
    NotRun {
        /// The signal that stopped the worker.
        signal: i32,
    },
    /// The local job API could not listen.
    #[error("could not listen on {addr} for the local job API; pick another --listen address")]
    Listen {
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The job names a version this worker does not serve (`--versions`).
    #[error(
        "version `{version_id}` is not served by this worker (it serves {allowed}); send the job to a worker of that version or add it to --versions"
    )]
    VersionNotAllowed {
        /// The version the job asked for.
        version_id: String,
        /// The versions the worker serves, comma-separated.
        allowed: String,
    },
    /// The local job API would be reachable from other machines with no key.
    #[error(
        "the local job API would listen on {addr}, reachable from other machines, without a key; set COMFYVER_API_KEY (or --api-key-file), listen on 127.0.0.1, or pass --no-auth to serve it open on purpose"
    )]
    Unprotected {
        /// The address.
        addr: String,
    },
    /// The RunPod environment is incomplete or malformed.
    #[error("RunPod worker mode: {0}")]
    RunpodConfig(String),
}

impl ServeError {
    /// A short machine-readable name of the variant.
    pub fn kind(&self) -> &'static str {
        match self {
            ServeError::Version { .. } => "version",
            ServeError::Start { .. } => "start",
            ServeError::Warmup { .. } => "warmup",
            ServeError::WebhookSecret => "config",
            ServeError::BadJob(_) => "bad_input",
            ServeError::Stopped { .. } => "stopped",
            ServeError::NotRun { .. } => "not_run",
            ServeError::Listen { .. } => "listen",
            ServeError::VersionNotAllowed { .. } => "version_not_allowed",
            ServeError::Unprotected { .. } => "unprotected",
            ServeError::RunpodConfig(_) => "config",
        }
    }

    /// The failed-job JSON of this error ([`failed_job_json`]).
    pub(crate) fn to_job_json(&self) -> Value {
        failed_job_json(self.kind(), self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_json_holds_the_causes() {
        let e = ServeError::Version {
            version_id: "v9".into(),
            source: "no spec versions/v9.json".into(),
        };
        let j = e.to_job_json();
        assert_eq!(j["kind"], "version");
        let msg = j["error"].as_str().unwrap();
        assert!(
            msg.contains("`v9`") && msg.ends_with("no spec versions/v9.json"),
            "{msg}"
        );
        assert_eq!(j["causes"], serde_json::json!(["no spec versions/v9.json"]));
    }
}
