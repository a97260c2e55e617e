//! `comfyver realize`, `verify`, `remove` and `gc` as real processes: a
//! stand-in ComfyUI core and node packs in real git repositories (file://),
//! models from a real HTTP server on loopback, wheels built at test time in a
//! local `--wheels-dir`, real uv (and pip when uv is absent from PATH).
//!
//! Nothing reaches the internet: the specs set `python.index_url` to an empty
//! local directory (file://), so every package comes from the wheel directory.

use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use comfyver_testkit::comfy::fake_core_dir;
use comfyver_testkit::git::Repo;
use comfyver_testkit::http::{HttpServer, blake3_hex, pseudo_random};
use comfyver_testkit::wheels;
use serde_json::{Value, json};

/// A node pack's `install.py`: appends a line to `runs.txt` in its own
/// directory (the home's copy), so the test can count how often it ran, and
/// writes more there, as real install scripts do. It runs confined: its own
/// directory is the one place outside the venv it may write.
const INSTALL_SCRIPT: &str = r#"
import os
with open("runs.txt", "a") as f:
    f.write("ran\n")
with open("generated.txt", "w") as f:
    f.write(os.environ["COMFYUI_PATH"] + "\n")
    f.write(os.environ.get("HF_TOKEN", "") + "\n")
"#;

/// The node packs every test can use: (name, files).
const PACKS: &[(&str, &[(&str, &str)])] = &[
    ("req_pack", &[("requirements.txt", "# deps\nnodedep-a\n")]),
    (
        "pyproj_pack",
        &[(
            "pyproject.toml",
            "[project]\nname = \"pyproj-pack\"\nversion = \"0.1\"\ndependencies = [\"pyprojdep>=1.0\"]\n",
        )],
    ),
    ("script_pack", &[("install.py", INSTALL_SCRIPT)]),
    (
        "conflict_one",
        &[("requirements.txt", "conflictpkg==1.0\n")],
    ),
    (
        "conflict_two",
        &[("requirements.txt", "conflictpkg==2.0\n")],
    ),
    ("extra_pack", &[("requirements.txt", "nodedep-b\n")]),
];

/// Size of the payload of the `bigdep` wheel (a stand-in for a large
/// package such as torch, so venv sharing is measured on real bytes).
const BIG_PAYLOAD: usize = 4 << 20;

/// Everything a test realizes from: remotes, wheels, a model server.
struct World {
    tmp: tempfile::TempDir,
    core: Repo,
    packs: BTreeMap<String, Repo>,
    server: Option<HttpServer>,
    models: BTreeMap<String, Vec<u8>>,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().unwrap();
        let remotes = tmp.path().join("remotes");
        let mut core = Repo::new(&remotes, "ComfyUI");
        core.copy_tree(&fake_core_dir());
        core.commit("stand-in core");
        core.tag("v1");
        core.push();
        let mut packs = BTreeMap::new();
        for (name, files) in PACKS {
            let mut r = Repo::new(&remotes, name);
            r.write(&[("__init__.py", "NODE_CLASS_MAPPINGS = {}\n")]);
            r.write(files);
            r.commit(name);
            r.push();
            packs.insert(name.to_string(), r);
        }
        let wheel_dir = tmp.path().join("wheels");
        wheels::standard_wheels(&wheel_dir);
        wheels::payload_wheel(&wheel_dir, "bigdep", BIG_PAYLOAD);
        std::fs::create_dir_all(tmp.path().join("empty-index")).unwrap();
        std::fs::create_dir_all(tmp.path().join("versions")).unwrap();
        std::fs::create_dir_all(tmp.path().join("empty-path")).unwrap();
        let server = HttpServer::start();
        let mut models = BTreeMap::new();
        for (i, name) in ["m1.safetensors", "m2.safetensors", "m3.safetensors"]
            .iter()
            .enumerate()
        {
            let bytes = pseudo_random(64 << 10, i as u64 + 1);
            server.add_file(&format!("/{name}"), bytes.clone());
            models.insert(name.to_string(), bytes);
        }
        World {
            tmp,
            core,
            packs,
            server: Some(server),
            models,
        }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }
    fn remotes(&self) -> PathBuf {
        self.root().join("remotes")
    }
    fn cache(&self) -> PathBuf {
        self.root().join("cache")
    }
    fn versions(&self) -> PathBuf {
        self.root().join("versions")
    }
    fn wheels(&self) -> PathBuf {
        self.root().join("wheels")
    }
    /// A directory with no program in it: a PATH without uv, pip, git, python.
    fn empty_path(&self) -> PathBuf {
        self.root().join("empty-path")
    }
    fn home(&self, id: &str) -> PathBuf {
        home_in(&self.cache(), id)
    }

    /// Writes `versions/<id>.json`: the core at tag v1, `nodes` at main,
    /// `models` from the server, extra `requirements`, an index URL that
    /// serves nothing.
    fn spec(&self, id: &str, nodes: &[&str], models: &[&str], requirements: &[&str]) {
        let server = self.server.as_ref().expect("server running");
        let nodes: Vec<Value> = nodes
            .iter()
            .map(|n| json!({"repo": self.packs[*n].file_url(), "ref": "main", "name": n}))
            .collect();
        let models: Vec<Value> = models
            .iter()
            .map(|m| {
                let bytes = &self.models[*m];
                json!({"source": server.url(&format!("/{m}")), "blake3": blake3_hex(bytes), "size": bytes.len()})
            })
            .collect();
        let spec = json!({
            "schema_version": 2,
            "version_id": id,
            "comfy": {"repo": self.core.file_url(), "ref": "v1"},
            "custom_nodes": nodes,
            "models": models,
            "python": {
                "index_url": format!("file://{}", self.root().join("empty-index").display()),
                "requirements": requirements,
            },
        });
        std::fs::write(
            self.versions().join(format!("{id}.json")),
            serde_json::to_string_pretty(&spec).unwrap(),
        )
        .unwrap();
    }

    /// The binary with a cache dir, the versions dir and a clean environment.
    fn cmd_in(&self, cache: &Path, args: &[&str]) -> Command {
        let mut c = comfyver_testkit::cli::comfyver_command(
            Path::new(env!("CARGO_BIN_EXE_comfyver")),
            cache,
            &self.versions(),
        );
        c.args(args);
        c
    }
    fn cmd(&self, args: &[&str]) -> Command {
        self.cmd_in(&self.cache(), args)
    }
    fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// `comfyver realize <id> --wheels-dir <wheels> [extra...]`.
    fn realize_cmd(&self, cache: &Path, id: &str, extra: &[&str]) -> Command {
        let wheels = self.wheels();
        let mut args = vec!["realize", id, "--wheels-dir", wheels.to_str().unwrap()];
        args.extend_from_slice(extra);
        self.cmd_in(cache, &args)
    }
    fn realize(&self, id: &str) -> Output {
        self.realize_cmd(&self.cache(), id, &[]).output().unwrap()
    }

    fn lock(&self, id: &str) -> Value {
        let path = self
            .cache()
            .join("resolved")
            .join(format!("{id}.lock.json"));
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
    }

    /// How often `script_pack`'s install.py ran, in all homes (those of
    /// the cache and those beside it, `--home`).
    fn side_effect_runs(&self) -> usize {
        let homes = [self.cache().join("versions"), self.root().to_path_buf()]
            .into_iter()
            .filter_map(|d| std::fs::read_dir(d).ok())
            .flatten()
            .flatten()
            .map(|e| e.path());
        homes
            .filter_map(|h| {
                std::fs::read_to_string(h.join("custom_nodes/script_pack/runs.txt")).ok()
            })
            .map(|s| s.lines().count())
            .sum()
    }

    /// `comfyver verify <id>` in `cache` must pass.
    fn assert_verified(&self, cache: &Path, id: &str) {
        let out = self.cmd_in(cache, &["verify", id]).output().unwrap();
        let (stdout, _) = ok(&out);
        assert!(stdout.contains(&format!("ok  {id}")), "{stdout}");
    }
}

