//! Bringing a version's models into the store: present files are kept,
//! matching existing files adopted, the rest downloaded or copied in parallel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use comfyver_fs::{CacheLayout, FileLock};
use comfyver_spec::{lock::LockedModel, model_source::ModelSource, redact};

use crate::hash::{Digests, first_mismatch, hash_file};
use crate::index::{Index, IndexEntry, record};
use crate::store::{
    damaged_dir, model_file, model_lock, mtime_ns, now_secs, path_lock, source_key,
};
use crate::{ModelsError, Reporter, download, local};

/// Environment variable: the most bytes one download may write when neither
/// the spec (`size`) nor the server (`Content-Length`) says how large the
/// file is, and the largest announced length accepted (default
/// [`DEFAULT_MAX_MODEL_BYTES`]).
pub(crate) use comfyver_env::COMFYVER_MAX_MODEL_BYTES as MAX_MODEL_BYTES_ENV;

/// The default cap of one download: 256 GiB.
pub(crate) const DEFAULT_MAX_MODEL_BYTES: u64 = 256 << 30;

/// How [`fetch_models`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// Models fetched at once (at least 1).
    pub jobs: usize,
    /// Use no network: missing remote models are reported, not fetched.
    pub offline: bool,
    /// Fetch nothing (`skip_models`): missing models are reported.
    pub skip: bool,
    /// Retries after a transient failure (connection reset, timeout, 5xx,
    /// short body) without progress; progress resets the count.
    pub retries: u32,
    /// The first pause before a retry; doubled each time, at most 30 s.
    pub retry_delay: Duration,
    /// Connection timeout.
    pub connect_timeout: Duration,
    /// Stall timeout: the longest wait for the next bytes.
    pub read_timeout: Duration,
    /// Connections per large file (1: one stream).
    pub connections: usize,
    /// Files at least this large are fetched over [`Self::connections`]
    /// connections when the server accepts ranges.
    pub chunked_min_size: u64,
    /// The most bytes one download may write without a known size, and the
    /// largest announced length accepted ([`MAX_MODEL_BYTES_ENV`]).
    pub max_size: u64,
    /// Hash every model already in the store; one that does not verify is
    /// moved aside (to `.comfyver/damaged/`) and fetched again.
    pub repair: bool,
    /// The rule every URL (and every redirect) must pass: set for job
    /// models, `None` for a spec's models (whose author chose the hosts).
    pub hosts: Option<crate::HostRule>,
}

impl Default for FetchOptions {
    fn default() -> FetchOptions {
        FetchOptions {
            jobs: 4,
            offline: false,
            skip: false,
            retries: 5,
            retry_delay: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(60),
            connections: 8,
            chunked_min_size: 64 << 20,
            max_size: std::env::var(MAX_MODEL_BYTES_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_MAX_MODEL_BYTES),
            repair: false,
            hosts: None,
        }
    }
}

/// What happened to one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchStatus {
    /// Already in the store and indexed; nothing was read.
    Present,
    /// Downloaded and verified.
    Downloaded {
        /// Bytes an earlier, interrupted run had left (0 for a fresh start).
        resumed_from: u64,
        /// Bytes received by this run.
        received: u64,
    },
    /// A local source hard-linked (`linked`) or copied into the store.
    Placed {
        /// Whether it was hard-linked rather than copied.
        linked: bool,
    },
    /// A file already at the path matched the spec's checksum and was indexed.
    Adopted,
    /// A file already at the path was kept; the spec gives no checksum to compare.
    KeptUnverified,
    /// Not in the store and not fetched (offline or skipped).
    Missing {
        /// Why it was not fetched.
        reason: String,
    },
}

/// One model's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelReport {
    /// `<target_subdir>/<name>` in the store.
    pub path: String,
    /// The source, redacted.
    pub source: String,
    /// What happened.
    pub status: FetchStatus,
    /// With [`FetchOptions::repair`]: where the damaged file that was at
    /// the path went before it was fetched again.
    pub moved_aside: Option<PathBuf>,
}

/// The result of [`fetch_models`], in the order of the input (duplicates removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FetchOutcome {
    /// One report per distinct model.
    pub models: Vec<ModelReport>,
}

impl FetchOutcome {
    /// The models that are still missing (offline or skipped): the caller
    /// should warn about them.
    pub fn missing(&self) -> Vec<&ModelReport> {
        self.models
            .iter()
            .filter(|m| matches!(m.status, FetchStatus::Missing { .. }))
            .collect()
    }

    /// The models kept without verification.
    pub fn unverified(&self) -> Vec<&ModelReport> {
        self.models
            .iter()
            .filter(|m| m.status == FetchStatus::KeptUnverified)
            .collect()
    }
}

