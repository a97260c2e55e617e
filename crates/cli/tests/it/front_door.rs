//! The local job API as a network service (`comfyver serve --listen`), with the
//! stand-in ComfyUI: the key, the refusal to listen open on a network address,
//! the queue limit, `/ready`, `/cancel` that answers at once, the versions
//! allow-list, progress in `/status`, secrets kept out of ComfyUI, and the
//! denial-of-service cases (stalled bodies, waiting `/runsync` clients, many
//! large jobs, a 64 MB URL) during which `/health` and `/status` answer within
//! a second and the worker's memory stays bounded (measured).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use comfyver_testkit::comfy::free_port;
use comfyver_testkit::world::{World, smoke_workflow};
use serde_json::{Value, json};

const API_KEY: &str = "door-key-0123456789";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_comfyver"))
}

fn serve(w: &World, args: &[&str], key: Option<&str>) -> (Child, PathBuf) {
    let mut c = comfyver_testkit::cli::comfyver_command(
        bin(),
        &w.root.join("cache"),
        &w.root.join("versions"),
    );
    let log = w.root.join(format!("serve-{}.stderr", free_port()));
    c.arg("serve")
        .args(args)
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    if let Some(k) = key {
        c.env("COMFYVER_API_KEY", k);
    }
    (c.spawn().unwrap(), log)
}

