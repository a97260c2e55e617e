//! The Python environment with real uv, real pip and real wheels built at
//! test time, offline (a local `--wheels-dir`, no index, no internet).
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;

use comfyver_fs::{CacheLayout, ConfineMode, LandlockSupport};
use comfyver_python::{
    self as python, EnvState, InstallScript, Installer, Limits, PlannedInstall, PythonError,
    PythonInputs, Requirements, ScriptContext, ScriptStatus,
};
use comfyver_spec::UrlRewrites;
use comfyver_spec::version::PythonSettings;
use comfyver_testkit::wheels;

/// Where a home's installed set is recorded (documented in docs/realize.md).
const FREEZE_FILE: &str = ".comfyver/python-freeze.txt";

/// `<home>/.comfyver/logs/install-<name>.log`: a node's install.py output.
fn install_log(home: &Path, name: &str) -> PathBuf {
    home.join(format!(".comfyver/logs/install-{name}.log"))
}

/// PEP 503 name normalization: lowercase, runs of `-`, `_`, `.` become `-`.
fn normalize_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    let parts: Vec<&str> = lower
        .split(['-', '_', '.'])
        .filter(|p| !p.is_empty())
        .collect();
    parts.join("-")
}

struct Fixture {
    _tmp: Option<tempfile::TempDir>,
    root: PathBuf,
    wheels: PathBuf,
    layout: CacheLayout,
    rewrites: UrlRewrites,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let wheels_dir = root.join("wheels");
        wheels::standard_wheels(&wheels_dir);
        let layout = CacheLayout::new(root.join("cache"));
        Fixture {
            _tmp: Some(tmp),
            root,
            wheels: wheels_dir,
            layout,
            rewrites: UrlRewrites::default(),
        }
    }

    /// The fixture of a parent test, at its root (the helper process).
    fn at(root: PathBuf) -> Fixture {
        Fixture {
            _tmp: None,
            wheels: root.join("wheels"),
            layout: CacheLayout::new(root.join("cache")),
            rewrites: UrlRewrites::default(),
            root,
        }
    }

    /// The standard inputs plus every `bulkdep<N>` wheel of the directory: a
    /// build that takes a while, to be killed mid-way.
    fn kill_inputs(&self) -> PythonInputs {
        let mut inputs = self.standard_inputs();
        let mut bulk: Vec<String> = std::fs::read_dir(&self.wheels)
            .unwrap()
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.starts_with("bulkdep")
                    .then(|| n.split('-').next().unwrap().to_string())
            })
            .collect();
        bulk.sort();
        inputs.settings.requirements.extend(bulk);
        inputs
    }

    fn home(&self, name: &str) -> PathBuf {
        self.layout.version_home(name)
    }

    /// A node pack directory with the given files.
    fn pack(&self, name: &str, files: &[(&str, &str)]) -> (String, PathBuf) {
        let dir = self.root.join("packs").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in files {
            std::fs::write(dir.join(file), text).unwrap();
        }
        (name.to_string(), dir)
    }

    /// Core + three packs (requirements.txt, pyproject.toml, install.py) + a
    /// spec requirement.
    fn standard_inputs(&self) -> PythonInputs {
        PythonInputs {
            core_dir: core_dir(),
            nodes: vec![
                self.pack("pack_a", &[("requirements.txt", "# deps\nnodedep-a\n")]),
                self.pack(
                    "pack_pyproj",
                    &[(
                        "pyproject.toml",
                        "[project]\nname = \"pack-pyproj\"\ndependencies = [\n  \"pyprojdep>=1.0\",\n]\n",
                    )],
                ),
                self.pack("pack_script", &[("install.py", SIDE_EFFECT_SCRIPT)]),
            ],
            settings: PythonSettings {
                requirements: vec!["nodedep-b".into()],
                ..PythonSettings::default()
            },
            wheels_dir: Some(self.wheels.clone()),
            offline: true,
            limits: Limits::default(),
            rewrites: self.rewrites.clone(),
        }
    }

    /// The context install scripts run with in these tests.
    fn script_ctx<'a>(
        &'a self,
        env: &'a BTreeMap<String, String>,
        installer: &'a Installer,
        reqs: &'a Requirements,
    ) -> ScriptContext<'a> {
        ScriptContext {
            env,
            models_dir: None,
            layout: &self.layout,
            installer,
            reqs,
            rewrites: &self.rewrites,
            confine: ConfineMode::Auto,
            landlock: None,
            readable: &[],
        }
    }
}

/// Appends a line to `$SIDE_EFFECT` and prints something for the log.
const SIDE_EFFECT_SCRIPT: &str = r#"
import os, sys
with open(os.environ["SIDE_EFFECT"], "a") as f:
    f.write("ran in " + os.path.basename(os.getcwd()) + " with " + sys.prefix + "\n")
print("installing pack_script assets")
"#;

/// The stand-in ComfyUI core (its requirements.txt lists `fakecomfydep>=1.0`).
fn core_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testkit/fixtures/fake-comfyui")
}

fn uv() -> Installer {
    let installer = Installer::detect(None).unwrap();
    assert!(
        matches!(installer, Installer::Uv { .. }),
        "these tests need uv on PATH (pip install uv), got {installer:?}"
    );
    installer
}

