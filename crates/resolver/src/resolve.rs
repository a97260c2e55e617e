use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use comfyver_fs::CacheLayout;
use comfyver_git::Mirror;
use comfyver_spec::{RepoUrl, ResolvedLock, VersionSpec};

use crate::lockfile::{self, read_lock};
use crate::plan::{self, Entry, Step};
use crate::refs::{RefMatch, match_ref};
use crate::remote::Lister;
use crate::remote::RemoteRef;
use crate::{
    EntryOutcome, Reporter, ResolveError, ResolveOptions, ResolveOutcome, Source, UpdatePolicy,
};

/// Resolves every repository of `spec` to a full commit and keeps
/// `<cache>/resolved/<id>.lock.json` up to date.
///
/// - A lock that matches the spec (same digest) is returned as is: no
///   network, no write (unless `update` asks for re-resolution).
/// - Otherwise only entries that are new or whose repo/ref/commit changed are
///   resolved (plus those `update` names); the rest keep their locked commits.
/// - Repositories are resolved in parallel (`jobs` at a time) by listing the
///   remote's refs; `offline` uses only the lock and local mirrors.
/// - The lock is written atomically under a per-version cross-process lock,
///   and only when its bytes change. `dry_run` and `locked` write nothing.
///
/// When several entries fail, the error lists all of them.
pub fn resolve(
    spec: &VersionSpec,
    layout: &CacheLayout,
    opts: &ResolveOptions,
    reporter: &dyn Reporter,
) -> Result<ResolveOutcome, ResolveError> {
    let id = spec.version_id.as_str();
    let entries = plan::entries_of(spec);
    plan::check_update_names(&entries, &opts.update)?;
    let lock_path = layout.lock_file(id);
    let existing = read_lock(layout, id)?;
    // A lock written before locks were redacted is rewritten without its secrets.
    let current = |l: &ResolvedLock| {
        l.matches(spec)
            && opts.update == UpdatePolicy::None
            && (l.is_redacted() || opts.locked || opts.dry_run)
    };
    if let Some(lock) = &existing
        && current(lock)
    {
        return Ok(unchanged(lock, &entries, lock_path));
    }
    if opts.locked {
        return check_locked(spec, &entries, existing, opts, lock_path);
    }
    if opts.dry_run {
        return run(spec, layout, opts, reporter, &entries, existing.as_ref());
    }
    let _guard = lockfile::take(layout, id)?;
    // Another process may have written the lock while we waited for it.
    let existing = read_lock(layout, id)?;
    if let Some(lock) = &existing
        && current(lock)
    {
        return Ok(unchanged(lock, &entries, lock_path));
    }
    run(spec, layout, opts, reporter, &entries, existing.as_ref())
}

/// The outcome for a lock that already matches the spec.
fn unchanged(lock: &ResolvedLock, entries: &[Entry], lock_path: PathBuf) -> ResolveOutcome {
    let outcomes = entries
        .iter()
        .map(|e| {
            let locked = plan::locked_entry(lock, &e.key);
            outcome(
                e,
                locked.map(|l| l.commit.clone()),
                if e.pinned().is_some() {
                    Source::Pinned
                } else {
                    Source::Locked
                },
            )
        })
        .collect();
    ResolveOutcome {
        entries: outcomes,
        lock: Some(lock.clone()),
        changes: Vec::new(),
        written: false,
        lock_path,
        warnings: Vec::new(),
    }
}

/// `--locked`: succeeds only when nothing would change; never uses the network.
fn check_locked(
    spec: &VersionSpec,
    entries: &[Entry],
    existing: Option<ResolvedLock>,
    opts: &ResolveOptions,
    lock_path: PathBuf,
) -> Result<ResolveOutcome, ResolveError> {
    let Some(old) = existing else {
        return Err(ResolveError::LockMissing {
            version_id: spec.version_id.clone(),
            path: lock_path,
        });
    };
    let steps = plan::steps(entries, Some(&old), &opts.update);
    let commits: Vec<Option<String>> = steps.iter().map(step_commit).collect();
    let changes = plan::changes(Some(&old), entries, &commits);
    if commits.iter().all(Option::is_some) {
        let records = entries
            .iter()
            .zip(&commits)
            .map(|(e, c)| e.locked(c.as_deref().unwrap_or_default()))
            .collect();
        let new = plan::build_lock(spec, records, Some(&old));
        if new == old {
            return Ok(unchanged(&old, entries, lock_path));
        }
    }
    Err(ResolveError::LockWouldChange {
        version_id: spec.version_id.clone(),
        changes,
    })
}

fn step_commit(step: &Step) -> Option<String> {
    match step {
        Step::Keep(c) | Step::Pinned(c) => Some(c.clone()),
        Step::Resolve => None,
    }
}

/// What looking up one entry gave.
enum Looked {
    Found(Option<String>, Source),
    Failed(ResolveError),
    /// Offline and not resolvable locally: the reason.
    Offline(String),
}

