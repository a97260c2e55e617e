//! Downloads against a real HTTP server on loopback with injected faults.
//! Every fault ends in a whole, verified file or a clear error with nothing at
//! the model's final path.

use std::path::{Path, PathBuf};
use std::time::Duration;

use comfyver_fs::CacheLayout;
use comfyver_models::gc::{gc_apply, gc_plan, list_store};
use comfyver_models::verify::{VerifyStatus, actual_model, verify_models};
use comfyver_models::{
    FetchOptions, FetchStatus, Index, ModelsError, NoReporter, extra_model_paths_yaml,
    fetch_models, is_present, source_key,
};
use comfyver_spec::lock::LockedModel;
use comfyver_testkit::http::{Fault, HttpServer, etag_of};
use sha2::Digest as _;

/// Deterministic pseudo-random bytes.
fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn sha256(b: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(b))
}

fn model(source: &str, path: &str) -> LockedModel {
    LockedModel {
        source: source.into(),
        path: path.into(),
        sha256: None,
        blake3: None,
        size: None,
    }
}

fn with_sha(mut m: LockedModel, bytes: &[u8]) -> LockedModel {
    m.sha256 = Some(sha256(bytes));
    m
}

struct Env {
    _dir: tempfile::TempDir,
    layout: CacheLayout,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path().join("cache"));
    Env { _dir: dir, layout }
}

fn fast() -> FetchOptions {
    FetchOptions {
        retry_delay: Duration::from_millis(10),
        retries: 3,
        read_timeout: Duration::from_secs(5),
        ..FetchOptions::default()
    }
}

fn fetch(
    e: &Env,
    models: &[LockedModel],
    opts: &FetchOptions,
) -> Result<Vec<FetchStatus>, ModelsError> {
    fetch_models(models, &e.layout, opts, &NoReporter)
        .map(|o| o.models.into_iter().map(|m| m.status).collect())
}

fn final_path(e: &Env, m: &LockedModel) -> PathBuf {
    e.layout.models_dir().join(&m.path)
}

