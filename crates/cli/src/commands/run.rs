//! `comfyver run` and `comfyver test`: resolve (cached) → realize (warm
//! path) → start ComfyUI → run one job → stop.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use comfyver_fs::ConfineStatus;
use comfyver_handler::{
    ComfyEnv, HandlerError, Job, JobOutput, NodeReport, OutputHashes, Session, failed_job_json,
};
use serde_json::json;

use super::session_flags::SessionFlags;

use crate::context::Ctx;
use crate::diagnostics::Exit;
use crate::pipeline::{self, RealizeFlags};
use crate::progress::{JobProgress, RealizeProgress};

/// What the job is and how it runs.
#[derive(Debug, Clone, Args)]
pub(crate) struct JobFlags {
    /// An API-format workflow (ComfyUI: Workflow → Export (API)).
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "input",
        required_unless_present = "input"
    )]
    pub workflow: Option<PathBuf>,
    /// A worker-comfyui job: {"input": {"workflow", "images": [{"name", "image"}],
    /// "models": [{"source", "target_subdir", "name", "sha256", "size"}]}}.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// An input image, uploaded before the prompt (repeatable).
    #[arg(long, value_name = "NAME=PATH")]
    pub image: Vec<String>,
    /// A model the job brings, fetched into the store before the prompt runs
    /// (repeatable; folder default `checkpoints`).
    #[arg(long, value_name = "URL[,TARGET_SUBDIR]")]
    pub model: Vec<String>,
    /// How ComfyUI starts and the job runs.
    #[command(flatten)]
    pub session: SessionFlags,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The version id (or use --spec FILE).
    #[arg(required_unless_present = "spec")]
    pub id: Option<String>,
    #[command(flatten)]
    pub job: JobFlags,
    #[command(flatten)]
    pub flags: RealizeFlags,
}

#[derive(Debug, Args)]
pub(crate) struct TestArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Fail unless the job produces at least this many outputs.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub expect_outputs: usize,
    /// Write the SHA-256 (and, for images, the pixel hash) of every output to FILE.
    #[arg(long, value_name = "FILE", conflicts_with = "expect")]
    pub record: Option<PathBuf>,
    /// Compare the outputs with hashes recorded by --record; exit 1 naming
    /// every output that changed.
    #[arg(long, value_name = "FILE")]
    pub expect: Option<PathBuf>,
}

/// `handler run --version-id <id> --workflow <wf>`: the original plan's spelling.
#[derive(Debug, Args)]
pub(crate) struct HandlerArgs {
    #[command(subcommand)]
    pub command: HandlerCommand,
}

