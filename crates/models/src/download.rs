//! HTTP(S) downloads into the store: streamed to a partial file, hashed on
//! the fly, resumed with `Range` + `If-Range`, retried with backoff, verified,
//! then renamed into place.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use comfyver_fs::write_atomic;
use comfyver_spec::{LockedModel, redact};
use serde::{Deserialize, Serialize};

use crate::auth::Tokens;
use crate::hash::{BUF, Digests, Hashers, first_mismatch};
use crate::store::partial_dir;
use crate::{FetchOptions, ModelsError, Reporter};

/// What the server said about the file, kept beside the partial download.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Sidecar {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    total: Option<u64>,
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
    opts: FetchOptions,
}

impl Client {
    pub fn new(opts: &FetchOptions) -> Client {
        Client {
            agent: agent(opts),
            tokens: Tokens::from_env(),
            opts: opts.clone(),
        }
    }
}

fn agent(opts: &FetchOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .accept_encoding("identity")
        .user_agent(format!("comfyver/{}", comfyver_spec::TOOL_VERSION))
        .timeout_connect(Some(opts.connect_timeout))
        .timeout_recv_response(Some(opts.read_timeout))
        .timeout_per_read(Some(opts.read_timeout))
        .build()
        .new_agent()
}

/// The partial file and its hashers, kept consistent: `hashers.len()` is
/// always the file's length.
struct Partial {
    file: File,
    part: PathBuf,
    side: PathBuf,
    hashers: Hashers,
    with_sha256: bool,
    sidecar: Sidecar,
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
        if resumable {
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

    fn len(&self) -> u64 {
        self.hashers.len()
    }

    /// Empties the partial file to start from byte 0.
    fn restart(&mut self) -> Result<(), ModelsError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.seek(SeekFrom::Start(0)).map(|_| ()))
            .map_err(|e| ModelsError::io("truncate", &self.part, e))?;
        self.hashers = Hashers::new(self.with_sha256);
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

    fn save_sidecar(&self) -> Result<(), ModelsError> {
        let bytes = serde_json::to_vec_pretty(&self.sidecar).expect("the sidecar serializes");
        write_atomic(&self.side, &bytes)?;
        Ok(())
    }

    /// Deletes the partial file and its sidecar.
    fn discard(self) {
        let _ = std::fs::remove_file(&self.part);
        let _ = std::fs::remove_file(&self.side);
    }
}

/// What one HTTP attempt ended with.
enum Attempt {
    /// The body was received completely.
    Done,
    /// A failure worth retrying (with the detail for the final error).
    Retry(String),
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
    let (agent, tokens, opts) = (&client.agent, &client.tokens, &client.opts);
    let path = model.path.as_str();
    let with_sha256 = model.sha256.is_some();
    let mut partial = Partial::open(models_dir, key, url, with_sha256)?;
    let resumed_from = partial.len();
    let mut received = 0u64;
    let mut failures = 0u32;
    let mut attempts = 0u32;
    let mut furthest = resumed_from;
    reporter.start(path, resumed_from, partial.sidecar.total.or(model.size));
    let result = loop {
        attempts += 1;
        let before = partial.len();
        let outcome = attempt(agent, tokens, reporter, model, url, &mut partial);
        received += partial.len().saturating_sub(before);
        match outcome {
            Ok(Attempt::Done) => break Ok(()),
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
                        detail: tokens.scrub(&detail),
                    });
                }
                let delay = backoff(opts.retry_delay, failures);
                reporter.note(
                    path,
                    &format!(
                        "{}; retrying in {:.1} s",
                        tokens.scrub(&detail),
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
        if matches!(e, ModelsError::HttpStatus { .. }) {
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
    let digests = partial.hashers.clone().finish();
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

fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `Content-Range: bytes a-b/total` → `(a, total)`.
fn content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim();
    let (range, total) = rest.split_once('/')?;
    let (a, _) = range.split_once('-')?;
    Some((a.trim().parse().ok()?, total.trim().parse().ok()))
}

fn hint(status: u16) -> String {
    match status {
        401 | 403 => format!(
            "the server refused access: set {} (Hugging Face) or {} (CivitAI) to a token that can read this file, \
             and accept the model's license on its page if it is gated",
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

/// One HTTP request and as much of its body as arrives.
fn attempt(
    agent: &ureq::Agent,
    tokens: &Tokens,
    reporter: &dyn Reporter,
    model: &LockedModel,
    url: &str,
    partial: &mut Partial,
) -> Result<Attempt, ModelsError> {
    let path = model.path.as_str();
    let read_timeout = agent.config().timeout_per_read().unwrap_or_default();
    let offset = partial.len();
    let mut req = agent.get(url);
    if let Some(token) = tokens.for_url(url) {
        req = req.header("Authorization", format!("Bearer {token}"));
    }
    let validator = partial
        .sidecar
        .etag
        .clone()
        .filter(|e| !e.starts_with("W/"))
        .or_else(|| partial.sidecar.last_modified.clone());
    let resuming = offset > 0 && validator.is_some();
    if offset > 0 && !resuming {
        partial.restart()?;
    }
    if resuming {
        req = req.header("Range", format!("bytes={offset}-"));
        if let Some(v) = &validator {
            req = req.header("If-Range", v.as_str());
        }
    }
    let resp = match req.call() {
        Ok(r) => r,
        Err(e) => return Ok(Attempt::Retry(describe(&e))),
    };
    let status = resp.status().as_u16();
    let total = match status {
        200 => {
            if partial.len() > 0 {
                reporter.note(path, "the server sent the whole file again; restarting");
                partial.restart()?;
            }
            partial.sidecar.etag = header(&resp, "etag");
            partial.sidecar.last_modified = header(&resp, "last-modified");
            let total = header(&resp, "content-length").and_then(|v| v.parse().ok());
            partial.sidecar.total = total;
            partial.save_sidecar()?;
            total
        }
        206 => {
            let range = header(&resp, "content-range").and_then(|v| content_range(&v));
            match range {
                Some((start, total)) if start == offset => total,
                _ => {
                    // Not the range we asked for: start over cleanly.
                    partial.restart()?;
                    return Ok(Attempt::Retry(format!(
                        "the server answered a different byte range than requested (bytes={offset}-)"
                    )));
                }
            }
        }
        416 => {
            partial.restart()?;
            return Ok(Attempt::Retry("HTTP 416 for the resume range".into()));
        }
        408 | 429 | 500..=599 => return Ok(Attempt::Retry(format!("HTTP {status}"))),
        _ => {
            return Err(ModelsError::HttpStatus {
                path: path.to_string(),
                url: redact(url),
                status,
                hint: hint(status),
            });
        }
    };
    reporter.start(path, partial.len(), total);
    let mut reader = resp.into_body().into_reader();
    let mut buf = vec![0u8; BUF / 4];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.to_string().contains("timeout") =>
            {
                return Ok(Attempt::Retry(format!(
                    "timed out: no data for {} s after {} bytes (stalled)",
                    read_timeout.as_secs_f32(),
                    partial.len()
                )));
            }
            Err(e) => {
                return Ok(Attempt::Retry(format!(
                    "the connection broke after {} bytes: {e}",
                    partial.len()
                )));
            }
        };
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
}
