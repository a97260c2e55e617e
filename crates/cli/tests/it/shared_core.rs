//! One core checkout per core commit, shared by every home on that commit:
//! real git repositories, real uv, the stand-in ComfyUI started from each
//! home through the real binary. A second version must see its own node
//! packs, models and directories (ComfyUI's `--base-directory`), never the
//! first's; a core without `--base-directory` gets its own copy; gc and
//! remove keep the shared core while anything names it.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use comfyver_testkit::cli::{Paused, output_within};
use comfyver_testkit::world::{World, smoke_workflow};
use serde_json::{Value, json};

fn comfyver(w: &World, args: &[&str]) -> Output {
    w.comfyver(Path::new(env!("CARGO_BIN_EXE_comfyver")), args, None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> (String, String) {
    comfyver_testkit::cli::ok(out)
}

fn stdout_json(out: &Output) -> Value {
    let (stdout, stderr) = ok(out);
    serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{stdout}\nstderr:\n{stderr}"))
}

/// The JSON text the `WhereAmI` node (paths_pack) returned in a run's result.
fn where_am_i(result: &Value) -> Value {
    fn find(v: &Value) -> Option<Value> {
        match v {
            Value::String(s) if s.contains("\"models_dir\"") => serde_json::from_str(s).ok(),
            Value::Array(a) => a.iter().find_map(find),
            Value::Object(o) => o.values().find_map(find),
            _ => None,
        }
    }
    find(result).unwrap_or_else(|| panic!("no WhereAmI text in {result}"))
}

/// `(dev, ino)` of a file, symlinks followed.
fn file_id(p: &Path) -> (u64, u64) {
    let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    (m.dev(), m.ino())
}

/// A spec of `w` with only the named packs and these models.
fn spec_with(w: &World, id: &str, packs: &[&str], models: Value) -> Value {
    let mut spec = w.spec(id);
    spec["custom_nodes"] = w
        .packs
        .iter()
        .filter(|(name, _)| packs.contains(&name.as_str()))
        .map(|(_, r)| json!({"repo": r.file_url()}))
        .collect();
    spec["models"] = models;
    spec
}

/// The world: v1 = hello_pack + paths_pack + a checkpoint; v2 = paths_pack +
/// models_dir_pack + a model in a pack's own folder (`ultralytics/bbox`),
/// which ComfyUI finds only under its base directory's `models/`.
fn two_versions() -> World {
    let w = World::new(&["hello_pack", "paths_pack", "models_dir_pack"]);
    let server = w.server.as_ref().unwrap();
    server.add_file("/m/face.pt", b"a face detector, of sorts".to_vec());
    let tiny =
        json!([{"source": server.url("/m/tiny.safetensors"), "target_subdir": "checkpoints"}]);
    let face = json!([{"source": server.url("/m/face.pt"), "target_subdir": "ultralytics/bbox"}]);
    w.write_spec(
        "v1",
        &spec_with(&w, "v1", &["hello_pack", "paths_pack"], tiny),
    );
    w.write_spec(
        "v2",
        &spec_with(&w, "v2", &["paths_pack", "models_dir_pack"], face),
    );
    w
}

fn run(w: &World, id: &str, wf: &Value) -> Output {
    let path = w.workflow(&format!("wf-{id}"), wf);
    comfyver(w, &["run", id, "--workflow", path.to_str().unwrap()])
}

/// What `WhereAmI` must report for a ComfyUI started from `home`.
fn assert_runs_from(given: &Path, core: &Path, seen: &Value) {
    let home = std::fs::canonicalize(given).unwrap();
    let canon = |v: &Value| {
        std::fs::canonicalize(v.as_str().unwrap()).unwrap_or_else(|e| panic!("{v}: {e} in {seen}"))
    };
    assert_eq!(canon(&seen["core"]), std::fs::canonicalize(core).unwrap());
    // (A home with no pack folders has no `models/` yet: compared as given.)
    assert_eq!(
        Path::new(seen["models_dir"].as_str().unwrap()),
        given.join("models"),
        "{seen}"
    );
    let nodes: Vec<PathBuf> = seen["custom_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(canon)
        .collect();
    assert_eq!(nodes, vec![home.join("custom_nodes")], "{seen}");
    for dir in ["output", "input", "user"] {
        assert!(
            canon(&seen[dir]).starts_with(home.join(".comfyver/run")),
            "{dir} is the home's own: {seen}"
        );
    }
    let prefix = Path::new(seen["pycache_prefix"].as_str().unwrap());
    assert!(
        prefix.starts_with(&home) || prefix.starts_with(given),
        "bytecode goes into the home: {seen}"
    );
}

#[test]
fn two_versions_on_one_core_commit_share_the_checkout_and_keep_their_own_parts() {
    let w = two_versions();
    ok(&comfyver(&w, &["realize", "v1"]));
    let (plan, _) = ok(&comfyver(&w, &["realize", "v2", "--dry-run"]));
    assert!(
        plan.contains("checked out in the core cache: link it into the home"),
        "{plan}"
    );
    ok(&comfyver(&w, &["realize", "v2"]));
    let (h1, h2) = (w.home("v1"), w.home("v2"));

    // One checkout: the same main.py behind both homes' core links, in the
    // core cache, and no copy of it in either home.
    let core = std::fs::read_link(h1.join("core")).expect("v1's core is a link");
    assert_eq!(std::fs::read_link(h2.join("core")).unwrap(), core);
    assert!(
        core.starts_with(w.root.join("cache/core")),
        "{}",
        core.display()
    );
    assert_eq!(
        file_id(&h1.join("core/main.py")),
        file_id(&h2.join("core/main.py"))
    );
    for h in [&h1, &h2] {
        assert!(
            !h.join("main.py").exists(),
            "{} holds no core copy",
            h.display()
        );
        assert!(h.join("extra_model_paths.yaml").is_file());
    }
    assert!(
        !core.join("extra_model_paths.yaml").exists(),
        "the shared core holds no yaml (it would be loaded by every home)"
    );
    // The core's own custom_nodes files are there, through the link.
    assert!(h2.join("custom_nodes/websocket_image_save.py").is_file());

    // The second version's ComfyUI: its own node, its own model, its own dirs.
    let mut wf = smoke_workflow(false);
    wf["5"] = json!({"class_type": "WhereAmI", "inputs": {}});
    wf["6"] = json!({"class_type": "ModelsDirList", "inputs": {"subdir": "ultralytics/bbox"}});
    let result = stdout_json(&run(&w, "v2", &wf));
    assert_eq!(
        result["images"].as_array().map(Vec::len),
        Some(1),
        "{result}"
    );
    let text = result.to_string();
    assert!(
        text.contains("models_dir/ultralytics/bbox: face.pt"),
        "v2 sees its own model under its base directory: {result}"
    );
    assert_runs_from(&h2, &core, &where_am_i(&result));
    // v1's pack is not v2's: a workflow using it fails on v2.
    let out = run(&w, "v2", &smoke_workflow(true));
    assert!(!out.status.success(), "HelloText is not a v2 node");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("HelloText")
            || String::from_utf8_lossy(&out.stderr).contains("HelloText"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The first version still runs, from its own home.
    let mut wf = smoke_workflow(true);
    wf["5"] = json!({"class_type": "WhereAmI", "inputs": {}});
    let result = stdout_json(&run(&w, "v1", &wf));
    let text = result.to_string();
    assert!(text.contains("hello from hello_pack"), "{result}");
    assert!(text.contains("tiny.safetensors"), "{result}");
    assert_runs_from(&h1, &core, &where_am_i(&result));

    // Nothing wrote into the shared checkout: verify finds both homes whole.
    for id in ["v1", "v2"] {
        let out = comfyver(&w, &["--json", "verify", id]);
        let (stdout, _) = ok(&out);
        let report: Value = serde_json::from_str(&stdout).unwrap();
        assert_eq!(report["ok"], true, "{id}: {report}");
        // The home read back (its core's commit through the link) is its lock.
        let home = w.home(id);
        let (_, stderr) = ok(&comfyver(&w, &["diff", id, home.to_str().unwrap()]));
        assert!(stderr.contains("are equal"), "{stderr}");
    }
    assert!(
        !walkdir_has(&core, "__pycache__"),
        "no bytecode in the shared core"
    );

    // Something writes into the shared core: verify says so, for each home.
    std::fs::write(core.join("comfy/patched.py"), "x = 1\n").unwrap();
    for id in ["v1", "v2"] {
        let out = comfyver(&w, &["verify", id]);
        assert_eq!(out.status.code(), Some(1), "{id}");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            said.contains("was changed after it was checked out") && said.contains("patched.py"),
            "{id}: {said}"
        );
    }
}

fn walkdir_has(dir: &Path, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        e.file_name() == name
            || (e.file_type().is_ok_and(|t| t.is_dir()) && walkdir_has(&e.path(), name))
    })
}

/// Commits a core whose `comfy/cli_args.py` has no `--base-directory` (as
/// ComfyUI before it had one) and tags it `old`.
fn commit_core_without_base_directory(w: &mut World) -> String {
    let core = comfyver_testkit::comfy::fake_core_dir();
    let cli = std::fs::read_to_string(core.join("comfy/cli_args.py")).unwrap();
    let cli: String = cli
        .lines()
        .filter(|l| !l.contains("--base-directory"))
        .map(|l| format!("{l}\n"))
        .collect();
    let fp = std::fs::read_to_string(core.join("folder_paths.py")).unwrap();
    let read_it = "if args.base_directory:\n    base_path = os.path.abspath(args.base_directory)\n";
    assert!(fp.contains(read_it), "the stand-in reads --base-directory");
    let fp = fp.replace(read_it, "");
    w.core
        .write(&[("comfy/cli_args.py", &cli), ("folder_paths.py", &fp)]);
    let commit = w.core.commit("a core without --base-directory");
    w.core.tag("old");
    w.core.push();
    commit
}

#[test]
fn a_core_without_base_directory_gets_its_own_copy_then_a_shared_one() {
    let mut w = World::new(&["hello_pack"]);
    let old = commit_core_without_base_directory(&mut w);
    let mut spec = w.spec("v1");
    spec["comfy"]["ref"] = json!("old");
    w.write_spec("v1", &spec);
    ok(&comfyver(&w, &["realize", "v1"]));
    let home = w.home("v1");
    assert!(!home.join("core").exists(), "no link to a shared core");
    assert!(
        home.join("main.py").is_file(),
        "the home is its own core copy"
    );
    assert!(
        !w.root.join("cache/core").exists(),
        "an older core is not checked out into the core cache too"
    );
    assert_eq!(
        std::fs::read_to_string(home.join(".git/comfyver-complete"))
            .unwrap()
            .trim(),
        old
    );
    // It runs: its node, the model through the yaml in its own root.
    let result = stdout_json(&run(&w, "v1", &smoke_workflow(true)));
    let text = result.to_string();
    assert!(text.contains("hello from hello_pack"), "{result}");
    assert!(text.contains("tiny.safetensors"), "{result}");
    ok(&comfyver(&w, &["verify", "v1"]));

    // The same home moved to a core that takes --base-directory: the copy
    // is replaced by the link, and it runs.
    spec["comfy"]["ref"] = json!("v1");
    w.write_spec("v1", &spec);
    ok(&comfyver(&w, &["realize", "v1"]));
    assert!(std::fs::read_link(home.join("core")).is_ok());
    assert!(!home.join("main.py").exists(), "the old copy is gone");
    let result = stdout_json(&run(&w, "v1", &smoke_workflow(true)));
    assert!(
        result.to_string().contains("hello from hello_pack"),
        "{result}"
    );
    ok(&comfyver(&w, &["verify", "v1"]));
}

#[test]
fn gc_keeps_a_shared_core_while_a_lock_names_it_and_remove_leaves_it_alone() {
    let mut w = World::new(&["hello_pack"]);
    w.write_spec("v2", &w.spec("v2"));
    ok(&comfyver(&w, &["realize", "v1"]));
    ok(&comfyver(&w, &["realize", "v2"]));
    let (h1, h2) = (w.home("v1"), w.home("v2"));
    let core = std::fs::read_link(h1.join("core")).unwrap();
    let main_id = file_id(&core.join("main.py"));

    // remove of one home: the shared core and the other home are untouched.
    ok(&comfyver(&w, &["remove", "v2"]));
    assert!(!h2.exists());
    assert_eq!(file_id(&core.join("main.py")), main_id);
    ok(&comfyver(&w, &["verify", "v1"]));
    let result = stdout_json(&run(&w, "v1", &smoke_workflow(true)));
    assert!(
        result.to_string().contains("hello from hello_pack"),
        "{result}"
    );

    // v1's lock names the core commit: gc keeps it.
    let (listed, _) = ok(&comfyver(&w, &["gc"]));
    assert!(!listed.contains(core.to_str().unwrap()), "{listed}");
    ok(&comfyver(&w, &["gc", "--yes"]));
    assert_eq!(file_id(&core.join("main.py")), main_id);

    // v1 moves to another core commit, v2 is retired: nothing names the
    // old core any more, so gc lists it, and deletes it only with --yes.
    w.core.write(&[("NEW_IN_V2.txt", "v2\n")]);
    w.core.commit("core v2");
    w.core.tag("v2");
    w.core.push();
    let mut spec = w.spec("v1");
    spec["comfy"]["ref"] = json!("v2");
    w.write_spec("v1", &spec);
    ok(&comfyver(&w, &["realize", "v1"]));
    let new_core = std::fs::read_link(h1.join("core")).unwrap();
    assert_ne!(new_core, core);
    std::fs::remove_file(w.root.join("versions/v2.json")).unwrap();
    std::fs::remove_file(w.root.join("cache/resolved/v2.lock.json")).unwrap();
    let (listed, _) = ok(&comfyver(&w, &["gc"]));
    assert!(listed.contains(core.to_str().unwrap()), "{listed}");
    assert!(!listed.contains(new_core.to_str().unwrap()), "{listed}");
    assert!(core.join("main.py").is_file(), "a dry run deletes nothing");
    ok(&comfyver(&w, &["gc", "--yes"]));
    assert!(!core.exists(), "the unreferenced core is gone");
    assert!(new_core.join("NEW_IN_V2.txt").is_file());
    ok(&comfyver(&w, &["verify", "v1"]));
}

/// Bytes on disk (allocated blocks) under `dirs`, each inode counted once
/// across calls that share `seen` (hard links into the uv cache, links).
fn disk_use(dirs: &[PathBuf], seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
    fn walk(p: &Path, seen: &mut std::collections::HashSet<(u64, u64)>) -> u64 {
        let Ok(m) = std::fs::symlink_metadata(p) else {
            return 0;
        };
        let mut bytes = 0;
        if seen.insert((m.dev(), m.ino())) {
            bytes += m.blocks() * 512;
        }
        if m.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                bytes += walk(&e.path(), seen);
            }
        }
        bytes
    }
    dirs.iter().map(|d| walk(d, seen)).sum()
}

