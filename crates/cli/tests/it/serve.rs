//! `comfyver serve` through the real binary, with the stand-in ComfyUI.
//!
//! - RunPod worker mode against a fake job server (plain Python, records every
//!   request). The fake is first validated against the official `runpod` SDK
//!   (PyPI, installed by `scripts/install-test-deps.sh`): its worker runs a
//!   trivial handler on the same jobs, and comfyver must make the same kinds
//!   of call (paths, `$ID` substitution, query, headers, body shapes) for job
//!   success, job failure, progress, ping, the job-stop poll and SIGTERM in
//!   the middle of a job.
//! - The local job API: /runsync, /run + /status, a warm second job, a job for
//!   another version, /cancel, an unknown version, a version whose ComfyUI
//!   cannot start, bad bodies, SIGTERM (its network-facing limits, key and
//!   admission are in `front_door.rs`).
//! - `docker/entrypoint.sh` run directly against the fake job server, and
//!   `scripts/run_handler_local.sh`.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use comfyver_testkit::comfy::free_port;
use comfyver_testkit::world::{World, smoke_workflow};
use serde_json::{Value, json};

const KEY: &str = "rp-secret-key-123";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_comfyver"))
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The fake RunPod job server, a child process.
pub(crate) struct FakeRunpod {
    child: Child,
    port: u16,
    log: PathBuf,
}

impl FakeRunpod {
    pub(crate) fn start(dir: &Path, jobs: &Value) -> FakeRunpod {
        Self::start_with(dir, jobs, &[])
    }

    fn start_with(dir: &Path, jobs: &Value, extra: &[&str]) -> FakeRunpod {
        std::fs::create_dir_all(dir).unwrap();
        let log = dir.join("requests.jsonl");
        let jobs_file = dir.join("jobs.json");
        std::fs::write(&jobs_file, jobs.to_string()).unwrap();
        let script = repo_root().join("crates/testkit/fixtures/fake-runpod/server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--port", "0", "--hold", "1", "--log"])
            .arg(&log)
            .arg("--jobs")
            .arg(&jobs_file)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 runs the fake job server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("fake job server said {line:?}"));
        FakeRunpod { child, port, log }
    }

    /// The RunPod environment of a worker `w1` pointed at this server.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        let base = format!("http://127.0.0.1:{}", self.port);
        vec![
            (
                "RUNPOD_WEBHOOK_GET_JOB",
                format!("{base}/job-take/$ID?gpu=x"),
            ),
            (
                "RUNPOD_WEBHOOK_POST_OUTPUT",
                format!("{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=x"),
            ),
            ("RUNPOD_WEBHOOK_PING", format!("{base}/ping/$RUNPOD_POD_ID")),
            ("RUNPOD_PING_INTERVAL", "1000".into()),
            ("RUNPOD_POD_ID", "w1".into()),
            ("RUNPOD_AI_API_KEY", KEY.into()),
        ]
    }

    pub(crate) fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// Waits until a recorded request satisfies `pred`.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        let until = Instant::now() + timeout;
        loop {
            if let Some(r) = self.requests().into_iter().find(&pred) {
                return r;
            }
            assert!(
                Instant::now() < until,
                "no request {what} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for FakeRunpod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn sigterm(child: &Child) -> f64 {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -TERM");
    now()
}

fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

