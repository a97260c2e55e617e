//! The stages composed: spec → lock (cached) → realized home. Shared by
//! `realize`, `run`, `test` and `serve`.

use std::path::PathBuf;

use comfyver_fs::ConfineMode;
use comfyver_handler::ComfyEnv;
use comfyver_realize::{Home, HomeInUse, LockRecord, RealizeRequest, Realized, References};
use comfyver_spec::{Loaded, ResolvedLock};

use crate::context::Ctx;

/// Flags of every command that realizes a version.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct RealizeFlags {
    /// Install Python packages from this wheel directory (find-links); with
    /// --offline no index is used at all.
    #[arg(long, value_name = "DIR", env = comfyver_env::COMFYVER_WHEELS_DIR)]
    pub wheels_dir: Option<PathBuf>,
    /// Do not download models (missing ones are reported as warnings).
    #[arg(long)]
    pub skip_models: bool,
    /// The version's home [default: /runpod-volume/comfy-<id> on RunPod, else <cache>/versions/comfy-<id>].
    #[arg(long, value_name = "DIR", env = comfyver_env::COMFY_HOME)]
    pub home: Option<PathBuf>,
    /// A spec file outside the versions directory (instead of an id).
    #[arg(long, value_name = "FILE")]
    pub spec: Option<PathBuf>,
    /// Rebuild the home even when it looks complete, hashing every model
    /// and fetching again what does not verify (moved aside first).
    #[arg(long)]
    pub repair: bool,
    /// How install scripts are confined: set by each command from its
    /// `--confine` (`realize`'s own, the session's for `run`, `test`,
    /// `launch` and `serve`), so one flag governs scripts and ComfyUI alike.
    #[arg(skip)]
    pub confine: ConfineMode,
}

/// Loads the spec named by `id` or `--spec`.
pub(crate) fn load(ctx: &Ctx, id: Option<&str>, flags: &RealizeFlags) -> anyhow::Result<Loaded> {
    match (&flags.spec, id) {
        (Some(file), _) => ctx.load(&file.to_string_lossy()),
        (None, Some(id)) => ctx.load(id),
        (None, None) => anyhow::bail!("name a version id or pass --spec FILE"),
    }
}

/// The version's lock: reused when it matches the spec (no network), else
/// resolved and written.
pub(crate) fn lock_for(ctx: &Ctx, loaded: &Loaded) -> anyhow::Result<ResolvedLock> {
    let spec = &loaded.spec;
    let opts = ctx.resolve_options(Some(spec))?;
    let outcome =
        comfyver_resolver::resolve(spec, &ctx.layout, &opts, &comfyver_resolver::NoReporter)?;
    for w in &outcome.warnings {
        ctx.out.warn(w);
    }
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

/// The lock of a version named by id (or spec path) for commands that need
/// only the lock: resolved from the spec when missing or stale, or, when
/// there is no spec but a lock (a cache pre-warmed from locks alone), that
/// lock as it is.
pub(crate) fn lock_for_id(ctx: &Ctx, id: &str) -> anyhow::Result<ResolvedLock> {
    let is_path = id.ends_with(".json") || id.contains('/');
    if !is_path
        && !ctx.spec_path(id)?.exists()
        && let Some(lock) = comfyver_resolver::read_lock(&ctx.layout, id)?
    {
        return Ok(lock);
    }
    let loaded = ctx.load(id)?;
    lock_for(ctx, &loaded)
}

/// What keeps cache entries alive, for `gc` and `models gc` alike
/// (`comfyver_realize::references`), with a warning for each file `--force`
/// ignores.
pub(crate) fn references(ctx: &Ctx, force: bool) -> anyhow::Result<References> {
    let (refs, ignored) = comfyver_realize::references(&ctx.layout, &ctx.versions_dir, force)?;
    for ignored in &ignored {
        ctx.out.warn(&format!(
            "--force: ignoring {} ({}); what only it references is treated as unused",
            ignored.path.display(),
            ignored.reason
        ));
    }
    Ok(refs)
}

/// The home of a version: `--home`/`COMFY_HOME`, else the default.
pub(crate) fn home_for(ctx: &Ctx, version_id: &str, home: Option<&PathBuf>) -> Home {
    match home {
        Some(h) => Home::new(std::path::absolute(h).unwrap_or_else(|_| h.clone())),
        None => comfyver_realize::default_home(&ctx.layout, version_id),
    }
}

/// A realize request for `loaded` with `lock`.
pub(crate) fn request<'a>(
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
        jobs: ctx.jobs,
        rewrites: ctx.rewrites()?,
        installer: None,
        repair: flags.repair,
        confine: flags.confine,
    })
}

