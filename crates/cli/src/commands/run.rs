//! `comfyver run` and `comfyver test`: resolve (cached) → realize (warm
//! path) → start ComfyUI → run one job → stop.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use comfyver_handler::{
    ComfyEnv, ComfyProcess, HandlerError, Job, JobOptions, JobOutput, OutputSink, StartOptions,
};
use serde_json::json;

use crate::context::Ctx;
use crate::pipeline::{self, RealizeFlags};
use crate::progress::{JobProgress, RealizeProgress};

/// What the job is and how it runs.
#[derive(Debug, Clone, Args)]
pub struct JobFlags {
    /// An API-format workflow (ComfyUI: Workflow → Export (API)).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "input",
        required_unless_present = "input"
    )]
    pub workflow: Option<PathBuf>,
    /// A worker-comfyui job: {"input": {"workflow", "images": [{"name", "image"}]}}.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// An input image, uploaded before the prompt (repeatable).
    #[arg(long, value_name = "NAME=PATH")]
    pub image: Vec<String>,
    /// Where outputs go: `base64` (JSON on stdout) or `dir:PATH`.
    #[arg(long, value_name = "SINK", default_value = "base64")]
    pub output: OutputSink,
    /// Overall job limit in seconds; then the prompt is interrupted.
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
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The version id (or use --spec FILE).
    #[arg(required_unless_present = "spec")]
    pub id: Option<String>,
    #[command(flatten)]
    pub job: JobFlags,
    #[command(flatten)]
    pub flags: RealizeFlags,
}

#[derive(Debug, Args)]
pub struct TestArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Fail unless the job produces at least this many outputs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub expect_outputs: usize,
}

/// `handler run --version-id <id> --workflow <wf>`: the original plan's spelling.
#[derive(Debug, Args)]
pub struct HandlerArgs {
    #[command(subcommand)]
    pub command: HandlerCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum HandlerCommand {
    /// The same as `comfyver run <id>`.
    Run {
        /// The version id.
        #[arg(long)]
        version_id: Option<String>,
        #[command(flatten)]
        job: JobFlags,
        #[command(flatten)]
        flags: RealizeFlags,
    },
}

pub fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<ExitCode> {
    let invoked = Instant::now();
    let outcome = match execute(ctx, &args, invoked) {
        Ok(outcome) => outcome,
        Err(err) => {
            // Failed before the job ran (bad input, realize): still a job result.
            ctx.out.json(&json!({"error": err.to_string(), "kind": "setup", "details": err.chain().skip(1).map(|c| c.to_string()).collect::<Vec<_>>()}));
            return Err(err);
        }
    };
    match outcome {
        Ok(output) => {
            ctx.out.json(&output.to_json());
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            ctx.out.json(&err.to_job_json());
            Err(err.into())
        }
    }
}

pub fn test(ctx: &Ctx, args: TestArgs) -> anyhow::Result<ExitCode> {
    let invoked = Instant::now();
    let output = execute(ctx, &args.run, invoked)??;
    let n = output.items.len();
    let summary = json!({
        "ok": n >= args.expect_outputs, "outputs": n, "expected_at_least": args.expect_outputs,
        "prompt_id": output.prompt_id, "version_id": output.version_id,
        "errors": output.errors, "seconds": invoked.elapsed().as_secs_f64(),
    });
    if ctx.json {
        ctx.out.json(&summary);
    }
    if n < args.expect_outputs {
        anyhow::bail!(
            "the smoke test produced {n} output(s), expected at least {}",
            args.expect_outputs
        );
    }
    if !ctx.json {
        ctx.out.data(&format!(
            "ok  {}: {n} output(s) in {:.1?}",
            output.version_id,
            invoked.elapsed()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn handler(ctx: &Ctx, args: HandlerArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        HandlerCommand::Run {
            version_id,
            job,
            flags,
        } => run(
            ctx,
            RunArgs {
                id: version_id,
                job,
                flags,
            },
        ),
    }
}

/// Prepares everything, runs the job; the outer error is a failure before
/// the job (bad input, realize), the inner one the job's own.
fn execute(
    ctx: &Ctx,
    args: &RunArgs,
    invoked: Instant,
) -> anyhow::Result<Result<JobOutput, HandlerError>> {
    let mut job = match (&args.job.workflow, &args.job.input) {
        (Some(wf), _) => Job::from_workflow_file(wf)?,
        (None, Some(input)) => Job::from_input_file(input)?,
        (None, None) => anyhow::bail!("give --workflow FILE or --input FILE"),
    };
    for image in &args.job.image {
        job.add_image_arg(image)?;
    }
    let loaded = pipeline::load(ctx, args.id.as_deref(), &args.flags)?;
    let lock = pipeline::lock_for(ctx, &loaded, args.flags.jobs)?;
    let req = pipeline::request(ctx, &loaded, &lock, &args.flags)?;
    let progress = RealizeProgress::new(&ctx.out);
    let realized = pipeline::realize(ctx, &req, &progress)?;
    let home = &realized.home;
    let env = ComfyEnv {
        python: home.python(),
        core_dir: home.root().to_path_buf(),
        // ComfyUI loads `<core>/extra_model_paths.yaml` by itself; passing it
        // again would register every path twice.
        extra_model_paths: None,
        env: loaded.spec.env.clone(),
        logs_dir: home.logs_dir(),
        data_dir: home.data_dir(),
        version_id: loaded.spec.version_id.clone(),
    };
    let before_start = invoked.elapsed();
    let start = StartOptions {
        gpu: args.job.gpu,
        extra_args: args.job.comfy_args.clone(),
        start_timeout: Duration::from_secs(args.job.start_timeout),
        ..StartOptions::default()
    };
    let process = match ComfyProcess::start(&env, &start) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e)),
    };
    let timings = process.timings();
    ctx.out.debug(&format!(
        "{} warm={} invoke→spawn {:.1?}, spawn→ready {:.1?}",
        loaded.spec.version_id,
        realized.warm,
        before_start + timings.to_spawn,
        timings.to_ready.saturating_sub(timings.to_spawn)
    ));
    let packs: Vec<String> = lock
        .custom_nodes
        .iter()
        .filter_map(|n| n.name.clone())
        .collect();
    match process.node_report(&packs) {
        Ok(report) => {
            for failed in &report.failed {
                ctx.out.warn(&format!(
                    "custom node pack `{}` failed to import; workflows using its nodes will fail:\n    {}",
                    failed.name,
                    failed.log_lines.join("\n    ")
                ));
            }
        }
        Err(e) => ctx
            .out
            .warn(&format!("could not check the custom node packs: {e}")),
    }
    let opts = JobOptions {
        timeout: Duration::from_secs(args.job.timeout),
        sink: match &args.job.output {
            OutputSink::Dir(p) => {
                OutputSink::Dir(std::path::absolute(p).unwrap_or_else(|_| p.clone()))
            }
            s => s.clone(),
        },
        include_temp: args.job.include_temp,
        expected_packs: packs,
        ..JobOptions::default()
    };
    let result = comfyver_handler::run_job(&process, &job, &opts, &JobProgress::new(&ctx.out));
    process.stop();
    Ok(result)
}
