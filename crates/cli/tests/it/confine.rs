//! ComfyUI runs confined by Landlock: a job reads only its version's files
//! and writes only its own folders (`touch_pack` reads and writes any path
//! it is given); `--confine off` lifts it; `required` without Landlock
//! refuses to start.

use std::path::{Path, PathBuf};
use std::process::Output;

use comfyver_testkit::world::World;
use serde_json::{Value, json};

fn run(w: &World, wf: &Value, extra: &[&str], env: &[(&str, &str)]) -> (Output, Value) {
    let file = w.workflow("touch", wf);
    let mut args = vec!["--json", "run", "v1", "--workflow", file.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = w.comfyver_env(Path::new(env!("CARGO_BIN_EXE_comfyver")), &args, None, env);
    let value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, value)
}

fn read(path: &Path) -> Value {
    json!({"1": {"class_type": "ReadPath", "inputs": {"path": path.to_str().unwrap()}}})
}

fn write(path: &Path) -> Value {
    json!({"1": {"class_type": "WritePath", "inputs": {"path": path.to_str().unwrap(), "text": "x"}}})
}

/// The kernel's Landlock, asked as comfyver asks it. The machines this suite
/// runs on have it; a kernel without it fails here, by name, rather than
/// passing a test that checked nothing.
fn require_landlock() {
    let support = comfyver_fs::LandlockSupport::probe();
    assert!(
        matches!(support, comfyver_fs::LandlockSupport::Available { .. }),
        "this test needs a kernel with Landlock: {support:?}"
    );
}

/// A file in the model store (the world's one model).
fn model_in_store(w: &World) -> PathBuf {
    walk(&w.root.join("cache/models"))
        .into_iter()
        .find(|p| std::fs::read(p).is_ok_and(|b| b == b"not really a model"))
        .expect("the model is in the store")
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() && !p.is_symlink() {
            found.extend(walk(&p));
        } else if p.is_file() {
            found.push(p);
        }
    }
    found
}

#[test]
fn a_job_reads_its_version_and_writes_its_folders_only() {
    require_landlock();
    let w = World::new(&["touch_pack"]);
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "the secret").unwrap();

    // Reading outside fails with ComfyUI's error and comfyver's hint.
    let (out, value) = run(&w, &read(&secret), &[], &[]);
    assert!(!out.status.success(), "{value}");
    let text = value.to_string();
    assert!(text.contains("Permission denied"), "{text}");
    let hint = value["execution_error"]["hint"]
        .as_str()
        .unwrap_or_default();
    assert!(hint.contains("outside the job's area"), "{value}");
    assert!(hint.contains("node 1 (ReadPath)"), "{hint}");
    assert!(hint.contains("secret.txt"), "{hint}");
    assert!(!text.contains("the secret"), "{text}");
    assert_eq!(value["confined"], json!(true), "{value}");

    // Writing outside fails and creates nothing.
    let planted = outside.path().join("planted.txt");
    let (out, value) = run(&w, &write(&planted), &[], &[]);
    assert!(!out.status.success(), "{value}");
    assert!(!planted.exists(), "the outside file was created");
    assert!(
        value.to_string().contains("outside the job's area"),
        "{value}"
    );

    // A normal job still produces its output; a model in the store is read.
    let smoke = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "ok"}},
        "3": {"class_type": "ReadPath", "inputs": {"path": model_in_store(&w).to_str().unwrap()}}
    });
    let (out, value) = run(&w, &smoke, &[], &[]);
    assert!(out.status.success(), "{value}");
    assert!(!value["images"].as_array().unwrap().is_empty(), "{value}");
    assert!(value.to_string().contains("not really a model"), "{value}");

    // Off: the same reading job succeeds (so the test above can fail).
    let (out, value) = run(&w, &read(&secret), &["--confine", "off"], &[]);
    assert!(out.status.success(), "{value}");
    assert!(value.to_string().contains("the secret"), "{value}");
    assert_eq!(value["confined"], json!(false), "{value}");
}

#[test]
fn required_without_landlock_refuses_and_auto_runs_unconfined() {
    let w = World::new(&["touch_pack"]);
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "the secret").unwrap();
    let no_landlock = [(comfyver_env::COMFYVER_LANDLOCK_PROBE, "none")];

    let (out, value) = run(&w, &read(&secret), &["--confine", "required"], &no_landlock);
    assert!(!out.status.success(), "{value}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--confine required"), "{stderr}");
    assert!(stderr.contains("no Landlock"), "{stderr}");

    let (out, value) = run(&w, &read(&secret), &[], &no_landlock);
    assert!(out.status.success(), "{value}");
    assert_eq!(value["confined"], json!(false), "{value}");
    assert!(
        value["confined_reason"]
            .as_str()
            .unwrap()
            .contains("no Landlock"),
        "{value}"
    );

    // `test --json` says it too.
    let file = w.workflow("touch", &read(&secret));
    let out = w.comfyver_env(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &[
            "--json",
            "test",
            "v1",
            "--workflow",
            file.to_str().unwrap(),
            "--expect-outputs",
            "0",
        ],
        None,
        &no_landlock,
    );
    let value: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{value}");
    assert_eq!(value["confined"], json!(false), "{value}");
}

/// The path `touch_pack` reaches its own directory by: the home's entry.
fn own_file(w: &World) -> PathBuf {
    w.home("v1").join("custom_nodes/touch_pack/state.txt")
}

