//! `comfyver models fetch|verify|list|gc`: the shared model store.

use std::time::Duration;

use clap::{Args, Subcommand};
use comfyver_models::gc::{gc_apply, gc_plan, list_store};
use comfyver_models::verify::{VerifyStatus, verify_models};
use comfyver_models::{FetchOptions, FetchStatus, fetch_models};
use comfyver_spec::{ResolvedLock, lock::LockedModel};
use serde_json::json;

use crate::context::Ctx;
use crate::diagnostics::Exit;
use crate::pipeline;
use crate::progress::Bars;

/// `comfyver models`.
#[derive(Debug, Args)]
pub(crate) struct ModelsArgs {
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// The `models` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum ModelsCommand {
    /// Download a version's models into the shared store (to pre-warm a
    /// network volume). Interrupted downloads resume on the next run.
    Fetch(FetchArgs),
    /// Check a version's models: presence, size and checksums.
    Verify(VerifyArgs),
    /// List the files in the model store.
    List,
    /// Remove store files that no spec or lock references (dry run unless --yes).
    Gc(GcArgs),
}

/// `comfyver models fetch`.
#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// The version id (or a path to a spec file).
    pub id: String,
    /// Retries after a transient failure without progress (reset by progress).
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// Seconds without any data before a download counts as stalled.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub stall_timeout: u64,
    /// Hash every model already in the store and fetch again what does not
    /// verify (the bad file is moved to `.comfyver/damaged/` first).
    #[arg(long)]
    pub repair: bool,
}

/// `comfyver models verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The version id (or a path to a spec file).
    pub id: String,
    /// Hash every file again, even when the index says it is unchanged.
    #[arg(long)]
    pub rehash: bool,
}

/// `comfyver models gc`.
#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Really remove the files (without it, only print what would go).
    #[arg(long)]
    pub yes: bool,
    /// Go on when a spec or lock cannot be read, treating what only it
    /// references as unused.
    #[arg(long)]
    pub force: bool,
}

pub(crate) fn run(ctx: &Ctx, args: ModelsArgs) -> anyhow::Result<Exit> {
    match args.command {
        ModelsCommand::Fetch(a) => fetch(ctx, a),
        ModelsCommand::Verify(a) => verify(ctx, a),
        ModelsCommand::List => list(ctx),
        ModelsCommand::Gc(a) => gc(ctx, a),
    }
}

/// The models of a version, from its spec (no lock needed).
fn version_models(ctx: &Ctx, id: &str) -> anyhow::Result<Vec<LockedModel>> {
    let loaded = ctx.load(id)?;
    Ok(ResolvedLock::models_from(&loaded.spec))
}

fn status_text(s: &FetchStatus) -> String {
    match s {
        FetchStatus::Present => "present".into(),
        FetchStatus::Downloaded {
            resumed_from: 0,
            received,
        } => format!("downloaded ({received} bytes)"),
        FetchStatus::Downloaded {
            resumed_from,
            received,
        } => format!("downloaded ({received} bytes, resumed at {resumed_from})"),
        FetchStatus::Placed { linked: true } => "linked from a local file".into(),
        FetchStatus::Placed { linked: false } => "copied from a local file".into(),
        FetchStatus::Adopted => "existing file matches its checksum (adopted)".into(),
        FetchStatus::KeptUnverified => "kept existing file, not verified".into(),
        FetchStatus::Missing { reason } => format!("missing ({reason})"),
    }
}

fn fetch(ctx: &Ctx, args: FetchArgs) -> anyhow::Result<Exit> {
    let models = version_models(ctx, &args.id)?;
    let opts = FetchOptions {
        jobs: ctx.jobs,
        offline: ctx.offline,
        retries: args.retries,
        read_timeout: Duration::from_secs(args.stall_timeout.max(1)),
        repair: args.repair,
        ..FetchOptions::default()
    };
    let bars = Bars::new(&ctx.out);
    let outcome = fetch_models(&models, &ctx.layout, &opts, &bars)?;
    for m in outcome.missing() {
        ctx.out.warn(&format!(
            "{} is not in the store: {}",
            m.path,
            status_text(&m.status)
        ));
    }
    for m in outcome.unverified() {
        ctx.out.warn(&format!(
            "{}: kept existing file, not verified (the spec gives no sha256/blake3)",
            m.path
        ));
    }
    for m in &outcome.models {
        if let Some(aside) = &m.moved_aside {
            ctx.out.warn(&format!(
                "{} did not verify: moved it to {} and fetched it again",
                m.path,
                aside.display()
            ));
        }
    }
    if ctx.json {
        let list: Vec<_> = outcome
            .models
            .iter()
            .map(|m| json!({"path": m.path, "source": m.source, "status": status_text(&m.status)}))
            .collect();
        ctx.out
            .json(&json!({"models_dir": ctx.layout.models_dir(), "models": list}));
    } else {
        for m in &outcome.models {
            ctx.out
                .data(&format!("{:<50} {}", m.path, status_text(&m.status)));
        }
    }
    Ok(Exit::Success)
}