/// Realizes the version (which records the installed Python set in its
/// lock) and says what the user should know.
pub(crate) fn realize(
    ctx: &Ctx,
    req: &RealizeRequest<'_>,
    reporter: &dyn comfyver_realize::RealizeReporter,
) -> anyhow::Result<Realized> {
    let realized = comfyver_realize::realize(req, reporter)?;
    warn_after(ctx, req, &realized);
    Ok(realized)
}

/// [`realize`], then holds the home in use (shared) until the guard drops:
/// for `run`, `test` and `serve`, whose ComfyUI must not see its home change.
pub(crate) fn realize_for_use(
    ctx: &Ctx,
    req: &RealizeRequest<'_>,
    reporter: &dyn comfyver_realize::RealizeReporter,
) -> anyhow::Result<(Realized, HomeInUse)> {
    let (realized, in_use) = comfyver_realize::realize_for_use(req, reporter)?;
    warn_after(ctx, req, &realized);
    Ok((realized, in_use))
}

/// Warns about a lock that moved on meanwhile, missing models and what
/// else the realize reported.
fn warn_after(ctx: &Ctx, req: &RealizeRequest<'_>, realized: &Realized) {
    if realized.lock_record == LockRecord::Superseded {
        let id = &req.lock.version_id;
        ctx.out.warn(&format!(
            "the lock of `{id}` changed while realizing (a `resolve` meanwhile?): kept the newer lock \
             and did not record this Python set; run `comfyver realize {id}` to realize the newer lock"
        ));
    }
    for m in &realized.missing_models {
        ctx.out.warn(&format!(
            "model {m} is not in the store (offline or skipped); workflows that need it will fail"
        ));
    }
    for w in &realized.warnings {
        ctx.out.warn(w);
    }
    match &realized.scripts_confined {
        Some(s) if s.confined => ctx
            .out
            .info(&format!("install scripts ran confined: {}", s.reason)),
        Some(s) if req.confine == ConfineMode::Off => ctx
            .out
            .info(&format!("install scripts ran unconfined: {}", s.reason)),
        Some(s) => ctx.out.warn(&format!(
            "install scripts ran unconfined: {}; they could write anywhere comfyver can",
            s.reason
        )),
        None => {}
    }
}

/// The environment ComfyUI runs in for version `id` (or `--spec`): resolved
/// (cached lock), realized (the warm path when it is), ready to start, and
/// its home held in use until the guard drops.
pub(crate) fn comfy_env(
    ctx: &Ctx,
    id: Option<&str>,
    flags: &RealizeFlags,
    reporter: &dyn comfyver_realize::RealizeReporter,
) -> anyhow::Result<(ComfyEnv, HomeInUse)> {
    let loaded = load(ctx, id, flags)?;
    let lock = lock_for(ctx, &loaded)?;
    let req = request(ctx, &loaded, &lock, flags)?;
    let (realized, in_use) = realize_for_use(ctx, &req, reporter)?;
    Ok((
        env_of(&realized.home, &loaded.spec, &lock, ctx.layout.models_dir()),
        in_use,
    ))
}

/// How ComfyUI starts from `home`: from its core (`<home>/core` on a shared
/// core, with `--base-directory <home>` and the home's
/// `extra_model_paths.yaml`; a copied core loads that file by itself), with
/// the home's Python environment under the spec's `env`.
pub(crate) fn env_of(
    home: &Home,
    spec: &comfyver_spec::VersionSpec,
    lock: &ResolvedLock,
    models_dir: &std::path::Path,
) -> ComfyEnv {
    let mut env: std::collections::BTreeMap<String, String> =
        home.python_env().into_iter().collect();
    env.extend(spec.env.clone());
    ComfyEnv {
        python: home.python(),
        core_dir: home.core_dir(),
        base_dir: home.base_dir(),
        extra_model_paths: home.model_paths_config(),
        env,
        logs_dir: home.logs_dir(),
        data_dir: home.data_dir(),
        version_id: spec.version_id.clone(),
        node_packs: lock
            .custom_nodes
            .iter()
            .filter_map(|n| n.name.clone())
            .collect(),
        model_dirs: vec![models_dir.to_path_buf()],
        node_index: node_index_file(home),
    }
}

/// Where the home's node index lives and the key it must carry; `None`
/// while the home has no complete realize.
pub(crate) fn node_index_file(home: &Home) -> Option<comfyver_handler::node_index::NodeIndexFile> {
    Some(comfyver_handler::node_index::NodeIndexFile {
        path: home.node_index_file(),
        key: home.stamp_key()?,
    })
}

/// The node index of version `id`'s home (`--home` when given) as realized
/// now, if its ComfyUI has started once since.
pub(crate) fn node_index(
    ctx: &Ctx,
    id: &str,
    home: Option<&PathBuf>,
) -> Option<comfyver_handler::node_index::NodeIndex> {
    node_index_file(&home_for(ctx, id, home))
        .and_then(|f| comfyver_handler::node_index::NodeIndex::read(&f))
}
