//! The only module that calls into libc: process groups, signals, the parent-death
//! signal and the registry of live ComfyUI children.
//!
//! No ComfyUI child may outlive comfyver:
//! - each child runs in its own process group (so a terminal's Ctrl-C does not
//!   reach it directly, and stopping it stops everything it spawned);
//! - `PR_SET_PDEATHSIG(SIGKILL)` is set in the child before `exec`, so the kernel
//!   kills it if comfyver itself is SIGKILLed;
//! - a SIGINT/SIGTERM handler (installed once, when the first child starts) wakes
//!   a watcher thread through a pipe; the watcher stops every registered child
//!   (SIGINT to its group, SIGKILL after a grace period), reaps it, then re-raises
//!   the signal with the default action so comfyver exits as the signal asks.
//!   In graceful mode (`comfyver serve`, [`enable_graceful_stop`]) the first
//!   signal only sets a flag ([`stop_requested`]) so the worker can finish its
//!   job; a second signal stops everything as above.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::IntoRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Process ids (= process group ids) of the live ComfyUI children.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Write end of the self-pipe the signal handler writes to (-1 until installed).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The signal that woke the watcher.
static CAUGHT: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();
/// Whether the first signal only asks for a graceful stop.
static GRACEFUL: AtomicBool = AtomicBool::new(false);
/// The signal that asked for a graceful stop (0 while none has).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// How long the watcher waits after SIGINT before it sends SIGKILL.
const SIGNAL_GRACE: Duration = Duration::from_secs(3);

/// Puts the child in its own process group and asks the kernel to SIGKILL it
/// when the thread that spawned it dies (comfyver killed with SIGKILL).
pub(crate) fn prepare_child(cmd: &mut Command) {
    cmd.process_group(0);
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: the closure runs between fork and exec and only calls the
    // async-signal-safe functions prctl, getppid and raise.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died between fork and prctl.
            if libc::getppid() != parent {
                libc::raise(libc::SIGKILL);
            }
            Ok(())
        });
    }
}

/// Sends `sig` to every process of the group led by `pid`. Returns false when
/// the group no longer exists.
pub(crate) fn signal_group(pid: u32, sig: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill has no memory-safety preconditions; a negative pid names a group.
    unsafe { libc::kill(-pid, sig) == 0 }
}

/// Whether a process with this id exists and is not a zombie (`kill(pid, 0)`
/// succeeds and `/proc/<pid>/stat` does not say `Z`).
pub fn process_exists(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists.
    if unsafe { libc::kill(p, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => !matches!(
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().chars().next()),
            Some(Some('Z' | 'X'))
        ),
        Err(_) => true,
    }
}

/// Remembers a live child so the signal watcher can stop it.
pub(crate) fn register(pid: u32) {
    install_handlers();
    if let Ok(pid) = i32::try_from(pid) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
    }
}

/// Forgets a child that has been stopped and reaped.
pub(crate) fn unregister(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
    }
}

/// From now on the first SIGINT/SIGTERM only sets [`stop_requested`]; a
/// second one stops every child and exits as before.
pub(crate) fn enable_graceful_stop() {
    GRACEFUL.store(true, Ordering::SeqCst);
    install_handlers();
}

/// The signal that asked for a graceful stop, if one has.
pub(crate) fn stop_requested() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

extern "C" fn on_signal(sig: libc::c_int) {
    CAUGHT.store(sig, Ordering::SeqCst);
    let fd = WAKE_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        let byte = 1u8;
        // SAFETY: write is async-signal-safe; the buffer is a live local.
        unsafe {
            libc::write(fd, (&raw const byte).cast(), 1);
        }
    }
}

fn install_handlers() {
    INSTALL.call_once(|| {
        let Ok((mut reader, writer)) = std::io::pipe() else {
            return;
        };
        WAKE_FD.store(writer.into_raw_fd(), Ordering::SeqCst);
        let spawned = std::thread::Builder::new()
            .name("comfyver-signals".into())
            .spawn(move || {
                let mut byte = [0u8; 1];
                while reader.read_exact(&mut byte).is_ok() {
                    let sig = CAUGHT.load(Ordering::SeqCst);
                    if GRACEFUL.load(Ordering::SeqCst) && STOP_SIGNAL.load(Ordering::SeqCst) == 0 {
                        STOP_SIGNAL.store(sig, Ordering::SeqCst);
                        continue;
                    }
                    stop_all_and_reraise(sig);
                }
            });
        if spawned.is_err() {
            return;
        }
        for sig in [libc::SIGINT, libc::SIGTERM] {
            // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value;
            // the handler only touches atomics and calls write.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                libc::sigemptyset(&mut action.sa_mask);
                action.sa_flags = libc::SA_RESTART;
                libc::sigaction(sig, &action, std::ptr::null_mut());
            }
        }
    });
}

/// Stops every registered child (SIGINT, then SIGKILL after a grace period),
/// reaps it, then dies of `sig` with its default action.
fn stop_all_and_reraise(sig: i32) {
    let pids: Vec<i32> = LIVE
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .copied()
        .collect();
    for &pid in &pids {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(-pid, libc::SIGINT) };
    }
    let deadline = Instant::now() + SIGNAL_GRACE;
    let mut waiting: Vec<i32> = pids;
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|&pid| !reap(pid));
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in &waiting {
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let mut status = 0;
        // SAFETY: status is a live local; blocking wait for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    // SAFETY: restoring the default action and re-raising is the documented way
    // to die "of" a signal after cleaning up.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    // The default action of SIGINT/SIGTERM terminates; this is only reached if
    // the signal was blocked.
    std::process::exit(128 + sig);
}

/// Reaps `pid` if it has exited; true when it is gone.
fn reap(pid: i32) -> bool {
    let mut status = 0;
    // SAFETY: status is a live local.
    let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
    r == pid || r < 0
}