/// An installer that must use pip: a PATH holding python3 but no uv.
fn pip_only(root: &Path) -> Installer {
    let bin = root.join("pip-only-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let real = Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap();
    std::os::unix::fs::symlink(real.trim(), bin.join("python3")).unwrap();
    let path = OsString::from(&bin);
    let installer = Installer::detect_in(Some(&path), None, None).unwrap();
    assert_eq!(installer.kind(), "pip");
    installer
}

fn collect(inputs: &PythonInputs) -> Requirements {
    python::collect_requirements(inputs).unwrap()
}

/// Runs `code` with the home's venv interpreter and returns its stdout.
fn venv_run(home: &Path, code: &str) -> String {
    let out = Command::new(python::venv_python(home))
        .args(["-c", code])
        .env_remove("PYTHONPATH")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

const EXPECTED: [&str; 5] = [
    "fakecomfydep==1.0",
    "fakerequests==2.0",
    "nodedep-a==1.0",
    "nodedep-b==2.0",
    "pyprojdep==1.0",
];

const IMPORT_ALL: &str = "import fakecomfydep, fakerequests, nodedep_a, nodedep_b, pyprojdep; \
                          print(nodedep_b.__version__)";

#[test]
fn one_resolution_for_core_nodes_and_spec_and_every_package_imports() {
    let fx = Fixture::new();
    let installer = uv();
    let reqs = collect(&fx.standard_inputs());
    let home = fx.home("v1");

    let env = python::build_env(&home, &fx.layout, &reqs, None, &installer).unwrap();
    assert_eq!(env.packages, EXPECTED);
    assert_eq!(env.inputs_digest, reqs.inputs_digest().to_string());
    assert_eq!(venv_run(&home, IMPORT_ALL), "2.0");

    // One combined input, each line annotated with its origin.
    let combined = std::fs::read_to_string(home.join(".comfyver/python/requirements.in")).unwrap();
    assert!(
        combined.contains("fakecomfydep>=1.0  # from ComfyUI requirements.txt"),
        "{combined}"
    );
    assert!(combined.contains("nodedep-a  # from custom_nodes/pack_a/requirements.txt"));
    assert!(combined.contains("pyprojdep>=1.0  # from custom_nodes/pack_pyproj/pyproject.toml"));
    assert!(combined.contains("nodedep-b  # from spec python.requirements"));
    let freeze = std::fs::read_to_string(home.join(FREEZE_FILE)).unwrap();
    assert_eq!(freeze, format!("{}\n", EXPECTED.join("\n")));
    assert_eq!(python::freeze(&python::venv_dir(&home)).unwrap(), EXPECTED);

    // Warm: a second build runs nothing (a file dropped into the venv survives).
    let sentinel = python::venv_dir(&home).join("sentinel");
    std::fs::write(&sentinel, "x").unwrap();
    let plan = python::plan(&home, &reqs, Some(&env), &installer, &[]).unwrap();
    assert_eq!(plan.state, EnvState::UpToDate);
    assert_eq!(plan.install, PlannedInstall::Nothing);
    assert_eq!(
        python::build_env(&home, &fx.layout, &reqs, Some(&env), &installer).unwrap(),
        env
    );
    assert!(sentinel.exists(), "an up-to-date venv must not be rebuilt");
}

#[test]
fn conflicting_packs_give_one_error_naming_both() {
    let fx = Fixture::new();
    let mut inputs = fx.standard_inputs();
    inputs.nodes = vec![
        fx.pack("pack_one", &[("requirements.txt", "conflictpkg==1.0\n")]),
        fx.pack(
            "pack_two",
            &[("requirements.txt", "nodedep-a\nconflictpkg==2.0\n")],
        ),
    ];
    let reqs = collect(&inputs);
    let err = python::build_env(&fx.home("c"), &fx.layout, &reqs, None, &uv()).unwrap_err();
    let PythonError::Conflict { summary, output } = &err else {
        panic!("expected a conflict, got {err:?}");
    };
    assert_eq!(
        summary,
        "requirements conflict: `conflictpkg==1.0` (from custom_nodes/pack_one/requirements.txt) \
         and `conflictpkg==2.0` (from custom_nodes/pack_two/requirements.txt) cannot both be installed"
    );
    assert!(output.0.contains("No solution found"), "{}", output.0);
    // No half-built venv that looks complete.
    let plan = python::plan(&fx.home("c"), &reqs, None, &uv(), &[]).unwrap();
    assert_eq!(plan.state, EnvState::Incomplete);
}

#[test]
fn locked_set_is_replayed_exactly_even_when_a_newer_wheel_appears() {
    let fx = Fixture::new();
    let installer = uv();
    let reqs = collect(&fx.standard_inputs());
    let locked = python::build_env(&fx.home("first"), &fx.layout, &reqs, None, &installer).unwrap();

    wheels::build_wheel(&fx.wheels, "nodedep-b", "3.0", &[]);

    // Without the lock the newer wheel is picked, so the replay below is meaningful.
    let fresh = python::build_env(&fx.home("fresh"), &fx.layout, &reqs, None, &installer).unwrap();
    assert!(fresh.packages.contains(&"nodedep-b==3.0".to_string()));

    let replay_home = fx.home("replay");
    let plan = python::plan(&replay_home, &reqs, Some(&locked), &installer, &[]).unwrap();
    assert_eq!(
        plan.install,
        PlannedInstall::Locked(locked.packages.clone())
    );
    assert!(!replay_home.exists(), "a plan writes nothing");
    let replayed =
        python::build_env(&replay_home, &fx.layout, &reqs, Some(&locked), &installer).unwrap();
    assert_eq!(replayed, locked);
    assert_eq!(venv_run(&replay_home, IMPORT_ALL), "2.0");
    // The replay did not resolve: no resolved.txt was written for it.
    assert!(!replay_home.join(".comfyver/python/resolved.txt").exists());
}

/// A `uv` that appends its first two arguments to `log` and runs the real uv.
fn logging_uv(root: &Path, log: &Path) -> Installer {
    let Installer::Uv { uv: real } = uv() else {
        unreachable!()
    };
    let shim = root.join("logging-uv");
    std::fs::write(
        &shim,
        format!(
            "#!/bin/sh\necho \"$1 $2\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
    Installer::Uv { uv: shim }
}

fn take_lines(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    std::fs::remove_file(log).ok();
    text.lines().map(|l| l.trim().to_string()).collect()
}

#[test]
fn a_fresh_build_resolves_and_installs_in_one_uv_run_and_a_replay_syncs_the_lock() {
    let fx = Fixture::new();
    let log = fx.root.join("uv-calls.txt");
    let installer = logging_uv(&fx.root, &log);
    let reqs = collect(&fx.standard_inputs());
    let env = python::build_env(&fx.home("fresh"), &fx.layout, &reqs, None, &installer).unwrap();
    assert_eq!(env.packages, EXPECTED);
    // No `pip compile` before the install: one uv run resolves, downloads
    // and installs.
    assert_eq!(take_lines(&log), ["venv --no-config", "pip install"]);
    let replayed = python::build_env(
        &fx.home("replay"),
        &fx.layout,
        &reqs,
        Some(&env),
        &installer,
    )
    .unwrap();
    assert_eq!(replayed, env);
    assert_eq!(take_lines(&log), ["venv --no-config", "pip sync"]);
    assert_eq!(venv_run(&fx.home("replay"), IMPORT_ALL), "2.0");
}

#[test]
fn a_venv_made_early_is_taken_by_the_build_and_never_made_twice() {
    let fx = Fixture::new();
    let log = fx.root.join("uv-calls.txt");
    let installer = logging_uv(&fx.root, &log);
    let inputs = fx.standard_inputs();
    let home = fx.home("early");
    python::prepare_venv(&home, &fx.layout, &inputs, &installer).unwrap();
    assert!(python::venv_python(&home).exists());
    python::prepare_venv(&home, &fx.layout, &inputs, &installer).unwrap();
    assert_eq!(take_lines(&log), ["venv --no-config"], "made once");
    let env = python::build_env(&home, &fx.layout, &collect(&inputs), None, &installer).unwrap();
    assert_eq!(env.packages, EXPECTED);
    assert_eq!(
        take_lines(&log),
        ["pip install"],
        "the early venv was taken"
    );
    python::prepare_venv(&home, &fx.layout, &inputs, &installer).unwrap();
    assert_eq!(
        take_lines(&log),
        Vec::<String>::new(),
        "a complete venv is kept"
    );
    assert_eq!(venv_run(&home, IMPORT_ALL), "2.0");

    // Made for other settings: not taken.
    let other = fx.home("other");
    python::prepare_venv(&other, &fx.layout, &inputs, &installer).unwrap();
    let mut system = inputs.clone();
    system.settings.system_site_packages = Some(true);
    python::build_env(&other, &fx.layout, &collect(&system), None, &installer).unwrap();
    assert_eq!(
        take_lines(&log),
        ["venv --no-config", "venv --no-config", "pip install"]
    );

    // An install into the early venv that was cut short (its empty marker is
    // removed before anything is installed): the venv is made again.
    let cut = fx.home("cut");
    python::prepare_venv(&cut, &fx.layout, &inputs, &installer).unwrap();
    std::fs::remove_file(python::venv_dir(&cut).join("comfyver-empty.json")).unwrap();
    python::build_env(&cut, &fx.layout, &collect(&inputs), None, &installer).unwrap();
    assert_eq!(
        take_lines(&log),
        ["venv --no-config", "venv --no-config", "pip install"]
    );
}

#[test]
fn warm_cache_fetches_the_locked_set_into_uvs_cache_before_the_home_exists() {
    let fx = Fixture::new();
    let installer = uv();
    let index = wheels::SimpleIndex::serve(&fx.root.join("index"));
    for (name, version, requires) in wheels::STANDARD {
        index.add_wheel(name, version, requires);
    }
    let mut inputs = fx.standard_inputs();
    inputs.offline = false;
    inputs.wheels_dir = None;
    inputs.settings.index_url = Some(index.url());
    let locked = python::build_env(
        &fx.home("first"),
        &fx.layout,
        &collect(&inputs),
        None,
        &installer,
    )
    .unwrap();
    assert_eq!(locked.packages, EXPECTED);

    // Another machine's empty cache, warmed from the lock alone.
    let warmed = CacheLayout::new(fx.root.join("warmed"));
    std::fs::create_dir_all(warmed.root()).unwrap();
    let home = warmed.version_home("w");
    let never = AtomicBool::new(false);
    let warm =
        |home: &Path| python::warm_cache(&warmed, home, &locked, &inputs, &installer, &never);
    let throwaway = warm(&home).unwrap();
    drop(throwaway);
    let left: Vec<String> = std::fs::read_dir(warmed.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["uv"], "only uv's cache, no home and no temp left");

    // Offline, a replay then installs from that cache alone ...
    let offline = collect(&PythonInputs {
        offline: true,
        ..inputs.clone()
    });
    let replayed = python::build_env(&home, &warmed, &offline, Some(&locked), &installer).unwrap();
    assert_eq!(replayed, locked);
    assert_eq!(venv_run(&home, IMPORT_ALL), "2.0");
    // ... which an empty cache cannot.
    let empty = CacheLayout::new(fx.root.join("empty"));
    let err = python::build_env(
        &empty.version_home("e"),
        &empty,
        &offline,
        Some(&locked),
        &installer,
    )
    .unwrap_err();
    assert!(matches!(err, PythonError::Tool { .. }), "{err:?}");
    // A home with a complete venv needs no warm-up: nothing runs (with the
    // index gone, uv would fail).
    drop(index);
    let again = warm(&home);
    assert!(again.is_ok(), "{again:?}");
    let other = warmed.version_home("other");
    let cold = warm(&other);
    assert!(cold.is_err(), "a warm-up that runs needs the index");
}

#[test]
fn uv_cache_shares_package_files_between_venvs_by_hard_links() {
    let fx = Fixture::new();
    let installer = uv();
    let reqs = collect(&fx.standard_inputs());
    for home in ["one", "two"] {
        python::build_env(&fx.home(home), &fx.layout, &reqs, None, &installer).unwrap();
    }
    let file = |home: &str| {
        let site = venv_run(
            &fx.home(home),
            "import nodedep_a; print(nodedep_a.__file__)",
        );
        std::fs::metadata(site).unwrap()
    };
    let (a, b) = (file("one"), file("two"));
    assert_eq!(
        a.ino(),
        b.ino(),
        "both venvs must link the same cached file"
    );
    assert!(a.nlink() >= 3, "cache + two venvs, got {}", a.nlink());
    assert!(fx.layout.uv_cache().is_dir());
}

#[test]
fn install_script_runs_once_per_commit_logs_and_can_be_disabled() {
    let fx = Fixture::new();
    let installer = uv();
    let inputs = fx.standard_inputs();
    let reqs = collect(&inputs);
    let home = fx.home("s");
    python::build_env(&home, &fx.layout, &reqs, None, &installer).unwrap();

    // Into the script's own directory: a confined script may write only there.
    let side_effect = fx.root.join("packs/pack_script/side-effect.txt");
    let env = BTreeMap::from([("SIDE_EFFECT".to_string(), side_effect.display().to_string())]);
    let scripts: Vec<InstallScript> = inputs
        .nodes
        .iter()
        .map(|(name, dir)| InstallScript {
            name: name.clone(),
            dir: dir.clone(),
            commit: "a".repeat(40),
            enabled: true,
        })
        .collect();
    let plan = python::plan(&home, &reqs, None, &installer, &scripts).unwrap();
    assert_eq!(
        plan.install_scripts[2],
        ("pack_script".into(), ScriptStatus::Run)
    );

    let ctx = fx.script_ctx(&env, &installer, &reqs);
    let report = python::run_install_scripts(&home, &scripts, &ctx).unwrap();
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(
        report.statuses,
        [
            ("pack_a".into(), ScriptStatus::Absent),
            ("pack_pyproj".into(), ScriptStatus::Absent),
            ("pack_script".into(), ScriptStatus::Run),
        ]
    );
    let again = python::run_install_scripts(&home, &scripts, &ctx).unwrap();
    assert_eq!(again.statuses[2].1, ScriptStatus::Done);
    let ran = std::fs::read_to_string(&side_effect).unwrap();
    assert_eq!(ran.lines().count(), 1, "install.py must run once: {ran}");
    let venv = std::fs::canonicalize(python::venv_dir(&home)).unwrap();
    assert!(
        ran.contains(&format!("ran in pack_script with {}", venv.display())),
        "{ran}"
    );
    let log = std::fs::read_to_string(install_log(&home, "pack_script")).unwrap();
    assert!(log.contains("installing pack_script assets"), "{log}");
    assert!(
        home.join(format!(
            ".comfyver/install-scripts/pack_script@{}.done",
            "a".repeat(40)
        ))
        .exists()
    );

    // A new commit runs it again; disabled, it does not run.
    let mut next = scripts.clone();
    next[2].commit = "b".repeat(40);
    python::run_install_scripts(&home, &next, &ctx).unwrap();
    next[2].commit = "c".repeat(40);
    next[2].enabled = false;
    let off = python::run_install_scripts(&home, &next, &ctx).unwrap();
    assert_eq!(off.statuses[2].1, ScriptStatus::Disabled);
    assert_eq!(
        std::fs::read_to_string(&side_effect)
            .unwrap()
            .lines()
            .count(),
        2
    );
}

#[test]
fn failing_install_script_names_the_node_and_its_log() {
    let fx = Fixture::new();
    let mut inputs = fx.standard_inputs();
    let broken = fx.pack(
        "broken_pack",
        &[(
            "install.py",
            "print('fetching weights')\nraise SystemExit('no GPU found')\n",
        )],
    );
    inputs.nodes = vec![broken.clone()];
    let reqs = collect(&inputs);
    let home = fx.home("b");
    let installer = uv();
    python::build_env(&home, &fx.layout, &reqs, None, &installer).unwrap();
    let script = InstallScript {
        name: broken.0,
        dir: broken.1,
        commit: "d".repeat(40),
        enabled: true,
    };
    let env = BTreeMap::new();
    let ctx = fx.script_ctx(&env, &installer, &reqs);
    let err = python::run_install_scripts(&home, &[script], &ctx).unwrap_err();
    let text = err.to_string();
    let log = install_log(&home, "broken_pack");
    assert!(
        text.contains("install.py of custom node `broken_pack` failed"),
        "{text}"
    );
    assert!(text.contains(&log.display().to_string()), "{text}");
    assert!(text.contains("no GPU found"), "{text}");
    assert!(text.contains("install_script: false"), "{text}");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("fetching weights")
    );
}

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
fn install_scripts_git_follows_the_url_rewrites() {
    let mut fx = Fixture::new();
    let remotes = fx.root.join("remotes");
    let mut dep = comfyver_testkit::git::Repo::new(&remotes, "dep");
    dep.write(&[("DATA.txt", "mirrored\n")]);
    dep.commit("dep");
    dep.push();
    let rule = format!(
        "https://public-host.example/deps/=file://{}/",
        remotes.display()
    );
    fx.rewrites = UrlRewrites::parse_list(&rule, "test").unwrap();
    let mut inputs = fx.standard_inputs();
    let pack = fx.pack("clone_pack", &[("install.py", CLONE_SCRIPT)]);
    inputs.nodes = vec![pack.clone()];
    let reqs = collect(&inputs);
    let home = fx.home("g");
    let installer = uv();
    python::build_env(&home, &fx.layout, &reqs, None, &installer).unwrap();
    let script = InstallScript {
        name: pack.0,
        dir: pack.1.clone(),
        commit: "e".repeat(40),
        enabled: true,
    };
    let env = BTreeMap::new();
    let ctx = fx.script_ctx(&env, &installer, &reqs);
    python::run_install_scripts(&home, &[script], &ctx).unwrap();
    assert_eq!(
        std::fs::read_to_string(pack.1.join("dep-clone/DATA.txt")).unwrap(),
        "mirrored\n"
    );
}

#[test]
fn pip_fallback_without_uv_builds_replays_and_attributes_conflicts() {
    let fx = Fixture::new();
    let installer = pip_only(&fx.root);
    let reqs = collect(&fx.standard_inputs());
    let home = fx.home("pip");
    let env = python::build_env(&home, &fx.layout, &reqs, None, &installer).unwrap();
    assert_eq!(env.packages, EXPECTED);
    assert_eq!(venv_run(&home, IMPORT_ALL), "2.0");
    // Really pip: the venv was made by `python -m venv` (pip inside), and uv's
    // cache was never used.
    assert!(python::venv_dir(&home).join("bin/pip").exists());
    assert!(!fx.layout.uv_cache().exists());

    wheels::build_wheel(&fx.wheels, "nodedep-b", "3.0", &[]);
    let replay = fx.home("pip-replay");
    let again = python::build_env(&replay, &fx.layout, &reqs, Some(&env), &installer).unwrap();
    assert_eq!(again, env);
    assert_eq!(venv_run(&replay, IMPORT_ALL), "2.0");

    let mut inputs = fx.standard_inputs();
    inputs.nodes = vec![
        fx.pack("pack_one", &[("requirements.txt", "conflictpkg==1.0\n")]),
        fx.pack("pack_two", &[("requirements.txt", "conflictpkg==2.0\n")]),
    ];
    let err = python::build_env(
        &fx.home("pip-c"),
        &fx.layout,
        &collect(&inputs),
        None,
        &installer,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("requirements conflict: `conflictpkg==1.0` (from custom_nodes/pack_one"),
        "{text}"
    );
    assert!(
        text.contains("`conflictpkg==2.0` (from custom_nodes/pack_two"),
        "{text}"
    );
}

#[test]
fn an_interrupted_build_is_deleted_and_rebuilt() {
    let fx = Fixture::new();
    let installer = uv();
    let reqs = collect(&fx.standard_inputs());
    let home = fx.home("i");
    python::build_env(&home, &fx.layout, &reqs, None, &installer).unwrap();
    let venv = python::venv_dir(&home);
    let sentinel = venv.join("sentinel");
    std::fs::write(&sentinel, "x").unwrap();
    // Simulate a crash before the completion marker was written.
    std::fs::remove_file(venv.join("comfyver-complete.json")).unwrap();
    let plan = python::plan(&home, &reqs, None, &installer, &[]).unwrap();
    assert_eq!(plan.state, EnvState::Incomplete);
    let env = python::build_env(&home, &fx.layout, &reqs, None, &installer).unwrap();
    assert_eq!(env.packages, EXPECTED);
    assert!(
        !sentinel.exists(),
        "the incomplete venv must have been replaced"
    );
}

#[test]
fn unsupported_lines_in_a_pack_are_refused_before_anything_runs() {
    let fx = Fixture::new();
    let mut inputs = fx.standard_inputs();
    inputs.nodes = vec![fx.pack(
        "pack_e",
        &[("requirements.txt", "nodedep-a\n-e ./vendored\n")],
    )];
    let err = python::collect_requirements(&inputs)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(
            "custom_nodes/pack_e/requirements.txt line 2: `-e ./vendored` is an editable install"
        ),
        "{err}"
    );
}

#[test]
fn tokens_in_index_urls_never_reach_errors() {
    let fx = Fixture::new();
    let mut inputs = fx.standard_inputs();
    inputs.offline = false;
    inputs.wheels_dir = None;
    // A closed port on loopback: the index cannot be reached.
    inputs.settings.index_url = Some("http://user:s3cret-token@127.0.0.1:9/simple".into());
    let err =
        python::build_env(&fx.home("t"), &fx.layout, &collect(&inputs), None, &uv()).unwrap_err();
    let mut text = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        text.push_str(&s.to_string());
        source = s.source();
    }
    assert!(
        text.contains("127.0.0.1"),
        "the index should be named: {text}"
    );
    assert!(!text.contains("s3cret-token"), "{text}");
}

/// Copies a directory tree (the stand-in core into a home, a fixture pack).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dst = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dst);
        } else {
            std::fs::copy(entry.path(), &dst).unwrap();
        }
    }
}

