//! `comfyver realize`, `verify`, `remove` and `gc`: version homes on disk.

use clap::Args;
use comfyver_fs::ConfineMode;
use serde_json::json;

use crate::context::Ctx;
use crate::diagnostics;
use crate::diagnostics::Exit;
use crate::output::human_bytes;
use crate::pipeline::{self, RealizeFlags};
use crate::progress::{RealizeProgress, short};

#[derive(Debug, Args)]
pub(crate) struct RealizeArgs {
    /// The version id (or use --spec FILE).
    #[arg(required_unless_present = "spec")]
    pub id: Option<String>,
    #[command(flatten)]
    pub flags: RealizeFlags,
    /// Print the complete plan and change nothing on disk.
    #[arg(long)]
    pub dry_run: bool,
    /// Confine install scripts with Landlock: `auto` (when the kernel has
    /// it), `required` (refuse to run one without it) or `off`. See
    /// docs/run.md, "What a job can touch".
    #[arg(
        long,
        value_name = "MODE",
        default_value = "auto",
        env = comfyver_env::COMFYVER_CONFINE
    )]
    pub confine: ConfineMode,
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The version id.
    pub id: String,
    /// Hash model files again instead of trusting the store's index.
    #[arg(long)]
    pub rehash: bool,
    /// The version's home (default as for `realize`).
    #[arg(long, value_name = "DIR", env = comfyver_env::COMFY_HOME)]
    pub home: Option<std::path::PathBuf>,
    /// Check the home against this lock file instead of the version's own lock.
    #[arg(long, value_name = "LOCK")]
    pub against: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RemoveArgs {
    /// The version id.
    pub id: String,
    /// The version's home (default as for `realize`).
    #[arg(long, value_name = "DIR", env = comfyver_env::COMFY_HOME)]
    pub home: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct GcArgs {
    /// Really delete (without it, only print what would be freed).
    #[arg(long)]
    pub yes: bool,
    /// Go on when a spec or lock cannot be read, treating what only it
    /// references as unused.
    #[arg(long)]
    pub force: bool,
}

pub(crate) fn realize(ctx: &Ctx, mut args: RealizeArgs) -> anyhow::Result<Exit> {
    args.flags.confine = args.confine;
    let loaded = pipeline::load(ctx, args.id.as_deref(), &args.flags)?;
    if args.dry_run {
        return dry_run(ctx, &loaded, &args.flags);
    }
    let lock = pipeline::lock_for(ctx, &loaded)?;
    let req = pipeline::request(ctx, &loaded, &lock, &args.flags)?;
    let progress = RealizeProgress::new(&ctx.out);
    let started = std::time::Instant::now();
    let realized = pipeline::realize(ctx, &req, &progress)?;
    let elapsed = started.elapsed();
    if ctx.json {
        ctx.out.json(&json!({
            "version_id": loaded.spec.version_id,
            "home": realized.home.root(),
            "warm": realized.warm,
            "missing_models": realized.missing_models,
            "seconds": elapsed.as_secs_f64(),
            "scripts_confined": realized.scripts_confined.as_ref().map(|s| s.confined),
            "scripts_confined_reason": realized.scripts_confined.as_ref().map(|s| &s.reason),
        }));
    } else {
        let how = if realized.warm {
            "already realized"
        } else {
            "realized"
        };
        ctx.out.info(&format!(
            "{} {how} in {:.2?}",
            loaded.spec.version_id, elapsed
        ));
        ctx.out.data(&realized.home.root().display().to_string());
    }
    Ok(Exit::Success)
}

fn dry_run(
    ctx: &Ctx,
    loaded: &comfyver_spec::Loaded,
    flags: &RealizeFlags,
) -> anyhow::Result<Exit> {
    // The lock: the current one when it matches, else what resolving would give.
    let opts = comfyver_resolver::ResolveOptions {
        dry_run: true,
        ..ctx.resolve_options(Some(&loaded.spec))?
    };
    let outcome = comfyver_resolver::resolve(
        &loaded.spec,
        &ctx.layout,
        &opts,
        &comfyver_resolver::NoReporter,
    )?;
    let Some(lock) = &outcome.lock else {
        anyhow::bail!(
            "the plan needs the lock, and a short commit prefix in the spec can only be expanded by fetching: run `comfyver resolve {}` first",
            loaded.spec.version_id
        );
    };
    let req = pipeline::request(ctx, loaded, lock, flags)?;
    let plan = comfyver_realize::plan(&req)?;
    if ctx.json {
        ctx.out.json(&serde_json::to_value(&plan)?);
        return Ok(Exit::Success);
    }
    let o = &ctx.out;
    o.data(&format!(
        "plan for {} (nothing is changed)",
        loaded.spec.version_id
    ));
    o.data(&format!(
        "home      {}{}",
        plan.home.display(),
        if plan.warm {
            "  (already realized: nothing to do)"
        } else {
            ""
        }
    ));
    if !outcome.changes.is_empty() {
        o.data(&format!(
            "lock      would change: {} entr{}",
            outcome.changes.len(),
            if outcome.changes.len() == 1 {
                "y"
            } else {
                "ies"
            }
        ));
    }
    o.data(&format!(
        "core      {}  {}",
        short(&plan.core.what),
        plan.core.action
    ));
    for n in &plan.nodes {
        o.data(&format!(
            "node      {:<28} {}  {}",
            n.name,
            short(&n.what),
            n.action
        ));
    }
    for m in &plan.models {
        let size = m
            .bytes
            .map(human_bytes)
            .unwrap_or_else(|| "size unknown".into());
        o.data(&format!(
            "model     {:<28} {}  ({size}) from {}",
            m.name, m.action, m.what
        ));
    }
    match (&plan.python, &plan.python_note) {
        (Some(p), _) => {
            o.data(&format!(
                "python    {} with {}: {:?}",
                p.venv.display(),
                p.installer,
                p.state
            ));
            o.data(&format!(
                "          install: {}",
                serde_json::to_string(&p.install)?
            ));
            for (name, st) in &p.install_scripts {
                o.data(&format!("          install.py of {name}: {st:?}"));
            }
        }
        (None, Some(note)) => o.data(&format!("python    {note}")),
        (None, None) => {}
    }
    Ok(Exit::Success)
}

pub(crate) fn verify(ctx: &Ctx, args: VerifyArgs) -> anyhow::Result<Exit> {
    let loaded = ctx.load(&args.id)?;
    let lock = match &args.against {
        Some(file) => crate::commands::diff::read_lock_file(file)?,
        None => match comfyver_resolver::read_lock(&ctx.layout, &loaded.spec.version_id)? {
            Some(lock) => lock,
            None => anyhow::bail!(
                "{} is not resolved yet: run `comfyver realize {}`",
                args.id,
                args.id
            ),
        },
    };
    let home = pipeline::home_for(ctx, &loaded.spec.version_id, args.home.as_ref());
    let problems = comfyver_realize::verify(&home, &lock, &ctx.layout, args.rehash)?;
    if ctx.json {
        let list: Vec<_> = problems
            .iter()
            .map(|p| json!({"what": p.what, "message": p.message}))
            .collect();
        ctx.out
            .json(&json!({"home": home.root(), "ok": problems.is_empty(), "problems": list}));
    } else if problems.is_empty() {
        ctx.out
            .data(&format!("ok  {} ({})", args.id, home.root().display()));
    } else {
        for p in &problems {
            diagnostics::problem(&p.what, &p.message);
        }
        diagnostics::hint(&format!(
            "`comfyver realize --repair {}` repairs the home",
            args.id
        ));
    }
    Ok(if problems.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

pub(crate) fn remove(ctx: &Ctx, args: RemoveArgs) -> anyhow::Result<Exit> {
    if let Some(reason) = comfyver_spec::names::version_id_reason(&args.id) {
        anyhow::bail!("`{}` is not a version id: {reason}", args.id);
    }
    let home = pipeline::home_for(ctx, &args.id, args.home.as_ref());
    if comfyver_realize::remove_home(&home, &ctx.layout)? {
        ctx.out.info(&format!("removed {}", home.root().display()));
    } else {
        ctx.out.info(&format!(
            "nothing to remove: {} does not exist",
            home.root().display()
        ));
    }
    Ok(Exit::Success)
}

pub(crate) fn gc(ctx: &Ctx, args: GcArgs) -> anyhow::Result<Exit> {
    let refs = pipeline::references(ctx, args.force)?;
    let plan = comfyver_realize::gc_plan(&ctx.layout, &refs)?;
    for e in &plan.nodes.unused {
        ctx.out.data(&format!(
            "{:<9} {:>10}  {}",
            e.kind.as_str(),
            human_bytes(e.bytes),
            e.path.display()
        ));
    }
    for m in plan.models.files.iter().chain(&plan.models.partials) {
        ctx.out.data(&format!(
            "{:<9} {:>10}  {}",
            "model",
            human_bytes(m.size),
            m.path
        ));
    }
    if !args.yes {
        ctx.out.info(&format!(
            "would free {} (dry run; pass --yes to delete)",
            human_bytes(plan.bytes())
        ));
        return Ok(Exit::Success);
    }
    // Asked again under each entry's lock: a realize may have started using it
    // (the warnings for what --force ignores were printed once, above).
    let current = || {
        comfyver_realize::references(&ctx.layout, &ctx.versions_dir, args.force)
            .ok()
            .map(|(refs, _)| refs)
    };
    let freed = comfyver_realize::gc_apply(&ctx.layout, &plan, &current)?;
    ctx.out.info(&format!("freed {}", human_bytes(freed)));
    Ok(Exit::Success)
}
