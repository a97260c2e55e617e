//! The GCS client against `gcp-storage-emulator` on loopback, behind a fault
//! proxy; signed URLs checked by Google's own Python signer and by
//! `cryptography`; the OAuth token exchange against a small fake token
//! endpoint (the emulator checks no credentials, so a fake is the only way
//! to see the JWT); a denied `testIamPermissions` from a fake too (the
//! emulator grants everything).

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use comfyver_cloud::{Bucket, CloudError, GcsBucket, GcsConfig, Payload, RetryPolicy};
use comfyver_testkit::cloud::{FaultProxy, GcsEmulator, ProxyFault, get, service_account_key};

const BUCKET: &str = "comfyver-out";
const EMAIL: &str = "sinks@comfyver-test.iam.gserviceaccount.com";

fn config(base: &str, key: Option<&Path>) -> GcsConfig {
    GcsConfig {
        bucket: BUCKET.into(),
        prefix: "runs/2026".into(),
        credentials: key.map(Path::to_path_buf),
        api_base: base.into(),
        anonymous: true,
        public: false,
        signed_url_ttl: Duration::from_secs(900),
        retry: RetryPolicy {
            retries: 4,
            base_sleep: Duration::from_millis(20),
        },
        chunk_size: comfyver_cloud::DEFAULT_CHUNK,
    }
}

fn python(script: &str, args: &[&str]) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script);
    let out = Command::new("python3")
        .arg(path)
        .args(args)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{script} failed (needs google-cloud-storage and cryptography: scripts/install-test-deps.sh):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn png_bytes() -> Vec<u8> {
    let mut b = b"\x89PNG\r\n\x1a\n".to_vec();
    b.extend((0..5000u32).map(|i| (i * 7 % 251) as u8));
    b
}

#[test]
fn uploads_land_with_bytes_names_and_types_and_signed_urls_verify() {
    let emu = GcsEmulator::start(BUCKET);
    let proxy = FaultProxy::start(emu.port());
    let dir = tempfile::tempdir().unwrap();
    let (key, pem) = service_account_key(dir.path(), EMAIL, "http://127.0.0.1:9/token");
    let bucket = Bucket::Gcs(GcsBucket::new(config(&proxy.base(), Some(&key))).unwrap());
    bucket.check().unwrap();

    let png = png_bytes();
    let t0 = std::time::Instant::now();
    let up = bucket
        .upload("job-1", "ComfyUI_00001_.png", Payload::Bytes(&png))
        .unwrap();
    eprintln!("T upload1 {:?}", t0.elapsed());
    let name = "runs/2026/job-1/ComfyUI_00001_.png";
    assert_eq!(up.uri, format!("gs://{BUCKET}/{name}"));
    assert_eq!(bucket.url_type(), "gcs_url");
    let meta = emu.metadata(BUCKET, name).expect("object exists");
    assert_eq!(meta["contentType"], "image/png");
    assert_eq!(meta["size"], png.len().to_string());
    assert_eq!(emu.object(BUCKET, name).unwrap(), png);

    // A file streamed from disk, with a name that needs escaping.
    let clip = dir.path().join("clip.mp4");
    std::fs::write(&clip, vec![3u8; 300_000]).unwrap();
    let up2 = bucket
        .upload("job-1", "my clip (1).mp4", Payload::File(&clip))
        .unwrap();
    let meta = emu
        .metadata(BUCKET, "runs/2026/job-1/my clip (1).mp4")
        .unwrap();
    assert_eq!(meta["contentType"], "video/mp4");
    assert_eq!(meta["size"], "300000");

    // Signed URLs: the emulator serves them, Google's signer agrees, the key verifies them.
    for (u, bytes) in [(&up.url, png.clone()), (&up2.url, vec![3u8; 300_000])] {
        assert!(u.contains("X-Goog-Signature="), "{u}");
        let (status, body) = get(u).unwrap();
        assert_eq!((status, body == bytes), (200, true), "{u}");
        assert_eq!(
            python("verify_gcs_signed_url.py", &[u, key.to_str().unwrap()]).trim(),
            "ok"
        );
    }

    // Never overwrite: ifGenerationMatch=0 is on every upload, and emulator mode sends no credentials.
    let heads = proxy.heads();
    let uploads: Vec<_> = heads
        .iter()
        .filter(|h| h.starts_with("POST /upload/"))
        .collect();
    assert_eq!(uploads.len(), 2, "{heads:?}");
    assert!(uploads.iter().all(|h| h.contains("ifGenerationMatch=0")));
    assert!(
        heads
            .iter()
            .all(|h| !h.to_ascii_lowercase().contains("authorization"))
    );
    let key_line = pem.lines().nth(3).unwrap();
    assert!(!format!("{bucket:?}").contains(key_line));

    // The emulator does not enforce ifGenerationMatch; a real 412 is reported as "exists".
    proxy.push(ProxyFault::Status(412), 1);
    let err = bucket
        .upload("job-1", "ComfyUI_00001_.png", Payload::Bytes(&png))
        .unwrap_err();
    assert!(matches!(err, CloudError::Exists { .. }), "{err}");
    assert!(err.to_string().contains("never overwrites"), "{err}");
}

