//! Large files over several connections: the file is split into byte ranges
//! ("chunks") that the connections take in order and fetch with `Range` +
//! `If-Range`, written in place into a preallocated partial file. Every
//! 100 ms the data is flushed and then each chunk's progress recorded in the
//! sidecar, so a killed run resumes every chunk where it stopped and the
//! server sends each byte about once. A hasher follows the completed
//! beginning of the file during the download; the whole file's checksum
//! (which covers every chunk) is verified before the rename into place.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use comfyver_spec::lock::LockedModel;
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
const SAVE_EVERY: Duration = Duration::from_millis(100);

/// Chunks are at most this large, so the completed part of the file stays
/// nearly contiguous and is hashed while the download goes on.
const MAX_CHUNK: u64 = 64 << 20;

/// Splits a file of `total` bytes into chunks (about four per connection,
/// handed out in order; at least `min_size / connections` bytes each, 8 MiB
/// with the defaults), preallocates the partial file and records the plan.
pub(crate) fn plan(
    partial: &mut Partial,
    total: u64,
    connections: usize,
    min_size: u64,
) -> Result<(), ModelsError> {
    let n = connections.max(1) as u64;
    let min_chunk = (min_size / n).max(64 << 10);
    let size = (total / (n * 4)).clamp(min_chunk, MAX_CHUNK.max(min_chunk));
    let chunks: Vec<Chunk> = (0..total.div_ceil(size))
        .map(|i| Chunk {
            start: i * size,
            end: ((i + 1) * size).min(total),
            done: 0,
        })
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

/// One pass over the unfinished chunks: `connections` workers take them in
/// order; a hasher follows the completed prefix of the file (reading it back
/// from the page cache) so little is left to hash at the end. `first` is
/// the body of the response that started the download (its bytes begin at
/// 0): chunk 0 reads from it. A transient failure stops that worker (the
/// others go on) and ends the pass with [`Attempt::Retry`]; the caller backs
/// off and calls again, which resumes every chunk where it stopped.
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
    let side = partial.side_path().to_path_buf();
    let sidecar = partial.sidecar.clone();
    let done: Vec<AtomicU64> = chunks.iter().map(|c| AtomicU64::new(c.done)).collect();
    let mut todo: Vec<usize> = (0..chunks.len())
        .filter(|&i| chunks[i].done < chunks[i].len())
        .collect();
    let first = first.filter(|_| todo.first() == Some(&0) && chunks[0].done == 0);
    if first.is_some() {
        todo.remove(0);
    }
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let finished = AtomicBool::new(false);
    let (file, part, hashers) = (&partial.file, partial.part.as_path(), &mut partial.hashers);
    let ctx = Worker {
        client,
        reporter,
        model,
        url,
        file,
        part,
        validator: validator.as_deref(),
        total,
        chunks: &chunks,
        done: &done,
        abort: &abort,
    };
    let (ends, hashed) = std::thread::scope(|s| {
        let saver = s.spawn(|| {
            while !finished.load(Ordering::SeqCst) {
                std::thread::park_timeout(SAVE_EVERY);
                let _ = save_progress(file, &side, &sidecar, &chunks, &done);
            }
        });
        let hasher = s.spawn(|| follow_hash(file, hashers, &chunks, &done, total, &finished));
        let mut first = first;
        let workers: Vec<_> = (0..client.opts.connections.max(1))
            .map(|w| {
                let body = if w == 0 { first.take() } else { None };
                let (todo, next) = (&todo, &next);
                s.spawn(move || {
                    let mut ends = Vec::new();
                    if let Some(b) = body {
                        ends.push(ctx.fetch(0, Some(b)));
                    }
                    while !ctx.abort.load(Ordering::SeqCst)
                        && !matches!(
                            ends.last(),
                            Some(Err(_) | Ok(ChunkEnd::Retry(_) | ChunkEnd::Changed(_)))
                        )
                    {
                        let Some(&i) = todo.get(next.fetch_add(1, Ordering::SeqCst)) else {
                            break;
                        };
                        ends.push(ctx.fetch(i, None));
                    }
                    if matches!(ends.last(), Some(Err(_) | Ok(ChunkEnd::Changed(_)))) {
                        ctx.abort.store(true, Ordering::SeqCst);
                    }
                    ends
                })
            })
            .collect();
        let ends: Vec<Result<ChunkEnd, ModelsError>> = workers
            .into_iter()
            .flat_map(|w| {
                w.join().unwrap_or_else(|_| {
                    vec![Ok(ChunkEnd::Retry("a download thread panicked".into()))]
                })
            })
            .collect();
        finished.store(true, Ordering::SeqCst);
        saver.thread().unpark();
        let _ = saver.join();
        let hashed = hasher.join().unwrap_or(Ok(()));
        (ends, hashed)
    });
    // The final progress, recorded before anything else happens.
    partial.sidecar.chunks = Some(snapshot(&chunks, &done));
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
    if hashed.is_err() {
        // Hashed again from the file at the end.
        partial.hashers = crate::hash::Hashers::new(model.sha256.is_some());
    }
    partial
        .file
        .sync_data()
        .map_err(|e| ModelsError::io("flush", &partial.part, e))?;
    partial.save_sidecar()?;
    Ok(retry.map_or(Attempt::Done, Attempt::Retry))
}

fn snapshot(chunks: &[Chunk], done: &[AtomicU64]) -> Vec<Chunk> {
    chunks
        .iter()
        .zip(done)
        .map(|(c, d)| Chunk {
            done: d.load(Ordering::SeqCst),
            ..*c
        })
        .collect()
}

/// The end of the contiguous completed prefix of the file.
fn frontier(chunks: &[Chunk], done: &[AtomicU64]) -> u64 {
    for (c, d) in chunks.iter().zip(done) {
        let d = d.load(Ordering::SeqCst);
        if d < c.len() {
            return c.start + d;
        }
    }
    chunks.last().map_or(0, |c| c.end)
}

/// Hashes the file in order as far as it is complete, until the pass ends.
fn follow_hash(
    file: &std::fs::File,
    hashers: &mut crate::hash::Hashers,
    chunks: &[Chunk],
    done: &[AtomicU64],
    total: u64,
    finished: &AtomicBool,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; BUF];
    loop {
        let end = frontier(chunks, done);
        let at = hashers.len();
        if end > at {
            let n = buf
                .len()
                .min(usize::try_from(end - at).unwrap_or(usize::MAX));
            file.read_exact_at(&mut buf[..n], at)?;
            hashers.update(&buf[..n]);
            continue;
        }
        if at >= total || finished.load(Ordering::SeqCst) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Flushes the data, then records the progress counted before the flush.
fn save_progress(
    file: &std::fs::File,
    side: &Path,
    sidecar: &crate::download::Sidecar,
    chunks: &[Chunk],
    done: &[AtomicU64],
) -> Result<(), ModelsError> {
    let snapshot = snapshot(chunks, done);
    file.sync_data()
        .map_err(|e| ModelsError::io("flush", side, e))?;
    let mut sidecar = sidecar.clone();
    sidecar.chunks = Some(snapshot);
    let bytes = serde_json::to_vec_pretty(&sidecar).expect("the sidecar serializes");
    comfyver_fs::write_atomic(side, &bytes)?;
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
    chunks: &'a [Chunk],
    done: &'a [AtomicU64],
    abort: &'a AtomicBool,
}

impl Worker<'_> {
    fn fetch(
        &self,
        i: usize,
        body: Option<ureq::BodyReader<'static>>,
    ) -> Result<ChunkEnd, ModelsError> {
        let c = self.chunks[i];
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