fn verify_text(s: &VerifyStatus) -> String {
    match s {
        VerifyStatus::Ok { hashed: true } => "ok (hashed)".into(),
        VerifyStatus::Ok { hashed: false } => "ok".into(),
        VerifyStatus::Unverified => "present, not verified (no checksum known)".into(),
        VerifyStatus::Missing => "MISSING".into(),
        VerifyStatus::Mismatch {
            what,
            expected,
            actual,
        } => format!("MISMATCH: {what} expected {expected}, found {actual}"),
    }
}

fn verify(ctx: &Ctx, args: VerifyArgs) -> anyhow::Result<Exit> {
    let models = version_models(ctx, &args.id)?;
    let reports = verify_models(&models, &ctx.layout, args.rehash)?;
    let problems = reports.iter().filter(|r| r.status.is_problem()).count();
    if ctx.json {
        let list: Vec<_> = reports
            .iter()
            .map(|r| json!({"path": r.path, "source": r.source, "ok": !r.status.is_problem(), "status": verify_text(&r.status)}))
            .collect();
        ctx.out.json(&json!({"models": list, "problems": problems}));
    } else {
        for r in &reports {
            ctx.out
                .data(&format!("{:<50} {}", r.path, verify_text(&r.status)));
        }
    }
    if problems > 0 {
        ctx.out.warn(&format!(
            "{problems} model(s) missing or wrong; `comfyver models fetch --repair {}` fetches them \
             again (a wrong file is moved aside first)",
            args.id
        ));
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

fn list(ctx: &Ctx) -> anyhow::Result<Exit> {
    let entries = list_store(&ctx.layout)?;
    if ctx.json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({
                    "path": e.path,
                    "size": e.size,
                    "source": e.indexed.as_ref().map(|i| i.url.clone()),
                    "blake3": e.indexed.as_ref().map(|i| i.blake3.clone()),
                    "sha256": e.indexed.as_ref().and_then(|i| i.sha256.clone()),
                })
            })
            .collect();
        ctx.out
            .json(&json!({"models_dir": ctx.layout.models_dir(), "models": list}));
        return Ok(Exit::Success);
    }
    for e in &entries {
        let source = e
            .indexed
            .as_ref()
            .map(|i| i.url.as_str())
            .unwrap_or("(not indexed)");
        ctx.out
            .data(&format!("{:<50} {:>14}  {source}", e.path, e.size));
    }
    ctx.out.info(&format!(
        "{} file(s), {} bytes in {}",
        entries.len(),
        entries.iter().map(|e| e.size).sum::<u64>(),
        ctx.layout.models_dir().display()
    ));
    Ok(Exit::Success)
}

fn gc(ctx: &Ctx, args: GcArgs) -> anyhow::Result<Exit> {
    let referenced = pipeline::references(ctx, args.force)?.models();
    let plan = gc_plan(&ctx.layout, &referenced)?;
    let freed = if args.yes {
        gc_apply(&ctx.layout, &plan)?
    } else {
        0
    };
    if ctx.json {
        let items: Vec<_> = plan
            .files
            .iter()
            .chain(&plan.partials)
            .map(|i| json!({"path": i.path, "size": i.size}))
            .collect();
        ctx.out.json(
            &json!({"removed": args.yes, "items": items, "bytes": plan.bytes(), "freed": freed}),
        );
        return Ok(Exit::Success);
    }
    for i in plan.files.iter().chain(&plan.partials) {
        ctx.out.data(&format!("{:<50} {:>14}", i.path, i.size));
    }
    if args.yes {
        ctx.out.info(&format!("freed {freed} bytes"));
    } else if plan.is_empty() {
        ctx.out.info("nothing to remove");
    } else {
        ctx.out.info(&format!(
            "would free {} bytes; run `comfyver models gc --yes` to remove these files",
            plan.bytes()
        ));
    }
    Ok(Exit::Success)
}
