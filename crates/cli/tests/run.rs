//! The whole pipeline through the real binary: real git repositories →
//! resolve → realize (real uv, local wheels) → start the stand-in ComfyUI →
//! run workflows → outputs decoded and checked; then failures, and a second
//! run that reaches ComfyUI through the warm path with every remote gone.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use comfyver_testkit::comfy::{fake_core_dir, node_pack_dir};
use comfyver_testkit::git::Repo;
use comfyver_testkit::http::HttpServer;
use comfyver_testkit::wheels;
use serde_json::{Value, json};

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    server: Option<HttpServer>,
}

impl World {
    /// A core repository (the stand-in, tagged v1), two node packs, a wheel
    /// directory, a model on a loopback HTTP server and a spec using them.
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let remotes = root.join("remotes");
        let mut core = Repo::new(&remotes, "ComfyUI");
        core.copy_tree(&fake_core_dir());
        core.commit("stand-in core");
        core.tag("v1");
        core.push();
        let mut hello = Repo::new(&remotes, "hello_pack");
        hello.copy_tree(&node_pack_dir("hello_pack"));
        hello.commit("hello");
        hello.push();
        let mut broken = Repo::new(&remotes, "broken_pack");
        broken.copy_tree(&node_pack_dir("broken_pack"));
        broken.commit("broken");
        broken.push();
        wheels::standard_wheels(&root.join("wheels"));
        let server = HttpServer::start();
        server.add_file("/m/tiny.safetensors", b"not really a model".to_vec());
        let spec = json!({
            "schema_version": 2,
            "version_id": "v1",
            "comfy": {"repo": core.file_url(), "ref": "v1"},
            "custom_nodes": [{"repo": hello.file_url()}, {"repo": broken.file_url()}],
            "models": [{"source": server.url("/m/tiny.safetensors"), "target_subdir": "checkpoints"}],
            // A loopback index that knows no package (404): nothing may reach the
            // internet; packages come from --wheels-dir.
            "python": {"index_url": server.url("/simple")}
        });
        std::fs::create_dir_all(root.join("versions")).unwrap();
        std::fs::write(root.join("versions/v1.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        World { _tmp: tmp, root, server: Some(server) }
    }

    fn comfyver(&self, args: &[&str], path_env: Option<&Path>) -> Output {
        let mut c = Command::new(env!("CARGO_BIN_EXE_comfyver"));
        c.arg("--cache-dir")
            .arg(self.root.join("cache"))
            .arg("--versions-dir")
            .arg(self.root.join("versions"))
            .args(args)
            .arg("--wheels-dir")
            .arg(self.root.join("wheels"))
            .env_remove("COMFY_HOME")
            .env_remove("MODELS_DIR")
            .env_remove("COMFYVER_URL_REWRITES");
        if let Some(p) = path_env {
            c.env("PATH", p);
        }
        c.output().unwrap()
    }

    fn workflow(&self, name: &str, wf: Value) -> PathBuf {
        let p = self.root.join(format!("{name}.json"));
        std::fs::write(&p, serde_json::to_vec(&wf).unwrap()).unwrap();
        p
    }

    fn home(&self) -> PathBuf {
        self.root.join("cache/versions/comfy-v1")
    }
}

fn save_image_workflow() -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 32, "batch_size": 1, "color": 0x336699}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "smoke"}},
        "3": {"class_type": "FakeModelList", "inputs": {"folder": "checkpoints"}},
        "4": {"class_type": "HelloText", "inputs": {}}
    })
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
    let mut w = World::new();
    let wf = w.workflow("smoke", save_image_workflow());

    // 1. Cold: resolve, realize with real uv, start, run, stop.
    let out = w.comfyver(&["run", "v1", "--workflow", wf.to_str().unwrap()], None);
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
    assert!(texts.contains("tiny.safetensors"), "the model store is wired in: {result}");
    assert!(texts.contains("hello from"), "the node pack ran: {result}");
    assert!(stderr.contains("broken_pack"), "the failed pack is reported: {stderr}");
    assert!(processes_mentioning(&w.home().to_string_lossy()).is_empty());

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
        let path = w.workflow(name, wf);
        let out = w.comfyver(&["run", "v1", "--workflow", path.to_str().unwrap()], None);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {stderr}");
        let failure = stdout_json(&out);
        assert!(failure["error"].is_string(), "{name}: {failure}");
        assert!(
            stderr.contains(needle) || failure.to_string().contains(needle),
            "{name}: {needle:?} not in\n{stderr}\n{failure}"
        );
        assert!(processes_mentioning(&w.home().to_string_lossy()).is_empty(), "{name}: orphan");
    }

    // 3. The UI format is refused before anything starts.
    let ui = w.workflow("ui", json!({"nodes": [], "links": [], "version": 0.4}));
    let out = w.comfyver(&["run", "v1", "--workflow", ui.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Export (API)"));

    // 4. Warm: every remote and server gone, no git/uv/pip on PATH.
    drop(w.server.take());
    std::fs::remove_dir_all(w.root.join("remotes")).unwrap();
    let bare_path = w.root.join("empty-bin");
    std::fs::create_dir_all(&bare_path).unwrap();
    let out = w.comfyver(&["-v", "test", "v1", "--workflow", wf.to_str().unwrap()], Some(&bare_path));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "warm test failed:\n{stderr}");
    assert!(stderr.contains("warm=true"), "{stderr}");
    for step in ["fetching", "checking out", "== python", "resolved v1"] {
        assert!(!stderr.contains(step), "the warm run did {step:?}:\n{stderr}");
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("ok  v1"));
}
