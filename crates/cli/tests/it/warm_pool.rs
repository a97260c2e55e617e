//! `comfyver serve --warm N`: several versions' ComfyUIs alive at once,
//! through the real binary and the stand-in ComfyUI.
//!
//! - `--warm 2` with jobs for v1, v2, v1, v2: two starts, and `POST /free` on
//!   the idle one at each switch (the stand-in logs every `/free`); an idle
//!   ComfyUI killed behind the worker's back is dropped and replaced on its
//!   next job; SIGTERM stops them all.
//! - The memory guard: a GPU short of memory (the stand-in reports one when
//!   asked; no GPU here) and an injected `MemAvailable` (a file read instead
//!   of `/proc/meminfo`) each make it evict before it starts.
//! - Look-ahead: a queued job's version starts while a slow job runs; SIGKILL
//!   of the worker leaves no ComfyUI alive, neither the one the job thread
//!   started nor the one the look-ahead thread did.
//!
//! - SIGTERM gives up a look-ahead start under way (a stand-in that takes a
//!   minute to answer) instead of waiting it out.
//! - RunPod mode (the fake job server): the same pool, two starts for four
//!   jobs on alternating versions.
//!
//! `--warm 1` (today's behaviour, one ComfyUI alive at any sample) is
//! `serve::local_job_api_end_to_end`.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use comfyver_testkit::comfy::free_port;
use comfyver_testkit::world::{World, smoke_workflow};
use serde_json::{Value, json};

use crate::serve::{
    Api, FakeRunpod, comfy_processes, job, realize, result_of, serve_command, sigterm,
    slow_workflow, stderr_file, wait_exit,
};

/// A world with versions v1 to v5 (same core and packs; v3's stand-in
/// reports a GPU with 300 MB free, v4's crashes at start, v5's takes a
/// minute to answer), v1 realized.
fn world() -> World {
    let w = World::new(&[]);
    w.write_spec("v2", &w.spec("v2"));
    let mut v3 = w.spec("v3");
    v3["env"] = json!({"FAKE_COMFY_VRAM_FREE_MB": "300"});
    w.write_spec("v3", &v3);
    let mut v4 = w.spec("v4");
    v4["env"] = json!({"FAKE_COMFY_CRASH_AT_START": "1"});
    w.write_spec("v4", &v4);
    let mut v5 = w.spec("v5");
    v5["env"] = json!({"FAKE_COMFY_START_DELAY": "60"});
    w.write_spec("v5", &v5);
    realize(&w, "v1");
    w
}

/// A `serve v1` worker on the local job API, ready.
struct Worker {
    serve: Child,
    api: Api,
    log_path: PathBuf,
}

impl Worker {
    /// Starts `serve v1 --warm <warm> --warm-min-free-mb <min_free_mb>`,
    /// reading `MemAvailable` from `meminfo` when given, and waits until
    /// `/ready` answers 200.
    fn start(w: &World, warm: &str, min_free_mb: &str, meminfo: Option<&Path>) -> Worker {
        let port = free_port();
        let (log_path, stderr) = stderr_file(w, &format!("serve-warm{warm}"));
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = serve_command(
            w,
            &[
                "v1",
                "--listen",
                &listen,
                "--warm",
                warm,
                "--warm-min-free-mb",
                min_free_mb,
            ],
        );
        if let Some(file) = meminfo {
            cmd.env("COMFYVER_MEMINFO_PATH", file);
        }
        let mut serve = cmd.stderr(stderr).spawn().unwrap();
        let api = Api::new(port);
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
                && api.send("GET", "/ready", None).0 == 200
            {
                return Worker {
                    serve,
                    api,
                    log_path,
                };
            }
            if let Ok(Some(status)) = serve.try_wait() {
                panic!(
                    "serve exited ({status}):\n{}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                );
            }
            assert!(Instant::now() < until, "serve never got ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `/health`'s warm list as (version, state, pid).
fn warm(api: &Api) -> Vec<(String, String, Option<u64>)> {
    api.get("/health")["comfyui"]["warm"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["version_id"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
                e["pid"].as_u64(),
            )
        })
        .collect()
}

fn pid_of(api: &Api, version: &str) -> u32 {
    let pid = warm(api)
        .into_iter()
        .find(|(v, _, _)| v == version)
        .and_then(|(_, _, pid)| pid)
        .unwrap_or_else(|| panic!("{version} is not warm: {:?}", warm(api)));
    u32::try_from(pid).unwrap()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        })
}

/// The `POST /free` calls the stand-ins of `home` logged, as their bodies.
fn frees(home: &Path) -> Vec<Value> {
    let mut found = Vec::new();
    let mut dirs = vec![home.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() && !path.is_symlink() {
                dirs.push(path);
            } else if e.file_name().to_string_lossy().starts_with("comfyui-") {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                for line in text.lines() {
                    if let Some(body) = line.split("fake-comfyui: POST /free ").nth(1) {
                        found.push(serde_json::from_str(body).unwrap());
                    }
                }
            }
        }
    }
    found
}

