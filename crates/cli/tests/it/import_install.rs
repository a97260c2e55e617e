//! `comfyver import install` as a real process, on a ComfyUI folder built
//! in the test: a git clone of a stand-in core, two cloned packs (one with
//! uncommitted changes), a folder that is no checkout, a disabled pack, a
//! model file and a venv made by uv from a local wheel. The version it
//! writes validates, locks exactly the commits found and realizes with the
//! model adopted into the store, without a download.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use comfyver_testkit::cli::{Sandbox, fails, ok, read_json};
use comfyver_testkit::comfy::fake_core_dir;
use comfyver_testkit::git::{Repo, git};
use comfyver_testkit::wheels;
use serde_json::json;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_comfyver"))
}

/// Runs uv hermetically (its cache in `root`, no inherited venv or index).
fn uv(root: &Path, args: &[&str]) {
    let mut cmd = Command::new("uv");
    comfyver_testkit::cli::scrub(&mut cmd);
    let out = cmd
        .args(args)
        .env("UV_CACHE_DIR", root.join("uv-cache"))
        .env("UV_NO_CONFIG", "1")
        .env_remove("VIRTUAL_ENV")
        .output()
        .expect("uv must be installed for this test");
    assert!(
        out.status.success(),
        "uv {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A pack repository with one node file, pushed to its bare remote.
fn pack(remotes: &Path, name: &str) -> (Repo, String) {
    let mut r = Repo::new(remotes, name);
    r.write(&[("__init__.py", "NODE_CLASS_MAPPINGS = {}\n")]);
    let commit = r.commit(name);
    r.push();
    (r, commit)
}

struct Install {
    dir: PathBuf,
    wheels: PathBuf,
    core: String,
    clean: String,
    dirty: String,
    model: Vec<u8>,
}

/// The ComfyUI folder of the test.
fn install(sb: &Sandbox) -> Install {
    let remotes = sb.remotes();
    let mut core = Repo::new(&remotes, "ComfyUI");
    core.copy_tree(&fake_core_dir());
    let core_commit = core.commit("stand-in core");
    core.push();
    let (clean_repo, clean) = pack(&remotes, "clean_pack");
    let (dirty_repo, dirty) = pack(&remotes, "dirty_pack");

    let dir = sb.root().join("ComfyUI");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    git(sb.root(), &["clone", "-q", &s(core.bare()), &s(&dir)]);
    let nodes = dir.join("custom_nodes");
    git(
        &nodes,
        &["clone", "-q", &s(clean_repo.bare()), "clean_pack"],
    );
    git(
        &nodes,
        &["clone", "-q", &s(dirty_repo.bare()), "dirty_pack"],
    );
    std::fs::write(
        nodes.join("dirty_pack/__init__.py"),
        "NODE_CLASS_MAPPINGS = {}  # edited by hand\n",
    )
    .unwrap();
    std::fs::create_dir_all(nodes.join("loose_pack")).unwrap();
    std::fs::write(nodes.join("loose_pack/__init__.py"), "x = 1\n").unwrap();
    std::fs::create_dir_all(nodes.join("old_pack.disabled")).unwrap();

    let model: Vec<u8> = (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let ckpt = dir.join("models/checkpoints");
    std::fs::create_dir_all(&ckpt).unwrap();
    std::fs::write(ckpt.join("mine.safetensors"), &model).unwrap();
    std::fs::write(ckpt.join("put_checkpoints_here"), "").unwrap();

    let wheels = sb.root().join("wheels");
    wheels::build_wheel(&wheels, "fakecomfydep", "1.0", &[]);
    let venv = dir.join("venv");
    uv(sb.root(), &["venv", "-q", &s(&venv)]);
    uv(
        sb.root(),
        &[
            "pip",
            "install",
            "-q",
            "--offline",
            "--no-index",
            "--find-links",
            &s(&wheels),
            "--python",
            &s(&venv.join("bin/python")),
            "fakecomfydep",
        ],
    );
    Install {
        dir,
        wheels,
        core: core_commit,
        clean,
        dirty,
        model,
    }
}

#[test]
fn a_live_install_becomes_a_locked_version_that_realizes_with_its_adopted_model() {
    let sb = Sandbox::new(bin());
    let inst = install(&sb);
    let dir = inst.dir.to_str().unwrap();

    let (stdout, stderr) = ok(&sb.run(&["import", "install", dir, "--id", "live"]));
    let report = format!("{stdout}{stderr}");
    for named in [
        "pack `dirty_pack` has uncommitted changes (__init__.py)",
        "left out custom_nodes/loose_pack: not a git checkout",
        "left out custom_nodes/old_pack.disabled (disabled)",
        "hard-linked into the model store",
    ] {
        assert!(report.contains(named), "`{named}` not in:\n{report}");
    }
    assert!(!report.contains("websocket_image_save"), "{report}");

    // The spec validates and pins what the folder has checked out.
    ok(&sb.run(&["validate", "live"]));
    let spec = read_json(&sb.spec_path("live"));
    assert_eq!(spec["comfy"]["commit"], inst.core.as_str(), "{spec}");
    let nodes = spec["custom_nodes"].as_array().unwrap();
    let pins: Vec<(&str, &str)> = nodes
        .iter()
        .map(|n| {
            let name = n["name"]
                .as_str()
                .unwrap_or_else(|| n["repo"].as_str().unwrap().rsplit('/').next().unwrap());
            (name.trim_end_matches(".git"), n["commit"].as_str().unwrap())
        })
        .collect();
    assert_eq!(
        pins,
        [
            ("clean_pack", inst.clean.as_str()),
            ("dirty_pack", inst.dirty.as_str())
        ]
    );
    let model = &spec["models"][0];
    assert_eq!(spec["models"].as_array().unwrap().len(), 1, "{spec}");
    assert_eq!(model["target_subdir"], "checkpoints");
    assert_eq!(model["name"], "mine.safetensors");
    assert_eq!(model["size"], inst.model.len());
    assert_eq!(
        model["sha256"],
        comfyver_testkit::http::sha256_hex(&inst.model),
        "{spec}"
    );

    // The lock holds exactly those commits and the venv's set.
    let lock = sb.lock("live");
    assert_eq!(lock["comfy"]["commit"], inst.core.as_str());
    let locked: Vec<&str> = lock["custom_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["commit"].as_str().unwrap())
        .collect();
    assert_eq!(locked, [inst.clean.as_str(), inst.dirty.as_str()]);
    assert_eq!(lock["python"]["packages"], json!(["fakecomfydep==1.0"]));

    // The model was adopted by content: the store holds the same file.
    let stored = sb.cache().join("models/checkpoints/mine.safetensors");
    let original = inst.dir.join("models/checkpoints/mine.safetensors");
    assert_eq!(
        std::fs::metadata(&stored).unwrap().ino(),
        std::fs::metadata(&original).unwrap().ino(),
        "adopted by a hard link"
    );
    // Without the install's copy, the realize can only use the store's.
    std::fs::remove_file(&original).unwrap();

    let wheels = inst.wheels.to_str().unwrap();
    ok(&sb.run(&["nodes", "fetch", "live"]));
    let (stdout, stderr) = ok(&sb.run(&["--offline", "realize", "live", "--wheels-dir", wheels]));
    let out = format!("{stdout}{stderr}");
    assert!(!out.contains("download"), "{out}");
    assert_eq!(std::fs::read(&stored).unwrap(), inst.model);
    ok(&sb.run(&["verify", "live"]));
    let after = sb.lock("live");
    assert_eq!(after["python"]["packages"], json!(["fakecomfydep==1.0"]));
    // The venv was built for the imported set's inputs: it was replayed.
    let stamp = read_json(
        &sb.cache()
            .join("versions/comfy-live/.comfyver/realized.json"),
    );
    assert_eq!(
        stamp["python_inputs_digest"], lock["python"]["inputs_digest"],
        "{stamp}"
    );
}

#[test]
fn a_folder_that_is_no_git_checkout_is_refused_and_nothing_is_written() {
    let sb = Sandbox::new(bin());
    let dir = sb.root().join("zip-install");
    std::fs::create_dir_all(dir.join("custom_nodes")).unwrap();
    let (_, stderr) = fails(&sb.run(&["import", "install", dir.to_str().unwrap(), "--id", "z"]));
    assert!(
        stderr.contains("not a git checkout of ComfyUI (no .git)"),
        "{stderr}"
    );
    assert!(!sb.spec_path("z").exists());
}