#[test]
fn a_second_version_on_a_40_mb_core_adds_less_than_5_mb() {
    let mut w = World::new(&["hello_pack"]);
    // A core the size of ComfyUI's checkout: 40 MB in 1,000 files that git
    // cannot compress.
    for i in 0..1000u64 {
        let p = w.core.work().join(format!("filler/{:02}/f{i}.bin", i % 50));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, comfyver_testkit::http::pseudo_random(40 << 10, i)).unwrap();
    }
    w.core.commit("a core of ComfyUI's size");
    w.core.tag("big");
    w.core.push();
    let mut spec = w.spec("v1");
    spec["comfy"]["ref"] = json!("big");
    w.write_spec("v1", &spec);
    spec["version_id"] = json!("v2");
    w.write_spec("v2", &spec);
    ok(&comfyver(&w, &["realize", "v1"]));
    let everything = [w.root.join("cache")];
    let mut seen = std::collections::HashSet::new();
    let first = disk_use(&everything, &mut seen);
    let started = std::time::Instant::now();
    ok(&comfyver(&w, &["realize", "v2"]));
    let took = started.elapsed();
    let added = disk_use(&everything, &mut seen);
    eprintln!(
        "cache + homes after v1: {first} bytes; v2 adds {added} bytes in {:.2} s",
        took.as_secs_f64()
    );
    assert!(first > 40 << 20, "the core is in the cache ({first} bytes)");
    assert!(added < 5 << 20, "the second version adds {added} bytes");
}