fn realize(w: &World, id: &str) {
    let out = w.comfyver(bin(), &["realize", id], None);
    assert!(
        out.status.success(),
        "realize {id}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A client of the local job API, with or without the key.
pub(crate) struct Client {
    base: String,
    agent: ureq::Agent,
    auth: Option<String>,
}

impl Client {
    pub(crate) fn new(port: u16, auth: Option<&str>) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .timeout_global(Some(Duration::from_secs(180)))
            .build()
            .into();
        Client {
            base: format!("http://127.0.0.1:{port}"),
            agent,
            auth: auth.map(str::to_string),
        }
    }

    /// (status, JSON body, Retry-After).
    fn send(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value, Option<String>) {
        let url = format!("{}{path}", self.base);
        let r = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &self.auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = self.agent.post(&url);
                if let Some(a) = &self.auth {
                    r = r.header("Authorization", a);
                }
                match body {
                    Some(b) => r.header("Content-Type", "application/json").send(b),
                    None => r.send_empty(),
                }
            }
        };
        let mut resp = r.unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = resp.status().as_u16();
        let retry = resp
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_string());
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
            retry,
        )
    }

    pub(crate) fn get(&self, path: &str) -> (u16, Value) {
        let (s, v, _) = self.send("GET", path, None);
        (s, v)
    }

    pub(crate) fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, v, _) = self.send("POST", path, Some(&body.to_string()));
        (s, v)
    }

    /// GETs `path`, asserting it answers 200 within a second.
    fn quick(&self, path: &str) -> Value {
        let t = Instant::now();
        let (s, v) = self.get(path);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "{path} took {:?}",
            t.elapsed()
        );
        assert_eq!(s, 200, "{path}: {v}");
        v
    }

    pub(crate) fn wait_ready(&self, serve: &mut Child) {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            assert!(serve.try_wait().unwrap().is_none(), "serve exited");
            if TcpStream::connect(self.base.trim_start_matches("http://")).is_ok()
                && self.get("/ready").0 == 200
            {
                return;
            }
            assert!(Instant::now() < until, "serve never got ready");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_status(&self, id: &str, pred: impl Fn(&str) -> bool) -> Value {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let (_, v) = self.get(&format!("/status/{id}"));
            if pred(v["status"].as_str().unwrap_or_default()) {
                return v;
            }
            assert!(Instant::now() < until, "job {id} stuck: {v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn job(wf: &Value) -> Value {
    json!({"input": {"workflow": wf}})
}

fn slow(seconds: f64) -> Value {
    json!({"1": {"class_type": "FakeSlow", "inputs": {"seconds": seconds}}})
}

/// The peak resident memory of `pid` (VmHWM), in MB.
fn peak_mb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        / 1024
}

pub(crate) fn stop(mut serve: Child, log: &Path) {
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(s) = serve.try_wait().unwrap() {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(s.success(), "{s}\n{text}");
            return;
        }
        assert!(Instant::now() < until, "serve did not stop");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends a raw request head (and `body`), returns the status line (or "" when
/// the connection was closed first) and the whole answer.
fn raw(port: u16, head: &[u8], body: &[u8]) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let _ = s.write_all(head).and_then(|()| s.write_all(body));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    (text.lines().next().unwrap_or_default().to_string(), text)
}

#[test]
fn open_worker_on_a_network_address_refuses_to_start() {
    let w = World::new(&[]);
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let (mut serve, log) = serve(&w, &["v1", "--listen", &listen], None);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = serve.try_wait().unwrap() {
            break s;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "serve did not refuse"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!status.success(), "{text}");
    assert!(
        text.contains("without a key") && text.contains("COMFYVER_API_KEY"),
        "{text}"
    );
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "it listened"
    );
}

#[test]
fn key_queue_limit_cancel_versions_progress_and_secrets() {
    let w = World::new(&[]);
    realize(&w, "v1");
    let port = free_port();
    let listen = format!("0.0.0.0:{port}");
    let (mut serve, log) = {
        let mut c = comfyver_testkit::cli::comfyver_command(
            bin(),
            &w.root.join("cache"),
            &w.root.join("versions"),
        );
        let log = w.root.join("serve-a.stderr");
        c.args([
            "serve",
            "v1",
            "--listen",
            &listen,
            "--max-queue",
            "2",
            "--grace",
            "1",
        ])
        .args(["--versions", "v1,v2"])
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
        .env("COMFYVER_API_KEY", API_KEY)
        .env("RUNPOD_AI_API_KEY", "rp-secret")
        .env("BUCKET_SECRET_ACCESS_KEY", "bucket-secret")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
        (c.spawn().unwrap(), log)
    };
    let open = Client::new(port, None);
    let wrong = Client::new(port, Some("Bearer nope"));
    let raw_key = Client::new(port, Some(API_KEY));
    let api = Client::new(port, Some(&format!("Bearer {API_KEY}")));
    api.wait_ready(&mut serve);

    // The key: /health is open, everything else needs it (Bearer or raw).
    assert_eq!(open.get("/health").0, 200);
    for c in [&open, &wrong] {
        assert_eq!(c.get("/ready").0, 401);
        assert_eq!(c.get("/status/x").0, 401);
        let (s, v) = c.post("/run", &job(&smoke_workflow(false)));
        assert_eq!(s, 401, "{v}");
    }
    let (s, r) = raw_key.post("/runsync", &job(&smoke_workflow(false)));
    assert_eq!((s, r["status"].as_str()), (200, Some("COMPLETED")), "{r}");

    // Secrets stay out of ComfyUI's environment.
    let comfy = comfy_pids(&w.root);
    assert_eq!(comfy.len(), 1);
    let environ = std::fs::read(format!("/proc/{}/environ", comfy[0])).unwrap();
    let environ = String::from_utf8_lossy(&environ);
    for secret in [API_KEY, "rp-secret", "bucket-secret"] {
        assert!(
            !environ.contains(secret),
            "ComfyUI's environment holds {secret}"
        );
    }

    // A failed job leaves no per-job output folder behind.
    let mut failing = smoke_workflow(false);
    failing["4"] = json!({"class_type": "FakeFail", "inputs": {}});
    let (_, r) = api.post("/runsync", &job(&failing));
    assert!(r.to_string().contains("FakeFail"), "{r}");
    let left = job_folders(&w.home("v1"));
    assert!(left.is_empty(), "per-job output folders left: {left:?}");

    // Versions outside --versions: 400, nothing realized.
    let mut other = job(&smoke_workflow(false));
    other["input"]["version_id"] = json!("v9");
    let (s, v) = api.post("/run", &other);
    assert_eq!(s, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("not served"), "{v}");
    assert!(!w.root.join("versions/v9.json").exists());

    // The queue: a running job, two queued; the next one is 429 + Retry-After.
    let (_, running) = api.post("/run", &job(&slow(30.0)));
    let running = running["id"].as_str().unwrap().to_string();
    api.wait_status(&running, |s| s == "IN_PROGRESS");
    let (_, q1) = api.post("/run", &job(&slow(30.0)));
    let (_, q2) = api.post("/run", &job(&slow(30.0)));
    let (q1, _q2) = (q1["id"].as_str().unwrap(), q2["id"].as_str().unwrap());
    assert_eq!(
        api.get("/ready"),
        (
            503,
            json!({"ready": false, "reason": "the queue is full (2 jobs waiting)"})
        )
    );
    let (s, v, retry) = api.send(
        "POST",
        "/run",
        Some(&job(&smoke_workflow(false)).to_string()),
    );
    assert_eq!(s, 429, "{v}");
    assert_eq!(retry.as_deref(), Some("5"));

    // Progress of the running job in /status.
    let until = Instant::now() + Duration::from_secs(30);
    let progress = loop {
        let v = api.quick(&format!("/status/{running}"));
        if v["output"]["progress"]["step"]
            .as_f64()
            .is_some_and(|s| s > 0.0)
        {
            break v["output"]["progress"].clone();
        }
        assert!(Instant::now() < until, "no progress: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(progress["node"], "1", "{progress}");
    assert_eq!(progress["steps"].as_f64(), Some(300.0), "{progress}");

    // Cancel answers at once; a cancelled queued job stops waiting.
    let t = Instant::now();
    let (s, v) = api.post(&format!("/cancel/{q1}"), &json!({}));
    assert_eq!((s, v["status"].as_str()), (200, Some("CANCELLED")), "{v}");
    let delay = v["delayTime"].as_u64().unwrap();
    let (s, v) = api.post(&format!("/cancel/{running}"), &json!({}));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        t.elapsed()
    );
    assert_eq!(s, 200, "{v}");
    assert!(
        v["status"] == "CANCELLED"
            || (v["status"] == "IN_PROGRESS" && v["cancel"] == "interrupting"),
        "{v}"
    );
    api.wait_status(&running, |s| s == "CANCELLED");
    std::thread::sleep(Duration::from_millis(300));
    let (_, v) = api.get(&format!("/status/{q1}"));
    assert_eq!(v["delayTime"].as_u64(), Some(delay), "{v}");
    let (_, h) = api.get("/health");
    assert_eq!(h["jobs"]["cancelled"], 2, "{h}");
    assert_eq!(h["jobs"]["failed"], 0, "{h}");
    stop(serve, &log);
}

/// The per-job folders (`output/comfyver/<job>`) under `home`.
fn job_folders(home: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if !p.is_dir() || p.is_symlink() {
                continue;
            }
            if dir.ends_with("output/comfyver") {
                found.push(p);
            } else {
                stack.push(p);
            }
        }
    }
    found
}

