//! Large files over several connections: the file is split into byte ranges
//! ("chunks") fetched in parallel with `Range` + `If-Range` and written in
//! place into a preallocated partial file. The sidecar records how far each
//! chunk got, saved a few times a second after the data it counts has been
//! flushed to disk, so a killed run resumes every chunk where it stopped and
//! the server sends each byte about once. The whole file is hashed and
//! verified after the last chunk, before the rename into place.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use comfyver_spec::LockedModel;
use serde::{Deserialize, Serialize};

use crate::download::{
    Attempt, Client, Partial, content_range, header, judge_status, read_failure,
};
use crate::hash::BUF;
use crate::{ModelsError, Reporter};

/// One byte range `[start, end)` of the file, of which `done` bytes from
/// `start` are on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Chunk {
    pub start: u64,
    pub end: u64,
    pub done: u64,
}

impl Chunk {
    fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// How often chunk progress is flushed and recorded.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// Splits a file of `total` bytes into `connections` chunks, preallocates
/// the partial file and records the plan.
pub(crate) fn plan(
    partial: &mut Partial,
    total: u64,
    connections: usize,
) -> Result<(), ModelsError> {
    let n = connections.max(1) as u64;
    let size = total.div_ceil(n).max(1);
    let chunks: Vec<Chunk> = (0..n)
        .map(|i| Chunk {
            start: (i * size).min(total),
            end: ((i + 1) * size).min(total),
            done: 0,
        })
        .filter(|c| c.end > c.start)
        .collect();
    partial
        .file
        .set_len(total)
        .map_err(|e| ModelsError::io("allocate", &partial.part, e))?;
    partial.sidecar.total = Some(total);
    partial.sidecar.chunks = Some(chunks);
    partial.save_sidecar()
}

/// How one chunk's attempt ended.
enum ChunkEnd {
    Complete,
    Retry(String),
    /// The server sent another file (a changed validator) or another range.
    Changed(String),
}

/// One pass over the unfinished chunks, in parallel. `first` is the body of
/// the response that started the download (its bytes begin at 0): chunk 0
/// reads from it. Transient failures end the pass with [`Attempt::Retry`]
/// after the other chunks finish; the caller backs off and calls again.
pub(crate) fn run(
    client: &Client,
    reporter: &dyn Reporter,
    model: &LockedModel,
    url: &str,
    partial: &mut Partial,
    first: Option<ureq::BodyReader<'static>>,
) -> Result<Attempt, ModelsError> {
    let chunks = partial.sidecar.chunks.clone().unwrap_or_default();
    let total = partial.sidecar.total.unwrap_or_default();
    let validator = partial.sidecar.validator();
    let done: Vec<AtomicU64> = chunks.iter().map(|c| AtomicU64::new(c.done)).collect();
    let first = Mutex::new(first.filter(|_| chunks.first().is_some_and(|c| c.done == 0)));
    let abort = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let ends: Vec<Result<ChunkEnd, ModelsError>> = std::thread::scope(|s| {
        let saver = s.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                std::thread::park_timeout(SAVE_EVERY);
                let _ = save_progress(partial, &chunks, &done);
            }
        });
        let workers: Vec<_> = chunks
            .iter()
            .enumerate()
            .filter(|(_, c)| c.done < c.len())
            .map(|(i, c)| {
                let ctx = Worker {
                    client,
                    reporter,
                    model,
                    url,
                    file: &partial.file,
                    part: &partial.part,
                    validator: validator.as_deref(),
                    total,
                    done: &done,
                    abort: &abort,
                };
                let body = if i == 0 {
                    first.lock().unwrap_or_else(|e| e.into_inner()).take()
                } else {
                    None
                };
                s.spawn(move || {
                    let r = ctx.fetch(i, *c, body);
                    if matches!(r, Err(_) | Ok(ChunkEnd::Changed(_))) {
                        ctx.abort.store(true, Ordering::SeqCst);
                    }
                    r
                })
            })
            .collect();
        let ends = workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Ok(ChunkEnd::Retry("a download thread panicked".into())))
            })
            .collect();
        finished.store(true, Ordering::SeqCst);
        saver.thread().unpark();
        let _ = saver.join();
        ends
    });
    // The final progress, recorded before anything else happens.
    let current: Vec<Chunk> = chunks
        .iter()
        .zip(&done)
        .map(|(c, d)| Chunk {
            done: d.load(Ordering::SeqCst),
            ..*c
        })
        .collect();
    partial.sidecar.chunks = Some(current);
    let mut retry = None;
    for end in ends {
        match end? {
            ChunkEnd::Complete => {}
            ChunkEnd::Retry(d) => retry = retry.or(Some(d)),
            ChunkEnd::Changed(d) => {
                partial.restart()?;
                return Ok(Attempt::Retry(d));
            }
        }
    }
    partial
        .file
        .sync_data()
        .map_err(|e| ModelsError::io("flush", &partial.part, e))?;
    partial.save_sidecar()?;
    Ok(retry.map_or(Attempt::Done, Attempt::Retry))
}