/// Waits until `home`'s stand-ins logged `n` frees (the log is written by a
/// thread of the worker, a moment after the stand-in printed it).
fn wait_frees(home: &Path, n: usize) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        let f = frees(home);
        if f.len() >= n || Instant::now() >= until {
            return f;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sigkill(child: &mut Child) {
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn two_warm_versions_switch_without_a_start_and_free_the_idle_one() {
    let w = world();
    let Worker {
        mut serve,
        api,
        log_path,
    } = Worker::start(&w, "2", "0", None);

    // v1, v2, v1, v2: two starts; every job completes on its version.
    for version in ["v1", "v2", "v1", "v2"] {
        let (s, r) = api.post("/runsync", &job(&smoke_workflow(false), Some(version)));
        assert_eq!((s, r["status"].as_str()), (200, Some("COMPLETED")), "{r}");
        assert_eq!(r["output"]["version_id"], version, "{r}");
    }
    let health = api.get("/health");
    assert_eq!(health["comfyui"]["starts"], 2, "{health}");
    assert_eq!(health["comfyui"]["version_id"], "v2", "{health}");
    assert_eq!(comfy_processes(&w.root), 2);
    let states: Vec<(String, String)> = warm(&api).into_iter().map(|(v, s, _)| (v, s)).collect();
    assert_eq!(
        states,
        [
            ("v2".into(), "active".into()),
            ("v1".into(), "ready".into())
        ]
    );
    // /free on the idle one at each switch: v1 twice (to v2, to v2 again), v2 once.
    let want = json!({"free_memory": true, "unload_models": true});
    let v1_frees = wait_frees(&w.home("v1"), 2);
    let v2_frees = wait_frees(&w.home("v2"), 1);
    assert_eq!(v1_frees, [want.clone(), want.clone()]);
    assert_eq!(v2_frees, [want]);
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(
        log.matches("freed the memory of ComfyUI of version")
            .count(),
        3,
        "{log}"
    );

    // The idle v1 dies behind the worker's back: dropped from the pool, and
    // started again only for its next job.
    let v1_pid = pid_of(&api, "v1");
    let v2_pid = pid_of(&api, "v2");
    assert!(kill_pid(v1_pid));
    let until = Instant::now() + Duration::from_secs(10);
    while warm(&api).iter().any(|(v, _, _)| v == "v1") {
        assert!(
            Instant::now() < until,
            "the dead v1 stays listed: {:?}",
            warm(&api)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("exited while idle"), "{log}");
    assert_eq!(
        api.get("/health")["comfyui"]["starts"],
        2,
        "no start before a job needs it"
    );
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false), Some("v1")));
    assert_eq!(r["status"], "COMPLETED", "{r}");
    assert_eq!(api.get("/health")["comfyui"]["starts"], 3);
    let new_v1 = pid_of(&api, "v1");
    assert_ne!(new_v1, v1_pid);
    assert_eq!(pid_of(&api, "v2"), v2_pid, "v2 stayed warm");

    // SIGTERM: every ComfyUI of the pool is stopped, and the worker exits 0.
    assert!(alive(new_v1) && alive(v2_pid));
    sigterm(&serve);
    let status = wait_exit(&mut serve, Duration::from_secs(40));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{status}\n{log}");
    for (version, pid) in [("v1", new_v1), ("v2", v2_pid)] {
        assert!(
            log.contains(&format!(
                "stopped ComfyUI of version {version} (pid {pid}, the worker stops)"
            )),
            "{log}"
        );
        assert!(!alive(pid));
    }
    assert_eq!(comfy_processes(&w.root), 0);
}