fn comfy_pids(root: &Path) -> Vec<u32> {
    let needle = root.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let c = std::fs::read(e.path().join("cmdline")).ok()?;
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            (c.contains("main.py") && c.contains(&needle)).then_some(pid)
        })
        .collect()
}

#[test]
fn denial_of_service_cases_leave_health_and_status_answering() {
    let w = World::new(&[]);
    realize(&w, "v1");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut serve, log) = serve(
        &w,
        &[
            "v1",
            "--listen",
            &listen,
            "--max-queue",
            "10",
            "--grace",
            "1",
        ],
        Some(API_KEY),
    );
    let api = Client::new(port, Some(&format!("Bearer {API_KEY}")));
    api.wait_ready(&mut serve);
    let pid = serve.id();
    let base_mb = peak_mb(pid);
    let (_, r) = api.post("/run", &job(&smoke_workflow(false)));
    let done = r["id"].as_str().unwrap().to_string();
    api.wait_status(&done, |s| s == "COMPLETED");
    let status_path = format!("/status/{done}");
    let answering = |what: &str| {
        api.quick("/health");
        let v = api.quick(&status_path);
        assert_eq!(v["status"], "COMPLETED", "{what}: {v}");
    };

    // 1. Eight stalled bodies: headers that promise 100000 bytes, then nothing.
    let stalled: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            let head = format!(
                "POST /run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"input\":"
            );
            s.write_all(head.as_bytes()).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    answering("stalled bodies");
    // Eight stalled heads too.
    let stalled_heads: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            s.write_all(b"POST /run HTTP/1.1\r\nHost: x\r\n").unwrap();
            s
        })
        .collect();
    answering("stalled heads");

    // 2. A long job and eight /runsync clients waiting behind it.
    let (_, r) = api.post("/run", &job(&slow(30.0)));
    let long = r["id"].as_str().unwrap().to_string();
    api.wait_status(&long, |s| s == "IN_PROGRESS");
    let waiters: Vec<_> = (0..8)
        .map(|_| {
            std::thread::spawn(move || {
                Client::new(port, Some(&format!("Bearer {API_KEY}")))
                    .post("/runsync", &job(&smoke_workflow(false)))
            })
        })
        .collect();
    let until = Instant::now() + Duration::from_secs(30);
    while api.quick("/health")["jobs"]["inQueue"] != 8 {
        assert!(Instant::now() < until, "the waiters never queued");
        std::thread::sleep(Duration::from_millis(50));
    }
    answering("waiting /runsync clients");
    let t = Instant::now();
    let (s, v) = api.post(&format!("/cancel/{long}"), &json!({}));
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "cancel took {:?}",
        t.elapsed()
    );
    assert_eq!(s, 200, "{v}");
    for h in waiters {
        let (s, r) = h.join().unwrap();
        assert_eq!((s, r["status"].as_str()), (200, Some("COMPLETED")), "{r}");
    }
    api.wait_status(&long, |s| s == "CANCELLED");

    // 3. Forty 18.7 MB jobs behind a long one: ten are queued, the rest are
    // turned away (429) before their bodies are held; memory stays bounded.
    let (_, r) = api.post("/run", &job(&slow(60.0)));
    let long = r["id"].as_str().unwrap().to_string();
    api.wait_status(&long, |s| s == "IN_PROGRESS");
    let noise = comfyver_testkit::http::pseudo_random(14 << 20, 7);
    let big = json!({"input": {
        "workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "big.png"}}},
        "images": [{"name": "big.png", "image": base64::engine::general_purpose::STANDARD.encode(&noise)}]
    }})
    .to_string();
    drop(noise);
    assert!(big.len() > 18 << 20, "{}", big.len());
    let head = format!(
        "POST /run HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let (mut queued, mut refused) = (0, 0);
    for _ in 0..40 {
        let (line, _) = raw(port, head.as_bytes(), big.as_bytes());
        if line.contains(" 200 ") {
            queued += 1;
        } else {
            // 429, or the connection closed while the refused body was sent.
            assert!(line.is_empty() || line.contains(" 429 "), "{line}");
            refused += 1;
        }
        answering("large queued jobs");
    }
    assert_eq!((queued, refused), (10, 30));
    let h = api.quick("/health");
    assert_eq!(h["jobs"]["inQueue"], 10, "{h}");
    let grown = peak_mb(pid).saturating_sub(base_mb);
    eprintln!("worker peak memory: {base_mb} MB before, +{grown} MB with 10 large jobs queued");
    // Measured: +183 MB for ten queued (unbounded, forty took it past 900 MB).
    assert!(grown < 400, "the worker grew by {grown} MB");

    // 4. A 64 MB URL: refused (431/414), not echoed, memory unchanged.
    let before = peak_mb(pid);
    let mut url = Vec::with_capacity(64 << 20);
    url.extend_from_slice(b"GET /");
    url.resize(64 << 20, b'a');
    url.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (line, text) = raw(port, &url, b"");
    drop(url);
    assert!(
        line.is_empty() || line.contains(" 431 ") || line.contains(" 414 "),
        "{line}"
    );
    assert!(!text.contains("aaaaaaaa"), "the URL was echoed");
    let long_url = format!(
        "GET /status/{} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        "b".repeat(9000)
    );
    let (line, text) = raw(port, long_url.as_bytes(), b"");
    assert!(line.contains(" 414 "), "{line}");
    assert!(!text.contains("bbbbbbbb"), "the URL was echoed");
    answering("a 64 MB URL");
    assert!(peak_mb(pid) < before + 16, "a 64 MB URL grew the worker");

    drop(stalled);
    drop(stalled_heads);
    // Clean up: cancel the long job and the queued big ones.
    api.post(&format!("/cancel/{long}"), &json!({}));
    stop(serve, &log);
}

