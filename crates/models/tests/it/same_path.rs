//! Two sources, one store path (issue 11 item 11): concurrent fetches of
//! different URLs landing on one `target_subdir/name` never overwrite each
//! other or leave the index describing another file; with a checksum, the
//! same model under a new URL is adopted.

use std::time::Duration;

use comfyver_fs::CacheLayout;
use comfyver_models::{
    FetchOptions, FetchStatus, Index, ModelsError, NoReporter, fetch_models, source_key,
};
use comfyver_spec::lock::LockedModel;
use comfyver_testkit::http::{Fault, HttpServer, blake3_hex, pseudo_random, sha256_hex};

const PATH: &str = "loras/same.safetensors";

fn model(url: &str, sha256: Option<&[u8]>) -> LockedModel {
    LockedModel {
        source: url.into(),
        path: PATH.into(),
        sha256: sha256.map(sha256_hex),
        blake3: None,
        size: None,
    }
}

fn opts() -> FetchOptions {
    FetchOptions {
        retries: 1,
        retry_delay: Duration::from_millis(10),
        ..FetchOptions::default()
    }
}

fn slow(server: &HttpServer, path: &str) {
    server.fault(
        path,
        Fault::Slow {
            chunk: 20_000,
            delay: Duration::from_millis(10),
        },
    );
}

fn fetch(layout: &CacheLayout, m: &LockedModel) -> Result<FetchStatus, ModelsError> {
    fetch_models(std::slice::from_ref(m), layout, &opts(), &NoReporter)
        .map(|o| o.models[0].status.clone())
}

/// The index entry of [`PATH`] describes the file that is there.
fn assert_index_matches_file(layout: &CacheLayout) -> comfyver_models::IndexEntry {
    let file = std::fs::read(layout.models_dir().join(PATH)).unwrap();
    let index = Index::read(layout.models_dir()).unwrap();
    let e = index.models[PATH].clone();
    assert_eq!(e.size, file.len() as u64);
    assert_eq!(e.blake3, blake3_hex(&file));
    e
}

#[test]
fn two_urls_with_one_checksum_download_once_and_both_succeed() {
    let server = HttpServer::start();
    let bytes = pseudo_random(300_000, 1);
    server.add_file("/old-mirror/a.bin", bytes.clone());
    server.add_file("/new-mirror/a.bin", bytes.clone());
    slow(&server, "/old-mirror/a.bin");
    slow(&server, "/new-mirror/a.bin");
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path());
    let a = model(&server.url("/old-mirror/a.bin"), Some(&bytes));
    let b = model(&server.url("/new-mirror/a.bin"), Some(&bytes));
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| fetch(&layout, &a));
        let tb = s.spawn(|| fetch(&layout, &b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let downloads = [&ra, &rb]
        .iter()
        .filter(|s| matches!(s, FetchStatus::Downloaded { .. }))
        .count();
    assert_eq!(downloads, 1, "{ra:?} {rb:?}");
    assert!([&ra, &rb].contains(&&FetchStatus::Adopted), "{ra:?} {rb:?}");
    assert_eq!(
        server.full_gets("/old-mirror/a.bin") + server.full_gets("/new-mirror/a.bin"),
        1
    );
    assert_eq!(
        std::fs::read(layout.models_dir().join(PATH)).unwrap(),
        bytes
    );
    assert_index_matches_file(&layout);
}

#[test]
fn two_urls_with_different_files_never_mix_file_and_index() {
    let server = HttpServer::start();
    server.add_file("/a.bin", pseudo_random(300_000, 2));
    server.add_file("/b.bin", pseudo_random(250_000, 3));
    slow(&server, "/a.bin");
    slow(&server, "/b.bin");
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path());
    let a = model(&server.url("/a.bin"), None);
    let b = model(&server.url("/b.bin"), None);
    let (ra, rb) = std::thread::scope(|s| {
        let ta = s.spawn(|| fetch(&layout, &a));
        let tb = s.spawn(|| fetch(&layout, &b));
        (ta.join().unwrap(), tb.join().unwrap())
    });
    assert!(ra.is_ok() != rb.is_ok(), "exactly one wins: {ra:?} {rb:?}");
    let loser = ra.as_ref().err().or(rb.as_ref().err()).unwrap();
    assert!(matches!(loser, ModelsError::Conflict { .. }), "{loser}");
    let winner = if ra.is_ok() { &a } else { &b };
    let e = assert_index_matches_file(&layout);
    assert_eq!(e.key, source_key(&winner.source));
    assert_eq!(
        server.full_gets("/a.bin") + server.full_gets("/b.bin"),
        1,
        "the loser never downloaded over the winner"
    );
}

#[test]
fn a_moved_mirror_with_the_same_checksum_is_adopted_without_a_request() {
    let server = HttpServer::start();
    let bytes = pseudo_random(100_000, 4);
    server.add_file("/m.bin", bytes.clone());
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path());
    let first = model(&server.url("/m.bin"), Some(&bytes));
    assert!(matches!(
        fetch(&layout, &first).unwrap(),
        FetchStatus::Downloaded { .. }
    ));
    // The mirror moved (another port): same model, same checksum.
    let moved = HttpServer::start();
    moved.add_file("/m.bin", bytes.clone());
    let second = model(&moved.url("/m.bin"), Some(&bytes));
    assert_eq!(fetch(&layout, &second).unwrap(), FetchStatus::Adopted);
    assert!(moved.requests().is_empty());
    let e = assert_index_matches_file(&layout);
    assert_eq!(e.key, source_key(&second.source));
    assert_eq!(fetch(&layout, &second).unwrap(), FetchStatus::Present);
    // A different checksum on the same path is still another model.
    let other = model(&moved.url("/m.bin?v=2"), Some(b"something else"));
    let err = fetch(&layout, &other).unwrap_err();
    assert!(matches!(err, ModelsError::Conflict { .. }), "{err}");
    // One spec naming both mirrors with one checksum: one model.
    let out = fetch_models(&[first, second], &layout, &opts(), &NoReporter).unwrap();
    assert_eq!(out.models.len(), 1);
}
