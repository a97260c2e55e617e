//! The build lease of a home: proof, visible to every host, that one process
//! is building it.
//!
//! `flock` makes a second realize of one home wait, but a network volume may
//! not pass it between machines. The lease does not depend on it: it is a
//! file beside the home (`.<home name>.building`) created with `O_EXCL`,
//! which a shared filesystem arbitrates for all hosts, naming its holder's
//! host and pid. The holder refreshes its mtime every few seconds; a lease
//! whose holder is provably dead (same host, pid gone) or that has not been
//! refreshed for [`STALE_AFTER`] is taken over. Everyone else waits for it to
//! go and then finds the home realized.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crate::{Home, RealizeError};

/// How often the holder refreshes the lease.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// A lease not refreshed for this long is abandoned (its holder died on
/// another host, or froze).
pub(crate) const STALE_AFTER: Duration = Duration::from_secs(60);

/// A held lease; released (the file removed) on drop.
#[derive(Debug)]
pub(crate) struct Lease {
    path: PathBuf,
    /// Dropped to stop the heartbeat: its thread wakes at once.
    stop: Option<Sender<()>>,
    beat: Option<JoinHandle<()>>,
}

/// The lease file of `home`.
fn lease_path(home: &Home) -> PathBuf {
    let root = home.root();
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    root.with_file_name(format!(".{name}.building"))
}

/// Takes the lease of `home`, waiting for a live holder elsewhere to finish
/// (at most `wait`). Returns whether another process held it meanwhile (then
/// the caller looks at the home again before building).
pub(crate) fn take(home: &Home, wait: Duration) -> Result<(Lease, bool), RealizeError> {
    let path = lease_path(home);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| RealizeError::io("could not create", parent, e))?;
    }
    let start = Instant::now();
    let mut waited = false;
    loop {
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(mut file) => {
                let owner = format!("{} {}\n", comfyver_fs::host_id(), std::process::id());
                file.write_all(owner.as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| RealizeError::io("could not write", &path, e))?;
                return Ok((heartbeat(path, file), waited));
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                if abandoned(&path) {
                    let _ = std::fs::remove_file(&path);
                    continue;
                }
                if start.elapsed() > wait {
                    return Err(RealizeError::BuildLeaseHeld {
                        lease: path,
                        seconds: wait.as_secs(),
                    });
                }
                waited = true;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(RealizeError::io("could not create", &path, e)),
        }
    }
}

/// Keeps the lease fresh until it is dropped.
fn heartbeat(path: PathBuf, file: File) -> Lease {
    let (stop, stopped) = mpsc::channel::<()>();
    let beat = std::thread::Builder::new()
        .name("comfyver-lease".into())
        .spawn(move || {
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(HEARTBEAT) {
                let _ = file.set_modified(SystemTime::now());
            }
        })
        .ok();
    Lease {
        path,
        stop: Some(stop),
        beat,
    }
}

/// Whether the lease at `path` has no live holder: written on this host by a
/// process that is gone, or not refreshed for [`STALE_AFTER`].
fn abandoned(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false; // Gone already: the next create decides.
    };
    let stale = meta
        .modified()
        .ok()
        .and_then(|m| SystemTime::now().duration_since(m).ok())
        .is_some_and(|age| age > STALE_AFTER);
    if stale {
        return true;
    }
    let owner = std::fs::read_to_string(path).unwrap_or_default();
    let mut parts = owner.split_whitespace();
    match (
        parts.next(),
        parts.next().and_then(|p| p.parse::<u32>().ok()),
    ) {
        (Some(host), Some(pid)) => {
            host == comfyver_fs::host_id() && !comfyver_fs::child::process_alive(pid)
        }
        // Being written right now (or empty after a crash): judged by age.
        _ => false,
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(beat) = self.beat.take() {
            let _ = beat.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}
