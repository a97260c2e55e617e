//! The stages composed: spec → lock (cached) → realized home. Shared by
//! `realize`, `run` and `test`.

use std::path::PathBuf;

use comfyver_realize::{Home, RealizeRequest, Realized};
use comfyver_resolver::{ResolveOptions, UpdatePolicy};
use comfyver_spec::{Loaded, ResolvedLock};

use crate::context::Ctx;

/// Flags of every command that realizes a version.
#[derive(Debug, Clone, clap::Args)]
pub struct RealizeFlags {
    /// Install Python packages from this wheel directory (find-links); with
    /// --offline no index is used at all.
    #[arg(long, value_name = "DIR", env = "COMFYVER_WHEELS_DIR")]
    pub wheels_dir: Option<PathBuf>,
    /// Do not download models (missing ones are reported as warnings).
    #[arg(long)]
    pub skip_models: bool,
    /// Parallel fetches and downloads.
    #[arg(
        long,
        short = 'j',
        value_name = "N",
        default_value_t = 4,
        env = "COMFYVER_JOBS"
    )]
    pub jobs: usize,
    /// The version's home [default: /runpod-volume/comfy-<id> on RunPod, else <cache>/versions/comfy-<id>].
    #[arg(long, value_name = "DIR", env = "COMFY_HOME")]
    pub home: Option<PathBuf>,
    /// A spec file outside the versions directory (instead of an id).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Rebuild the home even when it looks complete, hashing every model
    /// and fetching again what does not verify (moved aside first).
    #[arg(long)]
    pub repair: bool,
}

/// Loads the spec named by `id` or `--spec`.
pub fn load(ctx: &Ctx, id: Option<&str>, flags: &RealizeFlags) -> anyhow::Result<Loaded> {
    match (&flags.spec, id) {
        (Some(file), _) => ctx.load(&file.to_string_lossy()),
        (None, Some(id)) => ctx.load(id),
        (None, None) => anyhow::bail!("name a version id or pass --spec FILE"),
    }
}

/// The version's lock: reused when it matches the spec (no network), else
/// resolved and written.
pub fn lock_for(ctx: &Ctx, loaded: &Loaded, jobs: usize) -> anyhow::Result<ResolvedLock> {
    let spec = &loaded.spec;
    let opts = ResolveOptions {
        offline: ctx.offline || spec.offline(),
        update: UpdatePolicy::None,
        jobs: jobs.max(1),
        rewrites: ctx.rewrites()?,
        ..ResolveOptions::default()
    };
    let outcome =
        comfyver_resolver::resolve(spec, &ctx.layout, &opts, &comfyver_resolver::NoReporter)?;
    if outcome.written {
        ctx.out.info(&format!(
            "resolved {} into {}",
            spec.version_id,
            ctx.layout.lock_file(&spec.version_id).display()
        ));
    }
    outcome
        .lock
        .ok_or_else(|| anyhow::anyhow!("resolving {} gave no lock", spec.version_id))
}

/// The home of a version: `--home`/`COMFY_HOME`, else the default.
pub fn home_for(ctx: &Ctx, version_id: &str, home: Option<&PathBuf>) -> Home {
    match home {
        Some(h) => Home::new(std::path::absolute(h).unwrap_or_else(|_| h.clone())),
        None => comfyver_realize::default_home(&ctx.layout, version_id),
    }
}

/// A realize request for `loaded` with `lock`.
pub fn request<'a>(
    ctx: &'a Ctx,
    loaded: &'a Loaded,
    lock: &'a ResolvedLock,
    flags: &RealizeFlags,
) -> anyhow::Result<RealizeRequest<'a>> {
    let spec = &loaded.spec;
    Ok(RealizeRequest {
        spec,
        lock,
        layout: &ctx.layout,
        home: home_for(ctx, &spec.version_id, flags.home.as_ref()),
        offline: ctx.offline || spec.offline(),
        skip_models: flags.skip_models,
        wheels_dir: flags
            .wheels_dir
            .as_ref()
            .map(|w| std::path::absolute(w).unwrap_or_else(|_| w.clone())),
        jobs: flags.jobs,
        rewrites: ctx.rewrites()?,
        installer: None,
        repair: flags.repair,
    })
}

/// Realizes the version and records the installed Python set in its lock.
pub fn realize(
    ctx: &Ctx,
    req: &RealizeRequest<'_>,
    reporter: &dyn comfyver_realize::RealizeReporter,
) -> anyhow::Result<Realized> {
    let realized = comfyver_realize::realize(req, reporter)?;
    if let Some(python) = &realized.python
        && req.lock.python.as_ref() != Some(python)
    {
        let mut lock = req.lock.clone();
        lock.python = Some(python.clone());
        comfyver_resolver::write_lock(&ctx.layout, &lock)?;
    }
    for m in &realized.missing_models {
        ctx.out.warn(&format!(
            "model {m} is not in the store (offline or skipped); workflows that need it will fail"
        ));
    }
    for w in &realized.warnings {
        ctx.out.warn(w);
    }
    Ok(realized)
}
