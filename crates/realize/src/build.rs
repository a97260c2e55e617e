//! `realize`: a version on disk in one call, and a warm path that costs a
//! handful of stats.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use comfyver_fs::{CacheLayout, ConfineMode, ConfineStatus, FileLock};
use comfyver_git::TreeFile;
use comfyver_models::FetchOptions;
use comfyver_nodes::{NodeCheckout, NodesOptions};
use comfyver_python::{self as python, InstallScript, Installer, PythonInputs};
use comfyver_resolver::LockWrite;
use comfyver_spec::{
    RepoUrl, ResolvedLock, TOOL_VERSION, UrlRewrites, VersionSpec, lock::LockedPython,
    model_folders,
};

use crate::describe::{has_recorded_lock, record_lock};
use crate::stamp::{Stamp, clear_stamp, is_warm_for, lock_key, write_stamp};
use crate::{Home, RealizeError, RealizeReporter};

/// What to realize and how.
#[derive(Debug, Clone)]
pub struct RealizeRequest<'a> {
    /// The version's spec.
    pub spec: &'a VersionSpec,
    /// Its resolved lock.
    pub lock: &'a ResolvedLock,
    /// The cache.
    pub layout: &'a CacheLayout,
    /// Where the home goes.
    pub home: Home,
    /// Use no network.
    pub offline: bool,
    /// Do not download models (missing ones are warnings).
    pub skip_models: bool,
    /// A local wheel directory (find-links).
    pub wheels_dir: Option<PathBuf>,
    /// Parallel fetches and downloads.
    pub jobs: usize,
    /// URL rewrite rules for git.
    pub rewrites: UrlRewrites,
    /// The installer; detected (uv, else pip) when `None`.
    pub installer: Option<Installer>,
    /// Repair: skip the warm path, hash every model and fetch again what
    /// does not verify (the bad file is moved aside), then rebuild the home.
    pub repair: bool,
    /// Whether install scripts run confined by Landlock (as ComfyUI does).
    pub confine: ConfineMode,
}

/// What a realize did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Realized {
    /// The home.
    pub home: Home,
    /// True when the warm path answered: nothing was touched.
    pub warm: bool,
    /// The installed Python set (record it in the lock); `None` when warm.
    pub python: Option<LockedPython>,
    /// What became of the installed Python set in the version's lock.
    pub lock_record: LockRecord,
    /// Models that are not in the store (offline or skipped), as store paths.
    pub missing_models: Vec<String>,
    /// Things worth telling the user.
    pub warnings: Vec<String>,
    /// Whether the install scripts that ran were confined, and why; `None`
    /// when none ran.
    pub scripts_confined: Option<ConfineStatus>,
}

/// What became of the installed Python set in the version's lock
/// (`<cache>/resolved/<id>.lock.json`) after a realize.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockRecord {
    /// The set was written into the lock.
    Recorded,
    /// The lock already held it (always so on the warm path, which installs
    /// nothing).
    AlreadyThere,
    /// The lock changed while realizing (a `resolve` meanwhile, or it was
    /// removed): the newer lock was kept and this set not recorded; realize
    /// again to build the newer lock.
    Superseded,
}

/// The default home of a version: `COMFY_HOME` is applied by the caller;
/// this is `/runpod-volume/comfy-<id>` on RunPod, else `<homes>/comfy-<id>`.
pub fn default_home(layout: &CacheLayout, version_id: &str) -> Home {
    let volume = Path::new(comfyver_fs::RUNPOD_VOLUME);
    if volume.is_dir() && layout.root().starts_with(volume) {
        return Home::new(volume.join(format!("comfy-{version_id}")));
    }
    Home::new(layout.version_home(version_id))
}

