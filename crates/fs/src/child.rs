//! Child processes that never outlive comfyver and never run unbounded.
//!
//! Every child comfyver starts (uv, pip, install.py, git helpers) goes through
//! [`contain`] or [`run_contained`]:
//! - the child runs in its own process group, so a terminal's Ctrl-C does not
//!   reach it directly and stopping the group stops everything it spawned;
//! - `PR_SET_PDEATHSIG(SIGKILL)` is set in the child before `exec`, so the kernel
//!   kills it when the thread that spawned it dies (comfyver SIGKILLed);
//! - while it runs it is registered: on SIGINT/SIGTERM a watcher thread stops
//!   every registered group (SIGINT, SIGKILL after a grace period), reaps it,
//!   then re-raises the signal so comfyver exits as the signal asks;
//! - [`enable_graceful_stop`]: a server (`serve`) takes the first signal as a
//!   request ([`stop_requested`]) and the second as the order;
//! - [`run_contained`] and [`run_bounded`] bound it by a timeout and, once the leader has exited
//!   (or the timeout passed), kills whatever is left of its group before the
//!   leader is reaped, so no grandchild keeps writing after we return.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::io::Read;
use std::os::fd::IntoRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::FsError;

/// Process ids (= process group ids) of the live registered children.
static LIVE: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Write end of the self-pipe the signal handler writes to (-1 until installed).
static WAKE_FD: AtomicI32 = AtomicI32::new(-1);
/// The signal that woke the watcher.
static CAUGHT: AtomicI32 = AtomicI32::new(0);
static INSTALL: Once = Once::new();
/// Whether the first SIGINT/SIGTERM only asks for a graceful stop (`serve`).
static GRACEFUL: AtomicBool = AtomicBool::new(false);
/// The signal that asked for a graceful stop (0: none yet).
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

/// How long the signal watcher waits after SIGINT before it sends SIGKILL.
const SIGNAL_GRACE: Duration = Duration::from_secs(3);

/// Puts the child in its own process group and asks the kernel to SIGKILL it
/// when the thread that spawns it dies. Call [`register`] with its pid after
/// `spawn` so SIGINT/SIGTERM stop it too (or use [`run_contained`], which does
/// both). Spawn from a thread that lives as long as the child is needed.
pub fn contain(cmd: &mut Command) {
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

/// Runs `cmd` contained (see [`contain`]) with stdin closed, capturing stdout
/// and stderr, for at most `timeout`. A non-zero exit is returned as an
/// ordinary [`Output`]; the caller judges it. When the timeout passes, the
/// whole process group is killed and [`FsError::ChildTimeout`] names `setting`
/// (the environment variable that raises the limit).
pub fn run_contained(
    cmd: &mut Command,
    timeout: Duration,
    setting: &'static str,
) -> Result<Output, FsError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    contain(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| FsError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id();
    let _registered = Registered::new(pid);
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let timed_out = wait_exited(&child, timeout);
    // The leader is a zombie (or still running): its pid, hence its group id,
    // cannot be reused yet, so this reaches only what it left behind.
    signal_group(pid, libc::SIGKILL);
    let status = child.wait().map_err(|source| FsError::Spawn {
        program: program.clone(),
        source,
    })?;
    let stdout = stdout
        .map(|t| t.join().unwrap_or_default())
        .unwrap_or_default();
    let stderr = stderr
        .map(|t| t.join().unwrap_or_default())
        .unwrap_or_default();
    if timed_out {
        return Err(FsError::ChildTimeout {
            program,
            seconds: timeout.as_secs().max(1),
            setting,
        });
    }
    Ok(Output {
        status,
        stdout,
        stderr,
    })
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
/// signal set ([`contain`]), registered so that SIGINT/SIGTERM to
/// comfyver stop it, and killed (the whole group) after `timeout`. stdin is
/// null unless the caller configured it; stdout/stderr are captured when the
/// caller set them to [`Stdio::piped`]. Whatever the child left running in its
/// group is killed when it exits, so no grandchild keeps writing after we
/// return.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> std::io::Result<Finished> {
    run_bounded_unless(cmd, timeout, &AtomicBool::new(false))
}

/// [`run_bounded`], also killing the child's group as soon as `stop` is set
/// (e.g. by a caller whose other step failed, so that its error is not held
/// back by a child whose work is no longer wanted); that ends in an error of
/// kind [`std::io::ErrorKind::Interrupted`].
pub fn run_bounded_unless(
    cmd: &mut Command,
    timeout: Duration,
    stop: &AtomicBool,
) -> std::io::Result<Finished> {
    cmd.stdin(Stdio::null());
    contain(cmd);
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
    let status = wait_until(&mut child, Instant::now() + timeout, stop);
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
fn wait_until(
    child: &mut Child,
    deadline: Instant,
    stop: &AtomicBool,
) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if stop.load(Ordering::Relaxed) {
            signal_group(child.id(), libc::SIGKILL);
            let _ = child.kill();
            child.wait()?;
            return Err(std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "stopped: its result is no longer wanted",
            ));
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

/// Keeps a child's pid in the registry the signal watcher stops; removes it on drop.
#[derive(Debug)]
pub struct Registered {
    pid: u32,
}

impl Registered {
    /// Registers `pid` (the leader of its own process group, see [`contain`]).
    pub fn new(pid: u32) -> Registered {
        register(pid);
        Registered { pid }
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        unregister(self.pid);
    }
}

/// Remembers a live child (the leader of its own group) so that SIGINT and
/// SIGTERM stop it; [`Registered`] does this for a scope.
pub fn register(pid: u32) {
    install_handlers();
    if let Ok(pid) = i32::try_from(pid)
        && pid > 0
    {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).insert(pid);
    }
}

/// Forgets a child that has been stopped and reaped.
pub fn unregister(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        LIVE.lock().unwrap_or_else(|e| e.into_inner()).remove(&pid);
    }
}