#[test]
fn public_mode_returns_the_plain_object_url() {
    let emu = GcsEmulator::start(BUCKET);
    let mut cfg = config(&emu.base(), None);
    cfg.public = true;
    let bucket = GcsBucket::new(cfg).unwrap();
    let up = bucket
        .upload(
            "runs/2026/j2/out.webp",
            Payload::Bytes(b"RIFFwebp"),
            "image/webp",
        )
        .unwrap();
    assert_eq!(
        up.url,
        format!("{}/{BUCKET}/runs/2026/j2/out.webp", emu.base())
    );
    assert_eq!(get(&up.url).unwrap(), (200, b"RIFFwebp".to_vec()));
}

#[test]
fn injected_503s_and_dropped_connections_are_retried_but_4xx_fail_at_once() {
    let emu = GcsEmulator::start(BUCKET);
    let proxy = FaultProxy::start(emu.port());
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = service_account_key(dir.path(), EMAIL, "http://127.0.0.1:9/token");
    let bucket = GcsBucket::new(config(&proxy.base(), Some(&key))).unwrap();
    let data = vec![9u8; 100_000];

    proxy.push(ProxyFault::Status(503), 2);
    proxy.push(ProxyFault::Drop, 1);
    proxy.push(ProxyFault::Status(429), 1);
    let up = bucket
        .upload("p/j/a.png", Payload::Bytes(&data), "image/png")
        .unwrap();
    assert_eq!(proxy.pending(), 0);
    assert_eq!(proxy.heads().len(), 5, "4 faults then success");
    assert_eq!(emu.object(BUCKET, "p/j/a.png").unwrap(), data);
    assert!(up.url.starts_with(&proxy.base()));

    // The pre-check is retried too.
    proxy.push(ProxyFault::Drop, 2);
    bucket.check().unwrap();

    // 403: one request, no retry.
    let before = proxy.heads().len();
    proxy.push(ProxyFault::Status(403), 1);
    let err = bucket
        .upload("p/j/b.png", Payload::Bytes(&data), "image/png")
        .unwrap_err();
    assert_eq!(proxy.heads().len(), before + 1);
    match &err {
        CloudError::Status {
            status, attempts, ..
        } => assert_eq!((*status, *attempts), (403, 1)),
        other => panic!("{other}"),
    }
    assert!(emu.object(BUCKET, "p/j/b.png").is_none());

    // Persistent 503: gives up after 1 + retries attempts, with a clear error.
    let before = proxy.heads().len();
    proxy.push(ProxyFault::Status(503), 10);
    let err = bucket
        .upload("p/j/c.png", Payload::Bytes(&data), "image/png")
        .unwrap_err();
    assert_eq!(proxy.heads().len(), before + 5);
    assert!(
        err.to_string().contains("HTTP 503 after 5 attempt(s)"),
        "{err}"
    );
    assert!(
        err.to_string().contains("gs://comfyver-out/p/j/c.png"),
        "{err}"
    );

    // Nothing listening: a transport error after the retries.
    let mut cfg = config(
        &format!("http://127.0.0.1:{}", comfyver_testkit::comfy::free_port()),
        Some(&key),
    );
    cfg.retry.retries = 2;
    let err = GcsBucket::new(cfg).unwrap().check().unwrap_err();
    assert!(
        matches!(err, CloudError::Transport { attempts: 3, .. }),
        "{err}"
    );
}