#[test]
fn an_install_script_on_a_shared_core_sees_the_home_and_writes_nothing_into_the_core() {
    let w = World::new(&["manager_style_pack"]);
    // A wheel only the script installs (nothing requires it), where a
    // confined script may read it: the wheels directory.
    let wheel =
        comfyver_testkit::wheels::build_wheel(&w.root.join("wheels"), "scriptdep", "1.0", &[]);
    let mut spec = w.spec("v1");
    spec["env"] = json!({"PACK_WHEEL": wheel.to_str().unwrap()});
    w.write_spec("v1", &spec);
    ok(&comfyver(&w, &["realize", "v1"]));
    let home = w.home("v1");
    let core = std::fs::read_link(home.join("core")).unwrap();
    let report: Value = serde_json::from_str(
        &std::fs::read_to_string(home.join("custom_nodes/manager_style_pack/install-report.json"))
            .unwrap(),
    )
    .unwrap();
    // ComfyUI-Manager's COMFYUI_PATH is the base directory, whose
    // custom_nodes/ it installs into; folder_paths comes from the core.
    assert_eq!(report["comfy_path"], home.to_str().unwrap(), "{report}");
    assert_eq!(
        report["folder_paths"],
        home.join("core").to_str().unwrap(),
        "{report}"
    );
    assert!(
        !walkdir_has(&core, "__pycache__"),
        "no bytecode in the shared core"
    );
    assert!(
        comfyver_nodes::checkout_changes(&core).unwrap().is_empty(),
        "the shared core is as checked out"
    );
    ok(&comfyver(&w, &["verify", "v1"]));
}

