//! `comfyver serve`: ComfyUI kept warm, jobs from RunPod's queue (when
//! `RUNPOD_WEBHOOK_GET_JOB` is set) or from a local job API (`--listen`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use comfyver_handler::ComfyEnv;
use comfyver_realize::HomeInUse;
use comfyver_serve::{EnvProvider, LocalApiOptions, ProviderError, RunpodConfig, ServeOptions};

use super::session_flags::SessionFlags;

use crate::context::Ctx;
use crate::diagnostics::Exit;
use crate::pipeline::{self, RealizeFlags};
use crate::progress::RealizeProgress;

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The version of jobs that name no `input.version_id` (started before the first job).
    #[arg(env = comfyver_env::COMFYVER_VERSION_ID, required_unless_present = "spec")]
    pub id: Option<String>,
    /// Where the local job API listens (when RUNPOD_WEBHOOK_GET_JOB is not set).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8000",
        env = comfyver_env::COMFYVER_LISTEN
    )]
    pub listen: String,
    /// A file holding the key the local job API requires (else COMFYVER_API_KEY);
    /// clients send `Authorization: Bearer <key>`. `/health` needs none.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// Serve the local job API with no key on a non-loopback address (refused otherwise).
    #[arg(long, env = comfyver_env::COMFYVER_NO_AUTH)]
    pub no_auth: bool,
    /// Jobs the local job API holds queued at most; beyond, /run and /runsync answer 429.
    #[arg(
        long,
        value_name = "N",
        default_value_t = LocalApiOptions::DEFAULT_MAX_QUEUE,
        env = comfyver_env::COMFYVER_MAX_QUEUE
    )]
    pub max_queue: usize,
    /// The only versions jobs may name, comma-separated (the default version is
    /// always served); a job naming another fails without anything realized.
    #[arg(
        long,
        value_name = "ID,ID",
        value_delimiter = ',',
        env = comfyver_env::COMFYVER_VERSIONS
    )]
    pub versions: Vec<String>,
    /// A workflow (API format, or a job body `{"input": {"workflow": ...}}`) run
    /// after every ComfyUI start, before any job is taken; the worker is not
    /// ready until it succeeds.
    #[arg(long, value_name = "FILE", env = comfyver_env::COMFYVER_WARMUP)]
    pub warmup: Option<PathBuf>,
    /// Serve `GET /metrics` without the API key (for a scraper inside a trusted network).
    #[arg(long)]
    pub metrics_public: bool,
    /// After SIGTERM/SIGINT, how long the current job may still run, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub grace: u64,
    /// Refresh the worker after every job (RunPod: stopPod and exit; local: a fresh ComfyUI).
    #[arg(long, env = comfyver_env::REFRESH_WORKER)]
    pub refresh_worker: bool,
    /// How many versions' ComfyUIs stay alive at once; a job for a warm version
    /// needs no start. The least recently used idle one is evicted beyond it.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 1,
        value_parser = clap::value_parser!(u16).range(1..),
        env = comfyver_env::COMFYVER_WARM
    )]
    pub warm: u16,
    /// Below this many MB of free RAM (MemAvailable) or GPU memory, an idle
    /// ComfyUI is evicted before another one starts (0: no check).
    #[arg(
        long,
        value_name = "MB",
        default_value_t = ServeOptions::DEFAULT_WARM_MIN_FREE_MB,
        env = comfyver_env::COMFYVER_WARM_MIN_FREE_MB
    )]
    pub warm_min_free_mb: u64,
    /// How ComfyUI starts and each job runs.
    #[command(flatten)]
    pub session: SessionFlags,
    /// How the default version is realized (`--home`/`--spec` apply to it only).
    #[command(flatten)]
    pub flags: RealizeFlags,
}

