//! The S3 client against `moto_server` on loopback: without authentication
//! behind a fault proxy (uploads, content types, `If-None-Match`, retries,
//! presigned URLs compared with botocore's), and with authentication on
//! (moto checks our SigV4 signatures and access keys).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use comfyver_cloud::{Bucket, CloudError, Payload, RetryPolicy, S3Bucket, S3Config};
use comfyver_testkit::cloud::{FaultProxy, MotoS3, ProxyFault, get};

const BUCKET: &str = "comfyver-out";

fn config(endpoint: &str, ak: &str, sk: &str) -> S3Config {
    S3Config {
        endpoint: endpoint.into(),
        bucket: BUCKET.into(),
        path_style: true,
        region: "us-east-1".into(),
        access_key: ak.into(),
        secret_key: sk.into(),
        prefix: "outs".into(),
        month_folder: false,
        signed_url_ttl: Duration::from_secs(3600),
        retry: RetryPolicy {
            retries: 4,
            base_sleep: Duration::from_millis(20),
        },
        part_size: comfyver_cloud::DEFAULT_PART,
    }
}

#[test]
fn uploads_retries_no_overwrite_and_presigned_urls() {
    let moto = MotoS3::start(BUCKET);
    let proxy = FaultProxy::start(moto.port());
    let bucket = Bucket::S3(S3Bucket::new(config(
        &proxy.base(),
        "AKIDTEST",
        "s3cr3t/key+x",
    )));
    bucket.check().unwrap();
    assert_eq!(bucket.url_type(), "s3_url");

    let png = b"\x89PNG\r\n\x1a\nsome pixels".to_vec();
    proxy.push(ProxyFault::Status(503), 1);
    proxy.push(ProxyFault::Drop, 1);
    proxy.push(ProxyFault::Status(500), 1);
    let before = proxy.heads().len();
    let up = bucket
        .upload("job-7", "ComfyUI_00001_.png", Payload::Bytes(&png))
        .unwrap();
    assert_eq!(
        proxy.heads().len(),
        before + 4,
        "three faults, then success"
    );
    assert_eq!(
        up.uri,
        format!("s3://{BUCKET}/outs/job-7/ComfyUI_00001_.png")
    );
    let (bytes, ct) = moto
        .object(BUCKET, "outs/job-7/ComfyUI_00001_.png")
        .unwrap();
    assert_eq!((bytes, ct.as_str()), (png.clone(), "image/png"));
    let put = proxy
        .heads()
        .into_iter()
        .rev()
        .find(|h| h.starts_with("PUT "))
        .unwrap();
    assert!(
        put.to_ascii_lowercase().contains("if-none-match: *"),
        "{put}"
    );
    assert!(!put.contains("s3cr3t"), "{put}");

    // The presigned URL downloads the bytes and is exactly what botocore makes.
    assert_eq!(get(&up.url).unwrap(), (200, png.clone()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/botocore_presign.py");
    let out = Command::new("python3")
        .arg(script)
        .args([
            &up.url,
            "AKIDTEST",
            "s3cr3t/key+x",
            "us-east-1",
            BUCKET,
            "outs/job-7/ComfyUI_00001_.png",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), up.url);

    // A file streamed from disk, and a name that needs escaping.
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("c.webm");
    std::fs::write(&clip, vec![5u8; 250_000]).unwrap();
    bucket
        .upload("job-7", "clip (2).webm", Payload::File(&clip))
        .unwrap();
    let (bytes, ct) = moto.object(BUCKET, "outs/job-7/clip (2).webm").unwrap();
    assert_eq!((bytes.len(), ct.as_str()), (250_000, "video/webm"));

    // Never overwrite: moto honours If-None-Match.
    let err = bucket
        .upload("job-7", "ComfyUI_00001_.png", Payload::Bytes(b"other"))
        .unwrap_err();
    assert!(matches!(err, CloudError::Exists { .. }), "{err}");
    assert_eq!(
        moto.object(BUCKET, "outs/job-7/ComfyUI_00001_.png")
            .unwrap()
            .0,
        png
    );

    // A 4xx is not retried.
    let before = proxy.heads().len();
    proxy.push(ProxyFault::Status(403), 1);
    let err = bucket
        .upload("job-7", "x.png", Payload::Bytes(b"x"))
        .unwrap_err();
    assert_eq!(proxy.heads().len(), before + 1);
    assert!(
        err.to_string().contains("HTTP 403 after 1 attempt(s)"),
        "{err}"
    );

    // A missing bucket fails the pre-check.
    let mut cfg = config(&proxy.base(), "AKIDTEST", "s3cr3t/key+x");
    cfg.bucket = "no-such-bucket".into();
    let err = S3Bucket::new(cfg).check().unwrap_err();
    assert!(err.to_string().contains("no such bucket"), "{err}");
}

#[test]
fn moto_with_authentication_accepts_our_signatures_and_refuses_bad_credentials() {
    let (moto, ak, sk) = MotoS3::start_with_auth(BUCKET);
    let good = S3Bucket::new(config(&moto.base(), &ak, &sk));
    good.check().unwrap();
    good.upload("outs/j/a.png", Payload::Bytes(b"png!"), "image/png")
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("big.bin");
    std::fs::write(&f, vec![1u8; 1 << 20]).unwrap();
    good.upload(
        "outs/j/b.bin",
        Payload::File(&f),
        "application/octet-stream",
    )
    .unwrap();
    // Multipart requests (with queries in the signature) pass moto's checks too.
    let mut cfg = config(&moto.base(), &ak, &sk);
    cfg.part_size = 5 << 20;
    let data: Vec<u8> = (0..(11u32 << 20)).map(|i| (i % 249) as u8).collect();
    S3Bucket::new(cfg)
        .upload("outs/j/c.mp4", Payload::Bytes(&data), "video/mp4")
        .unwrap();

    for (ak2, sk2) in [
        (ak.as_str(), "wrong-secret-value"),
        ("AKIANOTAREALKEY00000", sk.as_str()),
    ] {
        let bad = S3Bucket::new(config(&moto.base(), ak2, sk2));
        let err = bad.check().unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(
                err,
                CloudError::Status {
                    status: 403,
                    attempts: 1,
                    ..
                }
            ),
            "{text}"
        );
        assert!(text.contains("BUCKET_SECRET_ACCESS_KEY"), "{text}");
        assert!(!text.contains(sk2) && !text.contains(ak2), "{text}");
        let err = bad
            .upload("outs/j/c.png", Payload::Bytes(b"x"), "image/png")
            .unwrap_err();
        assert!(!err.to_string().contains(sk2), "{err}");
    }
}

#[test]
fn large_uploads_go_up_in_parts_and_a_failed_part_is_retried_alone() {
    let moto = MotoS3::start(BUCKET);
    let proxy = FaultProxy::start(moto.port());
    let mut cfg = config(&proxy.base(), "AKIDTEST", "s3cr3t");
    cfg.part_size = 5 << 20;
    let bucket = S3Bucket::new(cfg);
    let data: Vec<u8> = (0..((12u32 << 20) + 77)).map(|i| (i % 241) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("v.mp4");
    std::fs::write(&file, &data).unwrap();

    proxy.push(ProxyFault::Pass, 2); // create, part 1
    proxy.push(ProxyFault::Drop, 1); // part 2
    proxy.push(ProxyFault::Status(503), 1); // part 2 again
    let up = bucket
        .upload("outs/j/v.mp4", Payload::File(&file), "video/mp4")
        .unwrap();
    let (bytes, ct) = moto.object(BUCKET, "outs/j/v.mp4").unwrap();
    assert_eq!(ct, "video/mp4");
    assert!(bytes == data, "the object has the file's bytes");
    let lines: Vec<String> = proxy
        .heads()
        .iter()
        .map(|h| h.lines().next().unwrap().to_string())
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .map(|l| {
            if l.contains("?uploads=") {
                "create"
            } else if l.contains("partNumber=1&") {
                "part1"
            } else if l.contains("partNumber=2&") {
                "part2"
            } else if l.contains("partNumber=3&") {
                "part3"
            } else if l.starts_with("POST") && l.contains("uploadId=") {
                "complete"
            } else {
                "other"
            }
        })
        .collect();
    assert_eq!(
        kinds,
        [
            "create", "part1", "part2", "part2", "part2", "part3", "complete"
        ],
        "{lines:?}"
    );
    let complete = proxy.heads().into_iter().last().unwrap();
    assert!(
        complete.to_ascii_lowercase().contains("if-none-match: *"),
        "{complete}"
    );
    assert_eq!(get(&up.url).unwrap().1.len(), data.len());

    // A part refused for good: the upload is aborted, and no object appears.
    proxy.push(ProxyFault::Pass, 1);
    proxy.push(ProxyFault::Status(403), 1);
    let err = bucket
        .upload("outs/j/w.mp4", Payload::Bytes(&data), "video/mp4")
        .unwrap_err();
    assert!(
        err.to_string().contains("could not upload a part of"),
        "{err}"
    );
    let last = proxy.heads().into_iter().last().unwrap();
    assert!(
        last.starts_with("DELETE ") && last.contains("uploadId="),
        "{last}"
    );
    assert!(moto.object(BUCKET, "outs/j/w.mp4").is_none());
}