#[test]
fn a_home_made_as_a_core_copy_stays_warm_and_runs_then_is_rebuilt_shared() {
    let w = World::new(&["hello_pack"]);
    ok(&comfyver(&w, &["realize", "v1"]));
    let home = w.home("v1");
    // The layout of earlier comfyver: the home is its own core checkout.
    let core = std::fs::read_link(home.join("core")).unwrap();
    std::fs::remove_file(home.join("core")).unwrap();
    for f in ["websocket_image_save.py", "example_node.py.example"] {
        std::fs::remove_file(home.join("custom_nodes").join(f)).unwrap();
    }
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", core.display()))
        .arg(&home)
        .status()
        .unwrap();
    assert!(copied.success());

    // Still warm, and it runs from its own core (the yaml in its root).
    let (_, stderr) = ok(&comfyver(&w, &["realize", "v1"]));
    assert!(stderr.contains("already realized"), "{stderr}");
    let result = stdout_json(&run(&w, "v1", &smoke_workflow(true)));
    let text = result.to_string();
    assert!(text.contains("hello from hello_pack"), "{result}");
    assert!(text.contains("tiny.safetensors"), "{result}");

    // A realize that is not warm rebuilds it in the shared layout.
    ok(&comfyver(&w, &["realize", "v1", "--repair"]));
    assert_eq!(std::fs::read_link(home.join("core")).unwrap(), core);
    assert!(!home.join("main.py").exists(), "the copy is gone");
    let result = stdout_json(&run(&w, "v1", &smoke_workflow(true)));
    assert!(
        result.to_string().contains("hello from hello_pack"),
        "{result}"
    );
    ok(&comfyver(&w, &["verify", "v1"]));
}

