//! Models a job brings (`input.models`, URLs in loader inputs, `--model`):
//! fetched into the store from a loopback file server before the prompt
//! runs, seen by the running stand-in ComfyUI without a restart, refused
//! and failed with `kind: "model"` when wrong, and kept within a budget.

use std::path::Path;
use std::process::Output;

use comfyver_testkit::http::{HttpServer, pseudo_random, sha256_hex};
use comfyver_testkit::world::World;
use serde_json::{Value, json};

const ALLOW: (&str, &str) = ("COMFYVER_JOB_MODEL_HOSTS", "127.0.0.1");

fn run(w: &World, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut all = vec!["run", "v1"];
    all.extend_from_slice(args);
    w.comfyver_env(Path::new(env!("CARGO_BIN_EXE_comfyver")), &all, None, env)
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn lora_workflow(lora_name: &str) -> Value {
    json!({"1": {"class_type": "FakeLoraInfo", "inputs": {"lora_name": lora_name}}})
}

fn job_file(w: &World, name: &str, input: Value) -> String {
    let p = w.root.join(format!("{name}.json"));
    std::fs::write(&p, serde_json::to_vec(&json!({"input": input})).unwrap()).unwrap();
    p.to_string_lossy().into_owned()
}

fn store(w: &World) -> std::path::PathBuf {
    w.root.join("cache/models")
}

#[test]
fn job_models_are_fetched_once_seen_by_comfyui_and_failures_name_the_entry() {
    let w = World::new(&[]);
    let files = HttpServer::start();
    let lora = pseudo_random(4096, 1);
    let sha = sha256_hex(&lora);
    files.add_file("/l/style.safetensors", lora.clone());
    files.add_file("/l/other.safetensors", pseudo_random(2048, 2));

    // 1. input.models with sha256; the node reads it through the loras folder.
    let input = job_file(
        &w,
        "job1",
        json!({"workflow": lora_workflow("style.safetensors"),
               "models": [{"source": files.url("/l/style.safetensors"), "target_subdir": "loras", "sha256": sha}]}),
    );
    let out = run(&w, &["--input", &input], &[ALLOW]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = json_of(&out).to_string();
    assert!(
        text.contains(&format!("lora style.safetensors sha256 {sha}")),
        "{text}"
    );
    assert!(store(&w).join("loras/style.safetensors").is_file());
    assert_eq!(files.full_gets("/l/style.safetensors"), 1);

    // 2. The same URL again: nothing is downloaded.
    let out = run(&w, &["--input", &input], &[ALLOW]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        files.requests_for("/l/style.safetensors").len(),
        1,
        "no second request"
    );

    // 3. A lora_name given as a URL is fetched and replaced by the stored name.
    let wf = w.workflow("by_url", &lora_workflow(&files.url("/l/other.safetensors")));
    let out = run(&w, &["--workflow", wf.to_str().unwrap()], &[ALLOW]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        json_of(&out)
            .to_string()
            .contains("lora other.safetensors sha256"),
        "replaced"
    );

    // 4. A wrong sha256, a 404 and a refused host fail with kind "model",
    //    naming the entry, and leave nothing at the final path.
    let bad = [
        (
            "wrong_sha",
            json!({"source": files.url("/l/style2.safetensors"), "target_subdir": "loras",
                              "sha256": "0".repeat(64)}),
            vec![ALLOW],
            "sha256",
        ),
        (
            "missing",
            json!({"source": files.url("/l/nope.safetensors"), "target_subdir": "loras"}),
            vec![ALLOW],
            "404",
        ),
        (
            "refused",
            json!({"source": files.url("/l/style3.safetensors").replace("127.0.0.1", "u:secret@127.0.0.1"),
                           "target_subdir": "loras"}),
            vec![],
            "loopback",
        ),
    ];
    files.add_file("/l/style2.safetensors", lora.clone());
    files.add_file("/l/style3.safetensors", lora.clone());
    for (name, entry, env, reason) in bad {
        let file_name = entry["source"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_string();
        let input = job_file(
            &w,
            name,
            json!({"workflow": lora_workflow("style.safetensors"), "models": [entry]}),
        );
        let out = run(&w, &["--input", &input], &env);
        assert!(!out.status.success(), "{name} must fail");
        let j = json_of(&out);
        assert_eq!(j["kind"], "model", "{name}: {j}");
        assert_eq!(j["model_error"]["path"], "input.models[0]", "{name}: {j}");
        assert!(j["error"].as_str().unwrap().contains(reason), "{name}: {j}");
        let all = format!("{j}{}", String::from_utf8_lossy(&out.stderr));
        assert!(
            !all.contains("secret"),
            "{name}: no credential in the output: {all}"
        );
        assert!(
            !store(&w).join("loras").join(&file_name).exists(),
            "{name}: nothing at the final path"
        );
    }
    assert_eq!(
        files.requests_for("/l/style3.safetensors").len(),
        0,
        "a refused host is never asked"
    );
}

#[test]
fn the_budget_evicts_the_least_recently_used_job_model_never_a_spec_model_or_one_in_use() {
    let w = World::new(&[]);
    let files = HttpServer::start();
    for (i, n) in ["a", "b", "c"].iter().enumerate() {
        files.add_file(
            &format!("/m/{n}.safetensors"),
            pseudo_random(600_000, i as u64),
        );
    }
    let wf = w.workflow(
        "list",
        &json!({"1": {"class_type": "FakeModelList", "inputs": {"folder": "loras"}}}),
    );
    let wf = wf.to_str().unwrap();
    let budget = [ALLOW, ("COMFYVER_JOB_MODELS_MAX_GB", "0.0013")];
    for n in ["a", "b"] {
        let m = format!("{},loras", files.url(&format!("/m/{n}.safetensors")));
        let out = run(&w, &["--workflow", wf, "--model", &m], &budget);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let loras = store(&w).join("loras");
    assert!(loras.join("a.safetensors").is_file() && loras.join("b.safetensors").is_file());
    // c makes three: a, the least recently used, goes; the spec's model stays.
    let m = format!("{},loras", files.url("/m/c.safetensors"));
    let out = run(&w, &["--workflow", wf, "--model", &m], &budget);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!loras.join("a.safetensors").exists(), "a was evicted");
    assert!(loras.join("b.safetensors").is_file() && loras.join("c.safetensors").is_file());
    assert!(
        store(&w).join("checkpoints/tiny.safetensors").is_file(),
        "the spec's model stays"
    );

    // b is in use by a running job in another process. c is used after it,
    // so b is the least recently used when a comes back; b is kept and c,
    // the next one, goes instead.
    let slow = w.workflow(
        "slow",
        &json!({"1": {"class_type": "FakeSlow", "inputs": {"seconds": 20.0}}}),
    );
    let mb = format!("{},loras", files.url("/m/b.safetensors"));
    let mut holder = comfyver_testkit::cli::comfyver_command(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &w.root.join("cache"),
        &w.root.join("versions"),
    );
    holder
        .args([
            "run",
            "v1",
            "--workflow",
            slow.to_str().unwrap(),
            "--model",
            &mb,
        ])
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
        .envs(budget.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut holder = holder.spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(5));
    let mc = format!("{},loras", files.url("/m/c.safetensors"));
    let out = run(&w, &["--workflow", wf, "--model", &mc], &budget);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ma = format!("{},loras", files.url("/m/a.safetensors"));
    let out = run(&w, &["--workflow", wf, "--model", &ma], &budget);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        holder.try_wait().unwrap().is_none(),
        "the holder still runs its job"
    );
    assert!(loras.join("b.safetensors").is_file(), "b is in use: kept");
    assert!(loras.join("a.safetensors").is_file());
    assert!(
        !loras.join("c.safetensors").exists(),
        "c was evicted instead"
    );
    assert!(holder.wait().unwrap().success());
}

/// The worker (`comfyver serve`, local job API) fails each bad job with
/// `kind: "model"` before its prompt runs and goes on: a 404, a wrong
/// sha256 and a refused host, each followed by jobs on the same worker and
/// the same ComfyUI, and then a good job completes.
#[test]
fn the_worker_keeps_serving_after_every_job_model_failure() {
    use crate::front_door::{Client, stop};
    use comfyver_testkit::comfy::free_port;

    let w = World::new(&[]);
    let files = HttpServer::start();
    let lora = pseudo_random(4096, 7);
    let sha = sha256_hex(&lora);
    files.add_file("/w/good.safetensors", lora.clone());
    files.add_file("/w/other.safetensors", pseudo_random(1024, 8));
    let port = free_port();
    let log = w.root.join("serve-job-models.stderr");
    let mut serve = comfyver_testkit::cli::comfyver_command(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &w.root.join("cache"),
        &w.root.join("versions"),
    )
    .args(["serve", "v1", "--listen", &format!("127.0.0.1:{port}")])
    .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
    .env(ALLOW.0, ALLOW.1)
    .stdout(std::process::Stdio::null())
    .stderr(std::fs::File::create(&log).unwrap())
    .spawn()
    .unwrap();
    let api = Client::new(port, None);
    api.wait_ready(&mut serve);

    let entry = |source: String, sha: Option<&str>| {
        let mut e = json!({"source": source, "target_subdir": "loras"});
        if let Some(s) = sha {
            e["sha256"] = json!(s);
        }
        json!({"input": {"workflow": lora_workflow("good.safetensors"), "models": [e]}})
    };
    let bad = [
        ("404", entry(files.url("/w/missing.safetensors"), None)),
        (
            "wrong sha256",
            entry(files.url("/w/other.safetensors"), Some(&sha)),
        ),
        (
            "refused host",
            entry("http://169.254.169.254/w/good.safetensors".into(), None),
        ),
    ];
    for (name, body) in &bad {
        let (status, r) = api.post("/runsync", body);
        assert_eq!(status, 200, "{name}: {r}");
        assert_eq!(r["status"], "FAILED", "{name}: {r}");
        assert_eq!(r["output"]["kind"], "model", "{name}: {r}");
        assert_eq!(
            r["output"]["model_error"]["path"], "input.models[0]",
            "{name}: {r}"
        );
        assert!(
            !store(&w).join("loras/other.safetensors").exists()
                && !store(&w).join("loras/missing.safetensors").exists(),
            "{name}: nothing at a final path"
        );
    }
    // The worker went on, on the same ComfyUI: a good job completes.
    let (_, r) = api.post(
        "/runsync",
        &entry(files.url("/w/good.safetensors"), Some(&sha)),
    );
    assert_eq!(r["status"], "COMPLETED", "{r}");
    assert!(
        r.to_string()
            .contains(&format!("lora good.safetensors sha256 {sha}")),
        "{r}"
    );
    let (_, health) = api.get("/health");
    assert_eq!(health["jobs"]["failed"], 3, "{health}");
    assert_eq!(health["jobs"]["completed"], 1, "{health}");
    assert_eq!(
        health["comfyui"]["starts"], 1,
        "one ComfyUI served all: {health}"
    );
    stop(serve, &log);
}