#[test]
fn the_memory_guard_evicts_before_starting_and_look_ahead_overlaps_a_job() {
    let w = world();
    let meminfo = w.root.join("meminfo");
    let plenty = "MemTotal: 67108864 kB\nMemAvailable: 33554432 kB\n";
    std::fs::write(&meminfo, plenty).unwrap();
    let Worker {
        mut serve,
        api,
        log_path,
    } = Worker::start(&w, "3", "1024", Some(&meminfo));

    // 1. A GPU short of memory (v3's stand-in reports 300 MB free): before
    // v2 starts, both idle ComfyUIs go, although a slot is free.
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false), Some("v3")));
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let (v1_pid, v3_pid) = (pid_of(&api, "v1"), pid_of(&api, "v3"));
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false), Some("v2")));
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let started = log.find("starting ComfyUI of version v2").unwrap();
    for victim in ["v1", "v3"] {
        let evicted = log
            .find(&format!("stopped ComfyUI of version {victim} "))
            .unwrap_or_else(|| panic!("{victim} was not evicted:\n{log}"));
        assert!(evicted < started, "evicted after the start:\n{log}");
        assert!(
            log[evicted..].lines().next().unwrap().contains(
                "evicted for version v2: only 300 MB of GPU memory free, below --warm-min-free-mb 1024"
            ),
            "{log}"
        );
    }
    assert!(!alive(v1_pid) && !alive(v3_pid));
    assert_eq!(comfy_processes(&w.root), 1);

    // 2. Low RAM: the idle v2 is evicted before v1 starts; the job still
    // gets its ComfyUI.
    let v2_pid = pid_of(&api, "v2");
    std::fs::write(&meminfo, "MemTotal: 67108864 kB\nMemAvailable: 512000 kB\n").unwrap();
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false), Some("v1")));
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let evicted = log
        .find("stopped ComfyUI of version v2 ")
        .unwrap_or_else(|| panic!("v2 was not evicted:\n{log}"));
    assert!(
        evicted < log.rfind("starting ComfyUI of version v1").unwrap(),
        "{log}"
    );
    assert!(
        log[evicted..].lines().next().unwrap().contains(
            "evicted for version v1: only 500 MB of RAM (MemAvailable) free, below --warm-min-free-mb 1024"
        ),
        "{log}"
    );
    assert!(!alive(v2_pid));
    assert_eq!(comfy_processes(&w.root), 1);

    // 3. Look-ahead: while a slow v1 job runs, the queued v2 job's ComfyUI
    // starts beside it (8 s: room for a start on a busy machine).
    std::fs::write(&meminfo, plenty).unwrap();
    let (_, slow) = api.post("/run", &job(&slow_workflow(8.0), Some("v1")));
    let slow = slow["id"].as_str().unwrap().to_string();
    api.wait_status(&slow, |s| s == "IN_PROGRESS");
    let (_, next) = api.post("/run", &job(&smoke_workflow(false), Some("v2")));
    let next = next["id"].as_str().unwrap().to_string();
    let until = Instant::now() + Duration::from_secs(60);
    let overlap = loop {
        let ready = warm(&api)
            .into_iter()
            .any(|(v, s, _)| v == "v2" && s == "ready");
        let slow_state = api.get(&format!("/status/{slow}"))["status"].clone();
        if ready {
            break slow_state;
        }
        assert!(Instant::now() < until, "v2 never started ahead");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        overlap, "IN_PROGRESS",
        "v2 was ready only after the slow job"
    );
    assert_eq!(api.get(&format!("/status/{next}"))["status"], "IN_QUEUE");
    let done = api.wait_status(&next, |s| s == "COMPLETED" || s == "FAILED");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert_eq!(api.get(&format!("/status/{slow}"))["status"], "COMPLETED");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        log.contains("starting ComfyUI of version v2 (look-ahead: a queued job needs it)"),
        "{log}"
    );
    // v1 (default), v3, v2, v1, and v2 again by look-ahead.
    assert_eq!(api.get("/health")["comfyui"]["starts"], 5);
    let ahead_pid = pid_of(&api, "v2");
    let v1_pid = pid_of(&api, "v1");

    // A version whose ComfyUI cannot start fails its job; the warm ones
    // stay, and the worker stays ready for them.
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false), Some("v4")));
    assert_eq!(r["output"]["kind"], "start", "{r}");
    assert_eq!(api.send("GET", "/ready", None).0, 200, "not ready after v4");
    assert_eq!(pid_of(&api, "v1"), v1_pid);
    assert_eq!(pid_of(&api, "v2"), ahead_pid);

    // 3. SIGKILL: the one the look-ahead thread started dies too.
    assert!(alive(ahead_pid) && alive(v1_pid));
    sigkill(&mut serve);
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !alive(ahead_pid) && !alive(v1_pid),
        "a ComfyUI outlived the worker"
    );
    assert_eq!(comfy_processes(&w.root), 0);
}

