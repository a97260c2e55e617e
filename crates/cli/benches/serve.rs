//! `cargo bench -p comfyver --bench serve`: a warm `comfyver serve` worker
//! (local job API, stand-in ComfyUI) against one-shot `comfyver run` on the
//! same 1 MB image job, measured in the same run:
//! - jobs per second on the warm worker (`/runsync` one after the other);
//! - comfyver's overhead per job: client-observed wall time minus ComfyUI's own
//!   execution (`timings.exec_ms`, its execution_start → success timestamps);
//! - the same for `comfyver run --input job.json` (starts and stops ComfyUI);
//! - from spawning `serve` to the first job done.
//!
//! The job uploads a 600×600 noise PNG (about 1.08 MB, base64 in the body),
//! `LoadImage` → `SaveImage`, and returns the PNG base64 in the output.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use comfyver_testkit::comfy::free_port;
use comfyver_testkit::world::World;
use serde_json::{Value, json};

const SERVE_JOBS: usize = 20;
const RUNS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn noise_png() -> Vec<u8> {
    let (w, h) = (600u32, 600u32);
    let pixels = comfyver_testkit::http::pseudo_random((w * h * 3) as usize, 0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Fast);
        let mut writer = enc.write_header().expect("png header");
        writer.write_image_data(&pixels).expect("png data");
    }
    out
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(300)))
        .build()
        .into()
}

fn runsync(agent: &ureq::Agent, port: u16, body: &str) -> Result<Value, String> {
    let mut r = agent
        .post(format!("http://127.0.0.1:{port}/runsync"))
        .header("Content-Type", "application/json")
        .send(body)
        .map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&r.body_mut().read_to_string().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    assert_eq!(v["status"], "COMPLETED", "{v}");
    Ok(v)
}

fn exec_ms(output: &Value) -> f64 {
    output["timings"]["exec_ms"].as_f64().expect("exec_ms")
}

fn spawn_serve(bin: &Path, w: &World, port: u16) -> Child {
    comfyver_testkit::cli::comfyver_command(bin, &w.root.join("cache"), &w.root.join("versions"))
        .args([
            "-q",
            "serve",
            "v1",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("serve starts")
}

fn stop(mut child: Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("serve exits");
    assert!(status.success(), "serve exited with {status}");
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

    let png = noise_png();
    let job = json!({"input": {
        "workflow": {
            "1": {"class_type": "LoadImage", "inputs": {"image": "noise.png"}},
            "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}
        },
        "images": [{"name": "noise.png", "image": base64::engine::general_purpose::STANDARD.encode(&png)}]
    }});
    let body = job.to_string();
    let job_file = w.root.join("job.json");
    std::fs::write(&job_file, &body).expect("job file");
    let agent = agent();

    // Serve start → first job done (the client retries until the API listens).
    let port = free_port();
    let t = Instant::now();
    let serve = spawn_serve(bin, &w, port);
    let first = loop {
        match runsync(&agent, port, &body) {
            Ok(v) => break v,
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let to_first = t.elapsed().as_secs_f64() * 1000.0;
    let out_len = first["output"]["images"][0]["data"]
        .as_str()
        .map_or(0, str::len);

    // Warm jobs, one after the other.
    let mut walls = Vec::new();
    let mut overheads = Vec::new();
    let t = Instant::now();
    for _ in 0..SERVE_JOBS {
        let t1 = Instant::now();
        let v = runsync(&agent, port, &body).expect("warm job");
        let wall = t1.elapsed().as_secs_f64() * 1000.0;
        walls.push(wall);
        overheads.push(wall - exec_ms(&v["output"]));
    }
    let per_second = SERVE_JOBS as f64 / t.elapsed().as_secs_f64();
    stop(serve);

    // One-shot `run` of the same job.
    let mut run_walls = Vec::new();
    let mut run_overheads = Vec::new();
    for _ in 0..RUNS {
        let t1 = Instant::now();
        let out = w.comfyver(
            bin,
            &["-q", "run", "v1", "--input", job_file.to_str().unwrap()],
            None,
        );
        let wall = t1.elapsed().as_secs_f64() * 1000.0;
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("run prints JSON");
        run_walls.push(wall);
        run_overheads.push(wall - exec_ms(&v));
    }

    let (serve_wall, serve_over) = (median(walls), median(overheads));
    let (run_wall, run_over) = (median(run_walls), median(run_overheads));
    println!(
        "job: 1 MB noise PNG in ({} bytes), LoadImage → SaveImage, {} base64 chars out",
        png.len(),
        out_len
    );
    println!("serve start → first job done: {to_first:.0} ms");
    println!(
        "warm serve: {per_second:.2} jobs/s over {SERVE_JOBS} jobs; median wall {serve_wall:.0} ms"
    );
    println!("warm serve overhead per job (wall − ComfyUI exec): median {serve_over:.0} ms");
    println!("one-shot run: median wall {run_wall:.0} ms over {RUNS} runs");
    println!("one-shot run overhead per job (wall − ComfyUI exec): median {run_over:.0} ms");
    println!("ratio run wall / serve wall: {:.2}", run_wall / serve_wall);
    println!(
        "ratio run overhead / serve overhead: {:.2}",
        run_over / serve_over
    );
}
