//! Damaged models are noticed by the stat-only warm check and repaired by
//! one option (issue 11 item 18): the bad file is moved aside, the model is
//! fetched again, and the hint of every refusal names that option.

use std::fs::File;
use std::time::{Duration, SystemTime};

use comfyver_fs::CacheLayout;
use comfyver_models::verify::{VerifyStatus, verify_models};
use comfyver_models::{
    FetchOptions, FetchStatus, ModelsError, NoReporter, fetch_models, models_intact,
};
use comfyver_spec::lock::LockedModel;
use comfyver_testkit::http::{HttpServer, pseudo_random, sha256_hex};

fn opts(repair: bool) -> FetchOptions {
    FetchOptions {
        retries: 1,
        retry_delay: Duration::from_millis(10),
        repair,
        ..FetchOptions::default()
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    layout: CacheLayout,
    server: HttpServer,
    bytes: Vec<u8>,
}

/// A store with one downloaded model (`with_checksum`: the spec gives its
/// sha256; else only the index knows it).
fn setup(with_checksum: bool) -> (Setup, LockedModel) {
    let server = HttpServer::start();
    let bytes = pseudo_random(200_000, 7);
    server.add_file("/m.bin", bytes.clone());
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path());
    let m = LockedModel {
        source: server.url("/m.bin"),
        path: "checkpoints/m.bin".into(),
        sha256: with_checksum.then(|| sha256_hex(&bytes)),
        blake3: None,
        size: None,
    };
    fetch_models(std::slice::from_ref(&m), &layout, &opts(false), &NoReporter).unwrap();
    assert!(models_intact(&layout, std::slice::from_ref(&m)));
    (
        Setup {
            _dir: dir,
            layout,
            server,
            bytes,
        },
        m,
    )
}

fn damaged_files(layout: &CacheLayout) -> Vec<Vec<u8>> {
    std::fs::read_dir(layout.models_dir().join(".comfyver/damaged"))
        .map(|d| {
            d.flatten()
                .map(|e| std::fs::read(e.path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

/// Refused without --repair (with a hint naming it), repaired with it.
fn assert_refused_then_repaired(s: &Setup, m: &LockedModel, bad: &[u8]) {
    let path = s.layout.models_dir().join(&m.path);
    let err = fetch_models(
        std::slice::from_ref(m),
        &s.layout,
        &opts(false),
        &NoReporter,
    )
    .unwrap_err();
    assert!(matches!(err, ModelsError::ExistingMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("comfyver models fetch --repair")
            && text.contains("comfyver realize --repair"),
        "{text}"
    );
    assert_eq!(std::fs::read(&path).unwrap(), bad, "left untouched");
    let gets = s.server.full_gets("/m.bin");
    let out = fetch_models(std::slice::from_ref(m), &s.layout, &opts(true), &NoReporter).unwrap();
    assert!(
        matches!(out.models[0].status, FetchStatus::Downloaded { .. }),
        "{:?}",
        out.models[0]
    );
    let aside = out.models[0].moved_aside.clone().expect("moved aside");
    assert_eq!(std::fs::read(aside).unwrap(), bad);
    assert_eq!(damaged_files(&s.layout), vec![bad.to_vec()]);
    assert_eq!(s.server.full_gets("/m.bin"), gets + 1);
    assert_eq!(std::fs::read(&path).unwrap(), s.bytes);
    assert!(models_intact(&s.layout, std::slice::from_ref(m)));
    let v = verify_models(std::slice::from_ref(m), &s.layout, true).unwrap();
    assert_eq!(v[0].status, VerifyStatus::Ok { hashed: true });
}

#[test]
fn a_model_replaced_by_eight_bytes_is_noticed_and_repaired() {
    for with_checksum in [true, false] {
        let (s, m) = setup(with_checksum);
        let path = s.layout.models_dir().join(&m.path);
        std::fs::write(&path, b"8 bytes!").unwrap();
        assert!(
            !models_intact(&s.layout, std::slice::from_ref(&m)),
            "the warm check sees the size change"
        );
        assert_refused_then_repaired(&s, &m, b"8 bytes!");
    }
}

#[test]
fn a_rewrite_of_the_same_size_is_noticed_by_mtime_and_inode() {
    let (s, m) = setup(true);
    let path = s.layout.models_dir().join(&m.path);
    let before = std::fs::metadata(&path).unwrap().modified().unwrap();
    // Replaced by rename with the same size and the same mtime: the inode tells.
    let bad = pseudo_random(200_000, 8);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, &bad).unwrap();
    File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(before)
        .unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    assert!(!models_intact(&s.layout, std::slice::from_ref(&m)));
    assert_refused_then_repaired(&s, &m, &bad);
    // Rewritten in place (same inode, same size, new mtime).
    let bad2 = pseudo_random(200_000, 9);
    std::fs::write(&path, &bad2).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    assert!(!models_intact(&s.layout, std::slice::from_ref(&m)));
    let err = fetch_models(
        std::slice::from_ref(&m),
        &s.layout,
        &opts(false),
        &NoReporter,
    )
    .unwrap_err();
    assert!(
        matches!(err, ModelsError::ExistingMismatch { what: "sha256", .. }),
        "{err}"
    );
}

#[test]
fn repair_rehashes_what_the_stat_cannot_see() {
    let (s, m) = setup(true);
    let path = s.layout.models_dir().join(&m.path);
    let meta = std::fs::metadata(&path).unwrap();
    // Bit rot: same inode, size and mtime, other bytes.
    let mut bad = s.bytes.clone();
    bad[1000] ^= 0xff;
    std::fs::write(&path, &bad).unwrap();
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
    assert!(
        models_intact(&s.layout, std::slice::from_ref(&m)),
        "stat-only cannot see it"
    );
    let out = fetch_models(
        std::slice::from_ref(&m),
        &s.layout,
        &opts(true),
        &NoReporter,
    )
    .unwrap();
    assert!(out.models[0].moved_aside.is_some());
    assert_eq!(std::fs::read(&path).unwrap(), s.bytes);
    // A healthy model is left alone by a repair.
    let out = fetch_models(
        std::slice::from_ref(&m),
        &s.layout,
        &opts(true),
        &NoReporter,
    )
    .unwrap();
    assert_eq!(out.models[0].status, FetchStatus::Present);
    assert!(out.models[0].moved_aside.is_none());
}