fn fixture_pack(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testkit/fixtures/node-packs")
        .join(name)
}

/// A home holding the stand-in core (so `folder_paths` is importable from it)
/// with a built venv, and one pack with the given install.py.
fn home_with_script(
    fx: &Fixture,
    home_name: &str,
    pack: (String, PathBuf),
) -> (PathBuf, Requirements, InstallScript) {
    let home = fx.home(home_name);
    copy_dir(&core_dir(), &home);
    // As a ComfyUI checkout has it (`input/example.png`): importing
    // folder_paths makes it otherwise, which a confined script may not.
    std::fs::create_dir_all(home.join("input")).unwrap();
    let mut inputs = fx.standard_inputs();
    inputs.core_dir = home.clone();
    inputs.nodes = vec![pack.clone()];
    let reqs = collect(&inputs);
    python::build_env(&home, &fx.layout, &reqs, None, &uv()).unwrap();
    let script = InstallScript {
        name: pack.0,
        dir: pack.1,
        commit: "e".repeat(40),
        enabled: true,
    };
    (home, reqs, script)
}

#[test]
fn install_py_runs_with_managers_environment_and_what_it_installs_is_recorded() {
    let fx = Fixture::new();
    let pack = fx.root.join("packs/manager_style_pack");
    copy_dir(&fixture_pack("manager_style_pack"), &pack);
    let (home, reqs, script) =
        home_with_script(&fx, "mgr", ("manager_style_pack".into(), pack.clone()));
    // A wheel only the script installs (not in the wheels directory), in
    // its own directory: a confined script reads nothing else of the machine.
    let wheel = wheels::build_wheel(&pack.join("script-wheels"), "scriptdep", "1.0", &[]);
    let env = BTreeMap::from([("PACK_WHEEL".to_string(), wheel.display().to_string())]);
    let models = fx.root.join("model-store");
    let installer = uv();
    let mut ctx = fx.script_ctx(&env, &installer, &reqs);
    ctx.models_dir = Some(&models);
    let before = python::build_env(&home, &fx.layout, &reqs, None, &installer).unwrap();
    let run = python::run_install_scripts(&home, &[script], &ctx).unwrap();
    assert_eq!(run.statuses[0].1, ScriptStatus::Run);
    assert!(run.warnings.is_empty(), "{:?}", run.warnings);

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pack.join("install-report.json")).unwrap())
            .unwrap();
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap().display().to_string();
    assert_eq!(report["comfy_path"], home.display().to_string());
    assert_eq!(report["model_path"], models.display().to_string());
    assert_eq!(report["folder_paths"], canon(&home));
    assert_eq!(report["cwd"], canon(&pack));

    // Frozen after the script: its package is in the recorded set.
    assert!(!before.packages.iter().any(|p| p.starts_with("scriptdep")));
    let after = python::record_after_scripts(&home, &before).unwrap();
    // Installed from a file by the stand-in, so frozen as a direct reference.
    assert!(
        after
            .packages
            .iter()
            .any(|p| p.starts_with("scriptdep @ file://")),
        "{:?}",
        after.packages
    );
    assert_eq!(after.inputs_digest, before.inputs_digest);
    let freeze = std::fs::read_to_string(home.join(FREEZE_FILE)).unwrap();
    assert!(freeze.contains("scriptdep @ file://"), "{freeze}");
    assert_eq!(
        venv_run(&home, "import scriptdep; print(scriptdep.__version__)"),
        "1.0"
    );
    // The completion marker holds the new set: the venv is up to date for it.
    let plan = python::plan(&home, &reqs, Some(&after), &installer, &[]).unwrap();
    assert_eq!(plan.state, EnvState::UpToDate);
}

