//! `comfyver models fetch|verify|list|gc` as real processes against a real
//! HTTP server on loopback: SIGKILL mid-download then resume, two processes
//! at once, tokens that never leak, checksum failures, offline warnings.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use comfyver_testkit::cli::Sandbox;
use comfyver_testkit::http::{Fault, HttpServer, blake3_hex, pseudo_random, sha256_hex};

fn sandbox() -> Sandbox {
    Sandbox::new(Path::new(env!("CARGO_BIN_EXE_comfyver")))
}

/// The shared model store under the sandbox's cache.
fn store(e: &Sandbox) -> PathBuf {
    e.cache().join("models")
}

/// Writes `versions/<id>.json` with these models (JSON objects).
fn spec(e: &Sandbox, id: &str, models: serde_json::Value) {
    e.write_spec(
        id,
        &serde_json::json!({
            "schema_version": 2,
            "version_id": id,
            "comfy": {"repo": "https://example.invalid/ComfyUI", "ref": "v1"},
            "models": models,
        }),
    );
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn data(len: usize, seed: u64) -> Vec<u8> {
    pseudo_random(len, seed)
}

fn b3(b: &[u8]) -> String {
    blake3_hex(b)
}

#[test]
fn fetch_verify_list_and_gc() {
    let server = HttpServer::start();
    let a = data(100_000, 1);
    let b = data(50_000, 2);
    server.add_file("/a.safetensors", a.clone());
    server.add_file("/dl/b.pt", b.clone());
    let e = sandbox();
    spec(
        &e,
        "v1",
        serde_json::json!([
            {"source": server.url("/a.safetensors"), "blake3": b3(&a), "size": a.len()},
            {"source": server.url("/dl/b.pt"), "target_subdir": "loras", "name": "bee.pt"},
        ]),
    );
    let out = e.run(&["models", "fetch", "v1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read(store(&e).join("checkpoints/a.safetensors")).unwrap(),
        a
    );
    assert_eq!(std::fs::read(store(&e).join("loras/bee.pt")).unwrap(), b);
    assert!(
        text(&out.stdout).contains("downloaded"),
        "{}",
        text(&out.stdout)
    );

    let again = e.run(&["models", "fetch", "v1"]);
    assert!(again.status.success());
    assert_eq!(
        server.requests().len(),
        2,
        "the second fetch made no request"
    );

    let verify = e.run(&["models", "verify", "v1"]);
    assert!(
        verify.status.success(),
        "{}{}",
        text(&verify.stdout),
        text(&verify.stderr)
    );
    let list = e.run(&["models", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(v["models"].as_array().unwrap().len(), 2);

    // A file nobody references goes with gc --yes only.
    std::fs::write(store(&e).join("loras/old.pt"), vec![0u8; 1234]).unwrap();
    let dry = e.run(&["models", "gc"]);
    assert!(dry.status.success(), "{}", text(&dry.stderr));
    assert!(text(&dry.stdout).contains("loras/old.pt"));
    assert!(store(&e).join("loras/old.pt").exists());
    let gc = e.run(&["models", "gc", "--yes"]);
    assert!(gc.status.success(), "{}", text(&gc.stderr));
    assert!(
        text(&gc.stderr).contains("freed 1234 bytes"),
        "{}",
        text(&gc.stderr)
    );
    assert!(!store(&e).join("loras/old.pt").exists());
    assert!(store(&e).join("loras/bee.pt").exists());

    // A damaged file fails verification with exit 1.
    let mut bad = a.clone();
    bad[10] ^= 1;
    std::fs::write(store(&e).join("checkpoints/a.safetensors"), bad).unwrap();
    let verify = e.run(&["models", "verify", "v1", "--rehash"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(
        text(&verify.stdout).contains("MISMATCH"),
        "{}",
        text(&verify.stdout)
    );
}

#[test]
fn sigkill_midway_then_rerun_sends_only_the_remainder() {
    // Below the 64 MiB from which files come over several connections: one
    // stream, resumed with one range (the chunked case is tested in
    // crates/models/tests/chunked.rs).
    const LEN: usize = 48 << 20;
    let server = HttpServer::start();
    let bytes = data(LEN, 3);
    server.add_file("/big.safetensors", bytes.clone());
    server.fault(
        "/big.safetensors",
        Fault::Slow {
            chunk: 256 << 10,
            delay: Duration::from_millis(15),
        },
    );
    let e = sandbox();
    spec(
        &e,
        "big",
        serde_json::json!([{"source": server.url("/big.safetensors"), "blake3": b3(&bytes)}]),
    );
    let mut child = e
        .cmd(&["models", "fetch", "big"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial_dir = store(&e).join(".comfyver/partial");
    let part_len = || -> u64 {
        std::fs::read_dir(&partial_dir)
            .map(|d| {
                d.flatten()
                    .filter(|f| f.file_name().to_string_lossy().ends_with(".part"))
                    .filter_map(|f| f.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    let start = Instant::now();
    while part_len() < (LEN / 2) as u64 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "download did not progress"
        );
        assert!(child.try_wait().unwrap().is_none(), "finished too early");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let kept = part_len();
    assert!(kept >= (LEN / 2) as u64 && kept < LEN as u64, "{kept}");
    assert!(!store(&e).join("checkpoints/big.safetensors").exists());

    server.clear_faults("/big.safetensors");
    let out = e.run(&["models", "fetch", "big"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The log is in the order requests ended: the killed run's request may
    // end (its server thread writing into the dead socket) after the rerun's.
    let reqs = server.requests_for("/big.safetensors");
    assert_eq!(reqs.len(), 2, "{reqs:?}");
    let resumed = reqs
        .iter()
        .find(|r| r.range.is_some())
        .expect("a ranged GET");
    assert_eq!(resumed.status, 206);
    assert_eq!(
        resumed.range.as_deref(),
        Some(format!("bytes={kept}-").as_str())
    );
    assert_eq!(
        resumed.bytes_sent,
        LEN as u64 - kept,
        "only the remainder was sent again"
    );
    assert_eq!(server.full_gets("/big.safetensors"), 1);
    let got = std::fs::read(store(&e).join("checkpoints/big.safetensors")).unwrap();
    assert!(got == bytes, "the resumed file is whole");
}

#[test]
fn two_processes_fetching_one_model_download_it_once() {
    let server = HttpServer::start();
    let bytes = data(4 << 20, 4);
    server.add_file("/shared.bin", bytes.clone());
    server.fault(
        "/shared.bin",
        Fault::Slow {
            chunk: 256 << 10,
            delay: Duration::from_millis(20),
        },
    );
    let e = sandbox();
    spec(
        &e,
        "s",
        serde_json::json!([{"source": server.url("/shared.bin"), "target_subdir": "vae", "blake3": b3(&bytes)}]),
    );
    let spawn = || {
        e.cmd(&["models", "fetch", "s"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", text(&a.stderr));
    assert!(b.status.success(), "{}", text(&b.stderr));
    assert_eq!(server.full_gets("/shared.bin"), 1);
    assert_eq!(server.requests_for("/shared.bin").len(), 1);
    assert_eq!(
        std::fs::read(store(&e).join("vae/shared.bin")).unwrap(),
        bytes
    );
    let files: Vec<_> = std::fs::read_dir(store(&e).join("vae")).unwrap().collect();
    assert_eq!(files.len(), 1, "one file");
}

const SECRET: &str = "hf_TOPSECRETtoken123";

#[test]
fn a_refused_token_gives_a_hint_and_never_leaks() {
    let server = HttpServer::start();
    server.add_file("/org/repo/resolve/main/gated.safetensors", data(1000, 5));
    server.fault(
        "/org/repo/resolve/main/gated.safetensors",
        Fault::RequireBearer("the-right-one".into()),
    );
    let e = sandbox();
    spec(
        &e,
        "g",
        serde_json::json!([{"source": "hf://org/repo/gated.safetensors"}]),
    );
    let out = e
        .cmd(&["models", "fetch", "g", "-v"])
        .env("HF_ENDPOINT", server.base_url())
        .env("HF_TOKEN", SECRET)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("401") && err.contains("HF_TOKEN") && err.contains("CIVITAI_TOKEN"),
        "{err}"
    );
    assert!(
        !err.contains(SECRET) && !text(&out.stdout).contains(SECRET),
        "{err}"
    );
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1, "401 is not retried");
    assert_eq!(
        reqs[0].authorization.as_deref(),
        Some(format!("Bearer {SECRET}").as_str())
    );
    assert!(!store(&e).join("checkpoints/gated.safetensors").exists());
}

#[test]
fn the_token_goes_to_its_host_only_and_stays_out_of_the_index() {
    let server = HttpServer::start();
    let bytes = data(2000, 6);
    let hf_path = "/org/repo/resolve/v2/m.safetensors";
    server.add_file(hf_path, bytes.clone());
    server.fault(hf_path, Fault::RequireBearer(SECRET.into()));
    // A second model whose URL redirects to another host (a CDN).
    server.add_file("/cdn/x.bin", bytes.clone());
    server.fault(
        "/redirect.bin",
        Fault::Redirect(format!("http://localhost:{}/cdn/x.bin", server.port())),
    );
    let e = sandbox();
    spec(
        &e,
        "t",
        serde_json::json!([
            {"source": "hf://org/repo/m.safetensors@v2", "blake3": b3(&bytes)},
            {"source": format!("{}/redirect.bin", server.base_url()), "target_subdir": "vae"},
        ]),
    );
    let out = e
        .cmd(&["models", "fetch", "t", "--json"])
        .env("HF_ENDPOINT", server.base_url())
        .env("HF_TOKEN", SECRET)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(!text(&out.stderr).contains(SECRET) && !text(&out.stdout).contains(SECRET));
    let index = std::fs::read_to_string(store(&e).join(".comfyver/index.json")).unwrap();
    assert!(!index.contains(SECRET), "{index}");
    assert!(index.contains("hf://org/repo/m.safetensors@v2"), "{index}");
    // The token went to the HF endpoint's host (127.0.0.1), and not after the
    // redirect to another host (localhost).
    let cdn = server.requests_for("/cdn/x.bin");
    assert_eq!(cdn.len(), 1);
    assert_eq!(cdn[0].authorization, None);
    assert_eq!(
        std::fs::read(store(&e).join("vae/redirect.bin")).unwrap(),
        bytes
    );
}

#[test]
fn a_checksum_mismatch_fails_with_both_values_and_leaves_nothing() {
    let server = HttpServer::start();
    let bytes = data(3000, 7);
    server.add_file("/m.bin", bytes.clone());
    let e = sandbox();
    let wrong = "ab".repeat(32);
    spec(
        &e,
        "c",
        serde_json::json!([{"source": server.url("/m.bin"), "sha256": wrong}]),
    );
    let out = e.run(&["models", "fetch", "c"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains(&wrong), "{err}");
    assert!(err.contains(&sha256_hex(&bytes)), "{err}");
    assert!(!store(&e).join("checkpoints/m.bin").exists());
    let partials: Vec<_> = std::fs::read_dir(store(&e).join(".comfyver/partial"))
        .unwrap()
        .flatten()
        .filter(|f| f.file_name().to_string_lossy().ends_with(".part"))
        .collect();
    assert!(partials.is_empty());
}

#[test]
fn offline_lists_missing_models_as_warnings() {
    let server = HttpServer::start();
    server.add_file("/m.bin", data(100, 8));
    let e = sandbox();
    spec(
        &e,
        "o",
        serde_json::json!([{"source": server.url("/m.bin")}]),
    );
    let out = e.run(&["models", "fetch", "o", "--offline"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("warning: checkpoints/m.bin is not in the store"),
        "{}",
        text(&out.stderr)
    );
    assert!(server.requests().is_empty());
    let verify = e.run(&["models", "verify", "o"]);
    assert_eq!(verify.status.code(), Some(1));
    assert!(text(&verify.stdout).contains("MISSING"));
}

#[test]
fn a_traversing_name_is_rejected_before_anything_is_written() {
    let server = HttpServer::start();
    server.add_file("/m.bin", data(100, 9));
    let e = sandbox();
    spec(
        &e,
        "p",
        serde_json::json!([{"source": server.url("/m.bin"), "name": "../../escape.bin"}]),
    );
    let out = e.run(&["models", "fetch", "p"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(server.requests().is_empty());
    assert!(!e.cache().exists(), "nothing written");
    assert!(!e.root().join("escape.bin").exists());
}
