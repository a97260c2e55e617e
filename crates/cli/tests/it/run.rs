//! The whole pipeline through the real binary: real git repositories →
//! resolve → realize (real uv, local wheels) → start the stand-in ComfyUI →
//! run workflows → outputs decoded and checked; then failures, and a second
//! run that reaches ComfyUI through the warm path with every remote gone.

use std::path::Path;
use std::process::Output;

use base64::Engine;
use comfyver_testkit::world::{World, smoke_workflow};
use serde_json::{Value, json};

fn comfyver(w: &World, args: &[&str], path_env: Option<&Path>) -> Output {
    w.comfyver(Path::new(env!("CARGO_BIN_EXE_comfyver")), args, path_env)
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>, png::ColorType) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    (info.width, info.height, buf, info.color_type)
}

/// Processes whose command line mentions `needle` (ComfyUI children left behind).
fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && cmd.contains("main.py") {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn full_pipeline_then_failures_then_warm_run_without_remotes() {
    let mut w = World::new(&["hello_pack", "broken_pack"]);
    let wf = w.workflow("smoke", &smoke_workflow(true));

    // 1. Cold: resolve, realize with real uv, start, run, stop.
    let out = comfyver(&w, &["run", "v1", "--workflow", wf.to_str().unwrap()], None);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "cold run failed:\n{stderr}");
    let result = stdout_json(&out);
    let images = result["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{result}");
    assert_eq!(images[0]["type"], "base64");
    let png_bytes = base64::engine::general_purpose::STANDARD
        .decode(images[0]["data"].as_str().unwrap())
        .unwrap();
    let (width, height, pixels, color) = decode_png(&png_bytes);
    assert_eq!((width, height), (64, 32));
    let channels = match color {
        png::ColorType::Rgb => 3,
        png::ColorType::Rgba => 4,
        other => panic!("unexpected color type {other:?}"),
    };
    for px in pixels.chunks(channels) {
        assert_eq!(&px[..3], &[0x33, 0x66, 0x99]);
    }
    let texts = result.to_string();
    assert!(
        texts.contains("tiny.safetensors"),
        "the model store is wired in: {result}"
    );
    assert!(texts.contains("hello from"), "the node pack ran: {result}");
    assert!(
        stderr.contains("broken_pack"),
        "the failed pack is reported: {stderr}"
    );
    // ... and named in the JSON, with its traceback.
    assert_eq!(result["failed_packs"][0]["name"], "broken_pack", "{result}");
    assert!(
        result["failed_packs"][0]["error"]
            .as_str()
            .is_some_and(|e| e.contains("ImportError")),
        "{result}"
    );
    assert!(
        result["failed_packs"][0]["log"]
            .as_array()
            .is_some_and(|l| l
                .iter()
                .any(|l| l.as_str().is_some_and(|l| l.starts_with("Traceback")))),
        "{result}"
    );
    assert_eq!(
        result["failed_packs"].as_array().unwrap().len(),
        1,
        "hello_pack loaded"
    );
    // The device choice is logged; --cpu forces the CPU, --gpu with it is refused.
    assert!(stderr.contains("ComfyUI runs on the "), "{stderr}");
    assert!(processes_mentioning(&w.home("v1").to_string_lossy()).is_empty());
    let out = comfyver(
        &w,
        &["run", "v1", "--workflow", wf.to_str().unwrap(), "--cpu"],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ComfyUI runs on the CPU (--cpu): asked for the CPU (--cpu)"),
        "{stderr}"
    );
    let out = comfyver(
        &w,
        &[
            "run",
            "v1",
            "--workflow",
            wf.to_str().unwrap(),
            "--cpu",
            "--gpu",
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(2), "clap refuses --cpu with --gpu");

    // 2. Failures on the warm version: each a clear error, exit 1, no orphan.
    let cases = [
        (
            "invalid",
            json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 8, "batch_size": 1, "color": 0}},
                   "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}),
            "width",
        ),
        (
            "missing-class",
            json!({"1": {"class_type": "NoSuchNode", "inputs": {}},
                   "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}}),
            "NoSuchNode",
        ),
        (
            "broken-pack-class",
            json!({"1": {"class_type": "BrokenThing", "inputs": {}}}),
            "broken_pack",
        ),
        (
            "fails",
            json!({"1": {"class_type": "FakeFail", "inputs": {}}}),
            "FakeFail: intentional failure",
        ),
    ];
    for (name, wf, needle) in cases {
        let path = w.workflow(name, &wf);
        let out = comfyver(
            &w,
            &["run", "v1", "--workflow", path.to_str().unwrap()],
            None,
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        let failure = stdout_json(&out);
        assert!(failure["error"].is_string(), "{name}: {failure}");
        assert!(
            stderr.contains(needle) || failure.to_string().contains(needle),
            "{name}: {needle:?} not in\n{stderr}\n{failure}"
        );
        assert!(
            processes_mentioning(&w.home("v1").to_string_lossy()).is_empty(),
            "{name}: orphan"
        );
    }

    // 3. The UI format is refused before anything starts.
    let ui = w.workflow("ui", &json!({"nodes": [], "links": [], "version": 0.4}));
    let out = comfyver(&w, &["run", "v1", "--workflow", ui.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Export (API)"));

    // 4. Warm: every remote and server gone, no git/uv/pip on PATH.
    w.cut_remotes();
    let bare_path = w.root.join("empty-bin");
    std::fs::create_dir_all(&bare_path).unwrap();
    let out = comfyver(
        &w,
        &["-v", "test", "v1", "--workflow", wf.to_str().unwrap()],
        Some(&bare_path),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "warm test failed:\n{stderr}");
    assert!(stderr.contains("warm=true"), "{stderr}");
    for step in ["fetching", "checking out", "== python", "resolved v1"] {
        assert!(
            !stderr.contains(step),
            "the warm run did {step:?}:\n{stderr}"
        );
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok  v1"));
    // `test --json` names the pack that failed to import, with its traceback.
    let out = comfyver(
        &w,
        &["--json", "test", "v1", "--workflow", wf.to_str().unwrap()],
        Some(&bare_path),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = stdout_json(&out);
    assert_eq!(summary["ok"], true, "{summary}");
    assert_eq!(
        summary["failed_packs"][0]["name"], "broken_pack",
        "{summary}"
    );
    assert!(
        summary["failed_packs"][0]["log"]
            .as_array()
            .is_some_and(|l| l
                .iter()
                .any(|l| l.as_str().is_some_and(|l| l.starts_with("Traceback")))),
        "{summary}"
    );
}

/// `comfyver <args>` in the world, not waited for.
fn spawn(w: &World, args: &[&str]) -> std::process::Child {
    let mut c = comfyver_testkit::cli::comfyver_command(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &w.root.join("cache"),
        &w.root.join("versions"),
    );
    c.args(args)
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    c.spawn().unwrap()
}

#[test]
fn a_running_job_keeps_its_home_while_realize_remove_and_gc_run_elsewhere() {
    use std::time::{Duration, Instant};
    let w = World::new(&["hello_pack"]);
    let out = comfyver(&w, &["realize", "v1"], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let home = w.home("v1");
    let slow = json!({
        "1": {"class_type": "FakeSlow", "inputs": {"seconds": 8.0}},
        "2": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0x112233}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "slow"}}
    });
    let wf = w.workflow("slow", &slow);
    let mut job = spawn(&w, &["run", "v1", "--workflow", wf.to_str().unwrap()]);
    let until = Instant::now() + Duration::from_secs(60);
    while processes_mentioning(&home.display().to_string()).is_empty() {
        assert!(Instant::now() < until, "ComfyUI never started");
        assert!(job.try_wait().unwrap().is_none(), "the job ended early");
        std::thread::sleep(Duration::from_millis(50));
    }

    // Meanwhile: the version changes (another package), and someone removes
    // it and collects garbage.
    let mut spec = w.spec("v1");
    spec["python"]["requirements"] = json!(["nodedep-b"]);
    w.write_spec("v1", &spec);
    let mut realize = spawn(&w, &["realize", "v1"]);
    let mut remove = spawn(&w, &["remove", "v1"]);
    let gc = comfyver(&w, &["gc", "--yes"], None);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        job.try_wait().unwrap().is_none(),
        "the job is still running (8 s)"
    );
    assert!(
        realize.try_wait().unwrap().is_none(),
        "realize waits for the job"
    );
    assert!(
        remove.try_wait().unwrap().is_none(),
        "remove waits for the job"
    );
    for part in [
        ".venv/bin/python",
        "core/main.py",
        "custom_nodes/hello_pack/__init__.py",
    ] {
        assert!(
            home.join(part).exists(),
            "{part} is gone under a live ComfyUI"
        );
    }

    let done = job.wait_with_output().unwrap();
    assert!(
        done.status.success(),
        "the job failed:\n{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let result = stdout_json(&done);
    assert_eq!(
        result["images"].as_array().map(Vec::len),
        Some(1),
        "{result}"
    );
    for (what, child) in [("realize", realize), ("remove", remove)] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{what} after the job:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