fn partials(e: &Env) -> Vec<String> {
    std::fs::read_dir(e.layout.models_dir().join(".comfyver/partial"))
        .map(|d| {
            d.flatten()
                .map(|x| x.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".part"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn downloads_verifies_indexes_and_then_needs_no_request() {
    let server = HttpServer::start();
    let bytes = data(300_000, 1);
    server.add_file("/m/a.safetensors", bytes.clone());
    let e = env();
    let m = with_sha(
        model(&server.url("/m/a.safetensors"), "checkpoints/a.safetensors"),
        &bytes,
    );
    let st = fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    assert_eq!(
        st,
        vec![FetchStatus::Downloaded {
            resumed_from: 0,
            received: 300_000
        }]
    );
    assert_eq!(std::fs::read(final_path(&e, &m)).unwrap(), bytes);
    let reqs = server.requests_for("/m/a.safetensors");
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].accept_encoding.as_deref(), Some("identity"));
    let index = Index::read(e.layout.models_dir()).unwrap();
    let entry = &index.models["checkpoints/a.safetensors"];
    assert_eq!(entry.sha256.as_deref(), Some(sha256(&bytes).as_str()));
    assert_eq!(entry.blake3, blake3::hash(&bytes).to_hex().to_string());
    assert_eq!(entry.size, 300_000);
    assert_eq!(entry.etag.as_deref(), Some(etag_of(&bytes).as_str()));
    assert_eq!(entry.key, source_key(&m.source));
    assert!(partials(&e).is_empty());
    assert!(is_present(&e.layout, &m));

    let again = fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    assert_eq!(again, vec![FetchStatus::Present]);
    assert_eq!(
        server.requests().len(),
        1,
        "a present model costs no request"
    );
}

#[test]
fn parallel_jobs_fetch_every_model() {
    let server = HttpServer::start();
    let e = env();
    let models: Vec<LockedModel> = (0..6)
        .map(|i| {
            let bytes = data(50_000 + i * 1000, i as u64);
            let p = format!("/f{i}.bin");
            server.add_file(&p, bytes.clone());
            server.fault(
                &p,
                Fault::Slow {
                    chunk: 10_000,
                    delay: Duration::from_millis(5),
                },
            );
            with_sha(model(&server.url(&p), &format!("loras/f{i}.bin")), &bytes)
        })
        .collect();
    let opts = FetchOptions { jobs: 3, ..fast() };
    let st = fetch(&e, &models, &opts).unwrap();
    assert!(
        st.iter()
            .all(|s| matches!(s, FetchStatus::Downloaded { .. })),
        "{st:?}"
    );
    for m in &models {
        assert!(is_present(&e.layout, m));
    }
    assert_eq!(list_store(&e.layout).unwrap().len(), 6);
}

#[test]
fn dropped_connections_resume_from_where_they_stopped() {
    let server = HttpServer::start();
    let bytes = data(1_000_000, 2);
    server.add_file("/big.bin", bytes.clone());
    server.fault(
        "/big.bin",
        Fault::DropAfter {
            bytes: 300_000,
            times: 2,
        },
    );
    let e = env();
    let m = with_sha(
        model(&server.url("/big.bin"), "checkpoints/big.bin"),
        &bytes,
    );
    fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    assert_eq!(std::fs::read(final_path(&e, &m)).unwrap(), bytes);
    let reqs = server.requests_for("/big.bin");
    assert_eq!(reqs.len(), 3, "{reqs:?}");
    assert_eq!(reqs[1].range.as_deref(), Some("bytes=300000-"));
    assert_eq!(reqs[1].if_range.as_deref(), Some(etag_of(&bytes).as_str()));
    assert_eq!(reqs[2].range.as_deref(), Some("bytes=600000-"));
    assert_eq!(
        server.bytes_sent("/big.bin"),
        1_000_000,
        "nothing was sent twice"
    );
}

#[test]
fn a_server_ignoring_range_restarts_cleanly() {
    let server = HttpServer::start();
    let bytes = data(400_000, 3);
    server.add_file("/x.bin", bytes.clone());
    server.fault(
        "/x.bin",
        Fault::DropAfter {
            bytes: 150_000,
            times: 1,
        },
    );
    server.fault("/x.bin", Fault::IgnoreRange);
    let e = env();
    let m = with_sha(model(&server.url("/x.bin"), "vae/x.bin"), &bytes);
    fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    assert_eq!(std::fs::read(final_path(&e, &m)).unwrap(), bytes);
    assert_eq!(server.full_gets("/x.bin"), 2);
}

#[test]
fn server_errors_are_retried_then_succeed() {
    let server = HttpServer::start();
    let bytes = data(10_000, 4);
    server.add_file("/flaky.bin", bytes.clone());
    server.fault("/flaky.bin", Fault::ServerError { times: 2 });
    let e = env();
    let m = with_sha(model(&server.url("/flaky.bin"), "vae/flaky.bin"), &bytes);
    fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    let statuses: Vec<u16> = server
        .requests_for("/flaky.bin")
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, vec![500, 500, 200]);
}

#[test]
fn persistent_server_errors_fail_with_nothing_at_the_final_path() {
    let server = HttpServer::start();
    server.add_file("/down.bin", data(1000, 5));
    server.fault("/down.bin", Fault::ServerError { times: 100 });
    let e = env();
    let m = model(&server.url("/down.bin"), "vae/down.bin");
    let err = fetch(
        &e,
        std::slice::from_ref(&m),
        &FetchOptions {
            retries: 2,
            ..fast()
        },
    )
    .unwrap_err();
    assert!(
        matches!(err, ModelsError::Transfer { attempts: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("HTTP 500"), "{err}");
    assert!(!final_path(&e, &m).exists());
}

#[test]
fn not_found_fails_fast_with_a_hint() {
    let server = HttpServer::start();
    let e = env();
    let m = model(&server.url("/nope.bin"), "vae/nope.bin");
    let err = fetch(&e, std::slice::from_ref(&m), &fast()).unwrap_err();
    assert!(
        matches!(err, ModelsError::HttpStatus { status: 404, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("check the URL"), "{err}");
    assert_eq!(server.requests().len(), 1, "4xx is not retried");
    assert!(!final_path(&e, &m).exists());
}

#[test]
fn forbidden_names_the_token_variables() {
    let server = HttpServer::start();
    server.add_file("/gated.bin", data(100, 6));
    server.fault("/gated.bin", Fault::Status(403));
    let e = env();
    let m = model(
        &format!("{}?token=s3cr3t", server.url("/gated.bin")),
        "vae/gated.bin",
    );
    let err = fetch(&e, std::slice::from_ref(&m), &fast())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("HF_TOKEN") && err.contains("CIVITAI_TOKEN"),
        "{err}"
    );
    assert!(
        !err.contains("s3cr3t"),
        "a token in the URL is redacted: {err}"
    );
}

#[test]
fn a_short_body_is_retried_and_then_reported() {
    let server = HttpServer::start();
    let bytes = data(20_000, 7);
    server.add_file("/short.bin", bytes.clone());
    server.fault("/short.bin", Fault::WrongContentLength(30_000));
    let e = env();
    let m = model(&server.url("/short.bin"), "vae/short.bin");
    let err = fetch(
        &e,
        std::slice::from_ref(&m),
        &FetchOptions {
            retries: 2,
            ..fast()
        },
    )
    .unwrap_err();
    assert!(matches!(err, ModelsError::Transfer { .. }), "{err}");
    assert!(!final_path(&e, &m).exists());
}

#[test]
fn a_lying_content_length_is_caught_by_the_checksum() {
    let server = HttpServer::start();
    let bytes = data(20_000, 8);
    server.add_file("/long.bin", bytes.clone());
    server.fault("/long.bin", Fault::WrongContentLength(10_000));
    let e = env();
    let m = with_sha(model(&server.url("/long.bin"), "vae/long.bin"), &bytes);
    let err = fetch(&e, std::slice::from_ref(&m), &fast()).unwrap_err();
    assert!(
        matches!(err, ModelsError::Mismatch { what: "sha256", .. }),
        "{err}"
    );
    assert!(!final_path(&e, &m).exists());
    assert!(partials(&e).is_empty());
}

#[test]
fn checksum_mismatch_deletes_the_partial_and_shows_both_values() {
    let server = HttpServer::start();
    let bytes = data(5_000, 9);
    server.add_file("/m.bin", bytes.clone());
    let e = env();
    let mut m = model(&server.url("/m.bin"), "loras/m.bin");
    m.sha256 = Some("0".repeat(64));
    let err = fetch(&e, std::slice::from_ref(&m), &fast())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&"0".repeat(64)) && err.contains(&sha256(&bytes)),
        "{err}"
    );
    assert!(!final_path(&e, &m).exists());
    assert!(partials(&e).is_empty());
    // BLAKE3 is checked too.
    let mut m = model(&server.url("/m.bin"), "loras/m.bin");
    m.blake3 = Some("1".repeat(64));
    let err = fetch(&e, std::slice::from_ref(&m), &fast())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("blake3") && err.contains(blake3::hash(&bytes).to_hex().as_str()),
        "{err}"
    );
}

#[test]
fn a_stalled_body_times_out() {
    let server = HttpServer::start();
    server.add_file("/slow.bin", data(10_000, 10));
    server.fault(
        "/slow.bin",
        Fault::Slow {
            chunk: 1000,
            delay: Duration::from_secs(3),
        },
    );
    let e = env();
    let m = model(&server.url("/slow.bin"), "vae/slow.bin");
    let opts = FetchOptions {
        retries: 0,
        read_timeout: Duration::from_millis(300),
        ..fast()
    };
    let err = fetch(&e, std::slice::from_ref(&m), &opts)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("timed out") || err.contains("Timeout"),
        "{err}"
    );
    assert!(!final_path(&e, &m).exists());
}