#[test]
fn a_sleeping_install_py_is_stopped_at_its_limit_with_an_error_naming_the_variable() {
    let fx = Fixture::new();
    let pack = fx.pack(
        "sleepy_pack",
        &[(
            "install.py",
            "import os, time\nopen('pid', 'w').write(str(os.getpid()))\nprint('waiting', flush=True)\ntime.sleep(120)\n",
        )],
    );
    let pid_file = pack.1.join("pid");
    let (home, mut reqs, script) = home_with_script(&fx, "sleepy", pack);
    reqs.limits.install_script = std::time::Duration::from_secs(2);
    let env = BTreeMap::new();
    let installer = uv();
    let ctx = fx.script_ctx(&env, &installer, &reqs);
    let t0 = std::time::Instant::now();
    let err = python::run_install_scripts(&home, &[script], &ctx).unwrap_err();
    assert!(t0.elapsed() < std::time::Duration::from_secs(60));
    assert!(matches!(err, PythonError::TimedOut { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("install.py of custom node `sleepy_pack`"),
        "{text}"
    );
    assert!(text.contains("within 2 s"), "{text}");
    assert!(
        text.contains(comfyver_env::COMFYVER_INSTALL_SCRIPT_TIMEOUT),
        "{text}"
    );
    assert!(
        text.contains(&install_log(&home, "sleepy_pack").display().to_string()),
        "{text}"
    );
    let pid = std::fs::read_to_string(pid_file).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the script's process must be gone"
    );
}

#[test]
fn an_install_py_that_prints_a_failure_but_exits_0_is_a_warning_with_its_log() {
    let fx = Fixture::new();
    let pack = fx.pack(
        "quiet_fail_pack",
        &[(
            "install.py",
            "print('Installing dependencies')\nprint('ERROR: could not install ultralytics')\n",
        )],
    );
    let (home, reqs, script) = home_with_script(&fx, "quiet", pack);
    let env = BTreeMap::new();
    let installer = uv();
    let ctx = fx.script_ctx(&env, &installer, &reqs);
    let run = python::run_install_scripts(&home, &[script], &ctx).unwrap();
    assert_eq!(run.statuses[0].1, ScriptStatus::Run);
    let log = install_log(&home, "quiet_fail_pack");
    assert_eq!(run.warnings.len(), 1, "{:?}", run.warnings);
    assert!(
        run.warnings[0].contains("`quiet_fail_pack` exited 0"),
        "{}",
        run.warnings[0]
    );
    assert!(
        run.warnings[0].contains(&log.display().to_string()),
        "{}",
        run.warnings[0]
    );
}

#[test]
fn offline_a_new_version_resolves_from_uvs_cache() {
    let fx = Fixture::new();
    let installer = uv();
    let index = wheels::SimpleIndex::serve(&fx.root.join("index"));
    for (name, version, requires) in wheels::STANDARD {
        index.add_wheel(name, version, requires);
    }
    let mut online = fx.standard_inputs();
    online.offline = false;
    online.wheels_dir = None;
    online.settings.index_url = Some(index.url());
    let first = python::build_env(
        &fx.home("online"),
        &fx.layout,
        &collect(&online),
        None,
        &installer,
    )
    .unwrap();
    assert_eq!(first.packages, EXPECTED);
    assert!(index.served("nodedep-a"), "the first build used the index");
    drop(index);

    // A new version (other inputs) whose packages are all in uv's cache.
    let mut offline = online.clone();
    offline.offline = true;
    offline.nodes.retain(|(name, _)| name == "pack_a");
    let reqs = collect(&offline);
    assert_ne!(reqs.inputs_digest().to_string(), first.inputs_digest);
    let env = python::build_env(&fx.home("offline"), &fx.layout, &reqs, None, &installer).unwrap();
    assert_eq!(
        env.packages,
        [
            "fakecomfydep==1.0",
            "fakerequests==2.0",
            "nodedep-a==1.0",
            "nodedep-b==2.0"
        ]
    );
    assert_eq!(
        venv_run(&fx.home("offline"), "import nodedep_a; print('ok')"),
        "ok"
    );
}

/// Environment variable telling [`helper_build_env_for_kill`] its fixture root.
const KILL_ROOT_ENV: &str = "COMFYVER_TEST_KILL_ROOT";

#[test]
#[ignore = "helper: run (and SIGKILLed) by a_killed_build_never_blocks_the_next_one"]
fn helper_build_env_for_kill() {
    let root = PathBuf::from(std::env::var_os(KILL_ROOT_ENV).expect("run by its parent test"));
    let fx = Fixture::at(root);
    let reqs = collect(&fx.kill_inputs());
    python::build_env(&fx.home("killed"), &fx.layout, &reqs, None, &uv()).unwrap();
}

/// Every process whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .filter(|pid| {
            // Zombies are dead.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                !s.rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
            })
        })
        .collect()
}