/// A realize killed while a new home gets its marker leaves a home that the
/// rerun still recognises as its own (it is never left as a directory that
/// "is not a comfyver home"), and the rerun succeeds.
/// `comfyver realize v1` in `w` (with its wheels), held at `point`.
fn realize_paused_at(w: &World, point: &str) -> Paused {
    let root = &w.root;
    let mut cmd = comfyver_testkit::cli::comfyver_command(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &root.join("cache"),
        &root.join("versions"),
    );
    cmd.args(["realize", "v1"])
        .env("COMFYVER_WHEELS_DIR", root.join("wheels"));
    Paused::start(cmd, point)
}

#[test]
fn a_realize_killed_while_marking_a_new_home_is_finished_by_the_rerun() {
    let w = World::new(&["hello_pack"]);
    realize_paused_at(&w, "home-before-marker").kill();
    ok(&comfyver(&w, &["realize", "v1"]));
    ok(&comfyver(&w, &["verify", "v1"]));
}

/// Waits (at most 2 minutes) until `home`'s venv has the stand-in core's
/// requirement; whether it has.
fn core_requirement_installed_within_2_min(home: &Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !has_core_requirement(home) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    has_core_requirement(home)
}

/// `verify` passes on `v1` and a workflow runs on it with `hello_pack`'s node.
fn verifies_and_runs(w: &World) {
    ok(&comfyver(w, &["verify", "v1"]));
    let result = stdout_json(&run(w, "v1", &smoke_workflow(true)));
    assert!(
        result.to_string().contains("hello from hello_pack"),
        "{result}"
    );
}