#[test]
fn bad_key_files_fail_before_any_request_without_showing_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let (good, pem) = service_account_key(dir.path(), EMAIL, "http://127.0.0.1:9/token");
    let good_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&good).unwrap()).unwrap();
    let write = |name: &str, text: String| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let mut user = good_json.clone();
    user["type"] = "authorized_user".into();
    let mut no_key = good_json.clone();
    no_key.as_object_mut().unwrap().remove("private_key");
    let mut garbage = good_json.clone();
    garbage["private_key"] = format!("{}tampered", &pem[..200]).into();
    let cases = [
        (
            dir.path().join("missing.json"),
            "could not read the service-account key file",
        ),
        (write("notjson.json", pem.clone()), "is not JSON"),
        (
            write("user.json", user.to_string()),
            "`authorized_user`, not `service_account`",
        ),
        (write("nokey.json", no_key.to_string()), "no `private_key`"),
        (
            write("garbage.json", garbage.to_string()),
            "`private_key` is not",
        ),
    ];
    for (path, needle) in cases {
        // Nothing listens at this address: any request would show as a transport error.
        let err = GcsBucket::new(config("http://127.0.0.1:9", Some(&path))).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(needle), "{path:?}: {text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        for line in pem.lines().skip(1).take(5) {
            assert!(!text.contains(line), "key material in: {text}");
        }
    }
    // No key at all is an error too unless the URLs are public and the emulator is used.
    let err = GcsBucket::new(config("http://127.0.0.1:9", None)).unwrap_err();
    assert!(
        err.to_string().contains("GOOGLE_APPLICATION_CREDENTIALS"),
        "{err}"
    );
}