pub(crate) fn run(ctx: &Ctx, mut args: ServeArgs) -> anyhow::Result<Exit> {
    // One --confine for ComfyUI and the install scripts of every version realized.
    args.flags.confine = args.session.start.confine;
    let default_id = match (&args.flags.spec, &args.id) {
        (Some(spec), _) => ctx.load(&spec.to_string_lossy())?.spec.version_id,
        (None, Some(id)) => id.clone(),
        (None, None) => anyhow::bail!("name the default version id or pass --spec FILE"),
    };
    let mut opts = ServeOptions::new(default_id.clone());
    opts.start = args
        .session
        .start_options(args.session.start.comfy_args.clone());
    // Credentials and bucket permissions are checked before the first job.
    opts.job = args.session.job_options(ctx)?;
    opts.grace = Duration::from_secs(args.grace);
    opts.refresh_worker = args.refresh_worker;
    opts.warm = usize::from(args.warm);
    opts.warm_min_free_mb = args.warm_min_free_mb;
    opts.versions = args
        .versions
        .iter()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    for v in &opts.versions {
        if let Some(reason) = comfyver_spec::names::version_id_reason(v) {
            anyhow::bail!("--versions names `{v}`, which is not a version id: {reason}");
        }
    }

    if let Some(file) = &args.warmup {
        opts.warmup = Some(warmup_job(file)?);
    }

    let provider = Versions {
        ctx,
        default_id,
        default_arg: args.id.clone(),
        default_flags: args.flags.clone(),
        other_flags: RealizeFlags {
            home: None::<PathBuf>,
            spec: None,
            ..args.flags.clone()
        },
        held: Mutex::default(),
    };
    let log = |line: &str| ctx.out.info(line);
    match RunpodConfig::from_env() {
        Some(config) => comfyver_serve::serve_runpod(&config?, &provider, &opts, &log)?,
        None => {
            let mut api = LocalApiOptions::new(&args.listen);
            api.api_key = api_key(args.api_key_file.as_deref())?;
            api.no_auth = args.no_auth;
            api.max_queue = args.max_queue;
            api.metrics_public = args.metrics_public;
            api.webhook_secret = std::env::var(comfyver_env::COMFYVER_WEBHOOK_SECRET).ok();
            comfyver_serve::serve_local(&api, &provider, &opts, &log)?
        }
    }
    ctx.out.info("serve stopped");
    Ok(Exit::Success)
}

/// The worker's versions, realized on demand. A warm version's home stays in
/// use (nothing changes it) from its preparation until its ComfyUI stops.
struct Versions<'a> {
    ctx: &'a Ctx,
    default_id: String,
    /// The default version as named on the command line (none with `--spec`).
    default_arg: Option<String>,
    /// How the default version is realized (`--home`/`--spec` apply to it only).
    default_flags: RealizeFlags,
    other_flags: RealizeFlags,
    held: Mutex<HashMap<String, HomeInUse>>,
}

impl EnvProvider for Versions<'_> {
    fn env_for(&self, id: &str) -> Result<ComfyEnv, ProviderError> {
        // Our own hold would make a realize of this very home wait for us.
        self.release(id);
        let progress = RealizeProgress::new(&self.ctx.out);
        let result = if id == self.default_id {
            pipeline::comfy_env(
                self.ctx,
                self.default_arg.as_deref(),
                &self.default_flags,
                &progress,
            )
        } else {
            pipeline::comfy_env(self.ctx, Some(id), &self.other_flags, &progress)
        };
        match result {
            Ok((env, in_use)) => {
                self.held
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(id.to_string(), in_use);
                Ok(env)
            }
            Err(e) => Err(format!("{e:#}").into()),
        }
    }

    fn release(&self, id: &str) {
        self.held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// The warm-up job of `--warmup FILE`: an API-format workflow, or a job body.
fn warmup_job(file: &std::path::Path) -> anyhow::Result<comfyver_handler::Job> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("could not read the warm-up workflow {}", file.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the warm-up workflow {} is not JSON; export it with ComfyUI's \"Save (API)\"",
            file.display()
        )
    })?;
    let body = if value.get("input").is_some() {
        value
    } else {
        serde_json::json!({"input": {"workflow": value}})
    };
    comfyver_handler::Job::from_runpod(&body).with_context(|| {
        format!(
            "the warm-up workflow {} is not a workflow in API format",
            file.display()
        )
    })
}

/// The local job API's key: the first line of `--api-key-file`, else
/// `COMFYVER_API_KEY`; an empty key is an error, not an open API.
fn api_key(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    let (key, from) = match file {
        Some(f) => (
            std::fs::read_to_string(f)
                .with_context(|| format!("could not read the API key file {}", f.display()))?,
            format!("the API key file {}", f.display()),
        ),
        None => match std::env::var(comfyver_env::COMFYVER_API_KEY) {
            Ok(k) => (k, comfyver_env::COMFYVER_API_KEY.to_string()),
            Err(_) => return Ok(None),
        },
    };
    let key = key.lines().next().unwrap_or_default().trim().to_string();
    anyhow::ensure!(
        !key.is_empty(),
        "{from} holds an empty key; put the key in it, or leave it unset"
    );
    Ok(Some(key))
}
