//! Benchmark: the handler's own overhead per job, and the time from
//! `Session::start` to the child being spawned.
//!
//! Runs the stand-in ComfyUI (system `python3`) in a temp home. The job loads a
//! 600x600 noise PNG (uploaded once per job) and saves it again, which gives a
//! ~1 MB PNG output returned base64-inline. Overhead = total job time minus
//! ComfyUI's own execution time (execution_start → execution_success).
//!
//!     cargo run --release --example overhead -p comfyver-handler [-- JOBS]

use std::time::{Duration, Instant};

use comfyver_handler::{ComfyEnv, Job, JobOptions, Session, StartOptions};
use comfyver_testkit::comfy::{ComfyHome, python};
use serde_json::json;

fn main() {
    let jobs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20);
    let home = ComfyHome::new(&[]);
    let env = ComfyEnv {
        python: python(),
        core_dir: home.core_dir.clone(),
        base_dir: None,
        extra_model_paths: Some(home.extra_model_paths.clone()),
        env: Default::default(),
        logs_dir: home.logs_dir.clone(),
        data_dir: home.data_dir.clone(),
        version_id: "bench".into(),
        node_packs: Vec::new(),
        model_dirs: Vec::new(),
        node_index: None,
    };

    let mut to_spawn = Vec::new();
    let mut to_ready = Vec::new();
    for _ in 0..5 {
        let p = Session::start(&env, &StartOptions::default()).expect("start");
        to_spawn.push(p.timings().to_spawn);
        to_ready.push(p.timings().to_ready);
        p.stop();
    }
    let comfy = Session::start(&env, &StartOptions::default()).expect("start");

    let (w, h) = (600u32, 600u32);
    let pixels = comfyver_testkit::http::pseudo_random((w * h * 3) as usize, 0x9e37_79b9_7f4a_7c15);
    let png = encode_png_stored(w, h, &pixels);
    let mut job = Job::from_workflow(json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "noise.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "bench"}}
    }))
    .expect("workflow");
    job.add_image("noise.png", png.clone()).expect("image");

    let opts = JobOptions::default();
    comfy.run_job(&job, &opts, &()).expect("warm-up job");
    let mut overhead = Vec::new();
    let mut totals = Vec::new();
    let mut json_ms = Vec::new();
    let mut out_bytes = 0;
    let (mut upload, mut queue, mut fetch, mut exec) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..jobs {
        let t = Instant::now();
        let out = comfy.run_job(&job, &opts, &()).expect("job");
        let v = out.to_json();
        let total = t.elapsed();
        json_ms.push(total - Duration::from_millis(out.timings.total_ms));
        out_bytes = out.items[0].bytes().map(<[u8]>::len).unwrap_or(0);
        assert!(
            v["images"][0]["data"]
                .as_str()
                .is_some_and(|d| d.len() > 1_000_000)
        );
        totals.push(total);
        upload.push(Duration::from_millis(out.timings.upload_ms));
        queue.push(Duration::from_millis(out.timings.queue_ms));
        fetch.push(Duration::from_millis(out.timings.fetch_ms));
        exec.push(Duration::from_millis(out.timings.exec_ms));
        overhead.push(total.saturating_sub(Duration::from_millis(out.timings.exec_ms)));
    }
    println!(
        "stand-in ComfyUI, {jobs} jobs, output PNG {out_bytes} bytes (input upload {} bytes), base64 sink",
        png.len()
    );
    println!(
        "Session::start -> child spawned: median {:.2} ms (5 starts)",
        median_ms(&mut to_spawn)
    );
    println!(
        "Session::start -> ready (stand-in): median {:.1} ms",
        median_ms(&mut to_ready)
    );
    println!(
        "job total (incl. upload + to_json): median {:.1} ms",
        median_ms(&mut totals)
    );
    println!(
        "handler overhead per job (total - ComfyUI exec): median {:.1} ms",
        median_ms(&mut overhead)
    );
    println!(
        "  upload (1 MB multipart, stand-in parses it): median {:.1} ms",
        median_ms(&mut upload)
    );
    println!(
        "  queue (POST /prompt -> execution_start): median {:.1} ms",
        median_ms(&mut queue)
    );
    println!(
        "  fetch (history + /view 1 MB + sink): median {:.1} ms",
        median_ms(&mut fetch)
    );
    println!(
        "  to_json (base64 encode): median {:.1} ms",
        median_ms(&mut json_ms)
    );
    println!(
        "ComfyUI exec (stand-in decode+encode PNG in Python): median {:.1} ms",
        median_ms(&mut exec)
    );
    comfy.stop();
}

fn median_ms(v: &mut [Duration]) -> f64 {
    v.sort();
    v[v.len() / 2].as_secs_f64() * 1000.0
}

/// An RGB PNG with stored (uncompressed) deflate blocks: tiny code, no crate.
fn encode_png_stored(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(rgb.len() + h as usize);
    for row in rgb.chunks((w * 3) as usize) {
        raw.push(0);
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, b) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = b.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(b);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &x in &raw {
        a = (a + u32::from(x)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    for (kind, data) in [(&b"IHDR"[..], ihdr), (b"IDAT", z), (b"IEND", Vec::new())] {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut c = kind.to_vec();
        c.extend_from_slice(&data);
        out.extend_from_slice(&c);
        out.extend_from_slice(&crc32(&c).to_be_bytes());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