/// Realizes a version: core checkout and node links, models,
/// `extra_model_paths.yaml`, the Python environment, install scripts, then
/// the stamp, and records the installed Python set in the version's lock
/// ([`Realized::lock_record`] says whether it was). When the stamp already
/// matches, returns at once (warm).
///
/// Runs under the home's lock: a second process realizing the same home
/// waits, then finds the stamp and returns warm. The stamp is removed before
/// anything changes and written last, so an interrupted realize is redone.
pub fn realize(
    req: &RealizeRequest<'_>,
    reporter: &dyn RealizeReporter,
) -> Result<Realized, RealizeError> {
    let home = &req.home;
    let skip = req.skip_models || req.spec.skip_models();
    if !req.repair && is_warm_for(home, req.lock, req.layout, skip) {
        return warm(home, req.lock);
    }
    home.check_place(req.layout)?;
    let _lock = FileLock::acquire(&home_lock(req.layout, home))?;
    if !req.repair && is_warm_for(home, req.lock, req.layout, skip) {
        return warm(home, req.lock);
    }
    // The lock may not have been seen by a builder on another host: the
    // lease (O_EXCL, beside the home) is what keeps two builders apart.
    let (_lease, waited) = crate::lease::take(home, comfyver_fs::lock_timeout())?;
    if waited && !req.repair && is_warm_for(home, req.lock, req.layout, skip) {
        return warm(home, req.lock);
    }
    let mut warnings = Vec::new();
    let nodes_opts = NodesOptions {
        jobs: req.jobs.max(1),
        offline: req.offline,
        rewrites: req.rewrites.clone(),
    };

    // The stored lock is redacted; fetches take credentials from the spec.
    let with_secrets = req.lock.with_secrets_from(req.spec);
    // The venv needs only the spec's settings; with a lock that records the
    // Python set, the packages are known before anything is checked out.
    // So: uv's cache is filled with the locked set while the node packs check
    // out (side by side); the home is claimed and its venv made meanwhile. A
    // shared core's requirements are read before its commit is fetched
    // (from the remote, without its blobs, where the server can filter), so
    // the Python install starts with the node packs' checkouts and runs
    // beside the core's fetch and checkout and the model downloads.
    // Each step's children run in its own thread, which lives as long as
    // they do; install scripts run after all of it.
    let early = PythonInputs {
        core_dir: home.root().to_path_buf(),
        nodes: Vec::new(),
        settings: req.spec.python.clone().unwrap_or_default(),
        wheels_dir: req.wheels_dir.clone(),
        offline: req.offline,
        limits: python::Limits::from_env()?,
        rewrites: req.rewrites.clone(),
    };
    let installer = match &req.installer {
        Some(i) => i.clone(),
        None => Installer::detect(early.settings.version.as_deref())?,
    };
    // A step that fails stops the warm-up's download at once: its error
    // is not held back until the locked set is in uv's cache.
    let stop = AtomicBool::new(false);
    let (scripts, links, missing_models, reqs, installed) = std::thread::scope(|s| {
        let stop = &stop;
        let built = (|| {
            let (early, installer, with_secrets) = (&early, &installer, &with_secrets);
            let nodes_opts = &nodes_opts;
            reporter.step("core", &short(&req.lock.comfy.commit));
            reporter.step("nodes", &format!("{} pack(s)", req.lock.custom_nodes.len()));
            let nodes = s.spawn(|| {
                comfyver_nodes::ensure_nodes(with_secrets, req.layout, nodes_opts, reporter.nodes())
            });
            // A new home is claimed at once (marked), so that its venv is made
            // while the core and the node packs are fetched.
            let mut venv = None;
            if is_new(home.root()) {
                home.mark(&req.spec.version_id)?;
                venv = Some(s.spawn(move || {
                    python::prepare_venv(home.root(), req.layout, early, installer)
                }));
            }
            // With the lock's Python set, uv's cache is filled while the
            // install must wait for the core: its commit fetched before its
            // requirements can be read, or an older core checked out into the
            // home. Where they are read at once the install itself starts with
            // the node packs, and a warm-up beside it would only cost time
            // (its throwaway tree: a link and an unlink per file).
            let (core_repo, core_commit) = core_of(req)?;
            let peeked = comfyver_nodes::shared_core::peek_core(
                req.layout,
                &core_repo,
                &core_commit,
                &[CORE_REQUIREMENTS],
                nodes_opts,
                reporter.nodes(),
            )?;
            let warm = match &peeked {
                Some(core) if core.shared => None,
                _ => req.lock.python.as_ref().map(|locked| {
                    s.spawn(move || {
                        python::warm_cache(req.layout, home.root(), locked, early, installer, stop)
                    })
                }),
            };
            let probe = match peeked {
                Some(probe) => probe,
                None => {
                    // Fetched first, so the probe reads the mirror and does
                    // not ask the remote again.
                    comfyver_git::Mirror::open(req.layout, &core_repo, &nodes_opts.rewrites)
                        .and_then(|m| {
                            m.ensure_commit_with(&core_commit, nodes_opts.offline, reporter.nodes())
                        })
                        .map_err(comfyver_nodes::NodesError::from)?;
                    comfyver_nodes::shared_core::probe_core(
                        req.layout,
                        &core_repo,
                        &core_commit,
                        &[CORE_REQUIREMENTS],
                        nodes_opts,
                        reporter.nodes(),
                    )?
                }
            };
            let core = CoreProbe::of(core_repo, core_commit, probe);
            if !core.share
                && let Some(made) = venv.take()
            {
                // An older core is checked out into the home itself, which
                // replaces what is there: the venv is made again after it.
                let _ = joined(made);
            }
            let (shared, requirements) = match claim_home(home, req, core, nodes_opts, reporter)? {
                CoreLayout::Copy => (None, None),
                CoreLayout::Shared {
                    repo,
                    commit,
                    requirements,
                } => {
                    let checkout = s.spawn(move || {
                        comfyver_nodes::shared_core::ensure_shared_core(
                            req.layout,
                            &repo,
                            &commit,
                            nodes_opts,
                            reporter.nodes(),
                        )
                    });
                    (Some(checkout), Some(requirements))
                }
            };
            if venv.is_none() {
                python::prepare_venv(home.root(), req.layout, early, installer)?;
            }
            let staged = requirements
                .map(|file| stage_core_requirements(home, file))
                .transpose()?
                .flatten();
            let checkouts = joined(nodes);
            let (links, scripts) = link_step(home, req, &checkouts?)?;
            // Without the requirements read before the checkout, the install reads them
            // from the checkout: it waits for it.
            let mut shared = shared;
            if staged.is_none()
                && let Some(checkout) = shared.take()
            {
                comfyver_nodes::shared_core::link_core(home.root(), &joined(checkout)?)?;
            }

            reporter.step("models", &format!("{} file(s)", req.lock.models.len()));
            reporter.step("python", "");
            let inputs = PythonInputs {
                core_dir: staged
                    .as_ref()
                    .map_or_else(|| home.core_dir(), |d| d.path().to_path_buf()),
                nodes: links.clone(),
                ..early.clone()
            };
            let python = s.spawn(move || -> Result<_, RealizeError> {
                // Best effort: what the warm-up could not fetch, the install
                // reports. Its throwaway tree is deleted beside the install.
                let warmed = warm.and_then(|w| joined(w).ok());
                s.spawn(move || drop(warmed));
                venv.map(joined).transpose()?;
                let reqs = python::collect_requirements(&inputs)?;
                let installed = python::build_env(
                    home.root(),
                    req.layout,
                    &reqs,
                    req.lock.python.as_ref(),
                    installer,
                )?;
                Ok((reqs, installed))
            });
            let models = models_step(home, req, with_secrets, skip, reporter);
            // The shared core is linked after the node packs, so a pack named
            // like one of the core's own entries keeps its place.
            let linked = shared.map(|checkout| -> Result<(), RealizeError> {
                Ok(comfyver_nodes::shared_core::link_core(
                    home.root(),
                    &joined(checkout)?,
                )?)
            });
            let python = joined(python);
            let (missing_models, model_warnings) = models?;
            warnings.extend(model_warnings);
            linked.transpose()?;
            let (reqs, installed) = python?;
            Ok::<_, RealizeError>((scripts, links, missing_models, reqs, installed))
        })();
        if built.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        built
    })?;
    warnings.extend(reqs.warnings.iter().cloned());

    reporter.step("install scripts", "");
    let mut readable = vec![home.core_dir()];
    readable.extend(links.iter().map(|(_, checkout)| checkout.clone()));
    let ran = python::run_install_scripts(
        home.root(),
        &scripts,
        &python::ScriptContext {
            env: &script_env(home, req.spec),
            models_dir: Some(req.layout.models_dir()),
            layout: req.layout,
            installer: &installer,
            reqs: &reqs,
            rewrites: &req.rewrites,
            confine: req.confine,
            landlock: None,
            readable: &readable,
        },
    )?;
    warnings.extend(ran.warnings.iter().cloned());
    // Freeze after the scripts: what they installed is part of the set.
    let installed = if ran.any_ran() {
        python::record_after_scripts(home.root(), &installed)?
    } else {
        installed
    };

    let mut used = req.lock.clone();
    used.python = Some(installed.clone());
    record_lock(home, &used)?;
    write_stamp(
        home,
        &Stamp {
            lock_digest: lock_key(req.lock).to_string(),
            python_inputs_digest: installed.inputs_digest.clone(),
            tool_version: TOOL_VERSION.to_string(),
            models_dir: req.layout.models_dir().to_string_lossy().into_owned(),
            skip_models: skip,
        },
    )?;
    let lock_record = record_python(req, &installed)?;
    Ok(Realized {
        home: home.clone(),
        warm: false,
        python: Some(installed),
        lock_record,
        missing_models,
        warnings,
        scripts_confined: ran.confined,
    })
}