pub(crate) fn wait_exit(child: &mut Child, timeout: Duration) -> ExitStatus {
    let until = Instant::now() + timeout;
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        if Instant::now() >= until {
            let _ = child.kill();
            panic!("the process did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub(crate) fn slow_workflow(seconds: f64) -> Value {
    json!({"1": {"class_type": "FakeSlow", "inputs": {"seconds": seconds}}})
}

fn fail_workflow() -> Value {
    json!({"1": {"class_type": "FakeFail", "inputs": {}}})
}

/// The three jobs both workers get: a success, a failure, a slow one with
/// progress (SIGTERM arrives while it runs).
fn protocol_jobs() -> Value {
    json!([
        {"id": "job-ok", "input": {"workflow": smoke_workflow(false)}},
        {"id": "job-fail", "input": {"workflow": fail_workflow()}},
        {"id": "job-slow", "input": {"workflow": slow_workflow(3.0)}},
    ])
}

/// A trivial handler for the SDK: fails on FakeFail, reports progress and
/// sleeps on FakeSlow, else returns one image.
const SDK_HANDLER: &str = r#"
import json, time
import runpod

def handler(job):
    wf = json.dumps(job["input"]["workflow"])
    if "FakeFail" in wf:
        return {"error": "intentional failure", "details": ["x"]}
    if "FakeSlow" in wf:
        runpod.serverless.progress_update(job, {"value": 1, "max": 2})
        time.sleep(3)
    return {"images": [{"filename": "a.png", "type": "base64", "data": "aGk="}]}

runpod.serverless.start({"handler": handler})
"#;

/// What one recorded call looks like, without its volatile parts.
fn signature(r: &Value) -> String {
    let q = r["query"].as_object().unwrap();
    let mut query: Vec<String> = q
        .iter()
        .map(|(k, v)| match k.as_str() {
            // Values that must agree; job ids and versions are compared as keys.
            "gpu" | "isStream" | "job_in_progress" | "runpod_version" => {
                format!("{k}={}", v.as_str().unwrap())
            }
            _ => k.clone(),
        })
        .collect();
    query.sort();
    let h = &r["headers"];
    let mut headers = vec![format!(
        "authorization={}",
        h["authorization"].as_str().unwrap_or("-")
    )];
    if let Some(ct) = h["content-type"].as_str() {
        headers.push(format!("content-type={ct}"));
    }
    let path = r["path"].as_str().unwrap();
    if path.starts_with("/job-done/") {
        headers.push(format!(
            "x-request-id-is-job={}",
            h["x-request-id"].as_str() == path.rsplit('/').next()
        ));
    }
    let body = match &r["body"] {
        Value::Object(m) => {
            let mut keys: Vec<String> = m.keys().cloned().collect();
            keys.sort();
            if m.get("status").is_some() {
                keys.push(format!("status={}", m["status"].as_str().unwrap()));
            }
            keys.join(",")
        }
        Value::Null => String::new(),
        other => format!("non-object {other}"),
    };
    format!(
        "{} {} ?{} [{}] {{{}}}",
        r["method"].as_str().unwrap(),
        path,
        query.join("&"),
        headers.join(" "),
        body
    )
}

pub(crate) fn done_bodies(reqs: &[Value], job: &str) -> Vec<Value> {
    reqs.iter()
        .filter(|r| r["path"] == format!("/job-done/w1/{job}"))
        .map(|r| r["body"].clone())
        .collect()
}

pub(crate) fn result_of(reqs: &[Value], job: &str) -> Value {
    let results: Vec<Value> = done_bodies(reqs, job)
        .into_iter()
        .filter(|b| b.get("status").is_none())
        .collect();
    assert_eq!(results.len(), 1, "one result for {job}: {results:?}");
    results[0].clone()
}

pub(crate) fn serve_command(w: &World, args: &[&str]) -> Command {
    let mut c = comfyver_testkit::cli::comfyver_command(
        bin(),
        &w.root.join("cache"),
        &w.root.join("versions"),
    );
    c.arg("serve")
        .args(args)
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
        .stdout(Stdio::null());
    c
}

pub(crate) fn stderr_file(w: &World, name: &str) -> (PathBuf, std::fs::File) {
    let p = w.root.join(format!("{name}.stderr"));
    let f = std::fs::File::create(&p).unwrap();
    (p, f)
}

pub(crate) fn realize(w: &World, id: &str) {
    let out = w.comfyver(bin(), &["realize", id], None);
    assert!(
        out.status.success(),
        "realize {id}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ComfyUI processes (stand-in `main.py`) running under `root`.
pub(crate) fn comfy_processes(root: &Path) -> usize {
    let needle = root.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                c.contains("main.py") && c.contains(&needle)
            })
        })
        .count()
}