#[test]
fn a_killed_build_never_blocks_the_next_one() {
    let fx = Fixture::new();
    let wheel_names: Vec<String> = (0..40).map(|i| format!("bulkdep{i}")).collect();
    for name in &wheel_names {
        wheels::build_wheel(&fx.wheels, name, "1.0", &[]);
    }
    let reqs = collect(&fx.kill_inputs());
    let home = fx.home("killed");
    let needle = home.display().to_string();
    // Seeded moments across the build: venv creation, resolution, install.
    let mut seed: u64 = 0x5eed_2026;
    for trial in 0..6 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = std::time::Duration::from_millis(100 + seed % 1200);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "helper_build_env_for_kill",
                "--ignored",
                "--test-threads=1",
            ])
            .env(KILL_ROOT_ENV, &fx.root)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // Odd trials: SIGTERM (the watcher stops the children, then comfyver
        // dies of the signal); even trials: SIGKILL (the parent-death signal).
        let signal = if trial % 2 == 1 { "-TERM" } else { "-KILL" };
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        child.wait().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !processes_mentioning(&needle).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(
            processes_mentioning(&needle),
            Vec::<u32>::new(),
            "trial {trial} ({signal} after {delay:?}): a child of the killed build is still running"
        );
        // One rerun succeeds.
        let env = python::build_env(&home, &fx.layout, &reqs, None, &uv())
            .unwrap_or_else(|e| panic!("trial {trial} ({delay:?}): the rerun failed: {e}"));
        assert_eq!(env.packages.len(), EXPECTED.len() + wheel_names.len());
        assert_eq!(venv_run(&home, "import bulkdep39; print('ok')"), "ok");
        // Next trial starts from scratch again.
        std::fs::remove_dir_all(&home).unwrap();
    }
}