fn run(
    spec: &VersionSpec,
    layout: &CacheLayout,
    opts: &ResolveOptions,
    reporter: &dyn Reporter,
    entries: &[Entry],
    old: Option<&ResolvedLock>,
) -> Result<ResolveOutcome, ResolveError> {
    let steps = plan::steps(entries, old, &opts.update);
    let todo: Vec<usize> = (0..entries.len())
        .filter(|&i| steps[i] == Step::Resolve)
        .collect();
    let lister = if opts.offline || todo.is_empty() {
        None
    } else {
        Some(Lister::new(opts.timeout)?)
    };
    let looked = parallel(&todo, opts.jobs, |&i| {
        let e = &entries[i];
        let shown = shown_repo(e, opts);
        if lister.is_some() {
            reporter.resolving(&e.label, &shown);
        } else {
            reporter.resolving(
                &e.label,
                &format!("the local mirror of {}", e.repo_redacted()),
            );
        }
        let result = match &lister {
            Some(lister) => match online(e, &shown, lister, layout, opts) {
                Ok((commit, source)) => Looked::Found(commit, source),
                Err(err) => Looked::Failed(err),
            },
            None => match offline(e, layout, opts) {
                Ok(commit) => Looked::Found(Some(commit), Source::Mirror),
                Err(reason) => Looked::Offline(reason),
            },
        };
        match &result {
            Looked::Found(commit, source) => {
                reporter.resolved(&outcome(e, commit.clone(), *source))
            }
            Looked::Failed(err) => reporter.failed(&e.label, err),
            Looked::Offline(_) => {}
        }
        result
    });

    let mut found: Vec<(Option<String>, Source)> = steps
        .iter()
        .map(|s| match s {
            Step::Keep(c) => (Some(c.clone()), Source::Locked),
            Step::Pinned(c) => (Some(c.clone()), Source::Pinned),
            Step::Resolve => (None, Source::Pending),
        })
        .collect();
    let mut errors = Vec::new();
    let mut unresolved = Vec::new();
    for (&i, result) in todo.iter().zip(looked) {
        match result {
            Looked::Found(commit, source) => found[i] = (commit, source),
            Looked::Failed(err) => errors.push(err),
            Looked::Offline(reason) => unresolved.push((entries[i].label.clone(), reason)),
        }
    }
    if errors.len() == 1 {
        return Err(errors.remove(0));
    }
    if !errors.is_empty() {
        return Err(ResolveError::Several(errors));
    }
    if !unresolved.is_empty() {
        return Err(ResolveError::OfflineUnresolved {
            version_id: spec.version_id.clone(),
            entries: unresolved,
        });
    }

    let commits: Vec<Option<String>> = found.iter().map(|(c, _)| c.clone()).collect();
    let changes = plan::changes(old, entries, &commits);
    let outcomes: Vec<EntryOutcome> = entries
        .iter()
        .zip(&found)
        .map(|(e, (c, s))| outcome(e, c.clone(), *s))
        .collect();
    let lock = if commits.iter().all(Option::is_some) {
        let records = entries
            .iter()
            .zip(&commits)
            .map(|(e, c)| e.locked(c.as_deref().unwrap_or_default()))
            .collect();
        Some(plan::build_lock(spec, records, old))
    } else {
        None
    };
    let warnings = match &lock {
        Some(lock) => crate::requires_comfyui::check(spec, lock, layout, opts)?,
        None => Vec::new(),
    };
    let written = match (&lock, opts.dry_run) {
        (Some(lock), false) => lockfile::store(layout, lock)?,
        _ => false,
    };
    Ok(ResolveOutcome {
        entries: outcomes,
        lock,
        changes,
        written,
        lock_path: layout.lock_file(&spec.version_id),
        warnings,
    })
}

fn outcome(e: &Entry, commit: Option<String>, source: Source) -> EntryOutcome {
    EntryOutcome {
        key: e.key.clone(),
        label: e.label.clone(),
        repo: e.repo_redacted(),
        git_ref: e.git_ref.clone(),
        commit,
        source,
    }
}

/// The repository as shown in messages: redacted, with the rewritten URL
/// when a rewrite rule applies.
fn shown_repo(e: &Entry, opts: &ResolveOptions) -> String {
    let fetch = opts.rewrites.apply(&e.repo);
    if fetch == e.repo {
        e.repo_redacted()
    } else {
        format!(
            "{} (rewritten to {})",
            e.repo_redacted(),
            comfyver_spec::redact(&fetch)
        )
    }
}