#[test]
fn runpod_worker_makes_the_calls_the_official_sdk_makes() {
    let w = World::new(&[]);
    realize(&w, "v1");

    // 1. The oracle: the SDK's worker with a trivial handler.
    let sdk_fake = FakeRunpod::start(&w.root.join("rp-sdk"), &protocol_jobs());
    let handler = w.root.join("sdk_handler.py");
    std::fs::write(&handler, SDK_HANDLER).unwrap();
    let mut sdk = Command::new(comfyver_testkit::cloud::runpod_sdk_python())
        .arg(&handler)
        .envs(sdk_fake.env())
        .env("RUNPOD_SKIP_GPU_CHECK", "true")
        .env("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    sdk_fake.wait_for("SDK progress for job-slow", Duration::from_secs(60), |r| {
        r["path"] == "/job-done/w1/job-slow" && r["body"]["status"] == "IN_PROGRESS"
    });
    let sdk_signal_at = sigterm(&sdk);
    let sdk_status = wait_exit(&mut sdk, Duration::from_secs(30));
    let sdk_reqs = sdk_fake.requests();

    // 2. comfyver serve on the same jobs.
    let fake = FakeRunpod::start(&w.root.join("rp-comfyver"), &protocol_jobs());
    let (stderr_path, stderr) = stderr_file(&w, "serve-runpod");
    let mut serve = serve_command(&w, &["v1", "--grace", "30"])
        .envs(fake.env())
        .stderr(stderr)
        .spawn()
        .unwrap();
    fake.wait_for(
        "comfyver progress for job-slow",
        Duration::from_secs(120),
        |r| r["path"] == "/job-done/w1/job-slow" && r["body"]["status"] == "IN_PROGRESS",
    );
    let signal_at = sigterm(&serve);
    let status = wait_exit(&mut serve, Duration::from_secs(60));
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(
        status.success(),
        "serve exits 0 after SIGTERM: {status}\n{log}"
    );
    assert!(!log.contains(KEY), "the key leaked into the log:\n{log}");
    let reqs = fake.requests();

    // 3. The same kinds of call.
    let kinds = |rs: &[Value]| -> BTreeSet<String> { rs.iter().map(signature).collect() };
    let (ours, theirs) = (kinds(&reqs), kinds(&sdk_reqs));
    assert_eq!(
        ours,
        theirs,
        "comfyver's calls differ from the SDK's\n  only comfyver: {:#?}\n  only SDK: {:#?}",
        ours.difference(&theirs).collect::<Vec<_>>(),
        theirs.difference(&ours).collect::<Vec<_>>()
    );
    for (who, rs) in [("sdk", &sdk_reqs), ("comfyver", &reqs)] {
        // Success and failure results, in the SDK's shapes.
        let ok = result_of(rs, "job-ok");
        assert!(ok["output"]["images"].is_array(), "{who}: {ok}");
        let failed = result_of(rs, "job-fail");
        assert!(failed["error"].is_string(), "{who}: {failed}");
        // The ping carries the running job.
        assert!(
            rs.iter()
                .any(|r| r["path"] == "/ping/w1" && r["query"]["job_id"] == "job-slow"),
            "{who}: no ping naming the running job"
        );
    }
    assert!(
        sdk_status.success(),
        "the SDK exits 0 after SIGTERM: {sdk_status}"
    );
    // SIGTERM mid-job: the job still finishes and its result is posted after the signal.
    for (who, rs, at) in [
        ("sdk", &sdk_reqs, sdk_signal_at),
        ("comfyver", &reqs, signal_at),
    ] {
        let slow: Vec<&Value> = rs
            .iter()
            .filter(|r| {
                r["path"] == "/job-done/w1/job-slow"
                    && r["body"].get("output").is_some()
                    && r["body"].get("status").is_none()
            })
            .collect();
        assert_eq!(slow.len(), 1, "{who}: one result for job-slow");
        assert!(
            slow[0]["t"].as_f64().unwrap() > at,
            "{who}: result before the signal?"
        );
    }
    // comfyver's own results: the real outputs and ComfyUI's error.
    let ok = result_of(&reqs, "job-ok");
    assert_eq!(ok["output"]["images"].as_array().unwrap().len(), 1, "{ok}");
    let failed = result_of(&reqs, "job-fail");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("intentional failure"),
        "{failed}"
    );
    let progress: Vec<Value> = done_bodies(&reqs, "job-slow")
        .into_iter()
        .filter(|b| b["status"] == "IN_PROGRESS")
        .collect();
    assert!(
        progress[0]["output"]["max"].as_f64().unwrap() > 0.0,
        "{progress:?}"
    );
    // No progress after the result; no job taken after the signal.
    let slow_done = reqs
        .iter()
        .position(|r| r["path"] == "/job-done/w1/job-slow" && r["body"].get("status").is_none());
    let last_progress = reqs
        .iter()
        .rposition(|r| r["body"]["status"] == "IN_PROGRESS");
    assert!(
        last_progress < slow_done,
        "progress posted after the result"
    );
    assert!(
        !reqs
            .iter()
            .any(|r| r["path"] == "/job-take/w1" && r["t"].as_f64().unwrap() > signal_at),
        "a job was taken after SIGTERM"
    );
    assert_eq!(comfy_processes(&w.root), 0, "ComfyUI left running");

    // 4. A job that outlives the grace period fails explicitly; refresh_worker stops the worker.
    let fake = FakeRunpod::start(
        &w.root.join("rp-grace"),
        &json!([{"id": "job-long", "input": {"workflow": slow_workflow(60.0)}}]),
    );
    let (stderr_path, stderr) = stderr_file(&w, "serve-grace");
    let mut serve = serve_command(&w, &["v1", "--grace", "1"])
        .envs(fake.env())
        .stderr(stderr)
        .spawn()
        .unwrap();
    fake.wait_for("progress of job-long", Duration::from_secs(120), |r| {
        r["path"] == "/job-done/w1/job-long"
    });
    sigterm(&serve);
    let status = wait_exit(&mut serve, Duration::from_secs(40));
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{status}\n{log}");
    let long = result_of(&fake.requests(), "job-long");
    assert!(
        long["error"].as_str().unwrap().contains("grace period"),
        "{long}"
    );

    // RunPod stops a running job (job-stop): it is interrupted, no result is
    // posted for it (as the SDK), and the worker takes the next job.
    let fake = FakeRunpod::start(
        &w.root.join("rp-stop"),
        &json!([{"id": "job-stopme", "input": {"workflow": slow_workflow(60.0)}},
                {"id": "job-next", "input": {"workflow": smoke_workflow(false)}}]),
    );
    let mut serve = serve_command(&w, &["v1"])
        .envs(fake.env())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    fake.wait_for("progress of job-stopme", Duration::from_secs(120), |r| {
        r["path"] == "/job-done/w1/job-stopme"
    });
    let mut r = ureq::post(format!("http://127.0.0.1:{}/_stop", fake.port))
        .send(r#"["job-stopme"]"#)
        .unwrap();
    let _ = r.body_mut().read_to_string();
    let t = Instant::now();
    fake.wait_for("the result of job-next", Duration::from_secs(60), |r| {
        r["path"] == "/job-done/w1/job-next"
    });
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "the stop took {:?}",
        t.elapsed()
    );
    sigterm(&serve);
    assert!(wait_exit(&mut serve, Duration::from_secs(40)).success());
    let reqs = fake.requests();
    assert!(
        done_bodies(&reqs, "job-stopme")
            .iter()
            .all(|b| b["status"] == "IN_PROGRESS"),
        "a result was posted for the stopped job"
    );
    assert!(result_of(&reqs, "job-next")["output"]["images"].is_array());

    // The first result post fails (HTTP 500): it is retried.
    let fake = FakeRunpod::start_with(
        &w.root.join("rp-refresh"),
        &json!([{"id": "job-r", "input": {"workflow": smoke_workflow(false), "refresh_worker": true}},
                {"id": "job-after", "input": {"workflow": smoke_workflow(false)}}]),
        &["--fail-done", "1"],
    );
    let mut serve = serve_command(&w, &["v1"])
        .envs(fake.env())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let status = wait_exit(&mut serve, Duration::from_secs(120));
    assert!(status.success(), "{status}");
    let reqs = fake.requests();
    let posts = done_bodies(&reqs, "job-r");
    assert_eq!(posts.len(), 2, "one failed post, one retry: {posts:?}");
    assert_eq!(posts[0], posts[1]);
    assert_eq!(posts[1]["stopPod"], true, "{posts:?}");
    assert!(posts[1]["output"]["images"].is_array(), "{posts:?}");
    assert!(
        done_bodies(&reqs, "job-after").is_empty(),
        "a refreshed worker took another job"
    );
}

