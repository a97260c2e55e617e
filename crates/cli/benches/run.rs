//! `cargo bench -p comfyver --bench run`: the time from invoking
//! `comfyver run` on a realized version to spawning ComfyUI (the warm path),
//! against the cost of starting the binary at all (`comfyver --version`),
//! measured in the same run. The version is built from real parts
//! (testkit's world: stand-in ComfyUI core, a node pack, wheels, a model).

use std::path::Path;
use std::time::Instant;

use comfyver_testkit::world::{World, smoke_workflow};

const RUNS: usize = 15;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let bin = Path::new(env!("CARGO_BIN_EXE_comfyver"));
    let w = World::new(&["hello_pack"]);
    let wf = w.workflow("smoke", &smoke_workflow(true));
    let wf = wf.to_str().expect("utf-8 path");

    let t = Instant::now();
    let out = w.comfyver(bin, &["-q", "realize", "v1"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cold = t.elapsed().as_secs_f64() * 1000.0;

    let mut to_spawn = Vec::new();
    let mut whole = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let out = w.comfyver(bin, &["-v", "run", "v1", "--workflow", wf], None);
        whole.push(t.elapsed().as_secs_f64() * 1000.0);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(stderr.contains("warm=true"), "{stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains("invoke→spawn"))
            .expect("timing line");
        let ms = parse_duration_ms(line.split("invoke→spawn ").nth(1).expect("value"));
        to_spawn.push(ms);
    }
    let mut startup = Vec::new();
    for _ in 0..RUNS {
        let t = Instant::now();
        let out = std::process::Command::new(bin)
            .arg("--version")
            .output()
            .expect("runs");
        assert!(out.status.success());
        startup.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let (spawn, run, start) = (median(to_spawn), median(whole), median(startup));
    println!("cold realize (resolve, checkouts, model, uv venv): {cold:.0} ms");
    println!("warm `run` invoked → ComfyUI spawned: median {spawn:.2} ms over {RUNS} runs");
    println!("`comfyver --version` (process start-up baseline): median {start:.2} ms");
    println!("ratio spawn / start-up baseline: {:.2}", spawn / start);
    println!("whole warm `run` (start stand-in, job, stop): median {run:.0} ms");
}

/// Parses Rust's `{:.1?}` Duration output (`3.2ms`, `850.0µs`, `1.2s`) into ms.
fn parse_duration_ms(text: &str) -> f64 {
    let t = text.split([',', ' ']).next().unwrap_or(text);
    for (suffix, factor) in [("ms", 1.0), ("µs", 0.001), ("ns", 0.000_001), ("s", 1000.0)] {
        if let Some(n) = t.strip_suffix(suffix) {
            return n.parse::<f64>().expect("a number") * factor;
        }
    }
    panic!("unparsable duration {text:?}");
}