/// The stand-in ComfyUI's log lines of the prompts it got, in order.
fn prompt_lines(home: &Path) -> Vec<String> {
    let mut logs = Vec::new();
    let mut stack = vec![home.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                stack.push(p);
            } else if p
                .file_name()
                .is_some_and(|f| f.to_string_lossy().starts_with("comfyui-"))
            {
                logs.push(p);
            }
        }
    }
    logs.sort();
    logs.iter()
        .flat_map(|l| {
            std::fs::read_to_string(l)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains("fake-comfyui: prompt "))
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

fn text_wf(text: &str) -> Value {
    json!({"1": {"class_type": "FakeText", "inputs": {"text": text}}})
}

#[test]
fn warm_up_runs_before_the_first_job_and_gates_readiness() {
    let w = World::new(&[]);
    realize(&w, "v1");
    let mut warm = text_wf("warm-up-mark");
    warm["2"] = json!({"class_type": "FakeSlow", "inputs": {"seconds": 2.0}});
    let file = w.root.join("warmup.json");
    std::fs::write(&file, warm.to_string()).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut serve, log) = serve(
        &w,
        &[
            "v1",
            "--listen",
            &listen,
            "--warmup",
            file.to_str().unwrap(),
        ],
        Some(API_KEY),
    );
    let api = Client::new(port, Some(&format!("Bearer {API_KEY}")));
    // Not ready while ComfyUI starts and the warm-up runs, then ready.
    let until = Instant::now() + Duration::from_secs(120);
    let mut saw_503 = None;
    loop {
        assert!(serve.try_wait().unwrap().is_none(), "serve exited");
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (s, v) = api.get("/ready");
            if s == 200 {
                break;
            }
            assert_eq!(s, 503, "{v}");
            saw_503 = Some(v);
        }
        assert!(Instant::now() < until, "never ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let not_ready = saw_503.expect("/ready was never 503 before the warm-up ran");
    assert!(not_ready["reason"].as_str().is_some(), "{not_ready}");
    let prompts = prompt_lines(&w.home("v1"));
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert!(prompts[0].contains("warm-up-mark"), "{prompts:?}");

    let (s, r) = api.post("/runsync", &job(&text_wf("first-job-mark")));
    assert_eq!((s, r["status"].as_str()), (200, Some("COMPLETED")), "{r}");
    let prompts = prompt_lines(&w.home("v1"));
    assert_eq!(prompts.len(), 2, "{prompts:?}");
    assert!(
        prompts[0].contains("warm-up-mark") && prompts[1].contains("first-job-mark"),
        "{prompts:?}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("warm-up of version v1 done"), "{text}");
    stop(serve, &log);
}

#[test]
fn a_failing_warm_up_keeps_the_worker_not_ready() {
    let w = World::new(&[]);
    realize(&w, "v1");
    let file = w.root.join("warmup.json");
    let failing = json!({"input": {"workflow": {"1": {"class_type": "FakeFail", "inputs": {}}}}});
    std::fs::write(&file, failing.to_string()).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut serve, log) = serve(
        &w,
        &[
            "v1",
            "--listen",
            &listen,
            "--warmup",
            file.to_str().unwrap(),
        ],
        Some(API_KEY),
    );
    let api = Client::new(port, Some(&format!("Bearer {API_KEY}")));
    let until = Instant::now() + Duration::from_secs(120);
    let reason = loop {
        assert!(serve.try_wait().unwrap().is_none(), "serve exited");
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let (s, v) = api.get("/ready");
            assert_eq!(s, 503, "ready despite a failing warm-up: {v}");
            let reason = v["reason"].as_str().unwrap().to_string();
            if reason.contains("warm-up") {
                break reason;
            }
        }
        assert!(Instant::now() < until, "the warm-up never failed");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(reason.contains("FakeFail"), "{reason}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(api.get("/ready").0, 503);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("warm-up workflow failed") && text.contains("FakeFail"),
        "{text}"
    );
    stop(serve, &log);
}

/// One request a [`Receiver`] got: its headers (lower-case names) and body.
#[derive(Debug, Clone)]
struct Received {
    headers: std::collections::HashMap<String, String>,
    body: String,
}

/// A webhook receiver on loopback: answers the statuses of `script` in turn
/// (then 200) and records every request.
struct Receiver {
    port: u16,
    got: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Receiver {
    fn start(script: Vec<u16>) -> Receiver {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&got);
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = s.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break None;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break Some(i + 4);
                    }
                };
                let Some(head_end) = head_end else { continue };
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let headers: std::collections::HashMap<String, String> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let len: usize = headers["content-length"].parse().unwrap();
                while buf.len() < head_end + len {
                    let n = s.read(&mut chunk).unwrap();
                    assert!(n > 0);
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..head_end + len]).to_string();
                seen.lock().unwrap().push(Received { headers, body });
                let status = script.next().unwrap_or(200);
                let _ = write!(
                    s,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        Receiver { port, got }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn wait_for(&self, n: usize) -> Vec<Received> {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < until, "only {} deliveries", got.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// HMAC-SHA256 (RFC 2104) over SHA-256, as Standard Webhooks signs.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let ipad: Vec<u8> = k.iter().map(|b| b ^ 0x36).collect();
    let opad: Vec<u8> = k.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new()
        .chain_update(&ipad)
        .chain_update(msg)
        .finalize();
    Sha256::new()
        .chain_update(&opad)
        .chain_update(inner)
        .finalize()
        .into()
}

/// Checks a delivery's Standard Webhooks signature with `secret` (`whsec_…`).
fn verify(r: &Received, secret: &str) {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let id = &r.headers["webhook-id"];
    let ts = &r.headers["webhook-timestamp"];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(ts.parse().unwrap()) < 300, "timestamp {ts}");
    let want = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(
        &key,
        format!("{id}.{ts}.{}", r.body).as_bytes(),
    ));
    let sigs = &r.headers["webhook-signature"];
    assert!(
        sigs.split(' ').any(|s| s == format!("v1,{want}")),
        "bad signature {sigs}, want v1,{want}"
    );
}