/// Writes the installed Python set back into the version's lock, over the
/// lock this realize started from only (compare-and-swap through the
/// resolver, which owns `<cache>/resolved/`): a lock resolved meanwhile is
/// kept.
fn record_python(
    req: &RealizeRequest<'_>,
    installed: &LockedPython,
) -> Result<LockRecord, RealizeError> {
    if req.lock.python.as_ref() == Some(installed) {
        return Ok(LockRecord::AlreadyThere);
    }
    let mut lock = req.lock.clone();
    lock.python = Some(installed.clone());
    Ok(
        match comfyver_resolver::replace_lock(req.layout, req.lock, &lock)? {
            LockWrite::Written => LockRecord::Recorded,
            LockWrite::Unchanged => LockRecord::AlreadyThere,
            LockWrite::Superseded => LockRecord::Superseded,
        },
    )
}

/// A scoped thread's result; its panic goes on in the caller.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A node's name in `custom_nodes/` and its checkout.
type NodeLink = (String, PathBuf);

/// Node checkouts linked into the home; a pack whose install.py runs gets
/// its own copy (the script writes into its directory, and the shared
/// checkout must stay as checked out), and so does a pack the spec marks
/// `writable` (it writes into its directory at run time). Returns the links
/// and the scripts.
fn link_step(
    home: &Home,
    req: &RealizeRequest<'_>,
    checkouts: &[NodeCheckout],
) -> Result<(Vec<NodeLink>, Vec<InstallScript>), RealizeError> {
    let links: Vec<NodeLink> = checkouts
        .iter()
        .map(|c| (c.name.clone(), c.path.clone()))
        .collect();
    comfyver_nodes::link_nodes(home.root(), &links, req.layout.custom_nodes_dir())?;
    let mut scripts = install_scripts(req.spec, checkouts);
    for script in scripts.iter_mut().filter(|s| {
        (s.enabled && s.dir.join("install.py").is_file()) || is_writable(req.spec, &s.name)
    }) {
        script.dir = comfyver_nodes::isolate_node(home.root(), &script.name, &script.dir)?;
    }
    Ok((links, scripts))
}