/// `cmd` with this world's cache, versions and wheels, by environment, and
/// none of the other ambient settings.
fn world_env(cmd: &mut Command, w: &World) {
    comfyver_testkit::cli::scrub(cmd);
    cmd.env("COMFY_CACHE", w.root.join("cache"))
        .env("COMFY_VERSIONS_DIR", w.root.join("versions"))
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
        .env("NO_COLOR", "1");
}

#[test]
fn entrypoint_and_local_script_run_jobs() {
    let w = World::new(&[]);
    realize(&w, "v1");
    let fake = FakeRunpod::start(
        &w.root.join("rp-entry"),
        &json!([{"id": "job-e", "input": {"workflow": smoke_workflow(false)}}]),
    );
    let bin_dir = bin().parent().unwrap();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut entry = Command::new("sh");
    entry.arg(repo_root().join("docker/entrypoint.sh"));
    world_env(&mut entry, &w);
    entry
        .envs(fake.env())
        .env("PATH", &path)
        .env("COMFYVER_VERSION_ID", "v1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = entry.spawn().unwrap();
    fake.wait_for("the result of job-e", Duration::from_secs(120), |r| {
        r["path"] == "/job-done/w1/job-e"
    });
    sigterm(&child);
    let status = wait_exit(&mut child, Duration::from_secs(40));
    assert!(status.success(), "{status}");
    let r = result_of(&fake.requests(), "job-e");
    assert_eq!(r["output"]["images"].as_array().unwrap().len(), 1, "{r}");

    // scripts/run_handler_local.sh: one job through the local API, printed; serve stopped.
    let wf = w.workflow("smoke", &smoke_workflow(false));
    let mut script = Command::new("bash");
    script.arg(repo_root().join("scripts/run_handler_local.sh"));
    world_env(&mut script, &w);
    let out = script
        .args(["--version-id", "v1", "--workflow"])
        .arg(&wf)
        .arg("--bin")
        .arg(bin())
        // The RunPod variables must not turn the script's serve into a worker.
        .envs(fake.env())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(v["status"], "COMPLETED", "{v}");
    assert_eq!(v["output"]["images"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(
        comfy_processes(&w.root),
        0,
        "the script left ComfyUI running"
    );

    let bad = w.workflow("bad", &fail_workflow());
    let mut script = Command::new("bash");
    script.arg(repo_root().join("scripts/run_handler_local.sh"));
    world_env(&mut script, &w);
    let out = script
        .args(["--version-id", "v1", "--workflow"])
        .arg(&bad)
        .arg("--bin")
        .arg(bin())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["status"], "FAILED", "{v}");
}

pub(crate) struct Api {
    base: String,
    agent: ureq::Agent,
}

impl Api {
    pub(crate) fn new(port: u16) -> Api {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(180)))
            .build()
            .into();
        Api {
            base: format!("http://127.0.0.1:{port}"),
            agent,
        }
    }

    pub(crate) fn send(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let r = match (method, body) {
            ("GET", _) => self.agent.get(&url).call(),
            (_, Some(b)) => self
                .agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(b),
            _ => self.agent.post(&url).send_empty(),
        };
        let mut resp = r.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("POST", path, Some(&body.to_string()))
    }

    pub(crate) fn get(&self, path: &str) -> Value {
        let (s, v) = self.send("GET", path, None);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
    }

    pub(crate) fn wait_status(&self, id: &str, pred: impl Fn(&str) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let v = self.get(&format!("/status/{id}"));
            if pred(v["status"].as_str().unwrap()) {
                return v;
            }
            assert!(Instant::now() < until, "job {id} stuck: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub(crate) fn job(wf: &Value, version: Option<&str>) -> Value {
    let mut input = json!({"workflow": wf});
    if let Some(v) = version {
        input["version_id"] = json!(v);
    }
    json!({"input": input})
}

pub(crate) fn comfyui_logs(home: &Path) -> usize {
    fn walk(p: &Path, n: &mut usize) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, n);
            } else if path
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("comfyui-"))
            {
                *n += 1;
            }
        }
    }
    let mut n = 0;
    walk(home, &mut n);
    n
}