/// Resolves one entry over the network.
fn online(
    e: &Entry,
    shown: &str,
    lister: &Lister,
    layout: &CacheLayout,
    opts: &ResolveOptions,
) -> Result<(Option<String>, Source), ResolveError> {
    let url = RepoUrl::parse(&e.repo).map_err(|source| ResolveError::InvalidUrl {
        entry: e.label.clone(),
        source,
    })?;
    let fetch = opts.rewrites.apply(&e.repo);
    let refs = lister
        .list(&fetch, e.git_ref.as_deref())
        .map_err(|f| f.into_error(e.label.clone(), shown.to_string()))?;
    match match_ref(&refs, e.git_ref.as_deref()) {
        RefMatch::Commit(c) => Ok((Some(c), Source::Remote)),
        RefMatch::NeedsHistory if opts.dry_run => Ok((None, Source::Pending)),
        RefMatch::NeedsHistory => {
            let prefix = e.git_ref.as_deref().unwrap_or_default();
            let mirror_err = |source| ResolveError::Mirror {
                entry: e.label.clone(),
                repo: shown.to_string(),
                prefix: prefix.to_string(),
                source: Box::new(source),
            };
            let mirror = Mirror::open(layout, &url, &opts.rewrites)
                .map_err(mirror_err)?
                .with_git_timeout(opts.timeout);
            mirror.fetch_all().map_err(mirror_err)?;
            let found = mirror.commits_with_prefix(prefix).map_err(mirror_err)?;
            prefix_result(e, shown, &refs, found).map(|c| (Some(c), Source::Remote))
        }
        other => Err(miss(e, shown, other)),
    }
}

/// Resolves one entry from its local mirror only.
fn offline(e: &Entry, layout: &CacheLayout, opts: &ResolveOptions) -> Result<String, String> {
    let Some(wanted) = e.git_ref.as_deref() else {
        return Err(
            "not in the lock, and the remote's HEAD cannot be known offline (set `ref` or `commit`)"
                .into(),
        );
    };
    let url = RepoUrl::parse(&e.repo).map_err(|err| err.to_string())?;
    let Some(mirror) = Mirror::existing(layout, &url, &opts.rewrites) else {
        return Err(format!(
            "`{wanted}` is not in the lock and there is no local mirror of {}",
            e.repo_redacted()
        ));
    };
    let refs = crate::mirror::mirror_refs(&mirror)?;
    let found = match match_ref(&refs, Some(wanted)) {
        RefMatch::Commit(c) => return Ok(c),
        RefMatch::NeedsHistory => mirror
            .commits_with_prefix(wanted)
            .map_err(|err| err.to_string())?,
        other => return Err(miss(e, &e.repo_redacted(), other).to_string()),
    };
    prefix_result(e, &e.repo_redacted(), &refs, found).map_err(|err| err.to_string())
}

/// The single commit a prefix expanded to, or the matching error.
fn prefix_result(
    e: &Entry,
    shown: &str,
    refs: &[RemoteRef],
    mut found: Vec<String>,
) -> Result<String, ResolveError> {
    let prefix = e.git_ref.clone().unwrap_or_default();
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => {
            let (suggestions, available) = crate::refs::suggest(refs, &prefix);
            Err(ResolveError::UnknownRef {
                entry: e.label.clone(),
                repo: shown.to_string(),
                git_ref: prefix,
                suggestions,
                available,
            })
        }
        _ => Err(ResolveError::AmbiguousPrefix {
            entry: e.label.clone(),
            repo: shown.to_string(),
            prefix,
            candidates: found,
        }),
    }
}

/// The error for a ref that did not match.
fn miss(e: &Entry, shown: &str, m: RefMatch) -> ResolveError {
    let entry = e.label.clone();
    let repo = shown.to_string();
    let git_ref = e.git_ref.clone().unwrap_or_else(|| "HEAD".into());
    match m {
        RefMatch::NoHead => ResolveError::NoHead { entry, repo },
        RefMatch::Ambiguous => ResolveError::AmbiguousRef {
            entry,
            repo,
            git_ref,
        },
        RefMatch::AmbiguousPrefix(candidates) => ResolveError::AmbiguousPrefix {
            entry,
            repo,
            prefix: git_ref,
            candidates,
        },
        RefMatch::Unknown {
            suggestions,
            available,
        } => ResolveError::UnknownRef {
            entry,
            repo,
            git_ref,
            suggestions,
            available,
        },
        // Callers handle these before asking for an error.
        RefMatch::Commit(_) | RefMatch::NeedsHistory => ResolveError::UnknownRef {
            entry,
            repo,
            git_ref,
            suggestions: Vec::new(),
            available: Vec::new(),
        },
    }
}

/// Maps `f` over `items` on at most `jobs` threads, keeping the order.
fn parallel<T: Sync, R: Send>(items: &[T], jobs: usize, f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let slots: Mutex<Vec<Option<R>>> = Mutex::new((0..items.len()).map(|_| None).collect());
    let workers = jobs.max(1).min(items.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    slots.lock().unwrap_or_else(|p| p.into_inner())[i] = Some(r);
                }
            });
        }
    });
    slots
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .map(|r| r.expect("every item was processed"))
        .collect()
}
