//! HTTP(S) downloads into the store: streamed to a partial file, hashed on
//! the fly, resumed with `Range` + `If-Range`, retried with backoff, verified,
//! then renamed into place. Large files from servers that accept ranges are
//! fetched over several connections at once ([`crate::chunked`]). No download
//! writes more than the spec's `size`, the server's announced length or
//! [`FetchOptions::max_size`].

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use comfyver_fs::write_atomic;
use comfyver_spec::{lock::LockedModel, redact};
use serde::{Deserialize, Serialize};

use crate::auth::{Tokens, host_of};
use crate::chunked::{self, Chunk};
use crate::hash::{BUF, Digests, Hashers, first_mismatch, hash_file};
use crate::store::partial_dir;
use crate::{FetchOptions, ModelsError, Reporter};

/// Redirects followed for one request before giving up.
pub(crate) const MAX_REDIRECTS: u32 = 10;

/// What the server said about the file, kept beside the partial download.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Sidecar {
    pub url: String,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub total: Option<u64>,
    /// The byte ranges of a download over several connections, with how far
    /// each got; `None` for a single stream (whose progress is the file's length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chunks: Option<Vec<Chunk>>,
}

impl Sidecar {
    /// The validator for `If-Range`: a strong ETag, else Last-Modified.
    pub(crate) fn validator(&self) -> Option<String> {
        self.etag
            .clone()
            .filter(|e| !e.starts_with("W/"))
            .or_else(|| self.last_modified.clone())
    }
}

/// A finished, verified download (already at its final path).
#[derive(Debug)]
pub(crate) struct Downloaded {
    pub digests: Digests,
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Bytes already on disk from an earlier run when this one started.
    pub resumed_from: u64,
    /// Bytes received over the network by this run.
    pub received: u64,
}

/// The HTTP side of one fetch, shared by its workers.
pub(crate) struct Client {
    agent: ureq::Agent,
    tokens: Tokens,
    pub(crate) opts: FetchOptions,
}

impl Client {
    pub(crate) fn new(opts: &FetchOptions) -> Client {
        Client::with_tokens(opts, Tokens::from_env())
    }

    pub(crate) fn with_tokens(opts: &FetchOptions, tokens: Tokens) -> Client {
        Client {
            agent: agent(opts),
            tokens,
            opts: opts.clone(),
        }
    }

    pub(crate) fn scrub(&self, text: &str) -> String {
        self.tokens.scrub(text)
    }

    pub(crate) fn read_timeout(&self) -> Duration {
        self.opts.read_timeout
    }

    /// One `GET` of `url`, following redirects by hand (at most
    /// [`MAX_REDIRECTS`]). The bearer token goes only to the original host,
    /// and only where [`Tokens::for_url`] allows it (never plain `http://`
    /// except loopback), so a redirect to `http://` or another host never
    /// carries it. `Ok(Err(detail))` is a failure worth retrying.
    pub(crate) fn get(
        &self,
        model: &LockedModel,
        url: &str,
        range: Option<&str>,
        if_range: Option<&str>,
    ) -> Result<Result<ureq::http::Response<ureq::Body>, String>, ModelsError> {
        let origin = host_of(url);
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            if let Some(rule) = &self.opts.hosts
                && let Err(reason) = rule.check(&current)
            {
                return Err(ModelsError::HostRefused {
                    path: model.path.clone(),
                    url: redact(&current),
                    reason,
                });
            }
            let mut req = self.agent.get(&current);
            if host_of(&current) == origin
                && let Some(token) = self.tokens.for_url(&current)
            {
                req = req.header("Authorization", format!("Bearer {token}"));
            }
            if let Some(r) = range {
                req = req.header("Range", r);
            }
            if let Some(v) = if_range {
                req = req.header("If-Range", v);
            }
            let resp = match req.call() {
                Ok(r) => r,
                Err(e) => return Ok(Err(describe(&e))),
            };
            if !matches!(resp.status().as_u16(), 301 | 302 | 303 | 307 | 308) {
                return Ok(Ok(resp));
            }
            let Some(location) = header(&resp, "location") else {
                return Err(ModelsError::HttpStatus {
                    path: model.path.clone(),
                    url: redact(url),
                    status: resp.status().as_u16(),
                    hint: "the redirect has no Location header; check the URL in the spec".into(),
                });
            };
            current = join_url(&current, &location);
        }
        Err(ModelsError::Redirects {
            path: model.path.clone(),
            url: redact(url),
            max: MAX_REDIRECTS,
        })
    }
}

