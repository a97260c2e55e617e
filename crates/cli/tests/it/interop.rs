//! Working with the tools around comfyver, run as real processes:
//! `--output s3` to an endpoint with the bucket in its path puts objects
//! where runpod's own `rp_upload` (through botocore) puts them, checked
//! against the SDK on the same `moto_server`; comfy-cli build definitions
//! through `import build` and `export build`; URL rewrites reaching the git
//! that a pack's `install.py` runs.

use std::path::{Path, PathBuf};
use std::process::Command;

use comfyver_testkit::cli::{Sandbox, fails, ok, read_json};
use comfyver_testkit::cloud::{MotoS3, get};
use comfyver_testkit::git::Repo;
use comfyver_testkit::world::{World, smoke_workflow};
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_comfyver"))
}

// ---- S3 endpoints with a path (runpod's rp_upload through botocore) ----

/// Uploads `file` for `job` with the SDK's `rp_upload.upload_image` (the
/// call worker-comfyui makes) and `upload_file_to_bucket`, with the same
/// `BUCKET_*` variables, then prints every key of bucket `outputs`.
const RP_UPLOAD: &str = r#"
import os, sys, boto3
from runpod.serverless.utils import rp_upload
base, job, path, bucket_name = sys.argv[1:5]
rp_upload.upload_image(job, path, bucket_name=bucket_name or None)
rp_upload.upload_file_to_bucket("by-file-" + os.path.basename(path), path, bucket_name=bucket_name or None, prefix=job)
s3 = boto3.client("s3", endpoint_url=base, aws_access_key_id="x", aws_secret_access_key="y", region_name="us-east-1")
for o in s3.list_objects_v2(Bucket="outputs").get("Contents", []):
    print(o["Key"])
"#;

#[test]
fn s3_endpoint_with_a_path_puts_outputs_where_runpods_rp_upload_puts_them() {
    let py = comfyver_testkit::cloud::runpod_sdk_python();
    let w = World::new(&[]);
    let wf = w.workflow("smoke", &smoke_workflow(false));
    let wf = wf.to_str().unwrap();
    let moto = MotoS3::start("outputs");
    let endpoint = format!("{}/outputs/", moto.base());
    let secret = "path-Style/Secret+1";
    let scratch = tempfile::tempdir().unwrap();
    for bucket_name in ["", "renders"] {
        let mut env = vec![
            ("BUCKET_ENDPOINT_URL", endpoint.as_str()),
            ("BUCKET_ACCESS_KEY_ID", "AKIAPATHSTYLE0000000"),
            ("BUCKET_SECRET_ACCESS_KEY", secret),
        ];
        if !bucket_name.is_empty() {
            env.push(("BUCKET_NAME", bucket_name));
        }
        let out = w.comfyver_env(
            Path::new(env!("CARGO_BIN_EXE_comfyver")),
            &["run", "v1", "--workflow", wf, "--output", "s3"],
            None,
            &env,
        );
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "s3 run failed:\n{stderr}");
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        let img = &result["images"][0];
        assert_eq!(img["type"], "s3_url", "{result}");
        let ours = img["uri"]
            .as_str()
            .unwrap()
            .strip_prefix("s3://outputs/")
            .unwrap_or_else(|| panic!("not in bucket `outputs`: {result}"))
            .to_string();
        let (bytes, ct) = moto.object("outputs", &ours).expect("our object exists");
        assert_eq!(ct, "image/png");
        assert_eq!(
            get(img["url"].as_str().unwrap()).unwrap(),
            (200, bytes.clone())
        );
        let all = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
        assert!(!all.contains(secret), "the secret key is shown:\n{all}");

        // The SDK, same variables, same job id and file, same emulator.
        let job = result["prompt_id"].as_str().unwrap();
        let (dir, file) = ours.rsplit_once('/').unwrap();
        let local = scratch.path().join(file);
        std::fs::write(&local, &bytes).unwrap();
        let sdk = Command::new(&py)
            .args([
                "-c",
                RP_UPLOAD,
                &moto.base(),
                job,
                local.to_str().unwrap(),
                bucket_name,
            ])
            .env("BUCKET_ENDPOINT_URL", &endpoint)
            .env("BUCKET_ACCESS_KEY_ID", "AKIAPATHSTYLE0000000")
            .env("BUCKET_SECRET_ACCESS_KEY", secret)
            .current_dir(scratch.path())
            .output()
            .unwrap();
        assert!(
            sdk.status.success(),
            "rp_upload failed:\n{}",
            String::from_utf8_lossy(&sdk.stderr)
        );
        let keys = String::from_utf8_lossy(&sdk.stdout).to_string();
        // upload_image: `<bucket_name or %m-%y>/<job id>/<8 hex>.png`, the same folder as ours.
        let image = keys
            .lines()
            .find(|k| k.contains(job) && *k != ours && !k.contains("by-file-"))
            .unwrap_or_else(|| panic!("no rp_upload object for {job} in:\n{keys}"));
        assert_eq!(image.rsplit_once('/').unwrap().0, dir, "{keys}");
        // upload_file_to_bucket(prefix=job): `<bucket_name or %m-%y>/<job id>/by-file-<file>`.
        assert!(
            keys.lines().any(|k| k == format!("{dir}/by-file-{file}")),
            "{keys}"
        );
        if bucket_name.is_empty() {
            assert!(
                dir.len() == 5 + 1 + job.len() && dir.as_bytes()[2] == b'-',
                "month folder `MM-YY/<job>` expected: {dir}"
            );
        } else {
            assert_eq!(dir, format!("renders/{job}"));
        }
    }
}

