//! `comfyver run --output gcs|s3` end to end: a real version realized and run
//! on the stand-in ComfyUI, outputs uploaded to gcp-storage-emulator and
//! moto_server on loopback; bad credentials fail before anything is realized
//! or started; no secret shows up anywhere but inside the signed URL.

use std::path::Path;
use std::process::Output;

use comfyver_testkit::cloud::{
    FaultProxy, GcsEmulator, MotoS3, ProxyFault, get, service_account_key,
};
use comfyver_testkit::world::{World, smoke_workflow};
use serde_json::Value;

fn comfyver(w: &World, args: &[&str], env: &[(&str, &str)]) -> Output {
    w.comfyver_env(Path::new(env!("CARGO_BIN_EXE_comfyver")), args, None, env)
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

/// The stand-in's smoke image: 64×32, every pixel #336699.
fn assert_smoke_png(bytes: &[u8]) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (64, 32));
    let channels = info.color_type.samples();
    for px in buf[..info.buffer_size()].chunks(channels) {
        assert_eq!(&px[..3], &[0x33, 0x66, 0x99]);
    }
}

#[test]
fn run_uploads_outputs_to_gcs_and_s3_and_bad_credentials_fail_first() {
    let w = World::new(&["hello_pack"]);
    let wf = w.workflow("smoke", &smoke_workflow(false));
    let wf = wf.to_str().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let (key, pem) = service_account_key(
        keys.path(),
        "e2e@comfyver-test.iam.gserviceaccount.com",
        "http://127.0.0.1:9/token",
    );
    let key = key.to_str().unwrap();
    let gcs = GcsEmulator::start("e2e-out");
    let host = format!("127.0.0.1:{}", gcs.port());
    let gcs_env = |cred: &str| {
        vec![
            ("GCS_BUCKET", "e2e-out".to_string()),
            ("GCS_PREFIX", "renders".to_string()),
            ("STORAGE_EMULATOR_HOST", host.clone()),
            ("GOOGLE_APPLICATION_CREDENTIALS", cred.to_string()),
            ("GCS_RETRY_BASE_SLEEP", "0.05".to_string()),
        ]
    };
    let as_refs = |v: &[(&'static str, String)]| -> Vec<(&'static str, String)> { v.to_vec() };

    // 1. Bad credentials: a clear error before anything is realized or started.
    let not_json = keys.path().join("broken.json");
    std::fs::write(&not_json, &pem).unwrap();
    for (cred, needle) in [
        (
            keys.path().join("nope.json"),
            "could not read the service-account key file",
        ),
        (not_json.clone(), "is not JSON"),
    ] {
        let env = as_refs(&gcs_env(cred.to_str().unwrap()));
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let out = comfyver(&w, &["run", "v1", "--workflow", wf], &env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        let text = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
        assert!(
            text.contains(needle) && text.contains(cred.to_str().unwrap()),
            "{text}"
        );
        for line in pem.lines().skip(1).take(10) {
            assert!(!text.contains(line), "key material shown:\n{text}");
        }
        assert!(
            !w.home("v1").exists(),
            "nothing may be realized before the sink is checked"
        );
    }
    // A missing bucket fails the permission pre-check, also before realize.
    let mut env = gcs_env(key);
    env[0].1 = "no-such-bucket".into();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = comfyver(
        &w,
        &["run", "v1", "--workflow", wf, "--output", "gcs"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("gs://no-such-bucket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!w.home("v1").exists());

    // 2. GCS (the default sink when GCS_BUCKET is set).
    let env = gcs_env(key);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = comfyver(&w, &["run", "v1", "--workflow", wf], &env);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "gcs run failed:\n{stderr}");
    let result = stdout_json(&out);
    let images = result["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{result}");
    let img = &images[0];
    assert_eq!(img["type"], "gcs_url", "{result}");
    let uri = img["uri"].as_str().unwrap();
    let prompt_id = result["prompt_id"].as_str().unwrap();
    let name = uri.strip_prefix("gs://e2e-out/").unwrap();
    assert!(name.starts_with(&format!("renders/{prompt_id}/")), "{uri}");
    assert_eq!(name.rsplit('/').next(), img["filename"].as_str(), "{uri}");
    let meta = gcs.metadata("e2e-out", name).expect("the object exists");
    assert_eq!(meta["contentType"], "image/png");
    let stored = gcs.object("e2e-out", name).unwrap();
    assert_smoke_png(&stored);
    let url = img["url"].as_str().unwrap();
    assert_eq!(img["data"], img["url"]);
    assert_eq!(get(url).unwrap(), (200, stored));
    let signature = url.split("X-Goog-Signature=").nth(1).unwrap();
    assert!(signature.len() >= 256, "{url}");
    assert!(
        !stderr.contains(signature),
        "the signature is logged:\n{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.matches(signature).count(), 2, "only in url and data");
    for line in pem.lines().skip(1).take(10) {
        assert!(!stdout.contains(line) && !stderr.contains(line));
    }

    // 3. S3 (moto) on the now warm version.
    let moto = MotoS3::start("e2e-s3");
    let secret = "e2e-Secret/Value+123";
    let endpoint = moto.base();
    let env = [
        ("BUCKET_ENDPOINT_URL", endpoint.as_str()),
        ("BUCKET_NAME", "e2e-s3"),
        ("BUCKET_ACCESS_KEY_ID", "AKIAE2ETESTKEY000000"),
        ("BUCKET_SECRET_ACCESS_KEY", secret),
        ("BUCKET_PREFIX", "s3runs"),
    ];
    let out = comfyver(&w, &["run", "v1", "--workflow", wf, "--output", "s3"], &env);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "s3 run failed:\n{stderr}");
    let result = stdout_json(&out);
    let img = &result["images"][0];
    assert_eq!(img["type"], "s3_url", "{result}");
    let object_key = img["uri"]
        .as_str()
        .unwrap()
        .strip_prefix("s3://e2e-s3/")
        .unwrap();
    assert!(object_key.starts_with(&format!(
        "s3runs/{}/",
        result["prompt_id"].as_str().unwrap()
    )));
    let (bytes, ct) = moto.object("e2e-s3", object_key).unwrap();
    assert_eq!(ct, "image/png");
    assert_smoke_png(&bytes);
    assert_eq!(get(img["url"].as_str().unwrap()).unwrap(), (200, bytes));
    let all = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    assert!(!all.contains(secret), "the secret key is shown:\n{all}");

    // 4. S3 without credentials: an error, never a silent local fallback.
    let out = comfyver(
        &w,
        &["run", "v1", "--workflow", wf, "--output", "s3"],
        &env[..2],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("BUCKET_ACCESS_KEY_ID is not set"),
        "{stderr}"
    );

    // 5. An upload refused after the job ran: a `sink` job error, exit 1, at once (no retry on 403).
    let proxy = FaultProxy::start(gcs.port());
    proxy.push(ProxyFault::Pass, 1); // the pre-check
    proxy.push(ProxyFault::Status(403), 1);
    let mut env = gcs_env(key);
    env[2].1 = format!("127.0.0.1:{}", proxy.port());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let out = comfyver(
        &w,
        &["run", "v1", "--workflow", wf, "--output", "gcs"],
        &env,
    );
    assert_eq!(out.status.code(), Some(1));
    let failure = stdout_json(&out);
    assert_eq!(failure["kind"], "sink", "{failure}");
    let details = failure["details"][0].as_str().unwrap();
    assert!(details.contains("HTTP 403 after 1 attempt(s)"), "{failure}");
    assert_eq!(proxy.pending(), 0);
    assert_eq!(proxy.heads().len(), 2, "one pre-check, one refused upload");
}

/// A `serve` job returns `gcs_url` outputs: the worker prepares the sink once,
/// before its first job, and names objects by the job id.
#[test]
fn a_serve_job_uploads_its_outputs_to_gcs() {
    use std::time::{Duration, Instant};
    let w = World::new(&[]);
    let keys = tempfile::tempdir().unwrap();
    let (key, _pem) = service_account_key(
        keys.path(),
        "serve@comfyver-test.iam.gserviceaccount.com",
        "http://127.0.0.1:9/token",
    );
    let gcs = GcsEmulator::start("serve-out");
    let port = comfyver_testkit::git::free_port();
    let mut cmd = comfyver_testkit::cli::comfyver_command(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &w.root.join("cache"),
        &w.root.join("versions"),
    );
    cmd.args(["serve", "v1", "--listen", &format!("127.0.0.1:{port}")])
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
        .env("GCS_BUCKET", "serve-out")
        .env("GCS_PREFIX", "jobs")
        .env("STORAGE_EMULATOR_HOST", format!("127.0.0.1:{}", gcs.port()))
        .env("GOOGLE_APPLICATION_CREDENTIALS", &key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut serve = cmd.spawn().unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(120)))
        .http_status_as_error(false)
        .build()
        .into();
    let base = format!("http://127.0.0.1:{port}");
    let until = Instant::now() + Duration::from_secs(180);
    while agent.get(&format!("{base}/health")).call().is_err() {
        assert!(serve.try_wait().unwrap().is_none(), "serve exited early");
        assert!(Instant::now() < until, "serve never listened");
        std::thread::sleep(Duration::from_millis(100));
    }
    let body = serde_json::json!({"input": {"workflow": smoke_workflow(false)}}).to_string();
    let mut resp = agent
        .post(&format!("{base}/runsync"))
        .header("Content-Type", "application/json")
        .send(body.as_str())
        .unwrap();
    let r: Value = serde_json::from_str(&resp.body_mut().read_to_string().unwrap()).unwrap();
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(r["status"], "COMPLETED", "{r}");
    let img = &r["output"]["images"][0];
    assert_eq!(img["type"], "gcs_url", "{r}");
    let job_id = r["id"].as_str().unwrap();
    let name = img["uri"]
        .as_str()
        .unwrap()
        .strip_prefix("gs://serve-out/")
        .unwrap();
    assert!(name.starts_with(&format!("jobs/{job_id}/")), "{name}");
    let stored = gcs.object("serve-out", name).expect("the object exists");
    assert_smoke_png(&stored);
    assert_eq!(get(img["url"].as_str().unwrap()).unwrap(), (200, stored));
}