/// The models fetched into the store and wired into the home; returns the
/// missing ones (store paths) and warnings.
fn models_step(
    home: &Home,
    req: &RealizeRequest<'_>,
    with_secrets: &ResolvedLock,
    skip: bool,
    reporter: &dyn RealizeReporter,
) -> Result<(Vec<String>, Vec<String>), RealizeError> {
    let fetched = comfyver_models::fetch_models(
        &with_secrets.models,
        req.layout,
        &FetchOptions {
            jobs: req.jobs.max(1),
            offline: req.offline,
            skip,
            repair: req.repair,
            ..FetchOptions::default()
        },
        reporter.models(),
    )?;
    let missing: Vec<String> = fetched.missing().iter().map(|m| m.path.clone()).collect();
    let mut warnings = Vec::new();
    for m in &fetched.models {
        if let Some(aside) = &m.moved_aside {
            warnings.push(format!(
                "{} did not verify: moved it to {} and fetched it again",
                m.path,
                aside.display()
            ));
        }
    }
    for m in fetched.unverified() {
        warnings.push(format!(
            "kept the existing file {} without verifying it (the spec gives no checksum)",
            m.path
        ));
    }
    warnings.extend(wire_model_folders(home, req)?);
    Ok((missing, warnings))
}

/// The warm answer. A home realized before homes recorded their lock gets
/// it now (the stamp proves it was realized from this lock).
fn warm(home: &Home, lock: &ResolvedLock) -> Result<Realized, RealizeError> {
    if !has_recorded_lock(home) {
        record_lock(home, lock)?;
    }
    Ok(Realized {
        home: home.clone(),
        warm: true,
        python: None,
        lock_record: LockRecord::AlreadyThere,
        missing_models: Vec::new(),
        warnings: Vec::new(),
        scripts_confined: None,
    })
}