#[test]
fn redirects_are_followed() {
    let server = HttpServer::start();
    let bytes = data(7_000, 11);
    server.add_file("/real.bin", bytes.clone());
    server.fault("/alias.bin", Fault::Redirect(server.url("/real.bin")));
    let e = env();
    let m = with_sha(model(&server.url("/alias.bin"), "vae/alias.bin"), &bytes);
    fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    assert_eq!(std::fs::read(final_path(&e, &m)).unwrap(), bytes);
}

/// Plants the leftovers of an interrupted run (partial file + sidecar).
fn plant_partial(e: &Env, m: &LockedModel, prefix: &[u8], etag: &str) {
    let dir = e.layout.models_dir().join(".comfyver/partial");
    std::fs::create_dir_all(&dir).unwrap();
    let key = source_key(&m.source);
    std::fs::write(dir.join(format!("{key}.part")), prefix).unwrap();
    std::fs::write(
        dir.join(format!("{key}.json")),
        serde_json::json!({"url": "x", "etag": etag, "last_modified": null, "total": null})
            .to_string(),
    )
    .unwrap();
}

#[test]
fn a_partial_from_an_earlier_run_is_rehashed_and_resumed() {
    let server = HttpServer::start();
    let bytes = data(500_000, 12);
    server.add_file("/r.bin", bytes.clone());
    let e = env();
    let m = with_sha(model(&server.url("/r.bin"), "checkpoints/r.bin"), &bytes);
    plant_partial(&e, &m, &bytes[..200_000], &etag_of(&bytes));
    let st = fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    assert_eq!(
        st,
        vec![FetchStatus::Downloaded {
            resumed_from: 200_000,
            received: 300_000
        }]
    );
    assert_eq!(server.bytes_sent("/r.bin"), 300_000);
    assert_eq!(std::fs::read(final_path(&e, &m)).unwrap(), bytes);
}

