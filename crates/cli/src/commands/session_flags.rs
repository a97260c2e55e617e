//! The flags of a ComfyUI session and its jobs, shared by `run`/`test` and
//! `serve`: how ComfyUI starts ([`StartFlags`]: device, start timeout, extra
//! arguments, confinement; also `launch`'s) and how each job runs (timeout,
//! output sink, temporary outputs, metadata, the budget of the models jobs
//! bring).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use comfyver_fs::ConfineMode;
use comfyver_handler::{CloudSink, GpuChoice, JobOptions, OutputSink, StartOptions};

use crate::context::Ctx;
use crate::job_models::StoreJobModels;

#[derive(Debug, Clone, Args)]
pub(crate) struct SessionFlags {
    /// Where outputs go: `base64` (in the job's JSON), `dir:PATH`, `gcs`
    /// (GCS_* variables) or `s3` (BUCKET_* variables). Default: `gcs` when
    /// GCS_BUCKET is set, else `base64`. A bucket is checked before ComfyUI
    /// starts.
    #[arg(long, value_name = "SINK")]
    pub output: Option<OutputSink>,
    /// Limit of each job in seconds; then its prompt is interrupted.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 3600,
        env = comfyver_env::COMFYVER_JOB_TIMEOUT
    )]
    pub timeout: u64,
    /// Also return temporary outputs (PreviewImage and the like).
    #[arg(long)]
    pub include_temp: bool,
    /// Keep ComfyUI's metadata in outputs: the prompt, and the job's
    /// `ui_workflow` as the workflow a PNG opens with in ComfyUI (default:
    /// --disable-metadata). `test --record/--expect` always drops it.
    #[arg(
        long,
        env = comfyver_env::COMFYVER_KEEP_METADATA,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub keep_metadata: bool,
    /// The most GB (decimal) of model files only jobs brought (`input.models`,
    /// URLs in loader inputs); beyond it the least recently used are evicted.
    /// Default: no limit.
    #[arg(long, value_name = "GB", env = comfyver_env::COMFYVER_JOB_MODELS_MAX_GB)]
    pub job_models_max_gb: Option<f64>,
    /// How ComfyUI starts.
    #[command(flatten)]
    pub start: StartFlags,
}

/// How ComfyUI starts: shared by `run`/`test`, `serve` and `launch`.
#[derive(Debug, Clone, Args)]
pub(crate) struct StartFlags {
    /// How long ComfyUI may take to start, in seconds.
    #[arg(
        long,
        value_name = "SECONDS",
        default_value_t = 600,
        env = comfyver_env::COMFYVER_START_TIMEOUT
    )]
    pub start_timeout: u64,
    /// Run ComfyUI on the GPU even when none is detected (default: the GPU
    /// when /dev/nvidia* or the NVIDIA driver shows one, else --cpu).
    #[arg(long, conflicts_with = "cpu")]
    pub gpu: bool,
    /// Run ComfyUI on the CPU (--cpu) even when a GPU is present.
    #[arg(long)]
    pub cpu: bool,
    /// Extra arguments for ComfyUI's main.py (repeatable).
    #[arg(long = "comfy-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub comfy_args: Vec<String>,
    /// Confine ComfyUI with Landlock: `auto` (when the kernel has it),
    /// `required` (refuse to start without it) or `off`. See docs/run.md,
    /// "What a job can touch".
    #[arg(
        long,
        value_name = "MODE",
        default_value = "auto",
        env = comfyver_env::COMFYVER_CONFINE
    )]
    pub confine: ConfineMode,
}

impl StartFlags {
    /// How ComfyUI starts: the device asked for, the start timeout, and
    /// `extra_args` for main.py.
    pub(crate) fn start_options(&self, extra_args: Vec<String>) -> StartOptions {
        StartOptions {
            gpu: match (self.gpu, self.cpu) {
                (true, _) => GpuChoice::Gpu,
                (_, true) => GpuChoice::Cpu,
                _ => GpuChoice::Auto,
            },
            extra_args,
            start_timeout: Duration::from_secs(self.start_timeout),
            confine: self.confine,
            ..StartOptions::default()
        }
    }
}

impl SessionFlags {
    /// How ComfyUI starts for jobs: [`StartFlags::start_options`], with
    /// the metadata kept when asked for.
    pub(crate) fn start_options(&self, extra_args: Vec<String>) -> StartOptions {
        StartOptions {
            keep_metadata: self.keep_metadata,
            ..self.start.start_options(extra_args)
        }
    }

    /// The output sink (`--output`, else from the environment); a directory
    /// made absolute, since ComfyUI and the jobs run elsewhere.
    pub(crate) fn sink(&self) -> OutputSink {
        match self
            .output
            .clone()
            .unwrap_or_else(OutputSink::from_env_default)
        {
            OutputSink::Dir(p) => OutputSink::Dir(std::path::absolute(&p).unwrap_or(p)),
            s => s,
        }
    }

    /// How each job runs, with the sink and its bucket prepared before
    /// anything starts (credentials and permissions are checked here).
    /// Job models go to `ctx`'s model store.
    pub(crate) fn job_options(&self, ctx: &Ctx) -> anyhow::Result<JobOptions> {
        let sink = self.sink();
        let cloud = CloudSink::prepare(&sink)?;
        let models = StoreJobModels::new(ctx, self.job_models_max_gb)?;
        Ok(JobOptions {
            models: Some(Arc::new(models)),
            timeout: Duration::from_secs(self.timeout),
            sink,
            cloud,
            include_temp: self.include_temp,
            ..JobOptions::default()
        })
    }
}