/// A fake OAuth token endpoint and a fake storage API that denies the
/// permission; records the JWT assertions it received.
fn fake_google(permissions: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
    let base = format!("http://{}", server.server_addr().to_ip().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    std::thread::spawn(move || {
        for mut req in server.incoming_requests() {
            let mut body = String::new();
            req.as_reader().read_to_string(&mut body).unwrap();
            let auth = req
                .headers()
                .iter()
                .find(|h| h.field.equiv("authorization"))
                .map(|h| h.value.to_string());
            let (status, reply) = if req.url() == "/token" {
                let assertion = body
                    .split('&')
                    .find_map(|kv| kv.strip_prefix("assertion="))
                    .unwrap_or_default()
                    .to_string();
                assert!(
                    body.contains(
                        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer"
                    ),
                    "{body}"
                );
                s2.lock().unwrap().push(assertion);
                (200, r#"{"access_token": "ya29.fake-token", "expires_in": 3599, "token_type": "Bearer"}"#.to_string())
            } else if auth.as_deref() != Some("Bearer ya29.fake-token") {
                (
                    401,
                    r#"{"error": {"code": 401, "message": "no token"}}"#.to_string(),
                )
            } else {
                (200, permissions.to_string())
            };
            let _ = req.respond(tiny_http::Response::from_string(reply).with_status_code(status));
        }
    });
    (base, seen)
}

#[test]
fn service_account_tokens_are_signed_jwts_fetched_once_and_a_denied_bucket_fails_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let (base, seen) = fake_google(r#"{"kind": "storage#testIamPermissionsResponse"}"#);
    let (key, _) = service_account_key(dir.path(), EMAIL, &format!("{base}/token"));
    let mut cfg = config(&base, Some(&key));
    cfg.anonymous = false;
    let bucket = GcsBucket::new(cfg).unwrap();
    let err = bucket.check().unwrap_err();
    assert!(matches!(err, CloudError::Denied { .. }), "{err}");
    assert!(err.to_string().contains("storage.objects.create"), "{err}");
    assert!(!err.to_string().contains("ya29"), "{err}");
    let _ = bucket.check();
    assert!(
        !format!("{bucket:?}").contains("ya29"),
        "the token shows in Debug"
    );
    let jwts = seen.lock().unwrap().clone();
    assert_eq!(jwts.len(), 1, "the token is cached");
    let claims: serde_json::Value =
        serde_json::from_str(&python("verify_jwt.py", &[&jwts[0], key.to_str().unwrap()])).unwrap();
    assert_eq!(claims["iss"], EMAIL);
    assert_eq!(claims["aud"], format!("{base}/token"));
    assert_eq!(
        claims["scope"],
        "https://www.googleapis.com/auth/devstorage.read_write"
    );
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        3600
    );

    // With the permission granted, the check passes with the same token.
    let (base, _) = fake_google(r#"{"permissions": ["storage.objects.create"]}"#);
    let (key, _) = service_account_key(dir.path(), EMAIL, &format!("{base}/token"));
    let mut cfg = config(&base, Some(&key));
    cfg.anonymous = false;
    GcsBucket::new(cfg).unwrap().check().unwrap();
}

#[test]
fn large_uploads_are_resumable_and_resume_from_what_was_persisted() {
    let emu = GcsEmulator::start(BUCKET);
    let proxy = FaultProxy::start(emu.port());
    let mut cfg = config(&proxy.base(), None);
    cfg.public = true;
    cfg.chunk_size = 256 * 1024;
    let bucket = GcsBucket::new(cfg).unwrap();
    let data: Vec<u8> = (0..(4 * 256 * 1024 + 1000u32))
        .map(|i| (i % 253) as u8)
        .collect();
    let len = data.len();

    // session, chunk 1 pass; chunk 2 dropped; a status query 503; the next query
    // answers 308 with what GCS has; chunk 2 again; chunk 3 gets a 500; ...
    proxy.push(ProxyFault::Pass, 2);
    proxy.push(ProxyFault::Drop, 1);
    proxy.push(ProxyFault::Status(503), 1);
    proxy.push(ProxyFault::Pass, 2);
    proxy.push(ProxyFault::Status(500), 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.mp4");
    std::fs::write(&file, &data).unwrap();
    bucket
        .upload("p/j/big.mp4", Payload::File(&file), "video/mp4")
        .unwrap();
    assert_eq!(emu.object(BUCKET, "p/j/big.mp4").unwrap(), data);
    assert_eq!(
        emu.metadata(BUCKET, "p/j/big.mp4").unwrap()["contentType"],
        "video/mp4"
    );

    let heads = proxy.heads();
    let ranges: Vec<String> = heads
        .iter()
        .filter_map(|h| {
            h.lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-range: ")
                    .map(str::to_string)
            })
        })
        .collect();
    assert!(
        heads[0].starts_with("POST /upload/storage/v1/b/comfyver-out/o?uploadType=resumable"),
        "{}",
        heads[0]
    );
    let total = format!("/{len}");
    let chunk = |a: usize, b: usize| format!("bytes {a}-{b}{total}");
    let k = 256 * 1024;
    assert_eq!(
        ranges,
        vec![
            chunk(0, k - 1),
            chunk(k, 2 * k - 1),       // dropped
            format!("bytes *{total}"), // 503
            format!("bytes *{total}"), // 308: 0-(k-1) persisted
            chunk(k, 2 * k - 1),
            chunk(2 * k, 3 * k - 1), // 500
            format!("bytes *{total}"),
            chunk(2 * k, 3 * k - 1),
            chunk(3 * k, 4 * k - 1),
            chunk(4 * k, len - 1),
        ],
        "the first chunk is never sent again"
    );

    // From memory too, and a persistent failure gives up with a clear error.
    bucket
        .upload("p/j/big2.mp4", Payload::Bytes(&data), "video/mp4")
        .unwrap();
    assert_eq!(emu.object(BUCKET, "p/j/big2.mp4").unwrap(), data);
    proxy.push(ProxyFault::Pass, 1);
    proxy.push(ProxyFault::Status(503), 20);
    let err = bucket
        .upload("p/j/big3.mp4", Payload::Bytes(&data), "video/mp4")
        .unwrap_err();
    assert!(err.to_string().contains("HTTP 503"), "{err}");
}