/// Everything a worker needs.
struct Job<'a> {
    layout: &'a CacheLayout,
    opts: &'a FetchOptions,
    reporter: &'a dyn Reporter,
    client: download::Client,
}

/// Brings every model into the store of `layout`. Paths are checked and
/// conflicts (two sources, one path) refused before anything is written.
/// Models are fetched `opts.jobs` at a time, each under its own
/// cross-process lock; every failure is returned (several as
/// [`ModelsError::Several`]) after the others have finished.
pub fn fetch_models(
    models: &[LockedModel],
    layout: &CacheLayout,
    opts: &FetchOptions,
    reporter: &dyn Reporter,
) -> Result<FetchOutcome, ModelsError> {
    let unique = distinct(models)?;
    let job = Job {
        layout,
        opts,
        reporter,
        client: download::Client::new(opts),
    };
    type Outcome = Result<(FetchStatus, Option<PathBuf>), ModelsError>;
    let results: Mutex<Vec<Option<Outcome>>> =
        Mutex::new((0..unique.len()).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..opts.jobs.clamp(1, unique.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(m) = unique.get(i) else { break };
                    let r = fetch_one(&job, m);
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    let mut outcome = FetchOutcome::default();
    let mut errors = Vec::new();
    let results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    for (m, r) in unique.iter().zip(results) {
        match r {
            Some(Ok((status, moved_aside))) => outcome.models.push(ModelReport {
                path: m.path.clone(),
                source: redact(&m.source),
                status,
                moved_aside,
            }),
            Some(Err(e)) => errors.push(e),
            None => {}
        }
    }
    match errors.len() {
        0 => Ok(outcome),
        1 => Err(errors.remove(0)),
        _ => Err(ModelsError::Several(errors)),
    }
}

/// Whether two entries name the same content by checksum (a moved mirror).
fn same_checksum(a: &LockedModel, b: &LockedModel) -> bool {
    let eq = |x: &Option<String>, y: &Option<String>| {
        x.as_ref()
            .zip(y.as_ref())
            .is_some_and(|(x, y)| x.eq_ignore_ascii_case(y))
    };
    eq(&a.sha256, &b.sha256) || eq(&a.blake3, &b.blake3)
}

/// Checks paths, removes duplicates (the same source, or the same checksum
/// under another URL) and refuses two different models on one path.
fn distinct(models: &[LockedModel]) -> Result<Vec<LockedModel>, ModelsError> {
    let mut by_path: BTreeMap<&str, &LockedModel> = BTreeMap::new();
    let mut out = Vec::new();
    for m in models {
        crate::store::check_path(&m.path)?;
        match by_path.get(m.path.as_str()) {
            Some(prev)
                if source_key(&prev.source) != source_key(&m.source) && !same_checksum(prev, m) =>
            {
                return Err(ModelsError::Conflict {
                    path: m.path.clone(),
                    first: redact(&prev.source),
                    second: redact(&m.source),
                });
            }
            Some(_) => {}
            None => {
                by_path.insert(&m.path, m);
                out.push(m.clone());
            }
        }
    }
    Ok(out)
}

/// Fetches one model: its status, and where a damaged file was moved.
fn fetch_one(
    job: &Job<'_>,
    m: &LockedModel,
) -> Result<(FetchStatus, Option<PathBuf>), ModelsError> {
    let models_dir = job.layout.models_dir();
    let dest = model_file(models_dir, m)?;
    let key = source_key(&m.source);
    let source = ModelSource::parse(&m.source).map_err(|source| ModelsError::BadSource {
        path: m.path.clone(),
        url: redact(&m.source),
        source,
    })?;
    let repair = job.opts.repair;
    if let Found::Done(status) = existing(job.layout, m, &key, &dest, false, repair)? {
        return Ok((status, None));
    }
    let is_local = matches!(source, ModelSource::Local { .. });
    let present = dest.exists();
    if job.opts.skip && !present {
        return Ok((
            FetchStatus::Missing {
                reason: "model downloads are skipped (skip_models)".into(),
            },
            None,
        ));
    }
    if job.opts.offline && !is_local && !present {
        return Ok((
            FetchStatus::Missing {
                reason: "offline: not downloaded".into(),
            },
            None,
        ));
    }
    // The destination first (two sources may land on one path), then the
    // source (one source may land on two paths and shares its partial file).
    let _path_lock = FileLock::acquire(&path_lock(job.layout, &m.path))?;
    let _lock = FileLock::acquire(&model_lock(job.layout, &key))?;
    // Another process may have finished it while we waited.
    let mut moved_aside = None;
    match existing(job.layout, m, &key, &dest, true, repair)? {
        Found::Done(status) => return Ok((status, None)),
        Found::Absent if job.opts.skip || (job.opts.offline && !is_local) => {
            return Ok((
                FetchStatus::Missing {
                    reason: "not in the store, and downloads are skipped or offline".into(),
                },
                None,
            ));
        }
        Found::Absent => {}
        Found::NeedsHash => unreachable!("hashing is allowed under the lock"),
        Found::Damaged(what, expected, actual) => {
            let offline = job.opts.offline && !is_local;
            if !repair || job.opts.skip || offline {
                return Err(ModelsError::ExistingMismatch {
                    file: dest,
                    what,
                    expected,
                    actual,
                });
            }
            moved_aside = Some(move_aside(models_dir, m, &dest)?);
        }
    }
    let (status, digests, etag, last_modified) = match &source {
        ModelSource::Local { path } => {
            let (linked, d) = local::place(job.reporter, m, path, &dest)?;
            (FetchStatus::Placed { linked }, d, None, None)
        }
        _ => {
            let url = source
                .download_url()
                .ok_or_else(|| ModelsError::BadSource {
                    path: m.path.clone(),
                    url: redact(&m.source),
                    source: comfyver_spec::model_source::ModelSourceError::Malformed(redact(
                        &m.source,
                    )),
                })?;
            let d =
                download::download(&job.client, job.reporter, models_dir, &key, m, &url, &dest)?;
            (
                FetchStatus::Downloaded {
                    resumed_from: d.resumed_from,
                    received: d.received,
                },
                d.digests,
                d.etag,
                d.last_modified,
            )
        }
    };
    index_file(job.layout, m, &key, &dest, &digests, etag, last_modified)?;
    Ok((status, moved_aside))
}

/// Records a verified file in the index.
fn index_file(
    layout: &CacheLayout,
    m: &LockedModel,
    key: &str,
    dest: &Path,
    d: &Digests,
    etag: Option<String>,
    last_modified: Option<String>,
) -> Result<(), ModelsError> {
    let meta = std::fs::metadata(dest).map_err(|e| ModelsError::io("read", dest, e))?;
    record(
        layout,
        &m.path,
        IndexEntry {
            url: redact(&m.source),
            key: key.to_string(),
            size: d.len,
            blake3: d.blake3.clone(),
            sha256: d.sha256.clone(),
            etag,
            last_modified,
            mtime_ns: mtime_ns(&meta),
            inode: std::os::unix::fs::MetadataExt::ino(&meta),
            verified_at: now_secs(),
            job_only: false,
            last_used: 0,
        },
    )
}

/// Whether an index entry already proves what the spec expects.
pub(crate) fn entry_satisfies(e: &IndexEntry, m: &LockedModel) -> bool {
    m.size.is_none_or(|s| s == e.size)
        && m.sha256
            .as_ref()
            .is_none_or(|s| e.sha256.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(s)))
        && m.blake3
            .as_ref()
            .is_none_or(|b| b.eq_ignore_ascii_case(&e.blake3))
}

/// What is already at a model's final path.
enum Found {
    /// Nothing.
    Absent,
    /// A file that needs no download.
    Done(FetchStatus),
    /// A file that does not verify: `(what, expected, actual)`.
    Damaged(&'static str, String, String),
    /// A file that can only be judged by hashing it (done under the lock).
    NeedsHash,
}

/// Judges a file already at `dest`. Without `may_hash`, only the index is
/// consulted. With `repair`, even a file the index vouches for is hashed.
fn existing(
    layout: &CacheLayout,
    m: &LockedModel,
    key: &str,
    dest: &Path,
    may_hash: bool,
    repair: bool,
) -> Result<Found, ModelsError> {
    let meta = match std::fs::metadata(dest) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Absent),
        Err(e) => return Err(ModelsError::io("read", dest, e)),
    };
    if !meta.is_file() {
        return Err(ModelsError::io(
            "use",
            dest,
            std::io::Error::other("it exists but is not a regular file; remove it"),
        ));
    }
    let index = Index::read(layout.models_dir()).unwrap_or_default();
    let entry = index.models.get(&m.path);
    let fresh = entry.is_some_and(|e| stat_matches(e, &meta));
    if let Some(e) = entry
        && e.key != key
    {
        // The same model under a new URL (a moved mirror) when the spec's
        // checksum proves it; else another model claims the path.
        let conflict = || ModelsError::Conflict {
            path: m.path.clone(),
            first: e.url.clone(),
            second: redact(&m.source),
        };
        if m.sha256.is_none() && m.blake3.is_none() {
            return Err(conflict());
        }
        if fresh && !repair && entry_satisfies(e, m) {
            record(
                layout,
                &m.path,
                IndexEntry {
                    url: redact(&m.source),
                    key: key.to_string(),
                    verified_at: now_secs(),
                    ..e.clone()
                },
            )?;
            return Ok(Found::Done(FetchStatus::Adopted));
        }
        if !may_hash {
            return Ok(Found::NeedsHash);
        }
        let d = hash_file(dest, m.sha256.is_some())?;
        if first_mismatch(&d, m.size, m.sha256.as_deref(), m.blake3.as_deref()).is_some() {
            return Err(conflict());
        }
        index_file(layout, m, key, dest, &d, None, None)?;
        return Ok(Found::Done(FetchStatus::Adopted));
    }
    if fresh && !repair && entry.is_some_and(|e| entry_satisfies(e, m)) {
        return Ok(Found::Done(FetchStatus::Present));
    }
    if let Some(size) = m.size
        && size != meta.len()
    {
        return Ok(Found::Damaged(
            "size",
            size.to_string(),
            meta.len().to_string(),
        ));
    }
    if let Some(e) = entry
        && e.size != meta.len()
    {
        // Changed since it was verified (e.g. truncated or replaced).
        return Ok(Found::Damaged(
            "size",
            e.size.to_string(),
            meta.len().to_string(),
        ));
    }
    // Compare with the spec's checksums, else with what the index recorded.
    let (sha, b3) = if m.sha256.is_some() || m.blake3.is_some() {
        (m.sha256.clone(), m.blake3.clone())
    } else if let Some(e) = entry {
        (None, Some(e.blake3.clone()))
    } else {
        return Ok(Found::Done(FetchStatus::KeptUnverified));
    };
    if !may_hash {
        return Ok(Found::NeedsHash);
    }
    let d = hash_file(dest, sha.is_some())?;
    if let Some((what, expected, actual)) =
        first_mismatch(&d, m.size, sha.as_deref(), b3.as_deref())
    {
        return Ok(Found::Damaged(what, expected, actual));
    }
    let previous = entry.cloned();
    index_file(
        layout,
        m,
        key,
        dest,
        &d,
        previous.as_ref().and_then(|e| e.etag.clone()),
        previous.as_ref().and_then(|e| e.last_modified.clone()),
    )?;
    Ok(Found::Done(if previous.is_some() {
        FetchStatus::Present
    } else {
        FetchStatus::Adopted
    }))
}

