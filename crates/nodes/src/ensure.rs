//! The realize stage's entry points: every node of a lock checked out, in
//! parallel, with one precise error when offline and something is missing.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use comfyver_fs::CacheLayout;
use comfyver_git::Mirror;
use comfyver_spec::{RepoUrl, ResolvedLock, UrlRewrites, lock::LockedRepo};

use crate::checkout::{ensure_node_checkout, is_checkout_complete};
use crate::error::MissingCommit;
use crate::{NodesError, Reporter};

/// How nodes are fetched and checked out.
#[derive(Debug, Clone)]
pub struct NodesOptions {
    /// At most this many fetches/checkouts at once (at least 1).
    pub jobs: usize,
    /// Use mirrors only; list every missing commit in one error.
    pub offline: bool,
    /// URL rewrite rules applied before any network access.
    pub rewrites: UrlRewrites,
}

impl Default for NodesOptions {
    fn default() -> Self {
        NodesOptions {
            jobs: 4,
            offline: false,
            rewrites: UrlRewrites::default(),
        }
    }
}

/// A node pack checked out in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCheckout {
    /// The node's directory name in a home's `custom_nodes/`.
    pub name: String,
    /// The repository's cache slug.
    pub slug: String,
    /// The full commit.
    pub commit: String,
    /// `<custom_nodes>/<slug>@<commit>`.
    pub path: PathBuf,
}

/// One unit of parallel work.
#[derive(Debug, Clone)]
struct Job {
    label: String,
    repo: RepoUrl,
    commit: String,
    /// A checkout (else: only the commit in the mirror, for the core).
    checkout: bool,
}

