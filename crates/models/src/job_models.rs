//! Models a job brings (`input.models`, URLs in loader inputs): fetched into
//! the store like a spec's models, held "in use" while the job runs, and kept
//! within a budget by evicting the least recently used files only jobs
//! brought.
//!
//! "In use" is a shared lock per store path (`locks/models/use-<key>.lock`),
//! taken before the fetch and held until the job ends, so no worker sharing
//! the volume evicts a file another job reads. Eviction takes each lock
//! exclusively without waiting and skips the files it cannot lock.

use std::collections::BTreeSet;

use comfyver_fs::{CacheLayout, FileLock};
use comfyver_spec::{lock::LockedModel, model_source::ModelSource, redact};

use crate::index::{Index, update_index};
use crate::store::{model_lock, now_secs, source_key};
use crate::{FetchOptions, FetchStatus, HostRule, ModelsError, Reporter, fetch_models};

/// One model a job asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobModelRequest {
    /// The http(s) URL (may carry credentials; never printed unredacted).
    pub source: String,
    /// The ComfyUI model folder (`loras`, `checkpoints`, ...).
    pub target_subdir: String,
    /// The file name; default: the URL's last path segment.
    pub name: Option<String>,
    /// Expected SHA-256 (64 hex).
    pub sha256: Option<String>,
    /// Expected size in bytes.
    pub size: Option<u64>,
}

/// How job models are fetched and kept.
#[derive(Debug, Clone, Default)]
pub struct JobModelOptions {
    /// How files are downloaded (its [`FetchOptions::hosts`] is replaced by [`Self::hosts`]).
    pub fetch: FetchOptions,
    /// Hosts allowed although not public.
    pub hosts: HostRule,
    /// The most bytes of files only jobs brought; `None`: no limit.
    pub max_bytes: Option<u64>,
    /// The models of every spec and lock: never evicted.
    pub referenced: Vec<LockedModel>,
}

/// A job's models, in the store and held in use until dropped.
#[derive(Debug)]
pub struct JobModelsInUse {
    /// Per request, the file's name inside its `target_subdir`.
    pub names: Vec<String>,
    /// Per request, what the fetch did.
    pub statuses: Vec<FetchStatus>,
    /// Files evicted to stay within the budget (store paths), or why
    /// eviction failed (the job's models are in place either way).
    pub evicted: Result<Vec<String>, ModelsError>,
    _in_use: Vec<FileLock>,
}

/// A request that failed: its position and why.
#[derive(Debug, thiserror::Error)]
#[error("job model {index} ({url}) could not be provided")]
pub struct JobModelError {
    /// The request's position in the slice given to [`fetch_job_models`].
    pub index: usize,
    /// Its URL, redacted.
    pub url: String,
    /// Why.
    #[source]
    pub source: Box<ModelsError>,
}

/// The cross-process "in use" lock of a store path.
fn use_lock(layout: &CacheLayout, path: &str) -> std::path::PathBuf {
    layout.lock_path(
        crate::store::LOCK_KIND,
        &format!("use-{}", source_key(path)),
    )
}

/// Checks a request and turns it into the model the store fetches.
fn to_model(req: &JobModelRequest, hosts: &HostRule) -> Result<LockedModel, ModelsError> {
    let url = redact(&req.source);
    let subdir = req.target_subdir.trim_matches('/');
    let bad = |reason: String| ModelsError::HostRefused {
        path: format!("{subdir}/{}", req.name.as_deref().unwrap_or("?")),
        url: url.clone(),
        reason,
    };
    hosts.check(req.source.trim()).map_err(&bad)?;
    let source =
        ModelSource::parse(req.source.trim()).map_err(|source| ModelsError::BadSource {
            path: subdir.to_string(),
            url: url.clone(),
            source,
        })?;
    let name = match &req.name {
        Some(n) => n.clone(),
        None if source.is_civitai() => {
            return Err(bad(
                "a CivitAI URL does not carry the file name; give `name`".into(),
            ));
        }
        None => source.default_name(),
    };
    if let Some(reason) = comfyver_spec::names::unsafe_component_reason(&name) {
        return Err(ModelsError::UnsafePath {
            path: format!("{subdir}/{name}"),
            reason,
        });
    }
    let model = LockedModel {
        source: req.source.trim().to_string(),
        path: format!("{subdir}/{name}"),
        sha256: req.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
        blake3: None,
        size: req.size,
    };
    crate::store::check_path(&model.path)?;
    Ok(model)
}

