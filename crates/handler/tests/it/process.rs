//! The ComfyUI process: a stale server on the port, and no orphan when
//! comfyver is interrupted (SIGTERM) or killed (SIGKILL).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{env, opts, process_alive, procs_in};
use comfyver_handler::{ComfyEnv, HandlerError, Session, StartOptions};
use comfyver_testkit::comfy::{ComfyHome, FakeComfy, free_port, python};

#[test]
fn stale_server_on_the_port_is_not_taken_for_our_child() {
    let home = ComfyHome::new(&[]);
    let port = free_port();
    let stale = FakeComfy::start(&home, "stale", port);

    let forced = StartOptions {
        port: Some(port),
        ..opts()
    };
    let err = Session::start(&env(&home), &forced).expect_err("the stale server is detected");
    assert!(
        matches!(err, HandlerError::PortTaken { port: p, .. } if p == port),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("another server is answering on 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(process_alive(stale.pid()), "the stale server is left alone");

    // Without a forced port, comfyver runs on a port of its own.
    let comfy = Session::start(&env(&home), &opts()).expect("starts elsewhere");
    assert_ne!(comfy.port(), port);
    let pid = comfy.pid();
    drop(comfy);
    assert!(!process_alive(pid));
    drop(stale);
    assert!(procs_in(&home.core_dir).is_empty());
}

/// Not a test on its own: the body of the child process that
/// `sigterm_to_comfyver_stops_comfyui` and `sigkill_to_comfyver_kills_comfyui`
/// spawn (this test binary, filtered to this test, with COMFYVER_HOLD_HOME
/// set); ignored so that a normal run does not count it as a passing test.
#[test]
#[ignore = "the body of a child process, run by the SIGTERM/SIGKILL tests"]
fn hold_helper() {
    let Ok(root) = std::env::var("COMFYVER_HOLD_HOME") else {
        return;
    };
    let root = Path::new(&root);
    let env = ComfyEnv {
        python: python(),
        core_dir: root.join("ComfyUI"),
        base_dir: None,
        extra_model_paths: Some(root.join("extra_model_paths.yaml")),
        env: Default::default(),
        logs_dir: root.join("logs"),
        data_dir: root.join("data"),
        version_id: "hold".into(),
        node_packs: Vec::new(),
        model_dirs: Vec::new(),
        node_index: None,
    };
    let comfy = Session::start(&env, &opts()).expect("starts");
    let pid_file = root.join("comfy.pid");
    std::fs::write(root.join("comfy.pid.tmp"), comfy.pid().to_string()).unwrap();
    std::fs::rename(root.join("comfy.pid.tmp"), &pid_file).unwrap();
    std::thread::sleep(Duration::from_secs(120));
    panic!("the helper should have been signalled");
}

/// Starts the helper, returns it and its ComfyUI's pid (the helper writes
/// it to `<home>/comfy.pid`).
fn spawn_holder(home: &ComfyHome) -> (std::process::Child, u32) {
    let mut holder = Command::new(std::env::current_exe().unwrap())
        .args(["process::hold_helper", "--exact", "--ignored"])
        .env("COMFYVER_HOLD_HOME", home.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid_file = home.path().join("comfy.pid");
    let until = Instant::now() + Duration::from_secs(60);
    let pid = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            break pid;
        }
        if let Ok(Some(status)) = holder.try_wait() {
            panic!("the helper exited early: {status}");
        }
        assert!(Instant::now() < until, "the helper did not start ComfyUI");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(process_alive(pid));
    (holder, pid)
}

fn send(sig: &str, pid: u32) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

fn gone_within(pid: u32, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if !process_alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[test]
fn sigterm_to_comfyver_stops_comfyui() {
    use std::os::unix::process::ExitStatusExt;
    let home = ComfyHome::new(&[]);
    let (mut holder, comfy_pid) = spawn_holder(&home);
    send("-TERM", holder.id());
    let status = holder.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc::SIGTERM),
        "comfyver dies of the signal: {status}"
    );
    // The handler stopped and reaped ComfyUI before re-raising.
    assert!(!process_alive(comfy_pid), "ComfyUI {comfy_pid} was stopped");
    assert!(procs_in(&home.core_dir).is_empty());
    let log = std::fs::read_dir(home.path().join("logs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = std::fs::read_to_string(log).unwrap();
    assert!(
        log.contains("Stopped server"),
        "ComfyUI got SIGINT and shut down cleanly:\n{log}"
    );
}

#[test]
fn sigkill_to_comfyver_kills_comfyui() {
    let home = ComfyHome::new(&[]);
    let (mut holder, comfy_pid) = spawn_holder(&home);
    send("-KILL", holder.id());
    holder.wait().unwrap();
    // PR_SET_PDEATHSIG: the kernel kills the orphan.
    assert!(
        gone_within(comfy_pid, Duration::from_secs(10)),
        "ComfyUI {comfy_pid} outlived comfyver"
    );
    assert!(procs_in(&home.core_dir).is_empty());
}