#[test]
fn runpod_mode_uses_the_same_pool() {
    let w = world();
    let jobs: Vec<Value> = ["v1", "v2", "v1", "v2"]
        .iter()
        .enumerate()
        .map(|(i, v)| {
            json!({"id": format!("job-{i}"), "input": {"workflow": smoke_workflow(false), "version_id": v}})
        })
        .collect();
    let fake = FakeRunpod::start(&w.root.join("rp-warm"), &Value::Array(jobs));
    let (log_path, stderr) = stderr_file(&w, "serve-runpod-warm");
    let mut serve = serve_command(&w, &["v1", "--warm", "2", "--warm-min-free-mb", "0"])
        .envs(fake.env())
        .stderr(stderr)
        .spawn()
        .unwrap();
    fake.wait_for("the last job's result", Duration::from_secs(120), |r| {
        r["path"] == "/job-done/w1/job-3" && r["body"].get("output").is_some()
    });
    assert_eq!(comfy_processes(&w.root), 2);
    sigterm(&serve);
    let status = wait_exit(&mut serve, Duration::from_secs(60));
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{status}\n{log}");
    let reqs = fake.requests();
    for (i, version) in ["v1", "v2", "v1", "v2"].iter().enumerate() {
        let r = result_of(&reqs, &format!("job-{i}"));
        assert_eq!(r["output"]["version_id"], *version, "{r}");
    }
    assert_eq!(
        log.matches("starting ComfyUI of version").count(),
        2,
        "{log}"
    );
    assert_eq!(
        log.matches("freed the memory of ComfyUI of version")
            .count(),
        3,
        "{log}"
    );
    assert_eq!(comfy_processes(&w.root), 0);
}

#[test]
fn a_stop_gives_up_a_look_ahead_start_under_way() {
    let w = world();
    let Worker {
        mut serve,
        api,
        log_path,
    } = Worker::start(&w, "2", "0", None);
    // A slow v1 job, and a queued job for v5, whose ComfyUI takes a minute.
    let (_, slow) = api.post("/run", &job(&slow_workflow(3.0), None));
    let slow = slow["id"].as_str().unwrap().to_string();
    api.wait_status(&slow, |s| s == "IN_PROGRESS");
    let (_, queued) = api.post("/run", &job(&smoke_workflow(false), Some("v5")));
    assert_eq!(queued["status"], "IN_QUEUE", "{queued}");
    let until = Instant::now() + Duration::from_secs(60);
    while !warm(&api)
        .iter()
        .any(|(v, s, _)| v == "v5" && s == "starting")
    {
        assert!(Instant::now() < until, "v5 never started ahead");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGTERM: the running job finishes, and the worker does not wait out
    // v5's start.
    let t0 = Instant::now();
    sigterm(&serve);
    let status = wait_exit(&mut serve, Duration::from_secs(50));
    let took = t0.elapsed();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert!(
        took < Duration::from_secs(30),
        "the stop took {took:?}\n{log}"
    );
    assert!(
        log.contains("look-ahead start of version v5 given up: the worker stops"),
        "{log}"
    );
    assert!(log.contains(&format!("job {slow}: COMPLETED")), "{log}");
    assert_eq!(comfy_processes(&w.root), 0);
}

/// SIGKILL to one process (a ComfyUI killed behind the worker's back).
fn kill_pid(pid: u32) -> bool {
    std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap()
        .success()
}