/// Makes sure every custom node of `lock` is checked out in the cache and
/// returns them in lock order. Complete entries cost one `stat` each (no git,
/// no network). Missing ones are fetched into their mirrors and checked out,
/// `opts.jobs` at a time; offline, every missing repository/commit is listed
/// in one [`NodesError::OfflineMissing`].
pub fn ensure_nodes(
    lock: &ResolvedLock,
    layout: &CacheLayout,
    opts: &NodesOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<NodeCheckout>, NodesError> {
    fill(lock, layout, opts, reporter, false)
}

/// Like [`ensure_nodes`], and also brings the core's locked commit into its
/// mirror so that a later [`crate::checkout_core`] needs no network, and
/// checks a core that takes `--base-directory` out into the core cache
/// ([`crate::shared_core::ensure_shared_core`]): fills the caches for a version without
/// realizing it (`comfyver nodes fetch`).
pub fn fill_caches(
    lock: &ResolvedLock,
    layout: &CacheLayout,
    opts: &NodesOptions,
    reporter: &dyn Reporter,
) -> Result<Vec<NodeCheckout>, NodesError> {
    fill(lock, layout, opts, reporter, true)
}

fn fill(
    lock: &ResolvedLock,
    layout: &CacheLayout,
    opts: &NodesOptions,
    reporter: &dyn Reporter,
    with_core: bool,
) -> Result<Vec<NodeCheckout>, NodesError> {
    let mut result = Vec::new();
    let mut jobs: BTreeMap<PathBuf, Job> = BTreeMap::new();
    let mut errors = Vec::new();
    for node in &lock.custom_nodes {
        match plan_node(node, layout) {
            Ok((checkout, repo)) => {
                if is_checkout_complete(&checkout.path) {
                    reporter.ready(&checkout.name, &checkout.commit, &checkout.path, true);
                } else {
                    jobs.entry(checkout.path.clone()).or_insert(Job {
                        label: checkout.name.clone(),
                        repo,
                        commit: checkout.commit.clone(),
                        checkout: true,
                    });
                }
                result.push(checkout);
            }
            Err(e) => errors.push(e),
        }
    }
    if with_core {
        match parse_url(&lock.comfy.repo, "the core") {
            Ok(repo) => {
                let key = layout.git_mirror(&repo.slug()).join(&lock.comfy.commit);
                jobs.insert(
                    key,
                    Job {
                        label: "comfy".into(),
                        repo,
                        commit: lock.comfy.commit.to_ascii_lowercase(),
                        checkout: false,
                    },
                );
            }
            Err(e) => errors.push(e),
        }
    }
    if let Some(e) = NodesError::combine(errors) {
        return Err(e);
    }
    let jobs: Vec<Job> = jobs.into_values().collect();
    if opts.offline {
        let missing = offline_missing(&jobs, layout, opts);
        if !missing.is_empty() {
            return Err(NodesError::OfflineMissing { missing });
        }
    }
    run_parallel(&jobs, opts.jobs, |job| run_job(job, layout, opts, reporter))?;
    if with_core {
        // A core homes will share is checked out now, so that realizing
        // from the filled caches only links it.
        let repo = parse_url(&lock.comfy.repo, "the core")?;
        let commit = lock.comfy.commit.to_ascii_lowercase();
        if crate::shared_core::probe_core(layout, &repo, &commit, &[], opts, reporter)?.shared {
            crate::shared_core::ensure_shared_core(layout, &repo, &commit, opts, reporter)?;
        }
    }
    Ok(result)
}

fn plan_node(
    node: &LockedRepo,
    layout: &CacheLayout,
) -> Result<(NodeCheckout, RepoUrl), NodesError> {
    let repo = parse_url(&node.repo, "a custom node")?;
    let name = match &node.name {
        Some(n) => n.clone(),
        None => comfyver_spec_default_name(&node.repo),
    };
    if let Some(reason) = comfyver_spec::names::unsafe_component_reason(&name) {
        return Err(NodesError::BadName { name, reason });
    }
    let commit = node.commit.to_ascii_lowercase();
    let slug = repo.slug();
    let path = layout.node_checkout(&slug, &commit);
    Ok((
        NodeCheckout {
            name,
            slug,
            commit,
            path,
        },
        repo,
    ))
}

/// The last path segment without `.git`, git's default clone directory name.
fn comfyver_spec_default_name(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    let last = trimmed.rsplit([':', '/']).next().unwrap_or(trimmed);
    last.strip_suffix(".git").unwrap_or(last).to_string()
}

fn parse_url(url: &str, what: &str) -> Result<RepoUrl, NodesError> {
    RepoUrl::parse(url).map_err(|source| NodesError::Url {
        what: format!("{what} ({})", comfyver_spec::redact(url)),
        source,
    })
}

fn offline_missing(jobs: &[Job], layout: &CacheLayout, opts: &NodesOptions) -> Vec<MissingCommit> {
    let mut missing = Vec::new();
    for job in jobs {
        match Mirror::existing(layout, &job.repo, &opts.rewrites) {
            Some(m) if m.has_commit(&job.commit) => {}
            found => missing.push(MissingCommit {
                repo: job.repo.redacted(),
                commit: job.commit.clone(),
                no_mirror: found.is_none(),
            }),
        }
    }
    missing
}

fn run_job(
    job: &Job,
    layout: &CacheLayout,
    opts: &NodesOptions,
    reporter: &dyn Reporter,
) -> Result<(), NodesError> {
    if job.checkout {
        let (path, cached) =
            ensure_node_checkout(layout, &job.repo, &job.commit, opts, reporter, &job.label)?;
        reporter.ready(&job.label, &job.commit, &path, cached);
    } else {
        let mirror = Mirror::open(layout, &job.repo, &opts.rewrites)?;
        mirror.ensure_commit_with(&job.commit, opts.offline, reporter)?;
        reporter.ready(&job.label, &job.commit, mirror.path(), true);
    }
    Ok(())
}

/// Runs `work` over `items` on at most `jobs` threads; every failure is kept.
fn run_parallel<T: Sync>(
    items: &[T],
    jobs: usize,
    work: impl Fn(&T) -> Result<(), NodesError> + Sync,
) -> Result<(), NodesError> {
    let next = Mutex::new(0usize);
    let errors = Mutex::new(Vec::new());
    let threads = jobs.max(1).min(items.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    loop {
                        let i = {
                            let mut n = next.lock().unwrap_or_else(|p| p.into_inner());
                            let i = *n;
                            *n += 1;
                            i
                        };
                        let Some(item) = items.get(i) else { break };
                        if let Err(e) = work(item) {
                            errors.lock().unwrap_or_else(|p| p.into_inner()).push(e);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            if h.join().is_err() {
                errors
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(NodesError::WorkerPanicked);
            }
        }
    });
    let errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    match NodesError::combine(errors) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