/// Whether `home`'s venv has the stand-in core's requirement installed.
fn has_core_requirement(home: &Path) -> bool {
    walkdir_has(&home.join(".venv"), "fakecomfydep")
}

#[test]
fn the_python_install_runs_while_the_shared_core_is_being_checked_out() {
    // The core's requirements come out of its mirror: the install does not
    // wait for its checkout, here held at its start.
    let w = World::new(&["hello_pack"]);
    let held = realize_paused_at(&w, "shared-core-checkout");
    let home = w.home("v1");
    let installed = core_requirement_installed_within_2_min(&home);
    let checked_out = std::fs::read_dir(w.root.join("cache/core"))
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| comfyver_nodes::is_checkout_complete(&e.path()));
    let seen = held.kill();
    assert!(
        installed,
        "the core's requirement was not installed while its checkout was held:\n{}",
        seen.join("\n")
    );
    assert!(!checked_out, "the core checkout was held at its start");

    // Killed there, the rerun finishes it: the core is checked out and
    // linked, and the version runs.
    ok(&comfyver(&w, &["realize", "v1"]));
    verifies_and_runs(&w);
}

#[test]
fn from_a_remote_that_filters_the_install_starts_before_the_cores_commit_is_fetched() {
    // The core's requirements come from the remote without its commit (its
    // trees and that one file): the install waits neither for the core's
    // fetch nor for its checkout, both held here before they start.
    let mut w = World::new(&["hello_pack"]);
    w.core.allow_filter();
    let commit = w.core.head();
    let layout = comfyver_fs::CacheLayout::new(w.root.join("cache"));
    let url = comfyver_spec::RepoUrl::parse(&w.core.file_url()).unwrap();
    let mirror_has_commit = || {
        comfyver_git::Mirror::existing(&layout, &url, &Default::default())
            .is_some_and(|m| m.has_commit(&commit))
    };
    let held = realize_paused_at(&w, "shared-core-checkout");
    let home = w.home("v1");
    let installed = core_requirement_installed_within_2_min(&home);
    let fetched = mirror_has_commit();
    let seen = held.kill();
    assert!(
        installed,
        "the core's requirement was not installed while its fetch was held:\n{}",
        seen.join("\n")
    );
    assert!(
        !fetched,
        "the core's commit was fetched before its checkout"
    );

    ok(&comfyver(&w, &["realize", "v1"]));
    assert!(mirror_has_commit());
    verifies_and_runs(&w);
}