/// The lock file that serializes work on one home.
pub(crate) fn home_lock(layout: &CacheLayout, home: &Home) -> PathBuf {
    let digest = comfyver_spec::digest::Digest::of_bytes(home.root().to_string_lossy().as_bytes());
    let key = digest.as_str().trim_start_matches("blake3:");
    let name = home
        .root()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    layout.lock_path("home", &format!("{name}-{}", &key[..12]))
}

/// How a home has its core, as [`claim_home`] left it.
enum CoreLayout {
    /// The home is its own checkout of the core (an older core): done.
    Copy,
    /// The shared checkout of `commit`, to be made (when it is not there)
    /// and linked as `<home>/core`. `requirements` is the core's
    /// `requirements.txt`, read before its checkout.
    Shared {
        repo: RepoUrl,
        commit: String,
        requirements: TreeFile,
    },
}

/// The core of the lock: its repository (with the spec's credentials), its
/// commit, whether it can be shared, and its `requirements.txt` (see
/// [`comfyver_nodes::shared_core::probe_core`] and [`comfyver_nodes::shared_core::peek_core`]).
struct CoreProbe {
    repo: RepoUrl,
    commit: String,
    share: bool,
    requirements: TreeFile,
}

/// The lock's core repository (with the spec's credentials: the stored lock
/// is redacted) and commit.
fn core_of(req: &RealizeRequest<'_>) -> Result<(RepoUrl, String), RealizeError> {
    let commit = req.lock.comfy.commit.to_ascii_lowercase();
    let repo = RepoUrl::parse(&req.lock.with_secrets_from(req.spec).comfy.repo).map_err(|e| {
        RealizeError::io(
            "the lock's core repository is not a URL:",
            req.home.root(),
            std::io::Error::other(e.to_string()),
        )
    })?;
    Ok((repo, commit))
}

impl CoreProbe {
    fn of(
        repo: RepoUrl,
        commit: String,
        mut probe: comfyver_nodes::shared_core::CoreProbe,
    ) -> CoreProbe {
        CoreProbe {
            repo,
            commit,
            share: probe.shared,
            // (Read from the checkout, which waits for it.)
            requirements: probe.files.pop().unwrap_or(TreeFile::Other),
        }
    }
}