#[test]
fn a_partial_of_an_older_file_is_discarded_through_if_range() {
    let server = HttpServer::start();
    let old = data(500_000, 13);
    let new = data(500_000, 14);
    server.add_file("/c.bin", new.clone());
    let e = env();
    let m = with_sha(model(&server.url("/c.bin"), "checkpoints/c.bin"), &new);
    plant_partial(&e, &m, &old[..200_000], &etag_of(&old));
    fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    assert_eq!(
        server.full_gets("/c.bin"),
        1,
        "If-Range made the server send the whole new file"
    );
    assert_eq!(std::fs::read(final_path(&e, &m)).unwrap(), new);
}

#[test]
fn two_fetchers_of_one_model_download_it_once() {
    let server = HttpServer::start();
    let bytes = data(400_000, 15);
    server.add_file("/once.bin", bytes.clone());
    server.fault(
        "/once.bin",
        Fault::Slow {
            chunk: 50_000,
            delay: Duration::from_millis(20),
        },
    );
    let e = env();
    let m = with_sha(
        model(&server.url("/once.bin"), "checkpoints/once.bin"),
        &bytes,
    );
    let results: Vec<_> = std::thread::scope(|s| {
        let a = s.spawn(|| fetch(&e, std::slice::from_ref(&m), &fast()).unwrap());
        let b = s.spawn(|| fetch(&e, std::slice::from_ref(&m), &fast()).unwrap());
        vec![a.join().unwrap(), b.join().unwrap()]
    });
    assert_eq!(server.full_gets("/once.bin"), 1, "{results:?}");
    assert!(
        results.iter().any(|r| r == &vec![FetchStatus::Present]),
        "{results:?}"
    );
    assert_eq!(std::fs::read(final_path(&e, &m)).unwrap(), bytes);
}

#[test]
fn two_sources_on_one_path_are_a_conflict() {
    let server = HttpServer::start();
    server.add_file("/a.bin", data(100, 16));
    server.add_file("/b.bin", data(100, 17));
    let e = env();
    let a = model(&server.url("/a.bin"), "vae/same.bin");
    let b = model(&server.url("/b.bin"), "vae/same.bin");
    let err = fetch(&e, &[a.clone(), b.clone()], &fast()).unwrap_err();
    assert!(matches!(err, ModelsError::Conflict { .. }), "{err}");
    assert!(!e.layout.models_dir().exists(), "nothing written");
    // Across runs: the index remembers who owns the path.
    fetch(&e, std::slice::from_ref(&a), &fast()).unwrap();
    let err = fetch(&e, std::slice::from_ref(&b), &fast()).unwrap_err();
    assert!(matches!(err, ModelsError::Conflict { .. }), "{err}");
    assert_eq!(std::fs::read(final_path(&e, &a)).unwrap(), data(100, 16));
}

#[test]
fn unsafe_paths_are_refused_before_anything_is_written() {
    let server = HttpServer::start();
    server.add_file("/a.bin", data(100, 18));
    let e = env();
    for bad in [
        "../escape/a.bin",
        "loras/../../a.bin",
        "/abs/a.bin",
        "loras/.hidden",
    ] {
        let err = fetch(&e, &[model(&server.url("/a.bin"), bad)], &fast()).unwrap_err();
        assert!(
            matches!(err, ModelsError::UnsafePath { .. }),
            "{bad}: {err}"
        );
    }
    assert!(!e.layout.root().exists());
    assert!(server.requests().is_empty());
}

