//! `cargo bench -p comfyver --bench serve_bare` (or `bench/serve.sh`): a warm
//! job through the worker's `/runsync` against the same job through a bare
//! client of ComfyUI's API, in one run, on the same stand-in ComfyUI (the one
//! the worker keeps warm):
//! - worker: `POST /runsync` with the key, the output PNG base64 in the answer;
//! - bare: `POST /prompt`, ComfyUI's websocket until the prompt is done,
//!   `GET /history/{id}`, `GET /view` of the image, base64 (what the worker
//!   returns), on one kept-open websocket and HTTP agent.
//!
//! The two are interleaved job by job so that drift hits both alike. Prints
//! both medians and the worker's extra time.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use comfyver_testkit::comfy::free_port;
use comfyver_testkit::world::World;
use serde_json::{Value, json};

const JOBS: usize = 41;
const KEY: &str = "bench-key";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn workflow() -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x336699}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}
    })
}

/// A bare client of ComfyUI's API, its websocket kept open.
struct Bare {
    base: String,
    agent: ureq::Agent,
    client_id: String,
    ws: tungstenite::WebSocket<TcpStream>,
}

impl Bare {
    fn connect(port: u16) -> Bare {
        let client_id = format!("bench-{}", std::process::id());
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_nodelay(true).unwrap();
        let (ws, _) = tungstenite::client(
            format!("ws://127.0.0.1:{port}/ws?clientId={client_id}").as_str(),
            stream,
        )
        .unwrap();
        Bare {
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder().proxy(None).build().into(),
            client_id,
            ws,
        }
    }

    /// One job: its output image's base64.
    fn job(&mut self, wf: &Value) -> String {
        let body = json!({"prompt": wf, "client_id": self.client_id});
        let r: Value = self
            .agent
            .post(format!("{}/prompt", self.base))
            .send_json(&body)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let id = r["prompt_id"].as_str().unwrap().to_string();
        loop {
            let msg = self.ws.read().unwrap();
            let tungstenite::Message::Text(text) = msg else {
                continue;
            };
            let v: Value = serde_json::from_str(text.as_str()).unwrap();
            let done = v["type"] == "executing"
                && v["data"]["node"].is_null()
                && v["data"]["prompt_id"] == id.as_str();
            assert_ne!(v["type"], "execution_error", "{v}");
            if done || (v["type"] == "execution_success" && v["data"]["prompt_id"] == id.as_str()) {
                break;
            }
        }
        let h: Value = self
            .agent
            .get(format!("{}/history/{id}", self.base))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        let img = &h[&id]["outputs"]["2"]["images"][0];
        let bytes = self
            .agent
            .get(format!("{}/view", self.base))
            .query("filename", img["filename"].as_str().unwrap())
            .query("subfolder", img["subfolder"].as_str().unwrap())
            .query("type", img["type"].as_str().unwrap())
            .call()
            .unwrap()
            .body_mut()
            .read_to_vec()
            .unwrap();
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

fn main() {
    let bin = Path::new(env!("CARGO_BIN_EXE_comfyver"));
    let w = World::new(&[]);
    let out = w.comfyver(bin, &["-q", "realize", "v1"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let mut serve = comfyver_testkit::cli::comfyver_command(
        bin,
        &w.root.join("cache"),
        &w.root.join("versions"),
    )
    .args(["serve", "v1", "--listen", &format!("127.0.0.1:{port}")])
    .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
    .env("COMFYVER_API_KEY", KEY)
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // ComfyUI's port, from the worker's log line "... ready in ... (pid N, port P)".
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let comfy_port: u16 = loop {
        let line = lines.next().expect("serve exited").unwrap();
        if let Some(p) = line
            .split("port ")
            .nth(1)
            .filter(|_| line.contains("ready in"))
        {
            break p.trim_end_matches(')').parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});

    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .build()
        .into();
    let body = json!({"input": {"workflow": workflow()}}).to_string();
    let runsync = || {
        let v: Value = agent
            .post(format!("http://127.0.0.1:{port}/runsync"))
            .header("Authorization", &format!("Bearer {KEY}"))
            .header("Content-Type", "application/json")
            .send(&body)
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        assert_eq!(v["status"], "COMPLETED", "{v}");
        v
    };
    let until = Instant::now() + Duration::from_secs(120);
    while agent
        .get(format!("http://127.0.0.1:{port}/ready"))
        .header("Authorization", &format!("Bearer {KEY}"))
        .call()
        .map_or(true, |r| r.status() != 200)
    {
        assert!(Instant::now() < until, "serve never got ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut bare = Bare::connect(comfy_port);
    // Warm both paths once.
    runsync();
    bare.job(&workflow());

    let (mut worker, mut direct) = (Vec::new(), Vec::new());
    for _ in 0..JOBS {
        let t = Instant::now();
        let v = runsync();
        worker.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(v["output"]["images"][0]["data"].as_str().is_some(), "{v}");
        let t = Instant::now();
        let b64 = bare.job(&workflow());
        direct.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(!b64.is_empty());
    }
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    let (wm, dm) = (median(worker), median(direct));
    println!("job: EmptyImage 64x64 -> SaveImage, {JOBS} jobs each, interleaved");
    println!("worker /runsync (key, base64 out): median {wm:.2} ms");
    println!("bare client (/prompt, ws, /history, /view, base64): median {dm:.2} ms");
    println!("worker - bare: {:.2} ms", wm - dm);
}