fn agent(opts: &FetchOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .accept_encoding("identity")
        .user_agent(format!("comfyver/{}", comfyver_spec::TOOL_VERSION))
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_recv_response(Some(opts.read_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        .build()
        .new_agent()
}

/// Resolves a redirect's `Location` against the URL that answered it.
fn join_url(base: &str, location: &str) -> String {
    if location.contains("://") {
        return location.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    if let Some(l) = location.strip_prefix("//") {
        return format!("{scheme}://{l}");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = rest[authority.len()..]
        .split(['?', '#'])
        .next()
        .unwrap_or_default();
    let dir = path.rsplit_once('/').map(|(d, _)| d).unwrap_or_default();
    format!("{scheme}://{authority}{dir}/{location}")
}

/// The most bytes a download of `model` may write, given the length the
/// server announced (`total`): an announced length that contradicts the
/// spec's `size` or exceeds the cap is refused before anything is written.
pub(crate) fn byte_limit(
    opts: &FetchOptions,
    model: &LockedModel,
    url: &str,
    total: Option<u64>,
) -> Result<u64, ModelsError> {
    let too_large = |detail: String| ModelsError::TooLarge {
        path: model.path.clone(),
        url: redact(url),
        detail,
    };
    match (model.size, total) {
        (Some(size), Some(t)) if size != t => Err(too_large(format!(
            "the server announces {t} bytes, the spec's `size` is {size}"
        ))),
        (_, Some(t)) if t > opts.max_size => Err(too_large(format!(
            "the server announces {t} bytes, more than the cap of {} bytes \
             (raise it with {})",
            opts.max_size,
            crate::fetch::MAX_MODEL_BYTES_ENV
        ))),
        _ => Ok(model
            .size
            .or(total)
            .unwrap_or(opts.max_size)
            .min(opts.max_size)),
    }
}

/// The error for a body that goes on past `limit` bytes.
pub(crate) fn past_limit(
    opts: &FetchOptions,
    model: &LockedModel,
    url: &str,
    limit: u64,
) -> ModelsError {
    let why = if model.size == Some(limit) {
        "the spec's `size`".to_string()
    } else if limit == opts.max_size {
        format!(
            "the cap (raise it with {})",
            crate::fetch::MAX_MODEL_BYTES_ENV
        )
    } else {
        "the length the server announced".to_string()
    };
    ModelsError::TooLarge {
        path: model.path.clone(),
        url: redact(url),
        detail: format!("the body went on past {limit} bytes, {why}"),
    }
}

/// The partial file and its hashers, kept consistent: `hashers.len()` is
/// always the file's length.
pub(crate) struct Partial {
    pub file: File,
    pub part: PathBuf,
    side: PathBuf,
    pub hashers: Hashers,
    with_sha256: bool,
    pub sidecar: Sidecar,
    flusher: Flusher,
}

/// Bytes written between two background flushes.
const FLUSH_EVERY: u64 = 32 << 20;

/// Flushes the partial file to disk in the background while the download
/// goes on, so the final `fsync` before the rename has little left to do.
struct Flusher {
    tx: Option<std::sync::mpsc::SyncSender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pending: u64,
}

impl Flusher {
    fn new(file: Option<File>) -> Flusher {
        let Some(file) = file else {
            return Flusher {
                tx: None,
                thread: None,
                pending: 0,
            };
        };
        let (tx, rx) = std::sync::mpsc::sync_channel::<()>(1);
        let thread = std::thread::spawn(move || {
            for () in rx {
                let _ = file.sync_data();
            }
        });
        Flusher {
            tx: Some(tx),
            thread: Some(thread),
            pending: 0,
        }
    }

    fn wrote(&mut self, n: u64) {
        self.pending += n;
        if self.pending >= FLUSH_EVERY {
            self.pending = 0;
            if let Some(tx) = &self.tx {
                // Skipped when a flush is still running: the next one covers it.
                let _ = tx.try_send(());
            }
        }
    }

    /// Stops the background thread (waiting for a flush in progress).
    fn stop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Partial {
    /// Opens the partial download of `key`, re-hashing what an earlier run
    /// left when it can be resumed, else starting empty.
    fn open(
        models_dir: &Path,
        key: &str,
        url: &str,
        with_sha256: bool,
    ) -> Result<Partial, ModelsError> {
        let dir = partial_dir(models_dir);
        std::fs::create_dir_all(&dir).map_err(|e| ModelsError::io("create", &dir, e))?;
        let part = dir.join(format!("{key}.part"));
        // Replacement files of `restart` left by killed writers.
        comfyver_fs::remove_stale_temps(&dir, Some(&format!("{key}.part")))?;
        let side = dir.join(format!("{key}.json"));
        let sidecar: Option<Sidecar> = std::fs::read(&side)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&part)
            .map_err(|e| ModelsError::io("open", &part, e))?;
        let mut p = Partial {
            file: file
                .try_clone()
                .map_err(|e| ModelsError::io("open", &part, e))?,
            part,
            side,
            hashers: Hashers::new(with_sha256),
            with_sha256,
            sidecar: Sidecar {
                url: redact(url),
                ..Sidecar::default()
            },
            flusher: Flusher::new(file.try_clone().ok()),
        };
        let resumable = sidecar
            .as_ref()
            .is_some_and(|s| s.etag.is_some() || s.last_modified.is_some());
        let chunked = sidecar.as_ref().is_some_and(|s| {
            s.chunks.is_some()
                && s.total.is_some()
                && file.metadata().is_ok_and(|m| Some(m.len()) == s.total)
        });
        if resumable && chunked {
            // Chunks are hashed when all are complete.
            p.sidecar = sidecar.unwrap_or_default();
        } else if resumable && sidecar.as_ref().is_some_and(|s| s.chunks.is_none()) {
            // Re-hash the prefix so the final checksum covers every byte.
            file.seek(SeekFrom::Start(0))
                .map_err(|e| ModelsError::io("read", &p.part, e))?;
            p.hashers
                .feed(&mut file, None)
                .map_err(|e| ModelsError::io("read", &p.part, e))?;
            p.file
                .seek(SeekFrom::Start(p.hashers.len()))
                .map_err(|e| ModelsError::io("seek", &p.part, e))?;
            p.sidecar = sidecar.unwrap_or_default();
        } else {
            p.restart()?;
        }
        Ok(p)
    }

    /// Bytes on disk: the stream's length, or the chunks' progress.
    fn len(&self) -> u64 {
        match &self.sidecar.chunks {
            Some(chunks) => chunks.iter().map(|c| c.done).sum(),
            None => self.hashers.len(),
        }
    }

    /// Starts from byte 0 (as a single stream) in a fresh, empty partial
    /// file. The old file is never truncated in place: it may be another
    /// worker's whose lock we did not see, so an empty file is made beside
    /// it and renamed over its name, and that worker keeps its own bytes
    /// (and [`finish`] then refuses to publish a file that is not its own).
    pub(crate) fn restart(&mut self) -> Result<(), ModelsError> {
        let tmp = comfyver_fs::temp_sibling(&self.part);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| ModelsError::io("create", &tmp, e))?;
        if let Err(e) = std::fs::rename(&tmp, &self.part) {
            let _ = std::fs::remove_file(&tmp);
            return Err(ModelsError::io("replace", &self.part, e));
        }
        self.flusher.stop();
        self.flusher = Flusher::new(file.try_clone().ok());
        self.file = file;
        self.hashers = Hashers::new(self.with_sha256);
        if self.sidecar.chunks.take().is_some() {
            self.save_sidecar()?;
        }
        Ok(())
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), ModelsError> {
        self.file
            .write_all(bytes)
            .map_err(|e| ModelsError::io("write", &self.part, e))?;
        self.hashers.update(bytes);
        self.flusher.wrote(bytes.len() as u64);
        Ok(())
    }

    pub(crate) fn save_sidecar(&self) -> Result<(), ModelsError> {
        let bytes = serde_json::to_vec_pretty(&self.sidecar).expect("the sidecar serializes");
        write_atomic(&self.side, &bytes)?;
        Ok(())
    }

    pub(crate) fn side_path(&self) -> &Path {
        &self.side
    }

    /// Whether the partial file's name still leads to the file this writer
    /// wrote (a lock-blind second worker may have replaced it, see
    /// [`Partial::restart`]).
    fn is_still_at_its_name(&self) -> bool {
        use std::os::unix::fs::MetadataExt;
        match (self.file.metadata(), std::fs::metadata(&self.part)) {
            (Ok(ours), Ok(named)) => ours.dev() == named.dev() && ours.ino() == named.ino(),
            _ => false,
        }
    }

    /// Deletes the partial file and its sidecar.
    /// The file is left alone when its name now leads to another worker's.
    fn discard(self) {
        if self.is_still_at_its_name() {
            let _ = std::fs::remove_file(&self.part);
        }
        let _ = std::fs::remove_file(&self.side);
    }
}

/// What one HTTP attempt ended with.
pub(crate) enum Attempt {
    /// The body was received completely.
    Done,
    /// A failure worth retrying (with the detail for the final error).
    Retry(String),
    /// The file is large and the server accepts ranges: go on over several
    /// connections, the first continuing on this response's body.
    Chunked(ureq::BodyReader<'static>),
}

/// Downloads `model` from `url` to `dest` (its final path).
pub(crate) fn download(
    client: &Client,
    reporter: &dyn Reporter,
    models_dir: &Path,
    key: &str,
    model: &LockedModel,
    url: &str,
    dest: &Path,
) -> Result<Downloaded, ModelsError> {
    let opts = &client.opts;
    let path = model.path.as_str();
    let with_sha256 = model.sha256.is_some();
    let mut partial = Partial::open(models_dir, key, url, with_sha256)?;
    let resumed_from = partial.len();
    let mut failures = 0u32;
    let mut attempts = 0u32;
    let mut furthest = resumed_from;
    let mut first_body = None;
    let mut received = 0u64;
    reporter.start(path, resumed_from, partial.sidecar.total.or(model.size));
    let result = loop {
        let before = partial.len();
        attempts += 1;
        let outcome = if partial.sidecar.chunks.is_some() {
            chunked::run(
                client,
                reporter,
                model,
                url,
                &mut partial,
                first_body.take(),
            )
        } else {
            attempt(client, reporter, model, url, &mut partial)
        };
        received += partial.len().saturating_sub(before);
        match outcome {
            Ok(Attempt::Done) => break Ok(()),
            Ok(Attempt::Chunked(body)) => {
                // Not a new attempt: the same response goes on as chunk 0.
                attempts -= 1;
                first_body = Some(body);
            }
            Ok(Attempt::Retry(detail)) => {
                // Reaching further than ever before resets the failure budget
                // (a restart from 0 followed by the same cut does not).
                failures = if partial.len() > furthest {
                    1
                } else {
                    failures + 1
                };
                furthest = furthest.max(partial.len());
                if failures > opts.retries {
                    break Err(ModelsError::Transfer {
                        path: path.to_string(),
                        url: redact(url),
                        attempts,
                        detail: client.scrub(&detail),
                    });
                }
                let delay = backoff(opts.retry_delay, failures);
                reporter.note(
                    path,
                    &format!(
                        "{}; retrying in {:.1} s",
                        client.scrub(&detail),
                        delay.as_secs_f32()
                    ),
                );
                std::thread::sleep(delay);
            }
            Err(e) => break Err(e),
        }
    };
    reporter.finish(path);
    if let Err(e) = result {
        if matches!(
            e,
            ModelsError::HttpStatus { .. }
                | ModelsError::TooLarge { .. }
                | ModelsError::Redirects { .. }
                | ModelsError::HostRefused { .. }
        ) {
            partial.discard();
        }
        return Err(e);
    }
    finish(partial, model, url, dest, resumed_from, received)
}

fn backoff(base: Duration, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(6);
    (base * factor).min(Duration::from_secs(30))
}

/// Verifies the complete partial file and renames it to `dest`.
fn finish(
    mut partial: Partial,
    model: &LockedModel,
    url: &str,
    dest: &Path,
    resumed_from: u64,
    received: u64,
) -> Result<Downloaded, ModelsError> {
    partial.flusher.stop();
    partial
        .file
        .sync_all()
        .map_err(|e| ModelsError::io("flush", &partial.part, e))?;
    let whole = partial
        .sidecar
        .total
        .is_some_and(|t| t == partial.hashers.len());
    let digests = if partial.sidecar.chunks.is_some() && !whole {
        hash_file(&partial.part, partial.with_sha256)?
    } else {
        partial.hashers.clone().finish()
    };
    if let Some((what, expected, actual)) = first_mismatch(
        &digests,
        model.size,
        model.sha256.as_deref(),
        model.blake3.as_deref(),
    ) {
        partial.discard();
        return Err(ModelsError::Mismatch {
            path: model.path.clone(),
            url: redact(url),
            what,
            expected,
            actual,
        });
    }
    if !partial.is_still_at_its_name() {
        return Err(ModelsError::PartialReplaced {
            path: model.path.clone(),
            file: partial.part.clone(),
        });
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelsError::io("create", parent, e))?;
    std::fs::rename(&partial.part, dest)
        .map_err(|e| ModelsError::io("move into place", dest, e))?;
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
    let _ = std::fs::remove_file(&partial.side);
    Ok(Downloaded {
        digests,
        etag: partial.sidecar.etag.clone(),
        last_modified: partial.sidecar.last_modified.clone(),
        resumed_from,
        received,
    })
}

pub(crate) fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Content-Range: bytes a-b/total` → `(a, total)`.
pub(crate) fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (a, _) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, total.trim().parse().ok()))
}

fn hint(status: u16) -> String {
    match status {
        401 | 403 => format!(
            "the server refused access: set {} (Hugging Face) or {} (CivitAI) to a token that can read this file, \
             and accept the model's license on its page if it is gated (tokens are sent only over https, or http to loopback)",
            comfyver_env::HF_TOKEN,
            comfyver_env::CIVITAI_TOKEN
        ),
        404 | 410 => {
            "the file is not there: check the URL (and the revision for hf://) in the spec".into()
        }
        416 => "the server rejected the byte range; run the command again to restart the download"
            .into(),
        _ => "check the URL in the spec".into(),
    }
}

/// What to do with a response's status: `Ok(None)` to read its body.
pub(crate) fn judge_status(
    model: &LockedModel,
    url: &str,
    status: u16,
) -> Result<Option<String>, ModelsError> {
    match status {
        200 | 206 => Ok(None),
        408 | 429 | 500..=599 => Ok(Some(format!("HTTP {status}"))),
        _ => Err(ModelsError::HttpStatus {
            path: model.path.clone(),
            url: redact(url),
            status,
            hint: hint(status),
        }),
    }
}

/// Whether a response allows fetching the rest of the file in ranges.
fn accepts_ranges(resp: &ureq::http::Response<ureq::Body>) -> bool {
    header(resp, "accept-ranges").is_some_and(|v| v.trim().eq_ignore_ascii_case("bytes"))
}

/// One HTTP request and as much of its body as arrives.
fn attempt(
    client: &Client,
    reporter: &dyn Reporter,
    model: &LockedModel,
    url: &str,
    partial: &mut Partial,
) -> Result<Attempt, ModelsError> {
    let opts = &client.opts;
    let path = model.path.as_str();
    let offset = partial.len();
    let validator = partial.sidecar.validator();
    let resuming = offset > 0 && validator.is_some();
    if offset > 0 && !resuming {
        partial.restart()?;
    }
    let range = resuming.then(|| format!("bytes={offset}-"));
    let if_range = if resuming { validator.as_deref() } else { None };
    let resp = match client.get(model, url, range.as_deref(), if_range)? {
        Ok(r) => r,
        Err(detail) => return Ok(Attempt::Retry(detail)),
    };
    let status = resp.status().as_u16();
    if status == 416 {
        partial.restart()?;
        return Ok(Attempt::Retry("HTTP 416 for the resume range".into()));
    }
    if let Some(detail) = judge_status(model, url, status)? {
        return Ok(Attempt::Retry(detail));
    }
    let total = if status == 200 {
        if partial.len() > 0 {
            reporter.note(path, "the server sent the whole file again; restarting");
            partial.restart()?;
        }
        let total = header(&resp, "content-length").and_then(|v| v.parse().ok());
        byte_limit(opts, model, url, total)?;
        partial.sidecar.etag = header(&resp, "etag");
        partial.sidecar.last_modified = header(&resp, "last-modified");
        partial.sidecar.total = total;
        if let Some(t) = total
            && opts.connections > 1
            && t >= opts.chunked_min_size
            && accepts_ranges(&resp)
            && partial.sidecar.validator().is_some()
        {
            chunked::plan(partial, t, opts.connections, opts.chunked_min_size)?;
            return Ok(Attempt::Chunked(resp.into_body().into_reader()));
        }
        partial.save_sidecar()?;
        total
    } else {
        let range = header(&resp, "content-range").and_then(|v| content_range(&v));
        match range {
            Some((start, total)) if start == offset => {
                byte_limit(opts, model, url, total)?;
                total
            }
            _ => {
                // Not the range we asked for: start over cleanly.
                partial.restart()?;
                return Ok(Attempt::Retry(format!(
                    "the server answered a different byte range than requested (bytes={offset}-)"
                )));
            }
        }
    };
    let limit = byte_limit(opts, model, url, total)?;
    reporter.start(path, partial.len(), total);
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; BUF / 4];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Ok(Attempt::Retry(read_failure(
                    &e,
                    client.read_timeout(),
                    partial.len(),
                )));
            }
        };
        if partial.len() + n as u64 > limit {
            return Err(past_limit(opts, model, url, limit));
        }
        partial.write(&buf[..n])?;
        reporter.progress(path, partial.len(), total);
    }
    if let Some(t) = total
        && partial.len() < t
    {
        return Ok(Attempt::Retry(format!(
            "the body ended after {} of {t} bytes",
            partial.len()
        )));
    }
    Ok(Attempt::Done)
}

/// A failed read of a body, as a retry detail.
pub(crate) fn read_failure(e: &std::io::Error, read_timeout: Duration, at: u64) -> String {
    if e.kind() == std::io::ErrorKind::TimedOut || e.to_string().contains("timeout") {
        format!(
            "timed out: no data for {} s after {at} bytes (stalled)",
            read_timeout.as_secs_f32()
        )
    } else {
        format!("the connection broke after {at} bytes: {e}")
    }
}

/// A transport error as text (ureq's messages hold no headers, so no token;
/// the caller scrubs anyway).
fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(t) => format!("timed out ({t})"),
        ureq::Error::Io(io) => format!("network error: {io}"),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::ConnectionFailed => "connection failed".into(),
        other => format!("{other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range_and_backs_off() {
        assert_eq!(content_range("bytes 10-99/100"), Some((10, Some(100))));
        assert_eq!(content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(content_range("junk"), None);
        let b = Duration::from_millis(100);
        assert_eq!(backoff(b, 1), b);
        assert_eq!(backoff(b, 3), b * 4);
        assert!(backoff(b, 30) <= Duration::from_secs(30));
    }

    use comfyver_testkit::http::{Fault, HttpServer, non_loopback_ip};

    #[test]
    fn a_second_lock_blind_writer_never_truncates_a_partial_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let url = "http://127.0.0.1:9/m.bin";
        let mut a = Partial::open(dir.path(), "k", url, false).unwrap();
        a.write(&[7u8; 1000]).unwrap();
        // B (whose lock A did not see) finds no resumable sidecar: it starts over.
        let b = Partial::open(dir.path(), "k", url, false).unwrap();
        assert_eq!(
            a.file.metadata().unwrap().len(),
            1000,
            "A's bytes are intact"
        );
        assert_eq!(b.file.metadata().unwrap().len(), 0);
        // A may not publish what its name now leads to (B's file).
        let m = LockedModel {
            source: url.into(),
            path: "vae/m.bin".into(),
            sha256: None,
            blake3: None,
            size: Some(1000),
        };
        let dest = dir.path().join("vae/m.bin");
        let err = finish(a, &m, url, &dest, 0, 1000).err().unwrap();
        assert!(matches!(err, ModelsError::PartialReplaced { .. }), "{err}");
        assert!(!dest.exists());
        assert!(b.is_still_at_its_name(), "B's partial is still in place");
    }

    fn fetch_with(tokens: Tokens, url: &str) -> Result<Downloaded, ModelsError> {
        let dir = tempfile::tempdir().unwrap();
        let opts = FetchOptions {
            retries: 0,
            ..FetchOptions::default()
        };
        let client = Client::with_tokens(&opts, tokens);
        let m = LockedModel {
            source: url.into(),
            path: "vae/t.bin".into(),
            sha256: None,
            blake3: None,
            size: None,
        };
        let dest = dir.path().join("vae/t.bin");
        download(&client, &crate::NoReporter, dir.path(), "k", &m, url, &dest)
    }

    #[test]
    fn bearer_tokens_never_travel_over_plain_http_except_to_loopback() {
        const SECRET: &str = "hf_secret_value";
        // Loopback over http: the token is sent.
        let local = HttpServer::start();
        local.add_file("/m.bin", vec![1u8; 1000]);
        local.fault("/m.bin", Fault::RequireBearer(SECRET.into()));
        fetch_with(Tokens::for_tests("127.0.0.1", SECRET), &local.url("/m.bin")).unwrap();
        assert_eq!(
            local.requests_for("/m.bin")[0].authorization.as_deref(),
            Some("Bearer hf_secret_value")
        );
        // The same host over plain http on a real interface: never.
        let ip = non_loopback_ip().expect("this test needs a non-loopback IPv4 address");
        let lan = HttpServer::start_on(ip);
        lan.add_file("/m.bin", vec![2u8; 1000]);
        let host = ip.to_string();
        fetch_with(Tokens::for_tests(&host, SECRET), &lan.url("/m.bin")).unwrap();
        // A redirect from loopback to plain http elsewhere: never either.
        local.fault("/hop", Fault::Redirect(lan.url("/m.bin")));
        fetch_with(Tokens::for_tests("127.0.0.1", SECRET), &local.url("/hop")).unwrap();
        let lan_reqs = lan.requests_for("/m.bin");
        assert_eq!(lan_reqs.len(), 2);
        assert!(
            lan_reqs.iter().all(|r| r.authorization.is_none()),
            "{lan_reqs:?}"
        );
        assert_eq!(
            local.requests_for("/hop")[0].authorization.as_deref(),
            Some("Bearer hf_secret_value")
        );
    }

    #[test]
    fn redirect_locations_resolve_against_the_answering_url() {
        assert_eq!(
            join_url("https://a.example/x/y?q=1", "https://b.example/z"),
            "https://b.example/z"
        );
        assert_eq!(
            join_url("https://a.example/x/y?q=1", "/z"),
            "https://a.example/z"
        );
        assert_eq!(
            join_url("https://a.example:8/x/y", "z?s=2"),
            "https://a.example:8/x/z?s=2"
        );
        assert_eq!(
            join_url("http://a.example/x", "//c.example/w"),
            "http://c.example/w"
        );
    }
}