/// From now on the first SIGINT/SIGTERM only sets [`stop_requested`] (a
/// long-running server finishes its work first); a second one stops every
/// child and exits as before.
pub fn enable_graceful_stop() {
    GRACEFUL.store(true, Ordering::SeqCst);
    install_handlers();
}

/// The signal that asked for a graceful stop, if one has.
pub fn stop_requested() -> Option<i32> {
    match STOP_SIGNAL.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}

/// Sends `sig` to every process of the group led by `pid`. Returns false when
/// the group no longer exists.
pub fn signal_group(pid: u32, sig: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill has no memory-safety preconditions; a negative pid names a group.
    unsafe { libc::kill(-pid, sig) == 0 }
}

/// SIGKILLs every process of the group led by `pid`; false when it is gone.
pub fn kill_group(pid: u32) -> bool {
    signal_group(pid, libc::SIGKILL)
}

/// Whether a process with this id exists on this host and is not a zombie.
pub fn process_alive(pid: u32) -> bool {
    let Ok(p) = i32::try_from(pid) else {
        return false;
    };
    if p <= 0 {
        return false;
    }
    // SAFETY: signal 0 only checks that the process exists.
    let exists = unsafe { libc::kill(p, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    if !exists {
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

/// Waits until `child` has exited (without reaping it) or `timeout` passed;
/// true when it timed out.
fn wait_exited(child: &Child, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if has_exited(child.id()) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Whether our child `pid` has exited, leaving it unreaped (`WNOWAIT`).
fn has_exited(pid: u32) -> bool {
    let id = libc::id_t::from(pid);
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: info is a live local; P_PID names our own child.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            id,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled info (si_pid is 0 when nothing changed state).
    r != 0 || unsafe { info.si_pid() } != 0
}

fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<Vec<u8>>> {
    let mut pipe = pipe?;
    std::thread::Builder::new()
        .name("comfyver-child-output".into())
        .spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            buf
        })
        .ok()
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
            .name("comfyver-child-signals".into())
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

/// Stops every registered group (SIGINT, then SIGKILL after a grace period),
/// then dies of `sig` with its default action. Children are not reaped here:
/// their own waiting threads may be doing that.
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
    let mut waiting = pids;
    while !waiting.is_empty() && Instant::now() < deadline {
        waiting.retain(|&pid| u32::try_from(pid).is_ok_and(process_alive));
        std::thread::sleep(Duration::from_millis(20));
    }
    for &pid in &waiting {
        // SAFETY: as above.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    // SAFETY: restoring the default action and re-raising is the documented way
    // to die "of" a signal after cleaning up.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
    std::process::exit(128 + sig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_captured_and_exit_codes_pass_through() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo out; echo err >&2; exit 3"]);
        let out = run_contained(&mut cmd, Duration::from_secs(30), "TEST_LIMIT").unwrap();
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("grandchild.pid");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]);
        let t0 = Instant::now();
        let err = run_contained(&mut cmd, Duration::from_millis(500), "TEST_LIMIT").unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
        let text = err.to_string();
        assert!(matches!(err, FsError::ChildTimeout { .. }), "{text}");
        assert!(text.contains("TEST_LIMIT") && text.contains("sh"), "{text}");
        let grandchild: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !process_alive(grandchild)
        });
        assert!(gone, "grandchild {grandchild} survived the timeout");
    }

    #[test]
    fn leftovers_of_a_finished_leader_are_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("straggler.pid");
        // The straggler closes its copies of the pipes so only the kill ends it.
        let script = format!(
            "sleep 300 >/dev/null 2>&1 & echo $! > {}; exit 0",
            pidfile.display()
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script]);
        let out = run_contained(&mut cmd, Duration::from_secs(30), "TEST_LIMIT").unwrap();
        assert!(out.status.success());
        let straggler: u32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !process_alive(straggler)
        });
        assert!(gone, "straggler {straggler} outlived its leader");
    }

    #[test]
    fn missing_program_is_a_spawn_error_naming_it() {
        let mut cmd = Command::new("comfyver-no-such-program");
        let err = run_contained(&mut cmd, Duration::from_secs(5), "TEST_LIMIT").unwrap_err();
        assert!(
            err.to_string().contains("comfyver-no-such-program"),
            "{err}"
        );
    }

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
        while process_alive(grandchild) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            !process_alive(grandchild),
            "the grandchild {grandchild} must be gone"
        );
    }
}
