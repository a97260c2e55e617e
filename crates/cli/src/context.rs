//! What every command needs: where things are and how to talk.

use std::path::PathBuf;

use anyhow::Context as _;
use comfyver_fs::CacheLayout;
use comfyver_resolver::ResolveOptions;
use comfyver_spec::Loaded;

use crate::cli::GlobalArgs;
use crate::output::Printer;

/// Paths, connectivity and output settings resolved from flags and env.
pub(crate) struct Ctx {
    /// The versions directory.
    pub versions_dir: PathBuf,
    /// The cache layout.
    pub layout: CacheLayout,
    /// `--offline`.
    pub offline: bool,
    /// `--json`.
    pub json: bool,
    /// `--jobs` (at least 1).
    pub jobs: usize,
    /// Time allowed for one git remote operation (`COMFYVER_GIT_TIMEOUT`).
    pub git_timeout: std::time::Duration,
    /// stdout/stderr writer that knows `-q`/`-v`.
    pub out: Printer,
    /// The URL rewrite rules, read once, when first needed.
    rewrites: std::sync::OnceLock<comfyver_spec::UrlRewrites>,
}

impl Ctx {
    pub(crate) fn from_args(g: &GlobalArgs) -> anyhow::Result<Ctx> {
        let root = match &g.cache_dir {
            Some(p) => absolute(p)?,
            None => comfyver_fs::default_cache_root(),
        };
        let mut layout = CacheLayout::new(root);
        if let Some(m) = &g.models_dir {
            layout = layout.with_models_dir(absolute(m)?);
        }
        if let Some(n) = &g.custom_nodes_dir {
            layout = layout.with_custom_nodes_dir(absolute(n)?);
        }
        Ok(Ctx {
            versions_dir: g.versions_dir.clone().unwrap_or_else(|| "versions".into()),
            layout,
            offline: g.offline,
            json: g.json,
            jobs: g.jobs.max(1),
            git_timeout: git_timeout()?,
            out: Printer::new(g.verbose, g.quiet, g.color),
            rewrites: std::sync::OnceLock::new(),
        })
    }

    /// The spec file of a version id (validated so it cannot escape the directory).
    pub(crate) fn spec_path(&self, id: &str) -> anyhow::Result<PathBuf> {
        if let Some(reason) = comfyver_spec::names::version_id_reason(id) {
            anyhow::bail!("`{id}` is not a version id: {reason}");
        }
        Ok(self.versions_dir.join(format!("{id}.json")))
    }

    /// Loads a version by id, or by path when the argument names a `.json` file.
    pub(crate) fn load(&self, id_or_path: &str) -> anyhow::Result<Loaded> {
        let path = if id_or_path.ends_with(".json") || id_or_path.contains('/') {
            PathBuf::from(id_or_path)
        } else {
            let p = self.spec_path(id_or_path)?;
            if !p.exists() {
                anyhow::bail!(
                    "no version `{id_or_path}`: {} does not exist (versions directory: {}; set --versions-dir or COMFY_VERSIONS_DIR)",
                    p.display(),
                    self.versions_dir.display()
                );
            }
            p
        };
        let loaded = comfyver_spec::load_spec(&path)?;
        for w in &loaded.warnings {
            self.out.warn(&format!("{}: {w}", path.display()));
        }
        Ok(loaded)
    }

    /// The specs a command works on: `ids` as given, or with `all` every
    /// spec file of the versions directory (an error when there is none).
    pub(crate) fn targets(&self, ids: &[String], all: bool) -> anyhow::Result<Vec<String>> {
        if !all {
            return Ok(ids.to_vec());
        }
        let paths = self.all_spec_paths()?;
        if paths.is_empty() {
            anyhow::bail!("no *.json specs in {}", self.versions_dir.display());
        }
        Ok(paths.iter().map(|p| p.display().to_string()).collect())
    }

    /// Every spec file in the versions directory, sorted by id.
    pub(crate) fn all_spec_paths(&self) -> anyhow::Result<Vec<PathBuf>> {
        Ok(comfyver_spec::spec_files(&self.versions_dir)?)
    }

    /// How the resolver runs for `spec` (or for no spec in particular): the
    /// one place that turns flags, the spec's `offline` and the environment
    /// into [`ResolveOptions`]; commands change only what is theirs
    /// (`locked`, `dry_run`, `update`).
    pub(crate) fn resolve_options(
        &self,
        spec: Option<&comfyver_spec::VersionSpec>,
    ) -> anyhow::Result<ResolveOptions> {
        Ok(ResolveOptions {
            offline: self.offline || spec.is_some_and(|s| s.offline()),
            jobs: self.jobs,
            timeout: self.git_timeout,
            rewrites: self.rewrites()?,
            ..ResolveOptions::default()
        })
    }
}

/// `COMFYVER_GIT_TIMEOUT` as `comfyver_git::git_timeout` reads it (the one
/// reading: a positive whole number of seconds, the default when unset).
fn git_timeout() -> anyhow::Result<std::time::Duration> {
    Ok(comfyver_git::git_timeout()?)
}

fn absolute(p: &std::path::Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("could not make {} absolute", p.display()))
}

impl Ctx {
    /// URL rewrite rules: `COMFYVER_URL_REWRITES` first, then the cache's
    /// `config.json`, read once per command by
    /// `comfyver_spec::UrlRewrites::from_settings` (a command that needs no
    /// rules never reads them, so a bad file does not stop it).
    pub(crate) fn rewrites(&self) -> anyhow::Result<comfyver_spec::UrlRewrites> {
        if let Some(rules) = self.rewrites.get() {
            return Ok(rules.clone());
        }
        let rules = comfyver_spec::UrlRewrites::from_settings(&self.layout.config_file())?;
        Ok(self.rewrites.get_or_init(|| rules).clone())
    }
}