#[test]
fn a_remote_that_stalls_while_the_core_is_read_ends_in_one_timeout() {
    // The read of the core's files from the remote runs into the limit: it
    // is reported at once, without a second wait for the full fetch.
    let mut w = World::new(&[]);
    w.core.allow_filter();
    let daemon = comfyver_testkit::git::GitDaemon::start(&w.root.join("remotes"));
    let mut spec = w.spec("v1");
    spec["comfy"]["repo"] = json!(daemon.url("ComfyUI.git"));
    w.write_spec("v1", &spec);
    ok(&comfyver(&w, &["resolve", "v1"]));
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &daemon.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    let mut cmd = comfyver_testkit::cli::comfyver_command(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &w.root.join("cache"),
        &w.root.join("versions"),
    );
    cmd.args(["-v", "realize", "v1"])
        .env("COMFYVER_GIT_TIMEOUT", "2")
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"));
    let ran = output_within(cmd, std::time::Duration::from_secs(60));
    signal("-CONT");
    let out = ran.unwrap_or_else(|o| panic!("still running after 60 s: {}", text(&o.stderr)));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nothing received for 2 s"), "{stderr}");
    assert!(
        stderr.contains("from the remote"),
        "the core was read: {stderr}"
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("fetching ")),
        "no second attempt after the timeout: {stderr}"
    );
}

#[test]
fn the_inputs_read_from_the_mirror_are_the_ones_the_checkout_gives() {
    // v1 realizes first, reading the core's requirements from the mirror;
    // after its home is removed, the core checkout is there and the next
    // realize reads them from it. The recorded set is replayed only when
    // the inputs digest is the same (else it resolves again).
    let w = World::new(&["hello_pack"]);
    let lock_file = w.root.join("cache/resolved/v1.lock.json");
    let python_of = || -> Value {
        serde_json::from_slice::<Value>(&std::fs::read(&lock_file).unwrap()).unwrap()["python"]
            .clone()
    };
    ok(&comfyver(&w, &["realize", "v1"]));
    let first = python_of();
    assert!(
        first["packages"].as_array().is_some_and(|p| !p.is_empty()),
        "{first}"
    );
    let home = w.home("v1");
    assert!(
        !home.join(".comfyver/python/locked.txt").exists(),
        "resolved, not replayed"
    );
    ok(&comfyver(&w, &["remove", "v1"]));
    assert!(!home.exists());
    ok(&comfyver(&w, &["realize", "v1"]));
    assert!(
        home.join(".comfyver/python/locked.txt").is_file(),
        "the recorded set was replayed"
    );
    assert_eq!(python_of(), first);
    assert!(has_core_requirement(&home));
    ok(&comfyver(&w, &["verify", "v1"]));
}

#[test]
fn a_core_whose_requirements_file_is_a_link_installs_what_it_names() {
    // A link in the tree is resolved by the checkout, not read from the
    // mirror: the install waits for the checkout and reads it there.
    let mut w = World::new(&["hello_pack"]);
    let work = w.core.work().to_path_buf();
    let reqs = std::fs::read_to_string(work.join("requirements.txt")).unwrap();
    assert!(reqs.contains("fakecomfydep"), "{reqs}");
    std::fs::create_dir_all(work.join("requirements")).unwrap();
    std::fs::write(work.join("requirements/base.txt"), &reqs).unwrap();
    std::fs::remove_file(work.join("requirements.txt")).unwrap();
    std::os::unix::fs::symlink("requirements/base.txt", work.join("requirements.txt")).unwrap();
    w.core.commit("requirements.txt is a link");
    w.core.tag("linked");
    w.core.push();
    let mut spec = w.spec("v1");
    spec["comfy"]["ref"] = json!("linked");
    w.write_spec("v1", &spec);
    ok(&comfyver(&w, &["realize", "v1"]));
    assert!(has_core_requirement(&w.home("v1")));
    ok(&comfyver(&w, &["verify", "v1"]));
}

