//! A download never writes more than the model may have: the spec's `size`,
//! the server's announced length or the documented cap; redirect loops end.
//! Each case ends with a clear error and nothing in the store.

use std::time::Duration;

use comfyver_fs::CacheLayout;
use comfyver_models::{FetchOptions, ModelsError, NoReporter, fetch_models};
use comfyver_spec::lock::LockedModel;
use comfyver_testkit::http::{Fault, HttpServer, pseudo_random};

fn model(source: &str, size: Option<u64>) -> LockedModel {
    LockedModel {
        source: source.into(),
        path: "checkpoints/m.bin".into(),
        sha256: None,
        blake3: None,
        size,
    }
}

fn opts() -> FetchOptions {
    FetchOptions {
        retries: 2,
        retry_delay: Duration::from_millis(10),
        read_timeout: Duration::from_secs(5),
        ..FetchOptions::default()
    }
}

/// Nothing at the final path and no partial left behind.
fn assert_nothing_kept(layout: &CacheLayout) {
    let m = layout.models_dir();
    assert!(!m.join("checkpoints/m.bin").exists());
    let partials: Vec<_> = std::fs::read_dir(m.join(".comfyver/partial"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(partials.is_empty(), "{partials:?}");
}

#[test]
fn a_huge_content_length_on_a_small_model_is_refused_at_once() {
    let server = HttpServer::start();
    server.add_file("/m.bin", pseudo_random(1 << 20, 1));
    server.fault("/m.bin", Fault::WrongContentLength(10 << 30));
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path());
    let m = model(&server.url("/m.bin"), Some(1 << 20));
    let err = fetch_models(&[m], &layout, &opts(), &NoReporter).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ModelsError::TooLarge { .. }), "{text}");
    assert!(
        text.contains("10737418240") && text.contains("1048576"),
        "{text}"
    );
    assert_eq!(server.requests_for("/m.bin").len(), 1, "not retried");
    assert_nothing_kept(&layout);
}

#[test]
fn an_endless_body_stops_at_the_spec_size() {
    let server = HttpServer::start();
    server.add_file("/m.bin", pseudo_random(64 << 10, 2));
    server.fault("/m.bin", Fault::Endless);
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path());
    let m = model(&server.url("/m.bin"), Some(1 << 20));
    let err = fetch_models(&[m], &layout, &opts(), &NoReporter).unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ModelsError::TooLarge { .. }), "{text}");
    assert!(
        text.contains("past 1048576 bytes") && text.contains("`size`"),
        "{text}"
    );
    assert_nothing_kept(&layout);
}

#[test]
fn an_endless_body_without_any_size_stops_at_the_cap() {
    let server = HttpServer::start();
    server.add_file("/m.bin", pseudo_random(64 << 10, 3));
    server.fault("/m.bin", Fault::Endless);
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path());
    let m = model(&server.url("/m.bin"), None);
    let o = FetchOptions {
        max_size: 2 << 20,
        ..opts()
    };
    let err = fetch_models(&[m], &layout, &o, &NoReporter).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("past 2097152 bytes"), "{text}");
    assert!(
        text.contains(comfyver_env::COMFYVER_MAX_MODEL_BYTES),
        "{text}"
    );
    assert_nothing_kept(&layout);
}

#[test]
fn an_announced_length_over_the_cap_is_refused() {
    let server = HttpServer::start();
    server.add_file("/m.bin", pseudo_random(3 << 20, 4));
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path());
    let m = model(&server.url("/m.bin"), None);
    let o = FetchOptions {
        max_size: 1 << 20,
        ..opts()
    };
    let err = fetch_models(&[m], &layout, &o, &NoReporter).unwrap_err();
    assert!(
        err.to_string().contains("more than the cap of 1048576"),
        "{err}"
    );
    assert_nothing_kept(&layout);
}

#[test]
fn a_redirect_loop_ends_with_a_clear_error() {
    let server = HttpServer::start();
    server.fault("/a", Fault::Redirect("/b".into()));
    server.fault("/b", Fault::Redirect(server.url("/a")));
    let dir = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(dir.path());
    let m = model(&server.url("/a"), None);
    let err = fetch_models(&[m], &layout, &opts(), &NoReporter).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ModelsError::Redirects { max: 10, .. }),
        "{text}"
    );
    assert!(text.contains("redirected more than 10 times"), "{text}");
    // Not retried: one chain of 11 requests.
    assert_eq!(server.requests().len(), 11);
    assert_nothing_kept(&layout);
}