#[derive(Debug, clap::Subcommand)]
pub(crate) enum HandlerCommand {
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

pub(crate) fn run(ctx: &Ctx, args: RunArgs) -> anyhow::Result<Exit> {
    let invoked = Instant::now();
    let outcome = match execute(ctx, &args, invoked, false) {
        Ok(outcome) => outcome,
        Err(err) => {
            // Failed before the job ran (bad input, realize): still a job result.
            ctx.out.json(&failed_job_json("setup", err.as_ref()));
            return Err(err);
        }
    };
    let (result, packs, confined) = outcome;
    match result {
        Ok(output) => {
            let value = with_confined(output.to_json(), confined.as_ref());
            ctx.out.json(&with_failed_packs(value, &packs));
            Ok(Exit::Success)
        }
        Err(err) => {
            let value = with_confined(err.to_job_json(), confined.as_ref());
            ctx.out.json(&with_failed_packs(value, &packs));
            Err(err.into())
        }
    }
}

pub(crate) fn test(ctx: &Ctx, args: TestArgs) -> anyhow::Result<Exit> {
    let invoked = Instant::now();
    let hashing = args.record.is_some() || args.expect.is_some();
    // Read before anything runs: a bad file fails at once.
    let expected = match &args.expect {
        Some(file) => {
            let bytes = std::fs::read(file).map_err(|e| {
                anyhow::Error::new(e).context(format!("could not read {}", file.display()))
            })?;
            Some(OutputHashes::from_json(&bytes, file)?)
        }
        None => None,
    };
    let (result, packs, confined) = execute(ctx, &args.run, invoked, hashing)?;
    let output = match result {
        Ok(output) => output,
        Err(err) => {
            if ctx.json {
                ctx.out.json(&with_confined(
                    with_failed_packs(json!({"ok": false, "error": err.to_job_json()}), &packs),
                    confined.as_ref(),
                ));
            }
            return Err(err.into());
        }
    };
    let n = output.items.len();
    let hashes = if hashing {
        Some(OutputHashes::of(&output)?)
    } else {
        None
    };
    let mismatches = match (&expected, &hashes) {
        (Some(e), Some(h)) => e.compare(h),
        _ => Vec::new(),
    };
    let mut summary = json!({
        "ok": n >= args.expect_outputs && mismatches.is_empty(), "outputs": n,
        "expected_at_least": args.expect_outputs,
        "prompt_id": output.prompt_id, "version_id": output.version_id,
        "errors": output.errors, "seconds": invoked.elapsed().as_secs_f64(),
    });
    if let Some(h) = &hashes {
        summary["hashes"] = serde_json::to_value(&h.outputs)?;
    }
    if args.expect.is_some() {
        summary["changed"] = serde_json::to_value(&mismatches)?;
    }
    let summary = with_confined(with_failed_packs(summary, &packs), confined.as_ref());
    if ctx.json {
        ctx.out.json(&summary);
    }
    if n < args.expect_outputs {
        anyhow::bail!(
            "the smoke test produced {n} output(s), expected at least {}",
            args.expect_outputs
        );
    }
    if let (Some(file), Some(h)) = (&args.record, &hashes) {
        comfyver_fs::write_atomic(file, &h.to_json())?;
        ctx.out.info(&format!(
            "recorded the hashes of {} output(s) in {}",
            h.outputs.len(),
            file.display()
        ));
    }
    if let Some(file) = &args.expect {
        if !mismatches.is_empty() {
            let list: Vec<String> = mismatches
                .iter()
                .map(|m| {
                    format!(
                        "{} {} ({}: expected {}, got {})",
                        m.id,
                        m.change,
                        m.compared,
                        m.expected.as_deref().unwrap_or("nothing"),
                        m.actual.as_deref().unwrap_or("nothing")
                    )
                })
                .collect();
            anyhow::bail!(
                "{} output(s) differ from {}:\n  {}",
                mismatches.len(),
                file.display(),
                list.join("\n  ")
            );
        }
        ctx.out
            .info(&format!("every output matches {}", file.display()));
    }
    if !ctx.json {
        ctx.out.data(&format!(
            "ok  {}: {n} output(s) in {:.1?}",
            output.version_id,
            invoked.elapsed()
        ));
    }
    Ok(Exit::Success)
}

pub(crate) fn handler(ctx: &Ctx, args: HandlerArgs) -> anyhow::Result<Exit> {
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

/// `value` with `"confined": true|false` and `"confined_reason"` once
/// ComfyUI was started.
fn with_confined(
    mut value: serde_json::Value,
    status: Option<&ConfineStatus>,
) -> serde_json::Value {
    if let Some(s) = status {
        value["confined"] = json!(s.confined);
        value["confined_reason"] = json!(s.reason);
    }
    value
}

/// `value` with `failed_packs: [{"name", "error", "log"}]` when a pack of the
/// spec failed to import.
fn with_failed_packs(mut value: serde_json::Value, packs: &NodeReport) -> serde_json::Value {
    if !packs.failed.is_empty() {
        value["failed_packs"] = packs.failed_json();
    }
    value
}

/// The ComfyUI flags that make outputs comparable by hash, beyond the
/// `--disable-metadata` every hashed run gets: deterministic algorithms, when the
/// pin knows the flag (older ones would refuse it).
fn reproducible_args(ctx: &Ctx, env: &ComfyEnv, args: &mut Vec<String>) {
    const FLAG: &str = "--deterministic";
    if args.iter().any(|a| a == FLAG) {
        return;
    }
    if env.accepts_flag(FLAG) {
        ctx.out
            .debug(&format!("hashing outputs: ComfyUI gets {FLAG}"));
        args.push(FLAG.to_string());
    } else {
        ctx.out.debug(&format!(
            "hashing outputs: this ComfyUI has no {FLAG}; outputs may vary with the device"
        ));
    }
}

/// The job's result, the node-pack report and the confinement of its ComfyUI.
type Executed = (
    Result<JobOutput, HandlerError>,
    NodeReport,
    Option<ConfineStatus>,
);

/// Prepares everything, runs the job; the outer error is a failure before
/// the job (bad input, realize), the inner one the job's own. With
/// `reproducible`, ComfyUI gets the flags of [`reproducible_args`]. Also
/// returns the node-pack report (empty when ComfyUI did not start) and
/// whether ComfyUI ran confined (`None` when it did not start).
fn execute(
    ctx: &Ctx,
    args: &RunArgs,
    invoked: Instant,
    reproducible: bool,
) -> anyhow::Result<Executed> {
    let mut job = match (&args.job.workflow, &args.job.input) {
        (Some(wf), _) => Job::from_workflow_file(wf)?,
        (None, Some(input)) => Job::from_input_file(input)?,
        (None, None) => anyhow::bail!("give --workflow FILE or --input FILE"),
    };
    for image in &args.job.image {
        job.add_image_arg(image)?;
    }
    for model in &args.job.model {
        job.add_model_arg(model)?;
    }
    // Credentials and bucket permissions are checked before anything starts.
    let opts = args.job.session.job_options(ctx)?;
    let loaded = pipeline::load(ctx, args.id.as_deref(), &args.flags)?;
    let lock = pipeline::lock_for(ctx, &loaded)?;
    // One `--confine` for ComfyUI and the install scripts a realize runs.
    let flags = RealizeFlags {
        confine: args.job.session.start.confine,
        ..args.flags.clone()
    };
    let req = pipeline::request(ctx, &loaded, &lock, &flags)?;
    let progress = RealizeProgress::new(&ctx.out);
    // Held until this function returns, after ComfyUI has stopped.
    let (realized, _in_use) = pipeline::realize_for_use(ctx, &req, &progress)?;
    let home = &realized.home;
    let env = pipeline::env_of(home, &loaded.spec, &lock, ctx.layout.models_dir());
    // A workflow this version cannot run fails here, before ComfyUI starts.
    if let Err(mut e) = env.precheck(&job) {
        if let HandlerError::MissingNode {
            class_type,
            provided_by,
            ..
        } = &mut e
        {
            *provided_by = provider_of(ctx, &loaded.spec.version_id, class_type);
        }
        ctx.out.debug(&format!(
            "refused by the node index before starting ComfyUI, in {:.1?}",
            invoked.elapsed()
        ));
        return Ok((Err(e), NodeReport::default(), None));
    }
    let before_start = invoked.elapsed();
    let mut extra_args = args.job.session.start.comfy_args.clone();
    if reproducible {
        reproducible_args(ctx, &env, &mut extra_args);
    }
    let mut start = args.job.session.start_options(extra_args);
    if reproducible && start.keep_metadata {
        // Metadata holds the per-job prompt (file prefixes), which would
        // change the bytes of every non-image output from run to run.
        ctx.out
            .info("hashing outputs: --keep-metadata is ignored, outputs carry no metadata");
        start.keep_metadata = false;
    }
    let session = match Session::start(&env, &start) {
        Ok(s) => s,
        Err(e) => return Ok((Err(e), NodeReport::default(), None)),
    };
    ctx.out.info(&session.device().to_string());
    ctx.out
        .info(&format!("ComfyUI runs {}", session.confined()));
    let confined = session.confined().clone();
    let timings = session.timings();
    ctx.out.debug(&format!(
        "{} warm={} invoke→spawn {:.1?}, spawn→ready {:.1?}",
        loaded.spec.version_id,
        realized.warm,
        before_start + timings.to_spawn,
        timings.to_ready.saturating_sub(timings.to_spawn)
    ));
    let report = match session.node_report() {
        Ok(report) => {
            for failed in &report.failed {
                ctx.out.warn(&format!(
                    "custom node pack `{}` failed to import; workflows using its nodes will fail:\n    {}",
                    failed.name,
                    failed.log_lines.join("\n    ")
                ));
            }
            report
        }
        Err(e) => {
            ctx.out
                .warn(&format!("could not check the custom node packs: {e}"));
            NodeReport::default()
        }
    };
    let result = session.run_job(&job, &opts, &JobProgress::new(&ctx.out));
    session.stop();
    Ok((result, report, Some(confined)))
}

/// Which pack of another version provides `class`, from those versions'
/// node indexes (their default homes): `pack `P` (in version `v`)`.
fn provider_of(ctx: &Ctx, version_id: &str, class: &str) -> Option<String> {
    let specs = comfyver_spec::spec_files(&ctx.versions_dir).ok()?;
    specs
        .iter()
        .filter_map(|p| p.file_stem()?.to_str().map(String::from))
        .filter(|id| id != version_id)
        .find_map(|id| {
            let index = pipeline::node_index(ctx, &id, None)?;
            let pack = index.class(class)?.pack.clone()?;
            Some(format!("pack `{pack}` (in version `{id}`)"))
        })
}