// ---- comfy-cli build definitions ----

fn build_fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import/build-definition.json")
}

/// The fields a spec can hold: everything but `environment`, the `local`
/// model and the registry and local packs (and `localPath`, derived).
fn mapped_part(def: &Value) -> Value {
    json!({
        "schema": def["schema"],
        "baseComfyVersion": def["baseComfyVersion"],
        "pipDependencies": def["pipDependencies"],
        "models": [{
            "type": def["models"][0]["type"],
            "filename": def["models"][0]["filename"],
            "sha256": def["models"][0]["sha256"],
            "sizeBytes": def["models"][0]["sizeBytes"],
            "source": def["models"][0]["source"],
        }],
        "customNodes": [def["customNodes"][0]],
    })
}

#[test]
fn build_definition_round_trip_keeps_every_mapped_field_and_names_the_rest() {
    let sb = Sandbox::new(bin());
    let fixture = build_fixture();
    let original = read_json(&fixture);
    let (_, stderr) = ok(&sb.run(&[
        "--offline",
        "import",
        "build",
        fixture.to_str().unwrap(),
        "--id",
        "b1",
    ]));
    for unmapped in [
        "`environment`",
        "loras/style/my_private_lora.safetensors",
        "`comfyui-kjnodes` is a registry pack (comfyui-kjnodes 1.0.5)",
        "`my-local-node` is local",
    ] {
        assert!(stderr.contains(unmapped), "{unmapped} not named:\n{stderr}");
    }
    let spec = read_json(&sb.spec_path("b1"));
    assert_eq!(spec["comfy"]["ref"], "v0.3.10", "{spec}");
    assert_eq!(
        spec["python"]["requirements"],
        json!(["numpy==1.26.4", "requests==2.32.3"])
    );
    assert_eq!(spec["models"][0]["target_subdir"], "checkpoints");
    assert_eq!(spec["models"][0]["size"], 6_938_078_334_u64);
    assert_eq!(
        spec["custom_nodes"][0]["commit"],
        "1ae7cae2df8cca06027edfa3a24512671239d6c4"
    );
    assert_eq!(spec["custom_nodes"].as_array().unwrap().len(), 1);

    // Out as JSON on stdout: every mapped field as it came in.
    let (stdout, stderr) = ok(&sb.run(&["export", "build", "b1"]));
    let exported: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(exported, mapped_part(&original), "{stdout}");
    assert!(!stderr.contains("not exported"), "nothing lost: {stderr}");

    // Out as YAML, in again, out again: the same definition.
    let yaml = sb.root().join("b1.yaml");
    ok(&sb.run(&["export", "build", "b1", "-o", yaml.to_str().unwrap()]));
    let text = std::fs::read_to_string(&yaml).unwrap();
    assert!(text.contains("baseComfyVersion: v0.3.10"), "{text}");
    ok(&sb.run(&[
        "--offline",
        "import",
        "build",
        yaml.to_str().unwrap(),
        "--id",
        "b2",
    ]));
    let (again, _) = ok(&sb.run(&["export", "build", "b2"]));
    assert_eq!(serde_json::from_str::<Value>(&again).unwrap(), exported);
    let json_out = sb.root().join("b1-out.json");
    ok(&sb.run(&["export", "build", "b1", "-o", json_out.to_str().unwrap()]));
    assert_eq!(read_json(&json_out), exported);

    // What a definition cannot hold is named on export.
    let mut spec = read_json(&sb.spec_path("b1"));
    spec["python"]["constraints"] = json!(["torch<3"]);
    spec["env"] = json!({"HF_HUB_OFFLINE": "1"});
    sb.write_spec("b1", &spec);
    let (_, stderr) = ok(&sb.run(&["export", "build", "b1"]));
    assert!(
        stderr.contains("python.constraints (1)") && stderr.contains("env (1 variables)"),
        "{stderr}"
    );
}