#[test]
fn an_existing_file_is_adopted_kept_or_refused_without_a_request() {
    let server = HttpServer::start();
    let bytes = data(9_000, 19);
    server.add_file("/e.bin", bytes.clone());
    let e = env();
    let m = with_sha(model(&server.url("/e.bin"), "loras/e.bin"), &bytes);
    let dest = final_path(&e, &m);
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::write(&dest, &bytes).unwrap();
    assert_eq!(
        fetch(&e, std::slice::from_ref(&m), &fast()).unwrap(),
        vec![FetchStatus::Adopted]
    );
    assert!(
        Index::read(e.layout.models_dir())
            .unwrap()
            .models
            .contains_key("loras/e.bin")
    );

    let other = model(&server.url("/e.bin"), "loras/mine.bin");
    let mine = final_path(&e, &other);
    std::fs::write(&mine, b"my own file").unwrap();
    assert_eq!(
        fetch(&e, std::slice::from_ref(&other), &fast()).unwrap(),
        vec![FetchStatus::KeptUnverified]
    );
    assert_eq!(std::fs::read(&mine).unwrap(), b"my own file");

    let wrong = with_sha(model(&server.url("/e.bin"), "loras/wrong.bin"), &bytes);
    let wrong_path = final_path(&e, &wrong);
    std::fs::write(&wrong_path, data(9_000, 20)).unwrap();
    let err = fetch(&e, std::slice::from_ref(&wrong), &fast()).unwrap_err();
    assert!(
        matches!(err, ModelsError::ExistingMismatch { what: "sha256", .. }),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&wrong_path).unwrap(),
        data(9_000, 20),
        "never overwritten"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn offline_and_skip_report_missing_models() {
    let server = HttpServer::start();
    server.add_file("/o.bin", data(100, 21));
    let e = env();
    let m = model(&server.url("/o.bin"), "vae/o.bin");
    for opts in [
        FetchOptions {
            offline: true,
            ..fast()
        },
        FetchOptions {
            skip: true,
            ..fast()
        },
    ] {
        let out = fetch_models(std::slice::from_ref(&m), &e.layout, &opts, &NoReporter).unwrap();
        assert_eq!(out.missing().len(), 1);
    }
    assert!(server.requests().is_empty());
    assert!(!is_present(&e.layout, &m));
}

#[test]
fn local_sources_are_linked_and_verified() {
    let e = env();
    let src_dir = e.layout.root().join("src");
    std::fs::create_dir_all(&src_dir).unwrap();
    let bytes = data(4_000, 22);
    let src = src_dir.join("local model.ckpt");
    std::fs::write(&src, &bytes).unwrap();
    let url = format!("file://{}", src.display()).replace(' ', "%20");
    let m = with_sha(model(&url, "checkpoints/local.ckpt"), &bytes);
    let st = fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    assert_eq!(st, vec![FetchStatus::Placed { linked: true }]);
    assert_eq!(std::fs::read(final_path(&e, &m)).unwrap(), bytes);
    let mut bad = model(&src.display().to_string(), "checkpoints/bad.ckpt");
    bad.size = Some(1);
    let err = fetch(&e, &[bad.clone()], &fast()).unwrap_err();
    assert!(
        matches!(err, ModelsError::Mismatch { what: "size", .. }),
        "{err}"
    );
    assert!(!final_path(&e, &bad).exists());
    let leftovers: Vec<_> = std::fs::read_dir(e.layout.models_dir().join("checkpoints"))
        .unwrap()
        .flatten()
        .map(|d| d.file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no temp files left: {leftovers:?}");
}

#[test]
fn verify_uses_the_index_and_catches_changed_files() {
    let server = HttpServer::start();
    let bytes = data(8_000, 23);
    server.add_file("/v.bin", bytes.clone());
    let e = env();
    let m = with_sha(model(&server.url("/v.bin"), "vae/v.bin"), &bytes);
    let missing = verify_models(std::slice::from_ref(&m), &e.layout, false).unwrap();
    assert_eq!(missing[0].status, VerifyStatus::Missing);
    fetch(&e, std::slice::from_ref(&m), &fast()).unwrap();
    let ok = verify_models(std::slice::from_ref(&m), &e.layout, false).unwrap();
    assert_eq!(ok[0].status, VerifyStatus::Ok { hashed: false });
    let ok = verify_models(std::slice::from_ref(&m), &e.layout, true).unwrap();
    assert_eq!(ok[0].status, VerifyStatus::Ok { hashed: true });
    // Same size, other content, later mtime: the check re-hashes and fails.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(final_path(&e, &m), data(8_000, 24)).unwrap();
    let bad = verify_models(std::slice::from_ref(&m), &e.layout, false).unwrap();
    assert!(
        matches!(bad[0].status, VerifyStatus::Mismatch { what: "sha256", .. }),
        "{bad:?}"
    );
    assert!(bad[0].status.is_problem());
}

#[test]
fn gc_removes_only_unreferenced_files() {
    let server = HttpServer::start();
    let e = env();
    let keep = model(&server.url("/keep.bin"), "loras/keep.bin");
    let drop = model(&server.url("/drop.bin"), "loras/drop.bin");
    server.add_file("/keep.bin", data(1_000, 25));
    server.add_file("/drop.bin", data(3_000, 26));
    fetch(&e, &[keep.clone(), drop.clone()], &fast()).unwrap();
    let stale = model(&server.url("/stale.bin"), "vae/stale.bin");
    plant_partial(&e, &stale, &[1u8; 500], "\"x\"");
    let plan = gc_plan(&e.layout, std::slice::from_ref(&keep)).unwrap();
    assert_eq!(plan.files.len(), 1);
    assert_eq!(plan.files[0].path, "loras/drop.bin");
    assert_eq!(
        plan.partials.len(),
        2,
        "the .part and its sidecar: {plan:?}"
    );
    assert!(final_path(&e, &drop).exists(), "planning removes nothing");
    let freed = gc_apply(&e.layout, &plan).unwrap();
    assert_eq!(freed, plan.bytes());
    assert!(freed >= 3_500);
    assert!(!final_path(&e, &drop).exists());
    assert!(final_path(&e, &keep).exists());
    let index = Index::read(e.layout.models_dir()).unwrap();
    assert!(!index.models.contains_key("loras/drop.bin"));
    assert!(index.models.contains_key("loras/keep.bin"));
    assert!(gc_plan(&e.layout, &[keep]).unwrap().is_empty());
}

#[test]
fn extra_model_paths_yaml_parses_back_with_pyyaml() {
    let has_yaml = std::process::Command::new("python3")
        .args(["-c", "import yaml"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_yaml,
        "this test needs python3 with PyYAML (ComfyUI's own YAML parser): run `pip install pyyaml`"
    );
    let dir = Path::new("/vol/models: #1 \"q\" été");
    let yaml = extra_model_paths_yaml(dir, &["ipadapter/faceid".into(), "loras/x".into()]);
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps(yaml.safe_load(sys.stdin.read())))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &v["comfyver"];
    assert_eq!(s["base_path"], dir.to_str().unwrap());
    assert_eq!(s["checkpoints"], "checkpoints");
    assert_eq!(s["text_encoders"], "text_encoders\nclip");
    assert_eq!(s["diffusion_models"], "diffusion_models\nunet");
    assert_eq!(s["controlnet"], "controlnet\nt2i_adapter");
    assert_eq!(s["ipadapter"], "ipadapter");
    assert!(s.get("loras/x").is_none());
    let obj = s.as_object().unwrap();
    assert!(
        obj.values().all(|v| v.is_string()),
        "every value is a string: {s}"
    );
    for (folder, _) in comfyver_spec::model_folders::MODEL_FOLDERS {
        assert!(obj.contains_key(*folder), "{folder} missing");
    }
}

#[test]
fn actual_model_reads_the_index_for_unchanged_files_and_hashes_changed_ones() {
    let server = HttpServer::start();
    let bytes = data(50_000, 7);
    server.add_file("/m/d.safetensors", bytes.clone());
    let e = env();
    let plain = model(&server.url("/m/d.safetensors"), "checkpoints/d.safetensors");
    assert_eq!(actual_model(&e.layout, &plain).unwrap(), None);
    fetch(&e, std::slice::from_ref(&plain), &fast()).unwrap();
    let got = actual_model(&e.layout, &plain).unwrap().unwrap();
    assert_eq!(got.size, Some(50_000));
    assert_eq!(got.blake3, Some(blake3::hash(&bytes).to_hex().to_string()));
    // The spec asked for no SHA-256, so the index has none and the file is
    // not read just to describe it.
    assert_eq!(got.sha256, None);

    // Changed behind the store's back: the content is hashed, SHA-256 too.
    let other = data(50_001, 8);
    std::fs::write(final_path(&e, &plain), &other).unwrap();
    let got = actual_model(&e.layout, &plain).unwrap().unwrap();
    assert_eq!(got.size, Some(50_001));
    assert_eq!(got.sha256, Some(sha256(&other)));
    assert_eq!(got.blake3, Some(blake3::hash(&other).to_hex().to_string()));
}