#[test]
fn local_job_api_end_to_end() {
    // broken_pack fails to import: every job's result names it, as `run`'s does.
    let w = World::new(&["broken_pack"]);
    let mut v2 = w.spec("v2");
    v2["version_id"] = json!("v2");
    w.write_spec("v2", &v2);
    // v3 realizes, but its ComfyUI crashes at start.
    let mut v3 = w.spec("v3");
    v3["env"] = json!({"FAKE_COMFY_CRASH_AT_START": "1"});
    w.write_spec("v3", &v3);
    realize(&w, "v1");
    let v1_logs_before = comfyui_logs(&w.home("v1"));

    let port = free_port();
    let (stderr_path, stderr) = stderr_file(&w, "serve-local");
    // `--warm 1` (the default): a switch stops the running ComfyUI first.
    let mut serve = serve_command(
        &w,
        &[
            "v1",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--warm",
            "1",
        ],
    )
    .stderr(stderr)
    .spawn()
    .unwrap();
    let api = Api::new(port);

    // At most one ComfyUI alive at any time, sampled all along.
    let stop = Arc::new(AtomicBool::new(false));
    let max_alive = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let (stop, max_alive, root) = (Arc::clone(&stop), Arc::clone(&max_alive), w.root.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                max_alive.fetch_max(comfy_processes(&root), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };

    // /health answers at once; /ready once the default version's ComfyUI is warm.
    let until = Instant::now() + Duration::from_secs(120);
    let health = loop {
        if let Ok(r) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            drop(r);
            assert_eq!(api.get("/health")["stopping"], false);
            if api.send("GET", "/ready", None).0 == 200 {
                break api.get("/health");
            }
        }
        assert!(Instant::now() < until, "serve never listened");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health["comfyui"]["version_id"], "v1", "{health}");

    // 1. /runsync: the image comes back.
    let (s, r) = api.post("/runsync", &job(&smoke_workflow(false), None));
    assert_eq!((s, r["status"].as_str()), (200, Some("COMPLETED")), "{r}");
    assert!(r["id"].as_str().unwrap().starts_with("sync-"), "{r}");
    let data = r["output"]["images"][0]["data"].as_str().unwrap();
    let png = base64::engine::general_purpose::STANDARD
        .decode(data)
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert_eq!(r["output"]["version_id"], "v1");
    assert_eq!(r["output"]["failed_packs"][0]["name"], "broken_pack", "{r}");

    // 2. /run + /status: queued, then done; still the same ComfyUI.
    let (s, r) = api.post("/run", &job(&smoke_workflow(false), None));
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "IN_QUEUE");
    let id = r["id"].as_str().unwrap().to_string();
    let done = api.wait_status(&id, |s| s == "COMPLETED" || s == "FAILED");
    assert_eq!(done["status"], "COMPLETED", "{done}");
    assert!(
        done["executionTime"].is_u64() && done["delayTime"].is_u64(),
        "{done}"
    );
    assert_eq!(api.get("/health")["comfyui"]["starts"], 1);
    assert_eq!(
        comfyui_logs(&w.home("v1")) - v1_logs_before,
        1,
        "two jobs, one ComfyUI start"
    );

    // 3. Another version: realized on demand, one switch.
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false), Some("v2")));
    assert_eq!(r["status"], "COMPLETED", "{r}");
    assert_eq!(r["output"]["version_id"], "v2");
    let health = api.get("/health");
    assert_eq!(health["comfyui"]["version_id"], "v2");
    assert_eq!(health["comfyui"]["starts"], 2, "{health}");

    // 4. /cancel: a running job and a queued one.
    let (_, running) = api.post("/run", &job(&slow_workflow(60.0), Some("v2")));
    let (_, queued) = api.post("/run", &job(&slow_workflow(60.0), Some("v2")));
    let running = running["id"].as_str().unwrap().to_string();
    let queued = queued["id"].as_str().unwrap().to_string();
    api.wait_status(&running, |s| s == "IN_PROGRESS");
    assert_eq!(api.get(&format!("/status/{queued}"))["status"], "IN_QUEUE");
    let (s, r) = api.send("POST", &format!("/cancel/{queued}"), None);
    assert_eq!((s, r["status"].as_str()), (200, Some("CANCELLED")), "{r}");
    let t = Instant::now();
    let (s, r) = api.send("POST", &format!("/cancel/{running}"), None);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "cancel took {:?}",
        t.elapsed()
    );
    assert_eq!(s, 200, "{r}");
    assert!(
        r["status"] == "CANCELLED" || r["cancel"] == "interrupting",
        "{r}"
    );
    api.wait_status(&running, |s| s == "CANCELLED");
    let (s, _) = api.send("POST", "/cancel/no-such-job", None);
    assert_eq!(s, 404);

    // 5. A version that cannot be realized: the job's error; the worker goes on.
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false), Some("nosuch")));
    assert_eq!(r["status"], "FAILED", "{r}");
    assert!(r["error"].as_str().unwrap().contains("nosuch"), "{r}");
    // A version whose ComfyUI cannot start: the job's error with the log tail.
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false), Some("v3")));
    assert_eq!(r["status"], "FAILED", "{r}");
    assert_eq!(r["output"]["kind"], "start", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("did not start"),
        "{r}"
    );
    assert!(
        r.to_string().contains("simulated crash during startup"),
        "{r}"
    );
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false), None));
    assert_eq!(r["status"], "COMPLETED", "{r}");
    assert_eq!(r["output"]["version_id"], "v1");

    // 6. Bad bodies: 400 with the reason.
    for (body, needle) in [
        ("not json", "not JSON"),
        ("{\"input\": {}}", "workflow"),
        (
            "{\"input\": {\"workflow\": {\"1\": {\"class_type\": \"EmptyImage\", \"inputs\": {}}}, \"version_id\": \"../x\"}}",
            "version_id",
        ),
        (
            "{\"input\": {\"workflow\": {\"nodes\": [], \"links\": [], \"version\": 0.4}}}",
            "Export (API)",
        ),
    ] {
        let (s, r) = api.send("POST", "/run", Some(body));
        assert_eq!(s, 400, "{body}: {r}");
        assert!(r["error"].as_str().unwrap().contains(needle), "{body}: {r}");
    }

    // 7. SIGTERM with a job running and one queued: the running one finishes
    // (within the grace period), the queued one fails explicitly, exit 0.
    let running = std::thread::spawn(move || {
        Api::new(port).post("/runsync", &job(&slow_workflow(2.0), None))
    });
    let until = Instant::now() + Duration::from_secs(60);
    while api.get("/health")["jobs"]["inProgress"] != 1 {
        assert!(Instant::now() < until, "the slow job never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    let queued = std::thread::spawn(move || {
        Api::new(port).post("/runsync", &job(&smoke_workflow(false), None))
    });
    while api.get("/health")["jobs"]["inQueue"] != 1 {
        assert!(Instant::now() < until, "the second job was never queued");
        std::thread::sleep(Duration::from_millis(20));
    }
    sigterm(&serve);
    let (_, r) = running.join().unwrap();
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let (_, r) = queued.join().unwrap();
    assert_eq!(r["status"], "FAILED", "{r}");
    assert_eq!(r["output"]["kind"], "not_run", "{r}");
    assert!(
        r["error"].as_str().unwrap().contains("submit it again"),
        "{r}"
    );
    let status = wait_exit(&mut serve, Duration::from_secs(40));
    stop.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let log = std::fs::read_to_string(&stderr_path).unwrap();
    assert!(status.success(), "{status}\n{log}");
    assert_eq!(comfy_processes(&w.root), 0, "ComfyUI left running\n{log}");
    assert_eq!(
        max_alive.load(Ordering::SeqCst),
        1,
        "ComfyUIs alive at once"
    );
    // v1, v2, v3 (crashed), v1 again.
    assert_eq!(
        log.matches("starting ComfyUI of version").count(),
        4,
        "{log}"
    );
}