fn home_in(cache: &Path, id: &str) -> PathBuf {
    cache.join("versions").join(format!("comfy-{id}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    (stdout, stderr)
}

/// Every path under `dirs` with its kind, size, mtime and content hash (or
/// link target): two equal snapshots mean nothing was created, deleted,
/// written or touched.
fn snapshot(dirs: &[PathBuf]) -> BTreeMap<PathBuf, String> {
    fn walk(p: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            out.insert(p.to_path_buf(), "absent".into());
            return;
        };
        let mtime = format!("{}.{:09}", m.mtime(), m.mtime_nsec());
        let entry = if m.file_type().is_symlink() {
            format!(
                "link {mtime} -> {}",
                std::fs::read_link(p).unwrap().display()
            )
        } else if m.is_dir() {
            let mut names: Vec<PathBuf> = std::fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for child in &names {
                walk(child, out);
            }
            format!("dir {mtime} {:o}", m.mode())
        } else {
            let hash = blake3_hex(&std::fs::read(p).unwrap());
            format!("file {} {mtime} {:o} {hash}", m.len(), m.mode())
        };
        out.insert(p.to_path_buf(), entry);
    }
    let mut out = BTreeMap::new();
    for d in dirs {
        walk(d, &mut out);
    }
    out
}

fn assert_same(before: &BTreeMap<PathBuf, String>, after: &BTreeMap<PathBuf, String>) {
    let changed: Vec<String> = before
        .keys()
        .chain(after.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .map(|k| format!("{}: {:?} -> {:?}", k.display(), before.get(k), after.get(k)))
        .collect();
    assert!(
        changed.is_empty(),
        "the dry run changed the disk:\n{}",
        changed.join("\n")
    );
}

/// Bytes on disk (st_blocks) of the entries under `dir` whose inode is not in
/// `seen` yet; adds them to `seen`. Symlinks are not followed.
fn disk_use(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let m = std::fs::symlink_metadata(dir).unwrap();
    let mut total = 0;
    if seen.insert((m.dev(), m.ino())) {
        total += m.blocks() * 512;
    }
    if m.is_dir() {
        for e in std::fs::read_dir(dir).unwrap() {
            total += disk_use(&e.unwrap().path(), seen);
        }
    }
    total
}

/// The program `name` on this process's PATH.
fn which(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not on PATH"))
}

fn inode(p: &Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

/// A small xorshift PRNG: the crash test's delays are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn realize_from_real_repositories_then_warm_with_no_remote_and_no_tool() {
    let w = World::new();
    w.spec(
        "v1",
        &["req_pack", "pyproj_pack", "script_pack"],
        &["m1.safetensors"],
        &[],
    );
    let watched = [w.cache(), w.versions()];

    // --dry-run before anything exists changes nothing.
    let before = snapshot(&watched);
    let wheels = w.wheels();
    let out = w.run(&[
        "realize",
        "v1",
        "--dry-run",
        "--wheels-dir",
        wheels.to_str().unwrap(),
    ]);
    let (plan, _) = ok(&out);
    assert_same(&before, &snapshot(&watched));
    assert!(plan.contains("plan for v1"), "{plan}");
    assert!(plan.contains("script_pack"), "{plan}");
    assert!(plan.contains("download into the store"), "{plan}");

    // The cold realize, with a token in comfyver's environment that the
    // install.py must not see.
    let out = w
        .realize_cmd(&w.cache(), "v1", &[])
        .env("HF_TOKEN", "hf_s3cret_for_models_only")
        .output()
        .unwrap();
    let (stdout, stderr) = ok(&out);
    let home = w.home("v1");
    assert_eq!(stdout.trim(), home.display().to_string(), "{stderr}");
    assert!(stderr.contains("== python"), "{stderr}");
    assert!(stderr.contains("v1 realized in"), "{stderr}");

    // custom_nodes/<name> are links to <cache>/custom_nodes/<slug>@<commit>,
    // except for a pack whose install.py ran: it has its own copy, and what
    // the script wrote stays in this home.
    let lock = w.lock("v1");
    for node in lock["custom_nodes"].as_array().unwrap() {
        let name = node["name"].as_str().unwrap();
        let commit = node["commit"].as_str().unwrap();
        assert_eq!(commit, w.packs[name].head());
        let entry = home.join("custom_nodes").join(name);
        let target = if name == "script_pack" {
            assert!(!std::fs::symlink_metadata(&entry).unwrap().is_symlink());
            assert_eq!(
                std::fs::read_to_string(entry.join("generated.txt"))
                    .unwrap()
                    .trim(),
                home.display().to_string()
            );
            let source = comfyver_nodes::node_source(&entry).unwrap();
            assert!(
                !source.join("generated.txt").exists(),
                "the shared entry is unchanged"
            );
            source
        } else {
            std::fs::read_link(&entry).unwrap()
        };
        assert_eq!(target.parent().unwrap(), w.cache().join("custom_nodes"));
        assert!(
            target
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .ends_with(&format!("@{commit}")),
            "{}",
            target.display()
        );
        assert!(target.join("__init__.py").is_file());
    }
    assert_eq!(lock["comfy"]["commit"].as_str().unwrap(), w.core.head());
    assert!(
        home.join("core/main.py").is_file() && !home.join("main.py").exists(),
        "the home links the shared core checkout"
    );

    // The models are in the store, and extra_model_paths.yaml points at it.
    let store = w.cache().join("models");
    assert_eq!(
        std::fs::read(store.join("checkpoints/m1.safetensors")).unwrap(),
        w.models["m1.safetensors"]
    );
    let yaml = std::fs::read_to_string(home.join("extra_model_paths.yaml")).unwrap();
    assert!(yaml.contains(store.to_str().unwrap()), "{yaml}");

    // The venv imports the core's, the nodes' and the transitive packages.
    let import = Command::new(home.join(".venv/bin/python"))
        .args([
            "-c",
            "import fakecomfydep, nodedep_a, fakerequests, pyprojdep; print('ok')",
        ])
        .output()
        .unwrap();
    assert_eq!(
        text(&import.stdout).trim(),
        "ok",
        "{}",
        text(&import.stderr)
    );
    assert!(home.join(".comfyver/realized.json").is_file());
    assert_eq!(w.side_effect_runs(), 1, "install.py ran once");

    // The lock gained the installed Python set.
    let packages: Vec<&str> = lock["python"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    for p in [
        "fakecomfydep==1.0",
        "nodedep-a==1.0",
        "fakerequests==2.0",
        "pyprojdep==1.0",
    ] {
        assert!(packages.contains(&p), "{packages:?}");
    }
    w.assert_verified(&w.cache(), "v1");

    // A shared checkout changed after publication is reported by verify.
    let shared = std::fs::read_link(home.join("custom_nodes/req_pack")).unwrap();
    std::fs::write(shared.join("written-by-someone.txt"), "x").unwrap();
    let out = w.run(&["verify", "v1"]);
    assert_eq!(out.status.code(), Some(1));
    let report = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(report.contains("custom_nodes/req_pack"), "{report}");
    assert!(
        report.contains("was changed after it was checked out"),
        "{report}"
    );
    assert!(report.contains("written-by-someone.txt"), "{report}");
    std::fs::remove_file(shared.join("written-by-someone.txt")).unwrap();
    w.assert_verified(&w.cache(), "v1");

    // A second realize is warm and runs nothing.
    let (_, stderr) = ok(&w.realize("v1"));
    assert!(stderr.contains("v1 already realized"), "{stderr}");
    assert!(!stderr.contains("== "), "{stderr}");
    assert_eq!(w.side_effect_runs(), 1);

    // A broken link fails verify (exit 1, naming it); realize repairs it.
    std::fs::remove_file(home.join("custom_nodes/req_pack")).unwrap();
    let out = w.run(&["verify", "v1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("custom_nodes/req_pack"),
        "{}",
        text(&out.stderr)
    );
    let (_, stderr) = ok(&w.realize("v1"));
    assert!(stderr.contains("v1 realized in"), "{stderr}");
    w.assert_verified(&w.cache(), "v1");
    assert_eq!(
        w.side_effect_runs(),
        1,
        "the venv and install.py were reused"
    );

    // After a change (one more model), --dry-run still changes nothing and
    // says what would happen.
    w.spec(
        "v1",
        &["req_pack", "pyproj_pack", "script_pack"],
        &["m1.safetensors", "m2.safetensors"],
        &[],
    );
    let before = snapshot(&watched);
    let out = w.run(&[
        "realize",
        "v1",
        "--dry-run",
        "--wheels-dir",
        wheels.to_str().unwrap(),
    ]);
    let (plan, _) = ok(&out);
    assert_same(&before, &snapshot(&watched));
    assert!(!plan.contains("already realized"), "{plan}");
    assert!(plan.contains("checkpoints/m2.safetensors"), "{plan}");
    assert!(plan.contains("cached, linked"), "{plan}");
    let (_, stderr) = ok(&w.realize("v1"));
    assert!(stderr.contains("v1 realized in"), "{stderr}");
    assert!(store.join("checkpoints/m2.safetensors").is_file());
    w.assert_verified(&w.cache(), "v1");

    // A node dropped from the spec: its link goes, and so do its packages.
    w.spec(
        "v1",
        &["req_pack", "script_pack"],
        &["m1.safetensors", "m2.safetensors"],
        &[],
    );
    ok(&w.realize("v1"));
    assert_eq!(
        std::fs::symlink_metadata(home.join("custom_nodes/pyproj_pack"))
            .err()
            .map(|e| e.kind()),
        Some(std::io::ErrorKind::NotFound),
        "the dropped node's link is gone"
    );
    let import = Command::new(home.join(".venv/bin/python"))
        .args(["-c", "import pyprojdep"])
        .output()
        .unwrap();
    assert!(!import.status.success(), "pyprojdep left with its pack");
    w.assert_verified(&w.cache(), "v1");
    assert_eq!(
        w.side_effect_runs(),
        2,
        "a rebuilt venv runs install.py again"
    );

    // With the remotes and the server gone, --offline realizes a new home
    // from the caches (mirrors, node checkouts, model store, uv cache).
    std::fs::remove_dir_all(w.remotes()).unwrap();
    let mut w = w;
    drop(w.server.take());
    let other = w.root().join("offline-home");
    let other_arg = other.to_str().unwrap();
    let out = w
        .realize_cmd(&w.cache(), "v1", &["--offline", "--home", other_arg])
        .output()
        .unwrap();
    let (stdout, _) = ok(&out);
    assert_eq!(stdout.trim(), other_arg);
    let out = w.run(&["verify", "v1", "--home", other_arg]);
    ok(&out);
    assert_eq!(w.side_effect_runs(), 3, "install.py ran in the new home");

    // The warm path needs nothing: no remote, no server, no program on PATH.
    let out = w
        .realize_cmd(&w.cache(), "v1", &[])
        .arg("--json")
        .env("PATH", w.empty_path())
        .output()
        .unwrap();
    let (stdout, stderr) = ok(&out);
    let v: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}{stderr}"));
    assert_eq!(v["warm"], json!(true), "{stdout}");
    let out = w
        .cmd(&["verify", "v1"])
        .env("PATH", w.empty_path())
        .output()
        .unwrap();
    ok(&out);
    assert_eq!(w.side_effect_runs(), 3, "the warm path ran nothing");
}

#[test]
fn conflicting_requirements_fail_with_one_error_naming_both_packs() {
    let w = World::new();
    w.spec("clash", &["conflict_one", "conflict_two"], &[], &[]);
    let out = w.realize("clash");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("conflictpkg"), "{stderr}");
    assert!(stderr.contains("conflict_one"), "{stderr}");
    assert!(stderr.contains("conflict_two"), "{stderr}");
    assert!(!w.home("clash").join(".comfyver/realized.json").exists());
    let out = w.run(&["verify", "clash"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed realize does not verify"
    );
}

#[test]
fn pip_builds_the_venv_when_uv_is_not_on_path() {
    let w = World::new();
    w.spec("pipver", &["req_pack"], &[], &[]);
    // A PATH with python3 (the real interpreter, not a shim that might find
    // uv) and git (file:// fetches run `git upload-pack`), but no uv.
    let bin = w.root().join("no-uv");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    std::os::unix::fs::symlink(text(&exe.stdout).trim(), bin.join("python3")).unwrap();
    std::os::unix::fs::symlink(which("git"), bin.join("git")).unwrap();
    let out = w
        .realize_cmd(&w.cache(), "pipver", &[])
        .env("PATH", &bin)
        .output()
        .unwrap();
    ok(&out);
    let home = w.home("pipver");
    assert!(
        home.join(".venv/bin/pip").exists(),
        "a venv made by python -m venv has pip; uv's has not"
    );
    let import = Command::new(home.join(".venv/bin/python"))
        .args(["-c", "import fakecomfydep, nodedep_a, fakerequests"])
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", text(&import.stderr));
    let out = w
        .cmd(&["verify", "pipver"])
        .env("PATH", &bin)
        .output()
        .unwrap();
    ok(&out);
}

#[test]
fn a_second_version_shares_everything_then_remove_and_gc_keep_what_is_referenced() {
    let w = World::new();
    let nodes = ["req_pack", "script_pack"];
    w.spec("v1", &nodes, &["m1.safetensors"], &["bigdep"]);
    w.spec("v2", &nodes, &["m1.safetensors"], &["bigdep"]);
    ok(&w.realize("v1"));
    ok(&w.realize("v2"));
    let (h1, h2) = (w.home("v1"), w.home("v2"));
    w.assert_verified(&w.cache(), "v1");
    w.assert_verified(&w.cache(), "v2");

    // The same node checkouts (same inodes behind the links), one model file;
    // the pack whose install.py runs has one copy per home of that checkout.
    for n in nodes {
        let (l1, l2) = (
            h1.join("custom_nodes").join(n),
            h2.join("custom_nodes").join(n),
        );
        assert_eq!(
            comfyver_nodes::node_source(&l1).unwrap(),
            comfyver_nodes::node_source(&l2).unwrap()
        );
        let same = inode(&l1.join("__init__.py")) == inode(&l2.join("__init__.py"));
        assert_eq!(same, n != "script_pack", "{n}");
    }
    let model = w.cache().join("models/checkpoints/m1.safetensors");
    assert_eq!(
        std::fs::metadata(&model).unwrap().nlink(),
        1,
        "one copy of the model"
    );
    for h in [&h1, &h2] {
        let yaml = std::fs::read_to_string(h.join("extra_model_paths.yaml")).unwrap();
        assert!(yaml.contains(w.cache().join("models").to_str().unwrap()));
    }

    // The second venv adds at most 10% of the first one's disk use: its
    // packages are hard links into the uv cache, as are the first's.
    let mut seen = HashSet::new();
    let first = disk_use(&h1.join(".venv"), &mut seen);
    let added = disk_use(&h2.join(".venv"), &mut seen);
    eprintln!("first venv {first} bytes, the second adds {added} bytes");
    assert!(
        first > BIG_PAYLOAD as u64,
        "the first venv holds bigdep ({first} bytes)"
    );
    assert!(
        added * 10 <= first,
        "the second venv adds {added} of {first} bytes"
    );
    let payload = |h: &Path| {
        let found = std::fs::read_dir(h.join(".venv/lib"))
            .unwrap()
            .map(|e| e.unwrap().path().join("site-packages/bigdep/payload.bin"))
            .find(|p| p.is_file())
            .unwrap();
        inode(&found)
    };
    assert_eq!(payload(&h1), payload(&h2), "bigdep's payload is one file");

    // remove deletes the home and nothing in the shared caches.
    let checkouts: Vec<(PathBuf, u64)> = nodes
        .iter()
        .map(|n| {
            let t = comfyver_nodes::node_source(&h2.join("custom_nodes").join(n)).unwrap();
            let ino = inode(&t.join("__init__.py"));
            (t, ino)
        })
        .collect();
    let model_ino = inode(&model);
    let uv_payload = payload(&h2);
    let out = w.run(&["remove", "v2"]);
    let (_, stderr) = ok(&out);
    assert!(stderr.contains("removed"), "{stderr}");
    assert!(!h2.exists());
    for (t, ino) in &checkouts {
        assert_eq!(inode(&t.join("__init__.py")), *ino, "{} kept", t.display());
    }
    assert_eq!(inode(&model), model_ino);
    assert_eq!(
        payload(&h1),
        uv_payload,
        "the uv cache and v1's venv are kept"
    );
    assert!(w.cache().join("uv").is_dir());
    w.assert_verified(&w.cache(), "v1");
    let (_, stderr) = ok(&w.run(&["remove", "v2"]));
    assert!(stderr.contains("nothing to remove"), "{stderr}");
    let foreign = w.root().join("not-a-home");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("precious.txt"), "keep").unwrap();
    let out = w.run(&["remove", "v2", "--home", foreign.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not a comfyver home"),
        "{}",
        text(&out.stderr)
    );
    assert!(foreign.join("precious.txt").is_file());

    // A retired version leaves a node pack, its mirror and a model that no
    // lock references: gc lists them, and deletes them only with --yes.
    w.spec(
        "v3",
        &["req_pack", "extra_pack"],
        &["m1.safetensors", "m3.safetensors"],
        &[],
    );
    ok(&w.realize("v3"));
    let extra = std::fs::read_link(w.home("v3").join("custom_nodes/extra_pack")).unwrap();
    let m3 = w.cache().join("models/checkpoints/m3.safetensors");
    ok(&w.run(&["remove", "v3"]));
    std::fs::remove_file(w.versions().join("v3.json")).unwrap();
    std::fs::remove_file(w.cache().join("resolved/v3.lock.json")).unwrap();
    let watched = [w.cache()];
    let before = snapshot(&watched);
    let (listed, stderr) = ok(&w.run(&["gc"]));
    assert_same(&before, &snapshot(&watched));
    assert!(stderr.contains("dry run"), "{stderr}");
    assert!(listed.contains(extra.to_str().unwrap()), "{listed}");
    assert!(listed.contains("extra_pack.git"), "{listed}");
    assert!(listed.contains("checkpoints/m3.safetensors"), "{listed}");
    assert!(!listed.contains("req_pack"), "{listed}");
    assert!(!listed.contains("m1.safetensors"), "{listed}");
    assert!(extra.is_dir() && m3.is_file());

    let (_, stderr) = ok(&w.run(&["gc", "--yes"]));
    assert!(stderr.contains("freed"), "{stderr}");
    assert!(!extra.exists(), "the unreferenced checkout is gone");
    assert!(!m3.exists(), "the unreferenced model is gone");
    assert_eq!(inode(&model), model_ino);
    for (t, ino) in &checkouts {
        assert_eq!(inode(&t.join("__init__.py")), *ino);
    }
    w.assert_verified(&w.cache(), "v1");
    let (listed, _) = ok(&w.run(&["gc"]));
    assert!(
        listed.trim().is_empty(),
        "nothing left to collect: {listed}"
    );
}

#[test]
fn concurrent_realizes_of_one_version_build_once_and_of_two_versions_both_succeed() {
    let w = World::new();
    let nodes = ["req_pack", "script_pack"];
    w.spec("same", &nodes, &["m1.safetensors"], &[]);
    let spawn = |id: &str| -> Child {
        w.realize_cmd(&w.cache(), id, &[])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("same"), spawn("same"));
    let outs = [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()];
    let stderrs: Vec<String> = outs.iter().map(|o| ok(o).1).collect();
    let built = stderrs.iter().filter(|s| s.contains("== python")).count();
    let warm = stderrs
        .iter()
        .filter(|s| s.contains("same already realized"))
        .count();
    assert_eq!(
        (built, warm),
        (1, 1),
        "one builds, the other waits and reuses:\n{stderrs:#?}"
    );
    assert_eq!(w.side_effect_runs(), 1, "install.py ran once");
    w.assert_verified(&w.cache(), "same");

    // Two different versions over the same node packs, at once.
    w.spec("pa", &nodes, &["m1.safetensors"], &[]);
    w.spec("pb", &nodes, &["m2.safetensors"], &["nodedep-b"]);
    let (a, b) = (spawn("pa"), spawn("pb"));
    for o in [a.wait_with_output().unwrap(), b.wait_with_output().unwrap()] {
        let (_, stderr) = ok(&o);
        assert!(stderr.contains("== python"), "{stderr}");
    }
    w.assert_verified(&w.cache(), "pa");
    w.assert_verified(&w.cache(), "pb");
}

/// Sends SIGKILL to `child`'s whole process group (comfyver and its uv or
/// python children: a worker that dies), or to comfyver alone, then waits
/// until its children have finished on their own.
fn kill9(child: &mut Child, whole_group: bool) {
    let pgid = format!("-{}", child.id());
    if whole_group {
        let _ = Command::new("kill")
            .args(["-9", "--", &pgid])
            .stderr(Stdio::null())
            .status();
    } else {
        let _ = child.kill();
    }
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(60);
    while Command::new("kill")
        .args(["-0", "--", &pgid])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        assert!(
            Instant::now() < deadline,
            "the children of a killed realize never ended"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigkill_at_random_moments_of_a_cold_realize_then_rerun_succeeds() {
    const TRIALS: u64 = 20;
    let w = World::new();
    w.spec(
        "crash",
        &["req_pack", "script_pack"],
        &["m1.safetensors"],
        &[],
    );
    let cache = |i: u64| w.root().join(format!("cache-{i}"));
    let realize = |i: u64| w.realize_cmd(&cache(i), "crash", &[]);

    // How long a cold realize takes here: the window to kill in (the
    // shorter of two, since the very first also warms the OS's caches).
    let mut cold = Duration::MAX;
    for i in [100, 101] {
        let started = Instant::now();
        ok(&realize(i).output().unwrap());
        cold = cold.min(started.elapsed());
        w.assert_verified(&cache(i), "crash");
    }

    let mut rng = Rng(0x5eed_c0ff_ee15_0001);
    let mut log = Vec::new();
    for i in 1..=TRIALS {
        let delay = Duration::from_micros(rng.next() % cold.as_micros() as u64);
        let whole_group = i % 2 == 0;
        let progress = w.root().join(format!("killed-{i}.log"));
        let mut child = realize(i)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&progress).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        kill9(&mut child, whole_group);
        let progress = std::fs::read_to_string(&progress).unwrap();
        let step = match progress.lines().rfind(|l| l.starts_with("== ")) {
            _ if finished => "finished",
            Some(l) => l.trim_start_matches("== "),
            None => "resolving",
        };
        let who = if whole_group {
            "comfyver and its children"
        } else {
            "comfyver alone"
        };
        log.push(format!(
            "trial {i}: kill -9 {who} at {delay:?}, during: {step}"
        ));
        let out = realize(i).output().unwrap();
        assert!(
            out.status.success(),
            "rerun after {}:\n{}",
            log.last().unwrap(),
            text(&out.stderr)
        );
        w.assert_verified(&cache(i), "crash");
        let stamp = home_in(&cache(i), "crash").join(".comfyver/realized.json");
        assert!(stamp.is_file());
    }
    eprintln!("cold realize: {cold:?}\n{}", log.join("\n"));
}

#[test]
fn a_home_realized_with_skip_models_gets_its_models_from_a_full_realize() {
    let w = World::new();
    w.spec("skip", &["req_pack"], &["m1.safetensors"], &[]);
    let model = w.cache().join("models/checkpoints/m1.safetensors");
    let (_, stderr) = ok(&w
        .realize_cmd(&w.cache(), "skip", &["--skip-models"])
        .output()
        .unwrap());
    assert!(
        stderr.contains("m1.safetensors"),
        "a warning names the missing model: {stderr}"
    );
    assert!(!model.exists());
    // The skipped home is warm for another --skip-models realize...
    let (_, stderr) = ok(&w
        .realize_cmd(&w.cache(), "skip", &["--skip-models"])
        .output()
        .unwrap());
    assert!(stderr.contains("skip already realized"), "{stderr}");
    // ...but not for one that wants the models.
    let (_, stderr) = ok(&w.realize("skip"));
    assert!(stderr.contains("skip realized in"), "{stderr}");
    assert_eq!(std::fs::read(&model).unwrap(), w.models["m1.safetensors"]);
    w.assert_verified(&w.cache(), "skip");
    let (_, stderr) = ok(&w.realize("skip"));
    assert!(stderr.contains("skip already realized"), "{stderr}");
}

#[test]
fn a_damaged_model_makes_the_home_cold_and_realize_repair_fixes_it() {
    let w = World::new();
    w.spec("dmg", &["req_pack"], &["m1.safetensors"], &[]);
    ok(&w.realize("dmg"));
    let model = w.cache().join("models/checkpoints/m1.safetensors");
    std::fs::write(&model, b"8 bytes!").unwrap();
    // verify sees it and names a command that really repairs.
    let out = w.run(&["verify", "dmg"]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(stderr.contains("comfyver realize --repair dmg"), "{stderr}");
    // The warm path notices the change: no "already realized"; the damaged
    // file is refused with the same hint and left as it was.
    let out = w.realize("dmg");
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("already realized"), "{stderr}");
    assert!(stderr.contains("--repair"), "{stderr}");
    assert_eq!(std::fs::read(&model).unwrap(), b"8 bytes!");
    // One repair command: the bad file moved aside, the model fetched again.
    let (_, stderr) = ok(&w
        .realize_cmd(&w.cache(), "dmg", &["--repair"])
        .output()
        .unwrap());
    assert!(stderr.contains("moved it to"), "{stderr}");
    assert_eq!(std::fs::read(&model).unwrap(), w.models["m1.safetensors"]);
    let damaged: Vec<_> = std::fs::read_dir(w.cache().join("models/.comfyver/damaged"))
        .unwrap()
        .flatten()
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(damaged, vec![b"8 bytes!".to_vec()]);
    w.assert_verified(&w.cache(), "dmg");
    let (_, stderr) = ok(&w.realize("dmg"));
    assert!(stderr.contains("dmg already realized"), "{stderr}");
    // `models fetch --repair` does the same for the store alone.
    std::fs::write(&model, b"x").unwrap();
    let out = w.run(&["models", "verify", "dmg"]);
    assert!(text(&out.stderr).contains("comfyver models fetch --repair dmg"));
    ok(&w.run(&["models", "fetch", "--repair", "dmg"]));
    assert_eq!(std::fs::read(&model).unwrap(), w.models["m1.safetensors"]);
}

#[test]
fn a_new_core_commit_replaces_the_home_and_keeps_the_node_cache() {
    let mut w = World::new();
    w.spec("up", &["req_pack"], &[], &[]);
    ok(&w.realize("up"));
    let home = w.home("up");
    let checkout = std::fs::read_link(home.join("custom_nodes/req_pack")).unwrap();
    let checkout_ino = inode(&checkout.join("__init__.py"));

    w.core.write(&[("NEW_IN_V2.txt", "v2\n")]);
    let v2 = w.core.commit("core v2");
    w.core.tag("v2");
    w.core.push();
    let path = w.versions().join("up.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["comfy"]["ref"] = json!("v2");
    std::fs::write(&path, spec.to_string()).unwrap();

    let (_, stderr) = ok(&w.realize("up"));
    assert!(
        stderr.contains(&format!("== core: {}", &v2[..12])),
        "{stderr}"
    );
    // The home links the shared checkout of the new commit.
    assert!(home.join("core/NEW_IN_V2.txt").is_file());
    assert!(
        std::fs::read_link(home.join("core"))
            .unwrap()
            .to_string_lossy()
            .ends_with(&format!("@{v2}"))
    );
    assert_eq!(w.lock("up")["comfy"]["commit"], json!(v2));
    assert_eq!(
        inode(&checkout.join("__init__.py")),
        checkout_ino,
        "the node cache was kept"
    );
    w.assert_verified(&w.cache(), "up");
    let leftovers: Vec<String> = std::fs::read_dir(home.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        leftovers,
        ["comfy-up"],
        "no temp directory left beside the home"
    );
}

#[test]
fn a_rewrite_to_a_directory_of_bare_mirrors_resolves_and_realizes() {
    let w = World::new();
    w.spec("mirrors", &["req_pack"], &[], &[]);
    // The spec names public URLs without `.git`; the user keeps
    // `<name>.git` bare mirrors in one directory (the remotes here).
    let path = w.versions().join("mirrors.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    spec["comfy"]["repo"] = "https://git.example.invalid/org/ComfyUI".into();
    spec["custom_nodes"][0]["repo"] = "https://git.example.invalid/org/req_pack".into();
    std::fs::write(&path, serde_json::to_string_pretty(&spec).unwrap()).unwrap();
    let rewrite = format!(
        "https://git.example.invalid/org/=file://{}/",
        w.remotes().display()
    );
    let out = w
        .realize_cmd(&w.cache(), "mirrors", &[])
        .env("COMFYVER_URL_REWRITES", &rewrite)
        .output()
        .unwrap();
    let (_, stderr) = ok(&out);
    assert!(stderr.contains("mirrors realized in"), "{stderr}");
    let lock = w.lock("mirrors");
    assert_eq!(
        lock["custom_nodes"][0]["commit"],
        w.packs["req_pack"].head().as_str()
    );
    let home = w.home("mirrors");
    assert!(home.join("custom_nodes/req_pack/__init__.py").is_file());
    assert!(
        home.join("core/main.py").is_file(),
        "the core was checked out"
    );
}

/// The spec file of `id` as the user keeps it.
fn spec_path(w: &World, id: &str) -> PathBuf {
    w.versions().join(format!("{id}.json"))
}

#[test]
fn fetch_commands_resolve_first_and_gc_refuses_while_a_spec_cannot_be_read() {
    let w = World::new();
    w.spec("a", &["req_pack"], &["m1.safetensors"], &[]);
    w.spec("b", &[], &["m2.safetensors"], &[]);

    // Never resolved: `nodes fetch` resolves first, as `cargo fetch` does.
    assert!(!w.cache().join("resolved/a.lock.json").exists());
    ok(&w.run(&["nodes", "fetch", "a"]));
    let lock = w.lock("a");
    let commit = lock["custom_nodes"][0]["commit"].as_str().unwrap();
    let checkouts: Vec<String> = std::fs::read_dir(w.cache().join("custom_nodes"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        checkouts.iter().any(|c| c.ends_with(&format!("@{commit}"))),
        "{checkouts:?}"
    );
    // `models fetch` needs no lock: b stays unresolved, only its spec names m2.
    ok(&w.run(&["models", "fetch", "b"]));
    assert!(!w.cache().join("resolved/b.lock.json").exists());
    let m2 = w.cache().join("models/checkpoints/m2.safetensors");
    assert!(m2.is_file());

    // b's spec breaks: what it uses is unknown, so neither gc deletes anything.
    std::fs::write(spec_path(&w, "b"), "{ \"schema_version\": 2, oops").unwrap();
    let before = snapshot(&[w.cache()]);
    for args in [&["gc", "--yes"][..], &["models", "gc", "--yes"][..]] {
        let out = w.run(args);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("nothing was deleted"), "{stderr}");
        assert!(stderr.contains("b.json"), "{stderr}");
        assert!(stderr.contains("--force"), "{stderr}");
        assert_same(&before, &snapshot(&[w.cache()]));
    }

    // --force says what it ignores, and then what only b used goes.
    let out = w.run(&["gc", "--yes", "--force"]);
    let (_, stderr) = ok(&out);
    assert!(
        stderr.contains("ignoring") && stderr.contains("b.json"),
        "{stderr}"
    );
    assert!(!m2.exists(), "m2 was referenced by nothing readable");
    let kept = w
        .cache()
        .join("custom_nodes")
        .join(checkouts.iter().find(|c| c.ends_with(commit)).unwrap());
    assert!(kept.is_dir(), "a's lock still references its checkout");
}

/// A git server that accepts connections and never answers.
fn stalling_git_server() -> (u16, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(90);
        while Instant::now() < until {
            match listener.accept() {
                Ok((s, _)) => held.push(s),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    (port, handle)
}

/// Runs `cmd` to its end, killing it (and failing) after `limit`.
fn output_within(cmd: Command, limit: Duration) -> Output {
    comfyver_testkit::cli::output_within(cmd, limit).unwrap_or_else(|_| {
        panic!("still running after {limit:?}: the git timeout was not applied")
    })
}

#[test]
fn git_timeout_applies_to_realize_and_run_against_a_stalling_server() {
    let w = World::new();
    let (port, _server) = stalling_git_server();
    let spec = json!({
        "schema_version": 2,
        "version_id": "stalled",
        "comfy": {"repo": format!("git://127.0.0.1:{port}/ComfyUI"), "ref": "v1"},
    });
    std::fs::write(spec_path(&w, "stalled"), spec.to_string()).unwrap();
    let workflow = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../workflows/smoke.json");
    for args in [
        vec!["realize", "stalled"],
        vec!["run", "stalled", "--workflow", workflow.to_str().unwrap()],
    ] {
        let mut cmd = w.cmd(&args);
        cmd.env("COMFYVER_GIT_TIMEOUT", "2");
        // The default limit is 120 s: well past the watchdog.
        let out = output_within(cmd, Duration::from_secs(60));
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("within 2 s"), "{args:?}: {stderr}");
        assert!(stderr.contains("COMFYVER_GIT_TIMEOUT"), "{stderr}");
    }
}

#[test]
fn remove_and_realize_refuse_the_store_the_cache_root_and_home_dir() {
    let w = World::new();
    w.spec("a", &[], &["m1.safetensors"], &[]);
    ok(&w.run(&["models", "fetch", "a"]));
    ok(&w.run(&["resolve", "a"]));
    let store = w.cache().join("models");
    assert!(
        store.join(".comfyver").is_dir(),
        "the store keeps its index there"
    );
    // A stand-in for the user's $HOME, with a `.comfyver/` of its own.
    let user_home = w.root().join("user-home");
    std::fs::create_dir_all(user_home.join(".comfyver")).unwrap();
    std::fs::write(user_home.join("notes.txt"), "mine").unwrap();
    let before = snapshot(&[w.cache(), user_home.clone()]);
    let wheels = w.wheels();
    for place in [&store, &w.cache(), &user_home] {
        let place = place.to_str().unwrap();
        for args in [
            vec!["remove", "a", "--home", place],
            vec![
                "realize",
                "a",
                "--home",
                place,
                "--wheels-dir",
                wheels.to_str().unwrap(),
            ],
        ] {
            let mut cmd = w.cmd(&args);
            cmd.env("HOME", &user_home);
            let out = cmd.output().unwrap();
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
            assert!(stderr.contains("not a version home"), "{args:?}: {stderr}");
        }
    }
    assert_same(&before, &snapshot(&[w.cache(), user_home.clone()]));
}

#[test]
fn two_lock_blind_workers_realize_one_version_and_both_succeed() {
    // As on a network volume that passes no flock between hosts: neither
    // process takes any lock; the home's build lease (O_EXCL) keeps them apart.
    let w = World::new();
    w.spec(
        "shared",
        &["req_pack", "script_pack"],
        &["m1.safetensors"],
        &[],
    );
    ok(&w.run(&["resolve", "shared"]));
    let spawn = || {
        w.realize_cmd(&w.cache(), "shared", &[])
            .env("COMFYVER_TEST_NO_LOCKS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    for child in [a, b] {
        ok(&child.wait_with_output().unwrap());
    }
    w.assert_verified(&w.cache(), "shared");
    assert_eq!(w.side_effect_runs(), 1, "the home was built once");
    let leftovers: Vec<String> = std::fs::read_dir(w.cache().join("versions"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no lease or temp left: {leftovers:?}");
}

/// Serves every wheel of `dir` as a PEP 503 simple index on `server`:
/// `/simple/<project>/` pages linking `/files/<wheel>`. Returns the wheel
/// paths served, by project.
fn serve_simple_index(server: &HttpServer, dir: &Path) -> BTreeMap<String, String> {
    let mut pages: BTreeMap<String, String> = BTreeMap::new();
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        if !name.ends_with(".whl") {
            continue;
        }
        let project = name.split('-').next().unwrap().replace('_', "-");
        let bytes = std::fs::read(dir.join(&name)).unwrap();
        let path = format!("/files/{name}");
        pages
            .entry(project.clone())
            .or_default()
            .push_str(&format!("<a href=\"{path}\">{name}</a>\n"));
        server.add_file(&path, bytes);
        files.insert(format!("{project}/{name}"), path);
    }
    for (project, links) in &pages {
        server.add_file(
            &format!("/simple/{project}/"),
            format!("<!DOCTYPE html><html><body>\n{links}</body></html>\n").into_bytes(),
        );
    }
    files
}

#[test]
fn a_lock_with_a_python_set_fills_uvs_cache_during_the_git_work_and_downloads_each_wheel_once() {
    let w = World::new();
    let index = HttpServer::start();
    let wheels_served = serve_simple_index(&index, &w.wheels());
    w.spec("idx", &["req_pack", "extra_pack"], &[], &[]);
    // The packages come from the index over HTTP (no wheel directory).
    let spec_file = w.versions().join("idx.json");
    let mut spec: Value = serde_json::from_slice(&std::fs::read(&spec_file).unwrap()).unwrap();
    spec["python"]["index_url"] = json!(index.url("/simple"));
    std::fs::write(&spec_file, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    let calls = w.root().join("uv-calls.txt");
    let shim = w.root().join("logging-uv");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            calls.display(),
            which("uv").display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    let uv_calls = || {
        let text = std::fs::read_to_string(&calls).unwrap_or_default();
        std::fs::remove_file(&calls).ok();
        text.lines().map(str::to_string).collect::<Vec<_>>()
    };
    let realize = |cache: &Path| {
        ok(&w
            .cmd_in(cache, &["realize", "idx"])
            .env("UV", &shim)
            .output()
            .unwrap())
    };

    // A fresh resolution: no set to warm the cache with.
    realize(&w.cache());
    let fresh = uv_calls();
    assert!(!fresh.iter().any(|c| c.contains("--target")), "{fresh:?}");
    let locked: Vec<String> = w.lock("idx")["python"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        locked,
        [
            "fakecomfydep==1.0",
            "fakerequests==2.0",
            "nodedep-a==1.0",
            "nodedep-b==2.0"
        ]
    );
    let gets = |project: &str| -> usize {
        wheels_served
            .iter()
            .filter(|(k, _)| k.starts_with(&format!("{project}/")))
            .map(|(_, path)| index.full_gets(path))
            .sum()
    };
    let before: Vec<usize> = locked
        .iter()
        .map(|p| gets(p.split("==").next().unwrap()))
        .collect();

    // Another machine's empty cache with that lock: the warm-up (a --target
    // install into a throwaway directory) runs beside the checkouts, the
    // replay syncs the home from uv's cache, and every wheel crosses the
    // network once.
    let other = w.root().join("other-cache");
    std::fs::create_dir_all(other.join("resolved")).unwrap();
    std::fs::copy(
        w.cache().join("resolved/idx.lock.json"),
        other.join("resolved/idx.lock.json"),
    )
    .unwrap();
    realize(&other);
    let replay = uv_calls();
    assert_eq!(
        replay.iter().filter(|c| c.contains("--target")).count(),
        1,
        "{replay:?}"
    );
    assert!(
        replay.iter().any(|c| c.starts_with("pip sync")),
        "{replay:?}"
    );
    for (package, was) in locked.iter().zip(before) {
        let name = package.split("==").next().unwrap();
        assert_eq!(gets(name) - was, 1, "{name}: one download for the replay");
    }
    w.assert_verified(&other, "idx");
    let leftovers: Vec<String> = std::fs::read_dir(&other)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no throwaway left: {leftovers:?}");
}