#[test]
fn a_core_that_cannot_be_fetched_is_reported_without_waiting_for_the_warm_up() {
    // With a lock that records the Python set, uv's cache is filled while
    // the core's commit is fetched. Here that warm-up is held by a uv wrapper that sleeps
    // instead of downloading (the one stand-in: it plays a large set on a
    // slow index), and the core's repository is gone. The core's error must
    // end the run and kill the warm-up, not wait for it.
    let w = World::new(&[]);
    ok(&comfyver(&w, &["realize", "v1"]));
    std::fs::rename(w.core.bare(), w.root.join("gone.git")).unwrap();
    let pid_file = w.root.join("warm-up.pid");
    let wrapper = uv_wrapper(
        &w,
        "uv-held",
        &format!("echo $$ > '{}'; exec sleep 300", pid_file.display()),
    );
    let cmd = replay_command(&w, "replay", &wrapper);
    let out = output_within(cmd, std::time::Duration::from_secs(90))
        .unwrap_or_else(|o| panic!("still running after 90 s: {}", text(&o.stderr)));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ComfyUI"), "names the core: {stderr}");
    let held: u32 = std::fs::read_to_string(&pid_file)
        .expect("the warm-up ran")
        .trim()
        .parse()
        .unwrap();
    assert!(
        !comfyver_fs::child::process_alive(held),
        "the warm-up was left running"
    );
}

/// A uv that runs `on_target` (shell) when called with `--target` (the
/// warm-up of uv's cache, nothing else passes it), then the real uv.
fn uv_wrapper(w: &World, name: &str, on_target: &str) -> PathBuf {
    let real_uv = String::from_utf8(
        std::process::Command::new("sh")
            .args(["-c", "command -v uv"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let wrapper = w.root.join(name);
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\ncase \" $* \" in *\" --target \"*) {on_target};; esac\nexec '{}' \"$@\"\n",
            real_uv.trim()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    wrapper
}

#[test]
fn a_replay_warms_uvs_cache_only_while_the_install_waits_for_the_core() {
    // The warm-up installs the locked set into a throwaway tree to fill uv's
    // cache while the install cannot start. From a remote that serves the
    // core's requirements without its commit, the install starts with the
    // node packs, and a warm-up beside it would cost a link and an unlink
    // per file: it does not run. From one that does not, the core's fetch
    // comes first, and the warm-up runs beside it.
    let mut w = World::new(&["hello_pack"]);
    ok(&comfyver(&w, &["realize", "v1"]));
    fn warmed(w: &World, label: &str) -> bool {
        let log = w.root.join(format!("{label}.warm-up"));
        let wrapper = uv_wrapper(
            w,
            &format!("uv-{label}"),
            &format!("echo >> '{}'", log.display()),
        );
        let cmd = replay_command(w, label, &wrapper);
        let out = output_within(cmd, std::time::Duration::from_secs(120))
            .unwrap_or_else(|o| panic!("still running after 120 s: {}", text(&o.stderr)));
        ok(&out);
        assert!(
            w.root
                .join(label)
                .join("versions/comfy-v1/.comfyver/python/locked.txt")
                .is_file(),
            "the lock's set was replayed"
        );
        log.exists()
    }
    assert!(warmed(&w, "refused"), "no warm-up beside the core's fetch");
    w.core.allow_filter();
    assert!(!warmed(&w, "filtered"), "a warm-up beside the install");
}

/// `realize v1` on a new cache `<root>/<label>` holding only v1's lock (so
/// its Python set is replayed), with `uv` as the uv binary.
fn replay_command(w: &World, label: &str, uv: &Path) -> std::process::Command {
    let replay = w.root.join(label);
    std::fs::create_dir_all(replay.join("resolved")).unwrap();
    std::fs::copy(
        w.root.join("cache/resolved/v1.lock.json"),
        replay.join("resolved/v1.lock.json"),
    )
    .unwrap();
    let mut cmd = comfyver_testkit::cli::comfyver_command(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &replay,
        &w.root.join("versions"),
    );
    cmd.args(["realize", "v1"])
        .env("UV", uv)
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"));
    cmd
}