#[test]
fn a_pack_marked_writable_gets_a_per_home_copy_it_may_write() {
    require_landlock();
    let w = World::new(&["touch_pack"]);
    let entry = w.home("v1").join("custom_nodes/touch_pack");

    // Shared (a link into the node cache): writing into its own directory
    // is refused, and the hint names the field that gives it a copy.
    let (out, value) = run(&w, &write(&own_file(&w)), &[], &[]);
    assert!(!out.status.success(), "{value}");
    let hint = value["execution_error"]["hint"]
        .as_str()
        .unwrap_or_default();
    assert!(hint.contains("`touch_pack`"), "{value}");
    assert!(hint.contains("\"writable\": true"), "{hint}");
    assert!(std::fs::symlink_metadata(&entry).unwrap().is_symlink());
    let shared = std::fs::read_link(&entry).unwrap();
    assert!(!shared.join("state.txt").exists());

    // Marked writable: the home is no longer up to date, realize makes a
    // real directory in place of the link, and the same job succeeds.
    let mut spec = w.spec("v1");
    spec["custom_nodes"][0]["writable"] = json!(true);
    w.write_spec("v1", &spec);
    let (out, value) = run(&w, &write(&own_file(&w)), &[], &[]);
    assert!(out.status.success(), "{value}");
    let meta = std::fs::symlink_metadata(&entry).unwrap();
    assert!(meta.is_dir() && !meta.is_symlink(), "a per-home copy");
    assert_eq!(std::fs::read_to_string(own_file(&w)).unwrap(), "x");
    assert_eq!(comfyver_nodes::node_source(&entry), Some(shared.clone()));
    assert!(
        !shared.join("state.txt").exists(),
        "the shared checkout is unchanged"
    );
    assert!(
        comfyver_nodes::checkout_changes(&shared)
            .unwrap()
            .is_empty(),
        "the shared checkout is as checked out"
    );
}

/// A pack whose install.py writes into its own directory and the venv, then
/// to `$OUTSIDE` when the spec's `env` sets it.
const AREA_SCRIPT: &str = r#"
import os, sysconfig
open("own.txt", "w").write("mine\n")
open(os.path.join(sysconfig.get_paths()["purelib"], "from_script.txt"), "w").write("x\n")
target = os.environ.get("OUTSIDE")
if target:
    open(target, "w").write("escaped\n")
"#;

/// A world whose one pack is `area_pack` (with [`AREA_SCRIPT`]), its spec
/// setting `OUTSIDE` to `outside` when given.
fn script_world(outside: Option<&Path>) -> World {
    let w = World::new(&[]);
    let mut pack = comfyver_testkit::git::Repo::new(&w.root.join("remotes"), "area_pack");
    pack.write(&[
        ("__init__.py", "NODE_CLASS_MAPPINGS = {}\n"),
        ("install.py", AREA_SCRIPT),
    ]);
    pack.commit("area pack");
    pack.push();
    let mut spec = w.spec("v1");
    spec["custom_nodes"] = json!([{"repo": pack.file_url()}]);
    if let Some(outside) = outside {
        spec["env"] = json!({"OUTSIDE": outside.to_str().unwrap()});
    }
    w.write_spec("v1", &spec);
    w
}

fn realize(w: &World, extra: &[&str], env: &[(&str, &str)]) -> Output {
    let mut args = vec!["realize", "v1"];
    args.extend_from_slice(extra);
    w.comfyver_env(Path::new(env!("CARGO_BIN_EXE_comfyver")), &args, None, env)
}

#[test]
fn install_scripts_run_confined_and_a_write_outside_fails_with_the_hint() {
    require_landlock();
    let w = script_world(None);
    let out = realize(&w, &[], &[]);
    let (_, stderr) = comfyver_testkit::cli::ok(&out);
    assert!(
        stderr.contains("install scripts ran confined: Landlock ABI"),
        "{stderr}"
    );
    let copy = w.home("v1").join("custom_nodes/area_pack");
    assert_eq!(
        std::fs::read_to_string(copy.join("own.txt")).unwrap(),
        "mine\n"
    );

    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("escaped.txt");
    let w = script_world(Some(&target));
    let out = realize(&w, &[], &[]);
    let (_, stderr) = comfyver_testkit::cli::fails(&out);
    assert!(
        stderr.contains("install.py of custom node `area_pack`"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("outside its area ({})", target.display())),
        "{stderr}"
    );
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert!(!target.exists(), "the outside file was not created");

    // Off: the same script writes there (so the refusal above can fail).
    let out = realize(&w, &["--confine", "off"], &[]);
    let (_, stderr) = comfyver_testkit::cli::ok(&out);
    assert!(
        stderr.contains("install scripts ran unconfined"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "escaped\n");
}

#[test]
fn required_without_landlock_refuses_to_run_install_scripts() {
    let w = script_world(None);
    let no_landlock = [(comfyver_env::COMFYVER_LANDLOCK_PROBE, "none")];
    let out = realize(&w, &[], &[("COMFYVER_CONFINE", "required"), no_landlock[0]]);
    let (_, stderr) = comfyver_testkit::cli::fails(&out);
    assert!(
        stderr.contains("install.py of custom node `area_pack` must run confined"),
        "{stderr}"
    );
    assert!(stderr.contains("no Landlock"), "{stderr}");
    let copy = w.home("v1").join("custom_nodes/area_pack");
    assert!(!copy.join("own.txt").exists(), "the script did not run");

    // auto runs it unconfined and says so once.
    let out = realize(&w, &["--json"], &no_landlock);
    let (stdout, stderr) = comfyver_testkit::cli::ok(&out);
    assert_eq!(
        stderr.matches("install scripts ran unconfined").count(),
        1,
        "{stderr}"
    );
    let value: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(value["scripts_confined"], json!(false), "{value}");
    assert!(copy.join("own.txt").exists());
}
