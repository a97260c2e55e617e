//! `comfyver import snapshot|workflow`, `export snapshot`, `migrate` and the
//! spec editing commands (`new`, `add`, `remove node|model`, `copy`), run as
//! real processes. Inputs are real-format fixtures (`fixtures/import/`)
//! pointing at real git repositories built at test time (file://); one test
//! realizes an imported version with real uv and wheels built at test time.

use std::path::{Path, PathBuf};
use std::process::Output;

use comfyver_testkit::cli::{fails, lock_path, ok, read_json};
use comfyver_testkit::git::Repo;
use comfyver_testkit::world::World;
use serde_json::{Value, json};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_comfyver"))
}

/// The standard world (core `ComfyUI`, `hello_pack`) plus `pack_b`,
/// `cnr_pack` (tagged `1.0.5`), `mapped_pack` and `someone/aux_pack`, and
/// `someone/hello_pack` as another path to `hello_pack` (for `aux_id`s).
struct ImportWorld {
    world: World,
    repos: Vec<(String, String)>,
}

fn plain_pack(remotes: &Path, name: &str) -> Repo {
    let mut r = Repo::new(remotes, name);
    r.write(&[("__init__.py", "NODE_CLASS_MAPPINGS = {}\n")]);
    r.commit(name);
    r
}

impl ImportWorld {
    fn new() -> ImportWorld {
        let world = World::new(&["hello_pack"]);
        let remotes = world.root.join("remotes");
        let mut repos = vec![
            ("ComfyUI".to_string(), world.core.head()),
            ("hello_pack".to_string(), world.packs[0].1.head()),
        ];
        for name in ["pack_b", "cnr_pack", "mapped_pack"] {
            let mut r = plain_pack(&remotes, name);
            if name == "cnr_pack" {
                r.tag("1.0.5");
            }
            r.push();
            repos.push((name.to_string(), r.head()));
        }
        let mut aux = plain_pack(&remotes.join("someone"), "aux_pack");
        aux.push();
        repos.push(("aux_pack".to_string(), aux.head()));
        std::fs::rename(
            remotes.join("someone/aux_pack.git"),
            remotes.join("someone/aux_pack"),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            remotes.join("hello_pack.git"),
            remotes.join("someone/hello_pack"),
        )
        .unwrap();
        ImportWorld { world, repos }
    }

    fn remotes(&self) -> PathBuf {
        self.world.root.join("remotes")
    }

    fn commit(&self, name: &str) -> &str {
        &self.repos.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// A fixture with its placeholders filled in, written into the world.
    fn fixture(&self, name: &str) -> PathBuf {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/import");
        let mut text = std::fs::read_to_string(here.join(name)).unwrap();
        text = text.replace("@REMOTES@", self.remotes().to_str().unwrap());
        let model_url = self
            .world
            .server
            .as_ref()
            .unwrap()
            .url("/m/tiny.safetensors");
        text = text.replace("@MODEL_URL@", &model_url);
        for (repo, commit) in &self.repos {
            text = text.replace(&format!("@COMMIT:{repo}@"), commit);
        }
        assert!(
            !text.contains("@COMMIT:") && !text.contains("@REMOTES@"),
            "{text}"
        );
        let dir = self.world.root.join("inputs");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), text).unwrap();
        dir.join(name)
    }

    fn run(&self, args: &[&str]) -> Output {
        self.world.comfyver(bin(), args, None)
    }

    fn spec_path(&self, id: &str) -> PathBuf {
        self.world.root.join(format!("versions/{id}.json"))
    }

    fn spec(&self, id: &str) -> Value {
        read_json(&self.spec_path(id))
    }

    fn lock(&self, id: &str) -> Value {
        read_json(&lock_path(&self.world.root.join("cache"), id))
    }
}