/// Brings a job's models into the store (resumable, verified, never stored
/// twice; every URL and redirect checked against `opts.hosts`), marks them
/// used now, holds them in use, then evicts beyond `opts.max_bytes`. The
/// first failure stops it; nothing unverified is ever at a final path.
pub fn fetch_job_models(
    layout: &CacheLayout,
    requests: &[JobModelRequest],
    opts: &JobModelOptions,
    reporter: &dyn Reporter,
) -> Result<JobModelsInUse, JobModelError> {
    let fail = |index: usize, source: ModelsError| JobModelError {
        index,
        url: redact(&requests[index].source),
        source: Box::new(source),
    };
    let mut models = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        models.push(to_model(r, &opts.hosts).map_err(|e| fail(i, e))?);
    }
    let fetch = FetchOptions {
        hosts: Some(opts.hosts.clone()),
        offline: false,
        skip: false,
        ..opts.fetch.clone()
    };
    let mut in_use = Vec::new();
    let mut statuses = Vec::new();
    for (i, m) in models.iter().enumerate() {
        in_use.push(
            FileLock::acquire_shared(&use_lock(layout, &m.path)).map_err(|e| fail(i, e.into()))?,
        );
        let known_before = Index::read(layout.models_dir())
            .unwrap_or_default()
            .models
            .get(&m.path)
            .map(|e| e.job_only);
        let outcome = fetch_models(std::slice::from_ref(m), layout, &fetch, reporter)
            .map_err(|e| fail(i, e))?;
        let key = source_key(&m.source);
        let now = now_secs();
        update_index(layout, |idx| {
            if let Some(e) = idx.models.get_mut(&m.path)
                && e.key == key
            {
                e.job_only = known_before.unwrap_or(true);
                e.last_used = now;
            }
        })
        .map_err(|e| fail(i, e))?;
        statuses.extend(outcome.models.into_iter().map(|r| r.status));
    }
    let evicted = match opts.max_bytes {
        Some(max) => evict_job_models(layout, max, &opts.referenced),
        None => Ok(Vec::new()),
    };
    Ok(JobModelsInUse {
        names: models
            .iter()
            .map(|m| m.path.rsplit('/').next().unwrap_or_default().to_string())
            .collect(),
        statuses,
        evicted,
        _in_use: in_use,
    })
}

/// Removes the least recently used files only jobs brought until they take
/// at most `max_bytes`. Never a file of `referenced` (every spec and lock),
/// never one in use by a running job (its use lock is held), never one being
/// fetched (its model lock is held). Returns the store paths removed.
pub fn evict_job_models(
    layout: &CacheLayout,
    max_bytes: u64,
    referenced: &[LockedModel],
) -> Result<Vec<String>, ModelsError> {
    let _one_at_a_time =
        FileLock::acquire(&layout.lock_path(crate::store::LOCK_KIND, "job-evict"))?;
    let root = layout.models_dir();
    let index = Index::read(root)?;
    let keep: BTreeSet<&str> = referenced.iter().map(|m| m.path.as_str()).collect();
    let mut job: Vec<(&String, &crate::IndexEntry)> = index
        .models
        .iter()
        .filter(|(p, e)| e.job_only && root.join(p).is_file())
        .collect();
    let mut total: u64 = job.iter().map(|(_, e)| e.size).sum();
    job.sort_by_key(|(p, e)| (e.last_used, p.to_string()));
    let mut removed = Vec::new();
    for (path, e) in job {
        if total <= max_bytes {
            break;
        }
        if keep.contains(path.as_str()) {
            continue;
        }
        let Some(_use) = FileLock::try_acquire(&use_lock(layout, path))? else {
            continue;
        };
        let Some(_fetch) = FileLock::try_acquire(&model_lock(layout, &e.key))? else {
            continue;
        };
        let file = root.join(path);
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(ModelsError::io("remove", &file, err)),
        }
        total = total.saturating_sub(e.size);
        removed.push(path.clone());
    }
    if !removed.is_empty() {
        update_index(layout, |i| {
            for p in &removed {
                i.models.remove(p);
            }
        })?;
    }
    Ok(removed)
}
