//! `comfyver serve`: ComfyUI kept warm, jobs from RunPod's queue (when
//! `RUNPOD_WEBHOOK_GET_JOB` is set) or from a local job API (`--listen`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use comfyver_handler::serve::{self, ProviderError, RunpodConfig, ServeOptions};
use comfyver_handler::{ComfyEnv, JobOptions, OutputSink, StartOptions};

use crate::context::Ctx;
use crate::pipeline::{self, RealizeFlags};
use crate::progress::RealizeProgress;

/// The default version of `serve` (instead of the `<id>` argument).
pub const COMFYVER_VERSION_ID_ENV: &str = "COMFYVER_VERSION_ID";
/// `serve --listen`: where the local job API listens.
pub const COMFYVER_LISTEN_ENV: &str = "COMFYVER_LISTEN";
/// `serve --refresh-worker` (worker-comfyui's name for it).
pub const REFRESH_WORKER_ENV: &str = "REFRESH_WORKER";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The version of jobs that name no `input.version_id` (started before the first job).
    #[arg(env = COMFYVER_VERSION_ID_ENV, required_unless_present = "spec")]
    pub id: Option<String>,
    /// Where the local job API listens (when RUNPOD_WEBHOOK_GET_JOB is not set).
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8000",
        env = COMFYVER_LISTEN_ENV
    )]
    pub listen: String,
    /// After SIGTERM/SIGINT, how long the current job may still run, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub grace: u64,
    /// Refresh the worker after every job (RunPod: stopPod and exit; local: a fresh ComfyUI).
    #[arg(long, env = REFRESH_WORKER_ENV)]
    pub refresh_worker: bool,
    /// Where outputs go: `base64` (in the job's output) or `dir:PATH`.
    #[arg(long, value_name = "SINK", default_value = "base64")]
    pub output: OutputSink,
    /// Limit of each job in seconds; then its prompt is interrupted.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        env = "COMFYVER_JOB_TIMEOUT"
    )]
    pub timeout: u64,
    /// How long ComfyUI may take to start, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        env = "COMFYVER_START_TIMEOUT"
    )]
    pub start_timeout: u64,
    /// Run ComfyUI on the GPU (without it ComfyUI gets --cpu).
    #[arg(long)]
    pub gpu: bool,
    /// Also return temporary outputs (PreviewImage and the like).
    #[arg(long)]
    pub include_temp: bool,
    /// Extra arguments for ComfyUI's main.py (repeatable).
    #[arg(long = "comfy-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub comfy_args: Vec<String>,
    /// How the default version is realized (`--home`/`--spec` apply to it only).
    #[command(flatten)]
    pub flags: RealizeFlags,
}

pub fn run(ctx: &Ctx, args: ServeArgs) -> anyhow::Result<ExitCode> {
    let default_id = match (&args.flags.spec, &args.id) {
        (Some(spec), _) => ctx.load(&spec.to_string_lossy())?.spec.version_id,
        (None, Some(id)) => id.clone(),
        (None, None) => anyhow::bail!("name the default version id or pass --spec FILE"),
    };
    let sink = match &args.output {
        OutputSink::Dir(p) => OutputSink::Dir(std::path::absolute(p).unwrap_or_else(|_| p.clone())),
        s => s.clone(),
    };
    let mut opts = ServeOptions::new(default_id.clone());
    opts.start = StartOptions {
        gpu: args.gpu,
        extra_args: args.comfy_args.clone(),
        start_timeout: Duration::from_secs(args.start_timeout),
        ..StartOptions::default()
    };
    opts.job = JobOptions {
        timeout: Duration::from_secs(args.timeout),
        sink,
        include_temp: args.include_temp,
        ..JobOptions::default()
    };
    opts.grace = Duration::from_secs(args.grace);
    opts.refresh_worker = args.refresh_worker;

    let other_flags = RealizeFlags {
        home: None::<PathBuf>,
        spec: None,
        ..args.flags.clone()
    };
    let provider = |id: &str| -> Result<ComfyEnv, ProviderError> {
        let progress = RealizeProgress::new(&ctx.out);
        let result = if id == default_id {
            pipeline::comfy_env(ctx, args.id.as_deref(), &args.flags, &progress)
        } else {
            pipeline::comfy_env(ctx, Some(id), &other_flags, &progress)
        };
        result.map_err(|e| format!("{e:#}").into())
    };
    let log = |line: &str| ctx.out.info(line);
    match RunpodConfig::from_env() {
        Some(config) => serve::serve_runpod(&config?, &provider, &opts, &log)?,
        None => serve::serve_local(&args.listen, &provider, &opts, &log)?,
    }
    ctx.out.info("serve stopped");
    Ok(ExitCode::SUCCESS)
}