/// A core whose requirements pin torch 2 (small fake wheels named torch).
fn torch_core(fx: &Fixture) -> PathBuf {
    let core = fx.root.join("torch-core");
    std::fs::create_dir_all(&core).unwrap();
    std::fs::write(
        core.join("requirements.txt"),
        "torch==2.1.0\nfakecomfydep>=1.0\n",
    )
    .unwrap();
    for v in ["1.13.1", "2.1.0"] {
        wheels::build_wheel(&fx.wheels, "torch", v, &[]);
    }
    core
}

#[test]
fn a_pack_may_not_downgrade_torch_unless_the_spec_overrides_it() {
    let fx = Fixture::new();
    let mut inputs = fx.standard_inputs();
    inputs.core_dir = torch_core(&fx);
    inputs.nodes = vec![fx.pack(
        "old_torch_pack",
        &[("requirements.txt", "nodedep-a\ntorch<2\n")],
    )];
    let err = python::collect_requirements(&inputs).unwrap_err();
    assert!(matches!(err, PythonError::TorchDowngrade { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "custom_nodes/old_torch_pack/requirements.txt line 2: `torch<2` would downgrade torch \
         below the core's torch 2.1.0, which breaks ComfyUI; use a version of the pack that \
         supports torch 2.1.0, or, to force it, pin torch in the spec's python.overrides"
    );
    // A pack that accepts the core's torch is fine, and installs it.
    inputs.nodes = vec![fx.pack("new_torch_pack", &[("requirements.txt", "torch>=2.0,<3\n")])];
    let env =
        python::build_env(&fx.home("t2"), &fx.layout, &collect(&inputs), None, &uv()).unwrap();
    assert!(
        env.packages.contains(&"torch==2.1.0".to_string()),
        "{:?}",
        env.packages
    );
    // Forced by the spec: the override replaces every torch line.
    inputs.nodes = vec![fx.pack("old_torch_pack", &[("requirements.txt", "torch<2\n")])];
    inputs.settings.overrides = vec!["torch==1.13.1".into()];
    let reqs = collect(&inputs);
    let torch: Vec<_> = reqs
        .requirements
        .iter()
        .filter(|r| r.name.as_deref() == Some("torch"))
        .collect();
    assert_eq!(torch.len(), 1);
    assert_eq!(torch[0].origin, "spec python.overrides");
    let env = python::build_env(&fx.home("t1"), &fx.layout, &reqs, None, &uv()).unwrap();
    assert!(
        env.packages.contains(&"torch==1.13.1".to_string()),
        "{:?}",
        env.packages
    );
}

#[test]
fn opencv_variants_of_two_packs_are_installed_as_one() {
    let fx = Fixture::new();
    for name in ["opencv-python", "opencv-python-headless"] {
        wheels::build_wheel(&fx.wheels, name, "4.10.0", &[]);
    }
    let mut inputs = fx.standard_inputs();
    inputs.nodes = vec![
        fx.pack("gui_cv_pack", &[("requirements.txt", "opencv-python>=4\n")]),
        fx.pack(
            "headless_cv_pack",
            &[("requirements.txt", "opencv-python-headless\n")],
        ),
    ];
    let reqs = collect(&inputs);
    assert!(
        reqs.warnings
            .iter()
            .any(|w| w.contains("gui_cv_pack") && w.contains("opencv-python-headless")),
        "{:?}",
        reqs.warnings
    );
    let env = python::build_env(&fx.home("cv"), &fx.layout, &reqs, None, &uv()).unwrap();
    let cv: Vec<_> = env
        .packages
        .iter()
        .filter(|p| p.starts_with("opencv"))
        .collect();
    assert_eq!(cv, ["opencv-python-headless==4.10.0"]);
}

#[test]
fn unsupported_pip_options_in_a_pack_are_warned_and_skipped() {
    let fx = Fixture::new();
    let mut inputs = fx.standard_inputs();
    inputs.nodes = vec![fx.pack(
        "nobinary_pack",
        &[(
            "requirements.txt",
            "--no-binary :all:\n--prefer-binary\nnodedep-a\n",
        )],
    )];
    let reqs = collect(&inputs);
    let skipped: Vec<_> = reqs
        .warnings
        .iter()
        .filter(|w| w.contains("skipped"))
        .collect();
    assert_eq!(skipped.len(), 2, "{:?}", reqs.warnings);
    assert!(
        skipped[0]
            .starts_with("custom_nodes/nobinary_pack/requirements.txt line 1: `--no-binary :all:`"),
        "{}",
        skipped[0]
    );
    let env = python::build_env(&fx.home("nb"), &fx.layout, &reqs, None, &uv()).unwrap();
    assert!(env.packages.contains(&"nodedep-a==1.0".to_string()));
}

#[test]
fn torch_backend_picks_its_build_and_other_packages_come_from_the_primary_index() {
    let fx = Fixture::new();
    let installer = uv();
    // The primary index (PyPI's stand-in): the standard set, torch's plain
    // build, numpy 2.0.0.
    let pypi = wheels::SimpleIndex::serve(&fx.root.join("pypi"));
    for (name, version, requires) in wheels::STANDARD {
        pypi.add_wheel(name, version, requires);
    }
    pypi.add_wheel("torch", "2.5.1", &[]);
    pypi.add_wheel("numpy", "2.0.0", &[]);
    // The PyTorch indexes, one per backend; the cu128 one also hosts numpy,
    // the same version and a newer one, which must not be taken from it.
    let torch = wheels::SimpleIndex::serve(&fx.root.join("torch"));
    torch.add_wheel_at("cpu", "torch", "2.5.1+cpu", &[]);
    torch.add_wheel_at("cu128", "torch", "2.5.1+cu128", &[]);
    torch.add_wheel_at("cu128", "numpy", "2.0.0", &[]);
    torch.add_wheel_at("cu128", "numpy", "2.1.0", &[]);

    let inputs = |backend: &str| {
        let mut i = fx.standard_inputs();
        i.offline = false;
        i.wheels_dir = None;
        i.settings.index_url = Some(pypi.url());
        i.settings
            .requirements
            .extend(["torch".to_string(), "numpy".to_string()]);
        i.settings.torch_backend = Some(backend.to_string());
        i.settings.torch_index_url = Some(torch.base_url());
        i
    };
    let cu = collect(&inputs("cu128"));
    let cpu = collect(&inputs("cpu"));
    assert_ne!(
        cu.inputs_digest(),
        cpu.inputs_digest(),
        "the backend is an input"
    );

    let env = python::build_env(&fx.home("cu128"), &fx.layout, &cu, None, &installer).unwrap();
    assert_eq!(
        env.torch_backend.as_deref(),
        Some("cu128"),
        "the lock records the backend"
    );
    assert!(
        env.packages.contains(&"torch==2.5.1+cu128".to_string()),
        "{:?}",
        env.packages
    );
    assert!(
        env.packages.contains(&"numpy==2.0.0".to_string()),
        "{:?}",
        env.packages
    );
    assert!(pypi.served("numpy"), "numpy comes from the primary index");
    assert!(
        !torch.served_at("cu128", "numpy"),
        "the torch index did not capture numpy"
    );
    assert!(torch.served_at("cu128", "torch"));
    assert_eq!(
        venv_run(&fx.home("cu128"), "import torch; print(torch.__version__)"),
        "2.5.1+cu128"
    );

    let env_cpu = python::build_env(&fx.home("cpu"), &fx.layout, &cpu, None, &installer).unwrap();
    assert!(
        env_cpu.packages.contains(&"torch==2.5.1+cpu".to_string()),
        "{:?}",
        env_cpu.packages
    );

    // A lock replays the same builds.
    let replay =
        python::build_env(&fx.home("replay"), &fx.layout, &cu, Some(&env), &installer).unwrap();
    assert_eq!(replay, env);
}

#[test]
fn a_packs_torch_index_serves_only_the_torch_family() {
    let fx = Fixture::new();
    let pypi = wheels::SimpleIndex::serve(&fx.root.join("pypi"));
    for (name, version, requires) in wheels::STANDARD {
        pypi.add_wheel(name, version, requires);
    }
    pypi.add_wheel("torch", "2.5.1", &[]);
    pypi.add_wheel("numpy", "2.0.0", &[]);
    let torch = wheels::SimpleIndex::serve(&fx.root.join("torch"));
    torch.add_wheel_at("cu128", "torch", "2.5.1+cu128", &[]);
    torch.add_wheel_at("cu128", "numpy", "2.1.0", &[]);

    let mut inputs = fx.standard_inputs();
    inputs.offline = false;
    inputs.wheels_dir = None;
    inputs.settings.index_url = Some(pypi.url());
    let file = format!("--index-url {}/cu128\ntorch\nnumpy\n", torch.base_url());
    inputs.nodes = vec![fx.pack("gpu_pack", &[("requirements.txt", file.as_str())])];
    let reqs = collect(&inputs);
    assert!(
        reqs.warnings
            .iter()
            .any(|w| w.contains("gpu_pack") && w.contains("torch family only")),
        "{:?}",
        reqs.warnings
    );
    let env = python::build_env(&fx.home("g"), &fx.layout, &reqs, None, &uv()).unwrap();
    assert!(
        env.packages.contains(&"torch==2.5.1+cu128".to_string()),
        "{:?}",
        env.packages
    );
    assert!(
        env.packages.contains(&"numpy==2.0.0".to_string()),
        "numpy must come from the primary index, not the pack's torch index: {:?}",
        env.packages
    );
    assert!(!torch.served_at("cu128", "numpy"));
}

/// What `importlib.metadata` sees in a venv, as freeze lines: the
/// interpreter's own view (the freeze used to ask it), the oracle of the
/// freeze that reads the metadata directories itself.
const IMPORTLIB_FREEZE: &str = r#"
import importlib.metadata as m, json, os, sys
prefix = os.path.realpath(sys.prefix)
for d in m.distributions():
    loc = os.path.realpath(str(d.locate_file("")))
    if not (loc == prefix or loc.startswith(prefix + os.sep)):
        continue
    name = d.metadata["Name"]
    line = f"{name}=={d.version}"
    raw = d.read_text("direct_url.json")
    if raw:
        u = json.loads(raw)
        vcs = u.get("vcs_info")
        if vcs:
            line = f"{name} @ {vcs['vcs']}+{u['url']}@{vcs['commit_id']}"
        elif "archive_info" in u or "dir_info" in u:
            line = f"{name} @ {u['url']}"
    print(line)
"#;

#[test]
fn freeze_lists_exactly_what_importlib_metadata_lists() {
    let fx = Fixture::new();
    let home = fx.home("freeze");
    let installer = uv();
    let reqs = collect(&fx.standard_inputs());
    python::build_env(&home, &fx.layout, &reqs, None, &installer).unwrap();
    let venv = python::venv_dir(&home);
    // A wheel installed by its path: a PEP 610 archive record.
    let wheel = wheels::build_wheel(&fx.root.join("direct"), "Direct_Pkg", "3.1", &[]);
    let Installer::Uv { uv } = &installer else {
        unreachable!()
    };
    let out = Command::new(uv)
        .args([
            "pip",
            "install",
            "--no-config",
            "--offline",
            "--quiet",
            "--python",
        ])
        .arg(python::venv_python(&home))
        .arg(&wheel)
        .env("UV_CACHE_DIR", fx.layout.uv_cache())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // What other installers leave: a VCS and an editable record, legacy
    // egg-info as a directory and as a file, and metadata naming nothing.
    let site = std::fs::read_dir(venv.join("lib"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("site-packages"))
        .find(|p| p.is_dir())
        .unwrap();
    let dist = |dir: &str, meta: &str, direct: Option<&str>| {
        let d = site.join(dir);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("METADATA"), meta).unwrap();
        if let Some(u) = direct {
            std::fs::write(d.join("direct_url.json"), u).unwrap();
        }
    };
    dist(
        "Vcs.Pkg-1.0.dist-info",
        "Metadata-Version: 2.1\nName: Vcs.Pkg\nVersion: 1.0\n\nName: not-this\n",
        Some(
            r#"{"url": "https://example.invalid/r.git", "vcs_info": {"vcs": "git", "commit_id": "0123456789abcdef0123456789abcdef01234567"}}"#,
        ),
    );
    dist(
        "localpkg-0.1.dist-info",
        "Metadata-Version: 2.1\nname: localpkg\nversion: 0.1\n",
        Some(r#"{"url": "file:///src/localpkg", "dir_info": {"editable": true}}"#),
    );
    dist(
        "broken-1.0.dist-info",
        "Metadata-Version: 2.1\nVersion: 1.0\n",
        None,
    );
    std::fs::create_dir_all(site.join("Legacy_Egg-2.0-py3.11.egg-info")).unwrap();
    std::fs::write(
        site.join("Legacy_Egg-2.0-py3.11.egg-info/PKG-INFO"),
        "Metadata-Version: 1.1\nName: Legacy_Egg\nVersion: 2.0\n",
    )
    .unwrap();
    std::fs::write(
        site.join("single_file-0.5.egg-info"),
        "Metadata-Version: 1.0\nName: single-file\nVersion: 0.5\n",
    )
    .unwrap();

    let oracle = Command::new(python::venv_python(&home))
        .args(["-I", "-c", IMPORTLIB_FREEZE])
        .output()
        .unwrap();
    assert!(
        oracle.status.success(),
        "{}",
        String::from_utf8_lossy(&oracle.stderr)
    );
    let mut expected: Vec<String> = String::from_utf8(oracle.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("None"))
        .map(|l| match l.split_once(" @ ") {
            Some((n, url)) => format!("{} @ {url}", normalize_name(n)),
            None => {
                let (n, v) = l.split_once("==").unwrap();
                format!("{}=={v}", normalize_name(n))
            }
        })
        .collect();
    expected.sort();
    expected.dedup();
    let frozen = python::freeze(&venv).unwrap();
    assert_eq!(frozen, expected);
    for line in [
        "fakecomfydep==1.0",
        "vcs-pkg @ git+https://example.invalid/r.git@0123456789abcdef0123456789abcdef01234567",
        "localpkg @ file:///src/localpkg",
        "legacy-egg==2.0",
        "single-file==0.5",
    ] {
        assert!(frozen.iter().any(|l| l == line), "{line} not in {frozen:?}");
    }
    assert!(
        frozen.iter().any(|l| l.starts_with("direct-pkg @ file://")),
        "{frozen:?}"
    );
    assert!(
        !frozen
            .iter()
            .any(|l| l.contains("not-this") || l.contains("broken"))
    );
}

/// A PEP 517 build backend in the source tree itself (standard library only),
/// so a `git+` requirement builds without any download.
const IN_TREE_BACKEND: &str = r#"
import base64, hashlib, os, zipfile

NAME, VERSION = "gitdep", "1.0"
DIST = f"{NAME}-{VERSION}.dist-info"

def _record_line(path, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    files = {
        f"{NAME}.py": open(os.path.join(os.path.dirname(__file__), "payload.txt"), "rb").read(),
        f"{DIST}/METADATA": f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n".encode(),
        f"{DIST}/WHEEL": b"Wheel-Version: 1.0\nGenerator: in-tree\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [_record_line(p, d) for p, d in files.items()] + [f"{DIST}/RECORD,,"]
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
        z.writestr(f"{DIST}/RECORD", "\n".join(record) + "\n")
    return name
"#;

#[test]
fn git_requirements_are_fetched_through_the_url_rewrites() {
    let mut fx = Fixture::new();
    let remotes = fx.root.join("remotes");
    let mut dep = comfyver_testkit::git::Repo::new(&remotes, "gitdep");
    dep.write(&[
        (
            "pyproject.toml",
            "[build-system]\nrequires = []\nbuild-backend = \"backend\"\nbackend-path = [\".\"]\n",
        ),
        ("backend.py", IN_TREE_BACKEND),
        ("payload.txt", "MIRRORED = True\n"),
    ]);
    dep.commit("gitdep");
    dep.push();
    let mut inputs = fx.standard_inputs();
    inputs.nodes = Vec::new();
    inputs.settings.requirements =
        vec!["gitdep @ git+https://public-host.example/deps/gitdep.git".into()];
    // Without the rules, git reaches for the public-looking host and fails.
    let installer = pip_only(&fx.root);
    let err = python::build_env(
        &fx.home("plain"),
        &fx.layout,
        &collect(&inputs),
        None,
        &installer,
    )
    .unwrap_err();
    assert!(err.to_string().contains("pip install"), "{err}");
    let rule = format!(
        "https://public-host.example/deps/=file://{}/",
        remotes.display()
    );
    fx.rewrites = UrlRewrites::parse_list(&rule, "test").unwrap();
    inputs.rewrites = fx.rewrites.clone();
    let home = fx.home("rewritten");
    let env = python::build_env(&home, &fx.layout, &collect(&inputs), None, &installer).unwrap();
    assert_eq!(
        venv_run(&home, "import gitdep; print(gitdep.MIRRORED)"),
        "True"
    );
    // The lock keeps the spec's URL, never the mirror's.
    let line = env
        .packages
        .iter()
        .find(|p| p.starts_with("gitdep"))
        .unwrap();
    assert!(
        line.contains("git+https://public-host.example/deps/gitdep.git@"),
        "{line}"
    );
}

/// Writes into its own directory and the venv's site-packages, then to
/// `$OUTSIDE` when set (a path outside its area).
const AREA_SCRIPT: &str = r#"
import os, sysconfig
open("own.txt", "w").write("mine\n")
open(os.path.join(sysconfig.get_paths()["purelib"], "from_script.txt"), "w").write("x\n")
target = os.environ.get("OUTSIDE")
if target:
    open(target, "w").write("escaped\n")
print("area script done")
"#;

fn kernel_has_landlock() -> bool {
    matches!(LandlockSupport::probe(), LandlockSupport::Available { .. })
}

#[test]
fn a_confined_install_py_writes_its_dir_and_the_venv_and_nothing_outside() {
    if !kernel_has_landlock() {
        eprintln!("skipped: this kernel has no Landlock");
        return;
    }
    let fx = Fixture::new();
    let pack = fx.pack("area_pack", &[("install.py", AREA_SCRIPT)]);
    let (home, reqs, script) = home_with_script(&fx, "area", pack.clone());
    let installer = uv();
    let env = BTreeMap::new();
    let ctx = fx.script_ctx(&env, &installer, &reqs);
    let run = python::run_install_scripts(&home, std::slice::from_ref(&script), &ctx).unwrap();
    let status = run.confined.expect("a script ran");
    assert!(status.confined, "{status}");
    assert_eq!(
        std::fs::read_to_string(pack.1.join("own.txt")).unwrap(),
        "mine\n"
    );
    assert_eq!(
        venv_run(
            &home,
            "import os, sysconfig; print(os.path.exists(os.path.join(sysconfig.get_paths()['purelib'], 'from_script.txt')))"
        ),
        "True"
    );
    // Its private TMPDIR and HOME are gone afterwards.
    let scratch: Vec<_> = std::fs::read_dir(home.join(".comfyver"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("script-scratch"))
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");

    // A path outside: refused, not created, and the error says so.
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("escaped.txt");
    let env = BTreeMap::from([("OUTSIDE".to_string(), target.display().to_string())]);
    let ctx = fx.script_ctx(&env, &installer, &reqs);
    let mut next = script.clone();
    next.commit = "f".repeat(40);
    let err = python::run_install_scripts(&home, std::slice::from_ref(&next), &ctx).unwrap_err();
    assert!(matches!(err, PythonError::ScriptRefused { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("`area_pack`"), "{text}");
    assert!(
        text.contains(&format!("outside its area ({})", target.display())),
        "{text}"
    );
    assert!(text.contains("Permission denied"), "{text}");
    assert!(text.contains("--confine off"), "{text}");
    assert!(!target.exists(), "the outside file was not created");

    // Unconfined, the same script writes there: the test can fail.
    let mut ctx = fx.script_ctx(&env, &installer, &reqs);
    ctx.confine = ConfineMode::Off;
    let run = python::run_install_scripts(&home, &[next], &ctx).unwrap();
    let status = run.confined.unwrap();
    assert!(
        !status.confined && status.reason.contains("off"),
        "{status}"
    );
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "escaped\n");
}

#[test]
fn required_confinement_without_landlock_refuses_to_run_a_script() {
    let fx = Fixture::new();
    let pack = fx.pack("area_pack", &[("install.py", AREA_SCRIPT)]);
    let (home, reqs, script) = home_with_script(&fx, "req", pack.clone());
    let installer = uv();
    let env = BTreeMap::new();
    let none = LandlockSupport::Unavailable {
        reason: "the kernel has no Landlock (simulated)".into(),
    };
    let mut ctx = fx.script_ctx(&env, &installer, &reqs);
    ctx.confine = ConfineMode::Required;
    ctx.landlock = Some(&none);
    let err = python::run_install_scripts(&home, std::slice::from_ref(&script), &ctx).unwrap_err();
    assert!(
        matches!(err, PythonError::ScriptUnconfined { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(text.contains("`area_pack` must run confined"), "{text}");
    assert!(text.contains("simulated"), "{text}");
    assert!(!pack.1.join("own.txt").exists(), "the script did not run");
    // `auto` runs it unconfined and says why.
    ctx.confine = ConfineMode::Auto;
    let run = python::run_install_scripts(&home, &[script], &ctx).unwrap();
    let status = run.confined.unwrap();
    assert!(
        !status.confined && status.reason.contains("simulated"),
        "{status}"
    );
    assert!(pack.1.join("own.txt").exists());
}