/// Whether a file's `stat` still matches what the index recorded when it
/// was verified: size, mtime and (when recorded) inode.
pub(crate) fn stat_matches(e: &IndexEntry, meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    e.size == meta.len() && e.mtime_ns == mtime_ns(meta) && (e.inode == 0 || e.inode == meta.ino())
}

/// Moves a damaged file out of the model's path into
/// `.comfyver/damaged/`, where nothing reads it (and `gc` leaves it).
fn move_aside(models_dir: &Path, m: &LockedModel, dest: &Path) -> Result<PathBuf, ModelsError> {
    let dir = damaged_dir(models_dir);
    std::fs::create_dir_all(&dir).map_err(|e| ModelsError::io("create", &dir, e))?;
    let to = dir.join(format!(
        "{}.{}-{}",
        m.path.replace('/', "__"),
        now_secs(),
        std::process::id()
    ));
    std::fs::rename(dest, &to).map_err(|e| ModelsError::io("move aside", dest, e))?;
    Ok(to)
}

/// Whether the model is at its final path with the expected size (when the
/// spec gives one) and unchanged since the store verified it. Stats the file
/// and reads the index; nothing is hashed.
pub fn is_present(layout: &CacheLayout, model: &LockedModel) -> bool {
    models_intact(layout, std::slice::from_ref(model))
}

/// The warm-path check of a version's models: each is at its final path
/// with the spec's size, and its `stat` (size, mtime, inode) still matches
/// the index entry written when it was verified, so a truncated, replaced
/// or rewritten file is noticed. One `stat` per model and one read of the
/// index; nothing is hashed. A file without an index entry (kept
/// unverified) is judged by its size alone.
pub fn models_intact(layout: &CacheLayout, models: &[LockedModel]) -> bool {
    let index = Index::read(layout.models_dir()).unwrap_or_default();
    models.iter().all(|m| {
        let Ok(dest) = model_file(layout.models_dir(), m) else {
            return false;
        };
        let Ok(meta) = std::fs::metadata(dest) else {
            return false;
        };
        meta.is_file()
            && m.size.is_none_or(|s| s == meta.len())
            && index
                .models
                .get(&m.path)
                .is_none_or(|e| e.key == source_key(&m.source) && stat_matches(e, &meta))
    })
}