#[test]
fn a_bad_build_definition_names_the_file_the_field_and_what_was_expected() {
    let sb = Sandbox::new(bin());
    let bad = sb.root().join("bad.yaml");
    std::fs::write(
        &bad,
        "schema: distribution-definition/0\nmodels:\n  - type: checkpoints\n    filename: a.safetensors\n    sha256: nothex\n    source: local\ncustomNodes: []\n",
    )
    .unwrap();
    let (_, stderr) = fails(&sb.run(&[
        "--offline",
        "import",
        "build",
        bad.to_str().unwrap(),
        "--id",
        "x",
    ]));
    assert!(
        stderr.contains("bad.yaml: models[0].sha256: expected 64 hex digits"),
        "{stderr}"
    );
    assert!(!sb.spec_path("x").exists());
    let (_, stderr) = fails(&sb.run(&["export", "build", "nope"]));
    assert!(stderr.contains("no version `nope`"), "{stderr}");
}

// ---- URL rewrites reach the git of install scripts ----

/// Clones a public-looking URL, as packs that fetch a dependency do.
const CLONE_SCRIPT: &str = r#"
import os, subprocess, sys
env = dict(os.environ, GIT_TERMINAL_PROMPT="0")
r = subprocess.run(["git", "clone", "-q", "https://public-host.example/deps/dep.git", "dep-clone"],
                   env=env, capture_output=True, text=True)
print(r.stdout + r.stderr)
sys.exit(r.returncode)
"#;

#[test]
fn url_rewrites_reach_the_git_of_install_scripts() {
    let w = World::new(&[]);
    let remotes = w.root.join("remotes");
    let mut dep = Repo::new(&remotes, "dep");
    dep.write(&[("DATA.txt", "from the mirror\n")]);
    dep.commit("dep");
    dep.push();
    let mut pack = Repo::new(&remotes, "clone_pack");
    pack.write(&[
        ("__init__.py", "NODE_CLASS_MAPPINGS = {}\n"),
        ("install.py", CLONE_SCRIPT),
    ]);
    pack.commit("clone pack");
    pack.push();
    let mut spec = w.spec("v1");
    spec["custom_nodes"] = json!([{"repo": pack.file_url()}]);
    w.write_spec("v1", &spec);

    // An inherited git config entry keeps its place before the rules.
    let rule = format!(
        "https://public-host.example/deps/=file://{}/",
        remotes.display()
    );
    let out = w.comfyver_env(
        bin(),
        &["realize", "v1"],
        None,
        &[
            ("COMFYVER_URL_REWRITES", rule.as_str()),
            ("GIT_CONFIG_COUNT", "1"),
            ("GIT_CONFIG_KEY_0", "advice.detachedHead"),
            ("GIT_CONFIG_VALUE_0", "false"),
        ],
    );
    ok(&out);
    let cloned = w
        .home("v1")
        .join("custom_nodes/clone_pack/dep-clone/DATA.txt");
    assert_eq!(
        std::fs::read_to_string(&cloned).unwrap_or_default(),
        "from the mirror\n",
        "install.py's clone did not go to the mirror"
    );
    // The lock keeps the spec's URL.
    let lock = read_json(&comfyver_testkit::cli::lock_path(
        &w.root.join("cache"),
        "v1",
    ));
    assert_eq!(lock["custom_nodes"][0]["repo"], pack.file_url());
}