/// `name{labels} value` lines of a Prometheus text exposition.
fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse::<f64>().unwrap())
        })
        .collect()
}

#[test]
fn webhooks_are_signed_and_retried_and_metrics_count_jobs() {
    let w = World::new(&[]);
    realize(&w, "v1");
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(b"a test key of 24 bytes..")
    );
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut serve, log) = {
        let mut c = comfyver_testkit::cli::comfyver_command(
            bin(),
            &w.root.join("cache"),
            &w.root.join("versions"),
        );
        let log = w.root.join("serve-hooks.stderr");
        c.args(["serve", "v1", "--listen", &listen])
            .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
            .env("COMFYVER_API_KEY", API_KEY)
            .env("COMFYVER_WEBHOOK_SECRET", &secret)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        (c.spawn().unwrap(), log)
    };
    let api = Client::new(port, Some(&format!("Bearer {API_KEY}")));
    let open = Client::new(port, None);
    api.wait_ready(&mut serve);

    // Only http(s) webhooks.
    for bad in [json!("ftp://x/y"), json!("file:///etc/passwd"), json!(3)] {
        let mut body = job(&smoke_workflow(false));
        body["webhook"] = bad.clone();
        let (s, v) = api.post("/run", &body);
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v["error"].as_str().unwrap().contains("webhook"), "{v}");
    }

    // A receiver that answers 500 twice, then 200: three attempts, one id,
    // each signed; the body is the job's final status.
    let receiver = Receiver::start(vec![500, 500]);
    let mut body = job(&smoke_workflow(false));
    body["webhook"] = json!(receiver.url());
    let (s, r) = api.post("/run", &body);
    assert_eq!(s, 200, "{r}");
    let id = r["id"].as_str().unwrap().to_string();
    let got = receiver.wait_for(3);
    assert_eq!(got.len(), 3, "{got:?}");
    let msg_id = &got[0].headers["webhook-id"];
    for r in &got {
        assert_eq!(&r.headers["webhook-id"], msg_id);
        verify(r, &secret);
    }
    let delivered: Value = serde_json::from_str(&got[2].body).unwrap();
    let (_, status) = api.get(&format!("/status/{id}"));
    assert_eq!(delivered["status"], "COMPLETED", "{delivered}");
    assert_eq!(delivered, status);
    // A tampered body fails the check (the verifier can fail).
    let mut tampered = got[2].clone();
    tampered.body.push(' ');
    assert!(std::panic::catch_unwind(|| verify(&tampered, &secret)).is_err());

    // A second job, and a failing one whose webhook cannot be delivered.
    let (_, r) = api.post("/runsync", &job(&smoke_workflow(false)));
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let mut failing = job(&json!({"1": {"class_type": "FakeFail", "inputs": {}}}));
    failing["webhook"] = json!(format!("http://127.0.0.1:{}/gone", free_port()));
    let (_, r) = api.post("/runsync", &failing);
    assert_eq!(r["status"], "FAILED", "{r}");

    // /metrics needs the key (it is not --metrics-public).
    assert_eq!(open.get("/metrics").0, 401);
    let until = Instant::now() + Duration::from_secs(60);
    let m = loop {
        let url = format!("http://127.0.0.1:{port}/metrics");
        let mut resp = api
            .agent
            .get(&url)
            .header("Authorization", &format!("Bearer {API_KEY}"))
            .call()
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200);
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        let m = parse_metrics(&resp.body_mut().read_to_string().unwrap());
        if m.get("comfyver_webhook_failures_total") == Some(&1.0) {
            break m;
        }
        assert!(
            Instant::now() < until,
            "the failed delivery was not counted: {m:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let get = |k: &str| *m.get(k).unwrap_or_else(|| panic!("no {k} in {m:?}"));
    assert_eq!(
        get(r#"comfyver_jobs_total{status="COMPLETED",version="v1"}"#),
        2.0
    );
    assert_eq!(
        get(r#"comfyver_jobs_total{status="FAILED",version="v1"}"#),
        1.0
    );
    assert_eq!(get("comfyver_job_duration_seconds_count"), 3.0);
    assert_eq!(
        get(r#"comfyver_job_duration_seconds_bucket{le="+Inf"}"#),
        3.0
    );
    assert_eq!(get("comfyver_queue_wait_seconds_count"), 3.0);
    assert_eq!(get("comfyver_queue_depth"), 0.0);
    assert_eq!(get(r#"comfyver_comfyui_starts_total{version="v1"}"#), 1.0);
    assert_eq!(
        get(r#"comfyver_comfyui_start_duration_seconds_count{version="v1"}"#),
        1.0
    );
    assert_eq!(get("comfyver_version_switches_total"), 0.0);
    assert_eq!(get("comfyver_webhook_deliveries_total"), 1.0);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("could not be delivered") && !text.contains(&secret),
        "{text}"
    );
    stop(serve, &log);
}

#[test]
fn metrics_public_serves_metrics_without_the_key() {
    let w = World::new(&[]);
    realize(&w, "v1");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let (mut serve, log) = serve(
        &w,
        &["v1", "--listen", &listen, "--metrics-public"],
        Some(API_KEY),
    );
    let api = Client::new(port, Some(&format!("Bearer {API_KEY}")));
    api.wait_ready(&mut serve);
    let open = Client::new(port, None);
    let (s, v) = open.get("/metrics");
    assert_eq!(s, 200);
    assert!(
        v.as_str().unwrap().contains("comfyver_queue_depth 0"),
        "{v}"
    );
    assert_eq!(open.get("/ready").0, 401, "only /metrics is opened");
    stop(serve, &log);
}