/// Flushes the data, then records the progress counted before the flush.
fn save_progress(
    partial: &Partial,
    chunks: &[Chunk],
    done: &[AtomicU64],
) -> Result<(), ModelsError> {
    let snapshot: Vec<Chunk> = chunks
        .iter()
        .zip(done)
        .map(|(c, d)| Chunk {
            done: d.load(Ordering::SeqCst),
            ..*c
        })
        .collect();
    partial
        .file
        .sync_data()
        .map_err(|e| ModelsError::io("flush", &partial.part, e))?;
    let mut sidecar = partial.sidecar.clone();
    sidecar.chunks = Some(snapshot);
    let bytes = serde_json::to_vec_pretty(&sidecar).expect("the sidecar serializes");
    comfyver_fs::write_atomic(partial.side_path(), &bytes)?;
    Ok(())
}

/// What a chunk's thread needs.
#[derive(Clone, Copy)]
struct Worker<'a> {
    client: &'a Client,
    reporter: &'a dyn Reporter,
    model: &'a LockedModel,
    url: &'a str,
    file: &'a std::fs::File,
    part: &'a Path,
    validator: Option<&'a str>,
    total: u64,
    done: &'a [AtomicU64],
    abort: &'a AtomicBool,
}

impl Worker<'_> {
    fn fetch(
        &self,
        i: usize,
        c: Chunk,
        body: Option<ureq::BodyReader<'static>>,
    ) -> Result<ChunkEnd, ModelsError> {
        let offset = c.start + self.done[i].load(Ordering::SeqCst);
        let mut reader = match body {
            Some(b) => b,
            None => {
                let range = format!("bytes={offset}-{}", c.end - 1);
                let resp =
                    match self
                        .client
                        .get(self.model, self.url, Some(&range), self.validator)?
                    {
                        Ok(r) => r,
                        Err(detail) => return Ok(ChunkEnd::Retry(detail)),
                    };
                let status = resp.status().as_u16();
                if status == 200 {
                    return Ok(ChunkEnd::Changed(
                        "the file changed on the server (its validator no longer matches); restarting".into(),
                    ));
                }
                if let Some(detail) = judge_status(self.model, self.url, status)? {
                    return Ok(ChunkEnd::Retry(detail));
                }
                let got = header(&resp, "content-range").and_then(|v| content_range(&v));
                if got != Some((offset, Some(self.total))) {
                    return Ok(ChunkEnd::Changed(format!(
                        "the server answered another byte range or length than requested ({range}); restarting"
                    )));
                }
                resp.into_body().into_reader()
            }
        };
        let mut buf = vec![0u8; BUF / 4];
        let mut pos = offset;
        while pos < c.end {
            if self.abort.load(Ordering::SeqCst) {
                return Ok(ChunkEnd::Retry("stopped: another chunk failed".into()));
            }
            let want = buf
                .len()
                .min(usize::try_from(c.end - pos).unwrap_or(usize::MAX));
            let n = match reader.read(&mut buf[..want]) {
                Ok(0) => {
                    return Ok(ChunkEnd::Retry(format!(
                        "the body of bytes {}-{} ended after {} bytes",
                        c.start,
                        c.end - 1,
                        pos - c.start
                    )));
                }
                Ok(n) => n,
                Err(e) => {
                    return Ok(ChunkEnd::Retry(read_failure(
                        &e,
                        self.client.read_timeout(),
                        pos,
                    )));
                }
            };
            self.file
                .write_all_at(&buf[..n], pos)
                .map_err(|e| ModelsError::io("write", self.part, e))?;
            pos += n as u64;
            self.done[i].fetch_add(n as u64, Ordering::SeqCst);
            let sum: u64 = self.done.iter().map(|d| d.load(Ordering::Relaxed)).sum();
            self.reporter
                .progress(&self.model.path, sum, Some(self.total));
        }
        Ok(ChunkEnd::Complete)
    }
}
