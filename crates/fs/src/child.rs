//! Child processes that never outlive comfyver: process groups, signals, the
//! parent-death signal, the registry of live children and bounded runs. The
//! only module of the workspace that calls into libc for processes; every
//! crate that starts a child (uv, pip, install.py, ComfyUI) goes through it.
//!
//! No child may outlive comfyver:
//! - each child runs in its own process group (so a terminal's Ctrl-C does not
//!   reach it directly, and stopping it stops everything it spawned);
//! - `PR_SET_PDEATHSIG(SIGKILL)` is set in the child before `exec`, so the kernel
//!   kills it if comfyver itself is SIGKILLed;
//! - a SIGINT/SIGTERM handler (installed once, when the first child starts) wakes
//!   a watcher thread through a pipe; the watcher stops every registered child
//!   (SIGINT to its group, SIGKILL after a grace period), reaps it, then re-raises
//!   the signal with the default action so comfyver exits as the signal asks.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::io::Read as _;
use std::os::fd::IntoRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

/// Process ids (= process group ids) of the live children.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Write end of the self-pipe the signal handler writes to (-1 until installed).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The signal that woke the watcher.
static CAUGHT: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();

/// How long the watcher waits after SIGINT before it sends SIGKILL.
const SIGNAL_GRACE: Duration = Duration::from_secs(3);

/// Puts the child in its own process group and asks the kernel to SIGKILL it
/// when the thread that spawned it dies (comfyver killed with SIGKILL).
pub fn prepare_child(cmd: &mut Command) {
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
pub fn signal_group(pid: u32, sig: i32) -> bool {
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
pub fn register(pid: u32) {
    install_handlers();
    if let Ok(pid) = i32::try_from(pid) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
    }
}

/// Forgets a child that has been stopped and reaped.
pub fn unregister(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
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
                if reader.read_exact(&mut byte).is_ok() {
                    stop_all_and_reraise(CAUGHT.load(Ordering::SeqCst));
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

/// How a bounded run ended.
#[derive(Debug)]
pub struct Finished {
    /// The exit status; `None` when the time limit was reached and the
    /// process group was killed.
    pub status: Option<ExitStatus>,
    /// What the child wrote to a piped stdout (empty when not piped).
    pub stdout: Vec<u8>,
    /// What the child wrote to a piped stderr (empty when not piped).
    pub stderr: Vec<u8>,
}

/// Runs `cmd` to completion in its own process group with the parent-death
/// signal set ([`prepare_child`]), registered so that SIGINT/SIGTERM to
/// comfyver stop it, and killed (the whole group) after `timeout`. stdin is
/// null unless the caller configured it; stdout/stderr are captured when the
/// caller set them to [`Stdio::piped`]. Whatever the child left running in its
/// group is killed when it exits, so no grandchild keeps writing after we
/// return.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> std::io::Result<Finished> {
    cmd.stdin(Stdio::null());
    prepare_child(cmd);
    let mut child = cmd.spawn()?;
    let pid = child.id();
    register(pid);
    let readers = (
        child.stdout.take().map(|mut out| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = out.read_to_end(&mut buf);
                buf
            })
        }),
        child.stderr.take().map(|mut err| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                let _ = err.read_to_end(&mut buf);
                buf
            })
        }),
    );
    let status = wait_until(&mut child, Instant::now() + timeout);
    // The leader is gone (exited or killed): nothing of its group stays.
    signal_group(pid, libc::SIGKILL);
    unregister(pid);
    let status = status?;
    let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Ok(Finished {
        status,
        stdout: join(readers.0),
        stderr: join(readers.1),
    })
}

/// Waits for `child` until `deadline`; then kills its group and reaps it
/// (`Ok(None)`).
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            signal_group(child.id(), libc::SIGKILL);
            let _ = child.kill();
            child.wait()?;
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_run_captures_output_and_status() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let done = run_bounded(&mut cmd, Duration::from_secs(30)).unwrap();
        assert_eq!(done.status.and_then(|s| s.code()), Some(3));
        assert_eq!(done.stdout, b"out\n");
        assert_eq!(done.stderr, b"err\n");
    }

    #[test]
    fn a_run_past_its_limit_is_killed_with_its_grandchildren() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("grandchild");
        let mut cmd = Command::new("sh");
        // The grandchild inherits the pipe: without the group kill the
        // readers (and this test) would wait for it for a minute.
        cmd.arg("-c")
            .arg(format!("sleep 60 & echo $! > {}; wait", pid_file.display()))
            .stdout(Stdio::piped());
        let t0 = Instant::now();
        let done = run_bounded(&mut cmd, Duration::from_millis(300)).unwrap();
        assert!(done.status.is_none(), "the limit was reached");
        assert!(t0.elapsed() < Duration::from_secs(30));
        let grandchild: u32 = std::fs::read_to_string(&pid_file)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(2);
        while process_exists(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !process_exists(grandchild),
            "the grandchild {grandchild} must be gone"
        );
    }
}
