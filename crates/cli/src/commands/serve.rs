//! `comfyver serve`: ComfyUI kept warm, jobs from RunPod's queue (when
//! `RUNPOD_WEBHOOK_GET_JOB` is set) or from a local job API (`--listen`).

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use clap::Args;
use comfyver_handler::ComfyEnv;
use comfyver_realize::HomeInUse;
use comfyver_serve::{ProviderError, RunpodConfig, ServeOptions};

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
    /// After SIGTERM/SIGINT, how long the current job may still run, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub grace: u64,
    /// Refresh the worker after every job (RunPod: stopPod and exit; local: a fresh ComfyUI).
    #[arg(long, env = comfyver_env::REFRESH_WORKER)]
    pub refresh_worker: bool,
    /// How ComfyUI starts and each job runs.
    #[command(flatten)]
    pub session: SessionFlags,
    /// How the default version is realized (`--home`/`--spec` apply to it only).
    #[command(flatten)]
    pub flags: RealizeFlags,
}

pub(crate) fn run(ctx: &Ctx, args: ServeArgs) -> anyhow::Result<Exit> {
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
    opts.job = args.session.job_options()?;
    opts.grace = Duration::from_secs(args.grace);
    opts.refresh_worker = args.refresh_worker;

    let other_flags = RealizeFlags {
        home: None::<PathBuf>,
        spec: None,
        ..args.flags.clone()
    };
    // The served version's home stays in use (nothing changes it) from its
    // preparation until the next version is prepared in its place.
    let held: Mutex<Option<(String, HomeInUse)>> = Mutex::new(None);
    let provider = |id: &str| -> Result<ComfyEnv, ProviderError> {
        let progress = RealizeProgress::new(&ctx.out);
        let mut held = held.lock().unwrap_or_else(|e| e.into_inner());
        if held.as_ref().is_some_and(|(served, _)| served == id) {
            // Our own hold would make a realize of this very home wait for us.
            *held = None;
        }
        let result = if id == default_id {
            pipeline::comfy_env(ctx, args.id.as_deref(), &args.flags, &progress)
        } else {
            pipeline::comfy_env(ctx, Some(id), &other_flags, &progress)
        };
        match result {
            Ok((env, in_use)) => {
                *held = Some((id.to_string(), in_use));
                Ok(env)
            }
            Err(e) => Err(format!("{e:#}").into()),
        }
    };
    let log = |line: &str| ctx.out.info(line);
    match RunpodConfig::from_env() {
        Some(config) => comfyver_serve::serve_runpod(&config?, &provider, &opts, &log)?,
        None => comfyver_serve::serve_local(&args.listen, &provider, &opts, &log)?,
    }
    ctx.out.info("serve stopped");
    Ok(Exit::Success)
}