fn node_commits(lock: &Value) -> Vec<(String, String)> {
    lock["custom_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["name"].as_str().unwrap_or_default().to_string(),
                n["commit"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn snapshot_import_pins_commits_resolves_realizes_and_exports_back() {
    let env = ImportWorld::new();
    let snap = env.fixture("snapshot.json");
    let list = env.fixture("custom-node-list.json");
    let comfy = format!("file://{}/ComfyUI.git", env.remotes().display());
    let (stdout, stderr) = ok(&env.run(&[
        "import",
        "snapshot",
        snap.to_str().unwrap(),
        "--id",
        "snap",
        "--comfy",
        &comfy,
        "--node-map",
        list.to_str().unwrap(),
    ]));
    // Disabled, unmapped registry, single-file and local pip entries are reported.
    for note in [
        "ComfyUI-Impact-Pack (disabled in the snapshot)",
        "registry pack `comfyui-logic` 1.0.0 needs a repository URL",
        "single-file node `my_single_node.py`",
        "pip `mylocal` came from a local file",
        "+cu",
    ] {
        assert!(stderr.contains(note), "missing note `{note}` in:\n{stderr}");
    }
    assert!(stdout.contains("+ node cnr_pack"), "{stdout}");

    let spec = env.spec("snap");
    assert_eq!(spec["comfy"]["commit"], env.commit("ComfyUI"));
    let nodes = spec["custom_nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3, "{spec:#}");
    assert_eq!(nodes[0]["commit"], env.commit("hello_pack"));
    assert_eq!(nodes[1]["commit"], env.commit("pack_b"));
    assert_eq!(nodes[2]["ref"], "1.0.5");
    assert_eq!(
        spec["python"]["constraints"],
        json!(["nodedep-a==1.0", "fakerequests==2.0", "torch==2.6.0+cu126"])
    );
    assert!(!spec.to_string().contains("Impact-Pack"));
    ok(&env.run(&["validate", "snap"]));

    // Resolves to exactly the snapshot's commits (and the registry version's tag).
    ok(&env.run(&["resolve", "snap"]));
    let lock = env.lock("snap");
    assert_eq!(lock["comfy"]["commit"], env.commit("ComfyUI"));
    let commits: Vec<String> = node_commits(&lock).into_iter().map(|(_, c)| c).collect();
    assert_eq!(
        commits,
        [
            env.commit("hello_pack"),
            env.commit("pack_b"),
            env.commit("cnr_pack")
        ]
    );

    // Realizes (the test's package index stands in for PyPI: an edit of the
    // imported spec that an offline user would make too).
    let mut spec = env.spec("snap");
    spec["python"]["index_url"] = json!(env.world.server.as_ref().unwrap().url("/simple"));
    std::fs::write(
        env.spec_path("snap"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
    ok(&env.run(&["realize", "snap"]));
    let home = env.world.home("snap");
    for n in ["hello_pack", "pack_b", "cnr_pack"] {
        assert!(
            home.join("custom_nodes")
                .join(n)
                .join("__init__.py")
                .exists(),
            "{n}"
        );
    }

    // Export gives a Manager snapshot of the lock; importing it gives the same pins.
    let (exported, _) = ok(&env.run(&["export", "snapshot", "snap"]));
    let exported: Value = serde_json::from_str(&exported).unwrap();
    assert_eq!(exported["comfyui"], env.commit("ComfyUI"));
    let git = exported["git_custom_nodes"].as_object().unwrap();
    assert_eq!(git.len(), 3);
    for (url, entry) in git {
        assert_eq!(entry["disabled"], false, "{url}");
    }
    let lock = env.lock("snap");
    // `pips` is the realized package set (constraints pin, they do not install).
    let realized: Vec<&str> = lock["python"]["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(realized.contains(&"fakecomfydep==1.0"), "{lock:#}");
    let pips: Vec<&str> = exported["pips"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(pips, realized);
    let back = env.world.root.join("inputs/exported.json");
    std::fs::write(&back, exported.to_string()).unwrap();
    ok(&env.run(&[
        "import",
        "snapshot",
        back.to_str().unwrap(),
        "--id",
        "back",
        "--comfy",
        &comfy,
    ]));
    ok(&env.run(&["resolve", "back"]));
    assert_eq!(
        node_commits(&env.lock("back")),
        node_commits(&env.lock("snap"))
    );
    assert_eq!(env.lock("back")["comfy"]["commit"], env.commit("ComfyUI"));

    // An existing id is refused and left alone.
    let before = std::fs::read(env.spec_path("snap")).unwrap();
    let (_, err) = fails(&env.run(&["import", "snapshot", snap.to_str().unwrap(), "--id", "snap"]));
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read(env.spec_path("snap")).unwrap(), before);
}

/// A YAML snapshot, as Manager's `save-snapshot --output x.yaml` and
/// comfy-cli's `snapshot save` write it (PyYAML's `yaml.dump` of the JSON
/// snapshot under `custom_nodes`; the real PyYAML writes it here), imports
/// to the same spec as the JSON one; a broken one names the file and line.
#[test]
fn a_yaml_snapshot_imports_like_its_json_and_bad_yaml_writes_nothing() {
    let env = ImportWorld::new();
    let snap = env.fixture("snapshot.json");
    let list = env.fixture("custom-node-list.json");
    let yaml = snap.with_extension("yaml");
    let dumped = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml\n\
             snap = json.load(open(sys.argv[1]))\n\
             yaml.dump({'custom_nodes': snap}, open(sys.argv[2], 'w'), allow_unicode=True)",
        ])
        .arg(&snap)
        .arg(&yaml)
        .output()
        .expect("python3 runs");
    assert!(dumped.status.success(), "{dumped:?}");
    let text = std::fs::read_to_string(&yaml).unwrap();
    assert!(text.starts_with("custom_nodes:\n"), "{text}");
    let comfy = format!("file://{}/ComfyUI.git", env.remotes().display());
    for (file, id) in [(&snap, "from-json"), (&yaml, "from-yaml")] {
        ok(&env.run(&[
            "import",
            "snapshot",
            file.to_str().unwrap(),
            "--id",
            id,
            "--comfy",
            &comfy,
            "--node-map",
            list.to_str().unwrap(),
        ]));
    }
    let (mut from_json, mut from_yaml) = (env.spec("from-json"), env.spec("from-yaml"));
    assert_eq!(from_yaml["custom_nodes"].as_array().unwrap().len(), 3);
    assert_eq!(from_yaml["comfy"]["commit"], env.commit("ComfyUI"));
    assert_eq!(
        from_yaml["description"],
        "imported from the ComfyUI-Manager snapshot snapshot.yaml"
    );
    // The same spec but for its id and description, and the constraints'
    // order: PyYAML sorts a mapping's keys, so `pips` comes in another order.
    for spec in [&mut from_json, &mut from_yaml] {
        spec["version_id"] = Value::Null;
        spec["description"] = Value::Null;
        let mut pins: Vec<Value> = spec["python"]["constraints"].as_array().unwrap().clone();
        pins.sort_by_key(Value::to_string);
        spec["python"]["constraints"] = Value::Array(pins);
    }
    assert_eq!(from_yaml, from_json);

    let bad = snap.with_file_name("bad.yml");
    std::fs::write(&bad, "custom_nodes:\n  comfyui: [\n").unwrap();
    let (_, err) = fails(&env.run(&["import", "snapshot", bad.to_str().unwrap(), "--id", "x"]));
    assert!(err.contains("bad.yml is not valid YAML"), "{err}");
    assert!(err.contains("line 3"), "{err}");
    assert!(!env.spec_path("x").exists());
}

#[test]
fn bad_snapshots_name_the_json_path_and_write_nothing() {
    let env = ImportWorld::new();
    let dir = env.world.root.join("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, body, expected) in [
        (
            "hash.json",
            r#"{"comfyui": null, "git_custom_nodes": {"https://h/o/r": {"hash": 7}}}"#,
            "git_custom_nodes[\"https://h/o/r\"].hash: expected a 40-hex commit",
        ),
        (
            "core.json",
            r#"{"comfyui": "abc", "git_custom_nodes": {}}"#,
            "comfyui: expected a 40-hex commit or null",
        ),
        (
            "other.json",
            r#"{"nodes": []}"#,
            "expected a ComfyUI-Manager snapshot",
        ),
        ("syntax.json", "{\"comfyui\": ", "is not valid JSON"),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let (_, err) = fails(&env.run(&["import", "snapshot", p.to_str().unwrap(), "--id", "x"]));
        assert!(err.contains(expected), "{name}: {err}");
        assert!(!env.spec_path("x").exists(), "{name} left a spec behind");
    }
}

#[test]
fn workflow_import_adds_the_packs_it_names_and_lists_missing_models() {
    let env = ImportWorld::new();
    let remotes = env.remotes();
    // The target version already has hello_pack (by another path) and the checkpoint.
    let spec = json!({
        "schema_version": 2,
        "version_id": "wf",
        "comfy": {"repo": format!("file://{}/ComfyUI.git", remotes.display()), "ref": "v1"},
        "custom_nodes": [{"repo": format!("file://{}/someone/hello_pack", remotes.display()), "ref": "main"}],
        "models": [{"source": env.world.server.as_ref().unwrap().url("/m/tiny.safetensors")}]
    });
    env.world.write_spec("wf", &spec);
    let wf = env.fixture("workflow.json");
    let list = env.fixture("custom-node-list.json");
    let map = env.fixture("extension-node-map.json");
    let base = format!("file://{}", remotes.display());
    let args = [
        "import",
        "workflow",
        wf.to_str().unwrap(),
        "--into",
        "wf",
        "--aux-base",
        &base,
        "--node-map",
        list.to_str().unwrap(),
        "--node-map",
        map.to_str().unwrap(),
    ];
    let (stdout, stderr) = ok(&env.run(&args));
    let spec = env.spec("wf");
    let nodes = spec["custom_nodes"].as_array().unwrap();
    let repos: Vec<&str> = nodes.iter().map(|n| n["repo"].as_str().unwrap()).collect();
    assert_eq!(
        repos,
        [
            format!("{base}/someone/hello_pack"),
            format!("{base}/cnr_pack.git"),
            format!("{base}/mapped_pack.git"),
            format!("{base}/someone/aux_pack"),
        ],
        "{spec:#}"
    );
    assert_eq!(nodes[1]["ref"], "1.0.5");
    assert_eq!(nodes[3]["commit"], env.commit("aux_pack"));
    assert!(nodes[2].get("ref").is_none() && nodes[2].get("commit").is_none());
    // Reported: the registry pack without a repository, the unplaced class,
    // the core version, and the models the spec lacks (not the checkpoint it has).
    assert!(stderr.contains("registry pack `comfyui-logic`"), "{stderr}");
    assert!(stderr.contains("MysteryNode"), "{stderr}");
    assert!(stderr.contains("saved with ComfyUI 0.3.64"), "{stderr}");
    assert!(
        stdout.contains("missing model loras/styles/missing_lora.safetensors"),
        "{stdout}"
    );
    assert!(
        stdout.contains("missing model vae/ae.safetensors"),
        "{stdout}"
    );
    assert!(
        stdout.contains("https://files.invalid/vae/ae.safetensors"),
        "{stdout}"
    );
    assert!(
        stdout.contains("missing model upscale_models/4x_upscaler.pth"),
        "{stdout}"
    );
    assert!(
        stdout.contains("missing model ?/some_upscaler.pth"),
        "{stdout}"
    );
    assert!(!stdout.contains("tiny.safetensors"), "{stdout}");

    ok(&env.run(&["validate", "wf"]));
    ok(&env.run(&["resolve", "wf"]));
    let lock = env.lock("wf");
    let commits = node_commits(&lock);
    assert_eq!(commits[1].1, env.commit("cnr_pack"));
    assert_eq!(commits[3].1, env.commit("aux_pack"));

    // A second import adds nothing and does not touch the file.
    let before = std::fs::metadata(env.spec_path("wf"))
        .unwrap()
        .modified()
        .unwrap();
    let (_, stderr) = ok(&env.run(&args));
    assert!(stderr.contains("unchanged"), "{stderr}");
    let after = std::fs::metadata(env.spec_path("wf"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(before, after);

    // An API-format workflow is refused with what to do instead.
    let api = env.world.workflow(
        "api",
        &json!({"1": {"class_type": "EmptyImage", "inputs": {}}}),
    );
    let (_, err) = fails(&env.run(&["import", "workflow", api.to_str().unwrap(), "--into", "wf"]));
    assert!(err.contains("API-format workflow"), "{err}");
}

#[test]
fn migrate_schema1_and_old_lockfile() {
    let env = ImportWorld::new();
    let old = env.fixture("schema1.json");
    // validate names the command.
    let (_, err) = fails(&env.run(&["validate", old.to_str().unwrap()]));
    assert!(err.contains("comfyver migrate"), "{err}");

    let (_, stderr) = ok(&env.run(&["migrate", old.to_str().unwrap()]));
    assert!(stderr.contains("$.gpu was not carried over"), "{stderr}");
    assert!(stderr.contains("`not-a-sha` is not a SHA-256"), "{stderr}");
    let spec = env.spec("legacy-one");
    assert_eq!(spec["schema_version"], 2);
    assert_eq!(spec["comfy"]["ref"], "v1");
    assert_eq!(spec["custom_nodes"][0]["ref"], "main");
    assert_eq!(spec["custom_nodes"][1]["commit"], env.commit("pack_b"));
    assert_eq!(spec["custom_nodes"][1]["install_script"], false);
    assert_eq!(spec["models"][0]["target_subdir"], "checkpoints");
    assert_eq!(spec["env"]["PYTHONUNBUFFERED"], "1");
    ok(&env.run(&["validate", "legacy-one"]));
    let lock = env.lock("legacy-one");
    assert_eq!(lock["comfy"]["commit"], env.commit("ComfyUI"));
    assert_eq!(
        node_commits(&lock)
            .into_iter()
            .map(|(_, c)| c)
            .collect::<Vec<_>>(),
        [env.commit("hello_pack"), env.commit("pack_b")]
    );
    // The lock matches the written spec: resolve has nothing to do.
    let (_, stderr) = ok(&env.run(&["resolve", "legacy-one"]));
    assert!(stderr.contains("lock unchanged"), "{stderr}");
    // It realizes (with the test's package index standing in for PyPI).
    let mut spec = env.spec("legacy-one");
    spec["python"] = json!({"index_url": env.world.server.as_ref().unwrap().url("/simple")});
    std::fs::write(
        env.spec_path("legacy-one"),
        serde_json::to_vec_pretty(&spec).unwrap(),
    )
    .unwrap();
    ok(&env.run(&["realize", "legacy-one"]));
    let home = env.world.home("legacy-one");
    assert!(home.join("custom_nodes/hello_pack/__init__.py").exists());
    assert!(home.join("custom_nodes/pack_b/__init__.py").exists());
    let linked = std::fs::read(home.join("models/checkpoints/tiny.safetensors"))
        .or_else(|_| {
            std::fs::read(
                env.world
                    .root
                    .join("cache/models/checkpoints/tiny.safetensors"),
            )
        })
        .unwrap();
    assert_eq!(linked, b"not really a model");

    // The id comes from the file name's tag; `v1` is taken in this world.
    let lockfile = env.fixture("comfy-v1.lock.json");
    let (_, err) = fails(&env.run(&["migrate", lockfile.to_str().unwrap()]));
    assert!(err.contains("version `v1` already exists"), "{err}");
    let (_, stderr) = ok(&env.run(&["migrate", lockfile.to_str().unwrap(), "--id", "old-v1"]));
    assert!(
        stderr.contains("$.docker_image was not carried over"),
        "{stderr}"
    );
    assert!(stderr.contains("local file of the old machine"), "{stderr}");
    let spec = env.spec("old-v1");
    assert_eq!(spec["comfy"]["commit"], env.commit("ComfyUI"));
    assert_eq!(spec["custom_nodes"][1]["name"], "packb");
    assert_eq!(spec["python"]["version"], "3.11");
    assert_eq!(
        spec["python"]["constraints"],
        json!(["nodedep-a==1.0", "fakerequests==2.0"])
    );
    assert_eq!(
        spec["models"][0]["sha256"],
        "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
    );
    assert_eq!(spec["models"][0]["name"], "tiny.safetensors");
    ok(&env.run(&["validate", "old-v1"]));
    let lock = env.lock("old-v1");
    assert_eq!(
        node_commits(&lock),
        [
            (
                "hello_pack".to_string(),
                env.commit("hello_pack").to_string()
            ),
            ("packb".to_string(), env.commit("pack_b").to_string())
        ]
    );

    // A file that cannot be migrated writes neither a spec nor a lock.
    let bad = env.world.root.join("inputs/comfy-bad.lock.json");
    std::fs::write(&bad, r#"{"custom_nodes": [{"commit": "0123"}]}"#).unwrap();
    let (_, err) = fails(&env.run(&["migrate", bad.to_str().unwrap()]));
    assert!(err.contains("expected the ComfyUI core"), "{err}");
    std::fs::write(
        &bad,
        format!(
            r#"{{"comfyui": {{"repo": "file://{}/ComfyUI.git", "ref": "no-such-tag"}}}}"#,
            env.remotes().display()
        ),
    )
    .unwrap();
    let (_, err) = fails(&env.run(&["migrate", bad.to_str().unwrap()]));
    assert!(err.contains("no-such-tag"), "{err}");
    assert!(!env.spec_path("bad").exists());
    assert!(!env.world.root.join("cache/resolved/bad.lock.json").exists());
}

/// A hand-formatted spec: four-space indent, a one-line core object, a
/// key order of its own.
const HAND: &str = r#"{
    "version_id": "hand",
    "schema_version": 2,
    "comfy": { "repo": "@CORE@", "ref": "v1" },
    "env": {"A": "1"},
    "custom_nodes": [
        {
            "name": "hello",
            "repo": "@HELLO@"
        }
    ]
}
"#;

#[test]
fn edits_keep_formatting_validate_and_refuse_bad_input_untouched() {
    let env = ImportWorld::new();
    let remotes = env.remotes();
    let core = format!("file://{}/ComfyUI.git", remotes.display());
    let hello = format!("file://{}/hello_pack.git", remotes.display());
    let text = HAND.replace("@CORE@", &core).replace("@HELLO@", &hello);
    std::fs::write(env.spec_path("hand"), &text).unwrap();

    // add node: only the new element is inserted, in the file's own style.
    let pack_b = format!("file://{}/pack_b.git@main", remotes.display());
    let (stdout, stderr) = ok(&env.run(&["add", "node", "hand", &pack_b]));
    assert!(stdout.contains("+ node pack_b"), "{stdout}");
    assert!(
        stderr.contains("+ pack_b  main ->"),
        "resolve preview: {stderr}"
    );
    let after = std::fs::read_to_string(env.spec_path("hand")).unwrap();
    let inserted = format!(
        ",\n        {{\n            \"repo\": \"file://{}/pack_b.git\",\n            \"ref\": \"main\"\n        }}",
        remotes.display()
    );
    assert_eq!(after.replacen(&inserted, "", 1), text, "{after}");
    ok(&env.run(&["validate", "hand"]));

    // add model, then remove it again: back to the same bytes.
    let model = env
        .world
        .server
        .as_ref()
        .unwrap()
        .url("/m/tiny.safetensors");
    let sha = "ab".repeat(32);
    ok(&env.run(&[
        "add", "model", "hand", &model, "--to", "loras", "--sha256", &sha,
    ]));
    let spec = env.spec("hand");
    assert_eq!(spec["models"][0]["target_subdir"], "loras");
    assert_eq!(spec["models"][0]["sha256"], sha);
    ok(&env.run(&["validate", "hand"]));

    // Invalid edits: bad URL, duplicate name, duplicate repo, duplicate model
    // path, unknown names, bad id. Bytes and mtime stay as they were.
    let path = env.spec_path("hand");
    let bytes = std::fs::read(&path).unwrap();
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let dup_repo = format!("{hello}/");
    let other = format!("file://{}/cnr_pack.git", remotes.display());
    for (args, expected) in [
        (
            vec!["add", "node", "hand", "not a url"],
            "is not a repository",
        ),
        (
            vec!["add", "node", "hand", &other, "--name", "hello"],
            "node name `hello` is already used by custom_nodes[0]",
        ),
        (
            vec!["add", "node", "hand", &dup_repo],
            "nothing was changed",
        ),
        (
            vec!["add", "model", "hand", &model, "--to", "loras"],
            "nothing was changed",
        ),
        (
            vec!["add", "model", "hand", "ftp://x/y.bin"],
            "nothing was changed",
        ),
        (
            vec!["remove", "node", "hand", "nope"],
            "no custom node named `nope` (its nodes: hello, pack_b)",
        ),
        (
            vec!["remove", "model", "hand", "nope.bin"],
            "loras/tiny.safetensors",
        ),
        (
            vec!["add", "node", "missing", &other],
            "no version `missing`",
        ),
    ] {
        let (_, err) = fails(&env.run(&args));
        assert!(err.contains(expected), "{args:?}: {err}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{args:?} changed the file"
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().modified().unwrap(),
            mtime,
            "{args:?}"
        );
    }

    ok(&env.run(&["remove", "model", "hand", "tiny.safetensors"]));
    ok(&env.run(&["remove", "node", "hand", "pack_b"]));
    let now = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        now,
        text.replace("\n    ]\n}", "\n    ],\n    \"models\": []\n}")
    );
    ok(&env.run(&["validate", "hand"]));

    // copy: only version_id differs.
    ok(&env.run(&["copy", "hand", "hand2"]));
    let copied = std::fs::read_to_string(env.spec_path("hand2")).unwrap();
    assert_eq!(
        copied,
        now.replace("\"version_id\": \"hand\"", "\"version_id\": \"hand2\"")
    );
    ok(&env.run(&["validate", "hand2"]));
    let (_, err) = fails(&env.run(&["copy", "hand", "hand2"]));
    assert!(err.contains("already exists"), "{err}");
    let (_, err) = fails(&env.run(&["copy", "hand", "../escape"]));
    assert!(err.contains("is not a version id"), "{err}");

    // new: a valid skeleton that resolves.
    let (_, stderr) = ok(&env.run(&["new", "fresh", "--comfy", &format!("{core}@v1")]));
    assert!(stderr.contains("+ comfy  v1 ->"), "{stderr}");
    let fresh = env.spec("fresh");
    assert_eq!(
        fresh,
        json!({"schema_version": 2, "version_id": "fresh", "comfy": {"repo": core, "ref": "v1"}})
    );
    ok(&env.run(&["validate", "fresh"]));
    ok(&env.run(&["resolve", "fresh"]));
    assert_eq!(env.lock("fresh")["comfy"]["commit"], env.commit("ComfyUI"));
    let (_, err) = fails(&env.run(&["new", "fresh"]));
    assert!(err.contains("already exists"), "{err}");

    // A worker's COMFY_HOME does not get in the way of `remove node`.
    ok(&env.run(&["add", "node", "hand2", &pack_b]));
    let out = comfyver_testkit::cli::comfyver_command(
        bin(),
        &env.world.root.join("cache"),
        &env.world.root.join("versions"),
    )
    .args(["remove", "node", "hand2", "pack_b"])
    .env("COMFY_HOME", env.world.root.join("some-home"))
    .output()
    .unwrap();
    ok(&out);
    assert_eq!(
        std::fs::read_to_string(env.spec_path("hand2")).unwrap(),
        copied
    );

    // `remove <id>` still removes a version's home.
    let home = env.world.home("fresh");
    std::fs::create_dir_all(&home).unwrap();
    let out = env.run(&["remove", "fresh"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("comfy-fresh"), "{stderr}");
}