/// Whether `dir` is not there yet or empty: a home nobody has claimed.
fn is_new(dir: &Path) -> bool {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Claims the home for the core at the locked commit: gives it comfyver's
/// `.comfyver/` directory with the home marker and its data directories. A
/// core that takes `--base-directory` is shared (one checkout per commit in
/// the cache, linked as `<home>/core` once the caller has made it); an
/// older one is checked out into the home here, which becomes its own core
/// (copy mode). A home in the other layout, or a copy at another commit, is
/// replaced (its venv would not match anyway); a directory comfyver did not
/// make is refused.
fn claim_home(
    home: &Home,
    req: &RealizeRequest<'_>,
    core: CoreProbe,
    nodes_opts: &NodesOptions,
    reporter: &dyn RealizeReporter,
) -> Result<CoreLayout, RealizeError> {
    let root = home.root();
    let CoreProbe {
        repo,
        commit,
        share,
        requirements,
    } = core;
    if root.exists() {
        home.remove_stale_marks()?;
        let empty = std::fs::read_dir(root).is_ok_and(|mut d| d.next().is_none());
        if !empty && !home.is_ours() {
            return Err(RealizeError::NotOurs {
                path: root.to_path_buf(),
            });
        }
        clear_stamp(home)?;
        let copy_at = comfyver_nodes::checkout_commit(root).map(|c| c.to_ascii_lowercase());
        let keep = match &copy_at {
            None => share,
            Some(at) => !share && *at == commit,
        };
        if !empty && !keep {
            // Start over, removing the old home by rename first so it never
            // looks whole.
            discard(root)?;
        }
    }
    let layout = if share {
        // The marker first (`.comfyver/` appears with it): from here on the
        // directory is provably ours.
        home.mark(&req.spec.version_id)?;
        CoreLayout::Shared {
            repo,
            commit,
            requirements,
        }
    } else {
        comfyver_nodes::checkout_core(
            req.layout,
            &repo,
            &commit,
            root,
            nodes_opts,
            reporter.nodes(),
        )?;
        let meta = home.meta_dir();
        std::fs::create_dir_all(&meta)
            .map_err(|e| RealizeError::io("could not create", &meta, e))?;
        home.mark(&req.spec.version_id)?;
        CoreLayout::Copy
    };
    for sub in ["input", "output", "temp", "user"] {
        let d = home.data_dir().join(sub);
        std::fs::create_dir_all(&d).map_err(|e| RealizeError::io("could not create", &d, e))?;
    }
    Ok(layout)
}

/// The core's requirements file, as the Python inputs read it.
const CORE_REQUIREMENTS: &str = "requirements.txt";

/// The core's `requirements.txt` read before its checkout, put where the Python
/// inputs can read it as a core directory's: a temporary directory beside
/// `.comfyver/core-requirements` (deleted when dropped, or by the next
/// realize once its writer is provably gone) holding only that file, or
/// nothing when the core has none. `None` when the tree has something there
/// only a checkout resolves (a symlink). The inputs digest depends on the
/// file's lines, not on its place, so it is the one the checkout gives.
fn stage_core_requirements(
    home: &Home,
    file: TreeFile,
) -> Result<Option<comfyver_fs::TempDir>, RealizeError> {
    let bytes = match file {
        TreeFile::Blob(bytes) => Some(bytes),
        TreeFile::Absent => None,
        TreeFile::Other => return Ok(None),
    };
    let place = home.meta_dir().join("core-requirements");
    comfyver_fs::remove_stale_temps(&home.meta_dir(), Some("core-requirements"))?;
    let dir = comfyver_fs::TempDir::beside(&place)?;
    if let Some(bytes) = bytes {
        // A throwaway: no need to make it durable.
        let path = dir.path().join(CORE_REQUIREMENTS);
        std::fs::write(&path, bytes).map_err(|e| RealizeError::io("could not write", &path, e))?;
    }
    Ok(Some(dir))
}

/// Moves a directory out of the way (a rename, atomic) and deletes it.
/// `remove_dir_all` never follows symlinks, so linked caches are untouched.
pub(crate) fn discard(dir: &Path) -> Result<(), RealizeError> {
    Ok(comfyver_fs::discard(dir)?)
}

/// Writes `<home>/extra_model_paths.yaml` (a copied core loads it from its
/// root by itself; a shared core gets it with `--extra-model-paths-config`,
/// see [`Home::model_paths_config`]) and links the home's
/// `models/<top>` into the store for packs' own folders. Returns warnings.
fn wire_model_folders(home: &Home, req: &RealizeRequest<'_>) -> Result<Vec<String>, RealizeError> {
    let mut custom: Vec<String> = req
        .lock
        .models
        .iter()
        .filter_map(|m| m.path.rsplit_once('/').map(|(dir, _)| dir.to_string()))
        .filter(|dir| !model_folders::is_known(dir))
        .collect();
    custom.sort();
    custom.dedup();
    let yaml = comfyver_models::extra_model_paths_yaml(req.layout.models_dir(), &custom);
    comfyver_fs::write_atomic_if_changed(&home.extra_model_paths(), yaml.as_bytes())?;
    Ok(comfyver_models::link_custom_folders(
        &home.root().join("models"),
        req.layout.models_dir(),
        &custom,
    )?)
}

/// The environment of install scripts: the home's Python environment, on a
/// shared core `PYTHONPATH` = the core (so `import folder_paths` works as in
/// ComfyUI), then the spec's `env` over both.
fn script_env(home: &Home, spec: &VersionSpec) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = home.python_env().into_iter().collect();
    if home.base_dir().is_some() {
        env.insert(
            "PYTHONPATH".into(),
            home.core_dir().to_string_lossy().into_owned(),
        );
    }
    env.extend(spec.env.clone());
    env
}

/// Whether the spec marks the pack named `name` `writable`.
fn is_writable(spec: &VersionSpec, name: &str) -> bool {
    spec.custom_nodes
        .iter()
        .any(|n| n.effective_name() == name && n.is_writable())
}

fn install_scripts(spec: &VersionSpec, checkouts: &[NodeCheckout]) -> Vec<InstallScript> {
    checkouts
        .iter()
        .map(|c| InstallScript {
            name: c.name.clone(),
            dir: c.path.clone(),
            commit: c.commit.clone(),
            enabled: spec
                .custom_nodes
                .iter()
                .find(|n| n.effective_name() == c.name)
                .is_none_or(|n| n.runs_install_script()),
        })
        .collect()
}

fn short(commit: &str) -> String {
    commit.chars().take(12).collect()
}
