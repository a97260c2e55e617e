//! The Python environment with real uv, real pip and real wheels built at
//! test time, offline (a local `--wheels-dir`, no index, no internet).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use comfyver_fs::CacheLayout;
use comfyver_python::{
    self as python, EnvState, InstallScript, Installer, PlannedInstall, PythonError, PythonInputs,
    Requirements, ScriptStatus,
};
use comfyver_spec::PythonSettings;
use comfyver_testkit::wheels;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    wheels: PathBuf,
    layout: CacheLayout,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        let wheels_dir = root.join("wheels");
        wheels::standard_wheels(&wheels_dir);
        let layout = CacheLayout::new(root.join("cache"));
        Fixture {
            _tmp: tmp,
            root,
            wheels: wheels_dir,
            layout,
        }
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
    let freeze = std::fs::read_to_string(home.join(python::FREEZE_FILE)).unwrap();
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

    let side_effect = fx.root.join("side-effect.txt");
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

    let report = python::run_install_scripts(&home, &scripts, &env).unwrap();
    assert_eq!(
        report,
        [
            ("pack_a".into(), ScriptStatus::Absent),
            ("pack_pyproj".into(), ScriptStatus::Absent),
            ("pack_script".into(), ScriptStatus::Run),
        ]
    );
    let again = python::run_install_scripts(&home, &scripts, &env).unwrap();
    assert_eq!(again[2].1, ScriptStatus::Done);
    let ran = std::fs::read_to_string(&side_effect).unwrap();
    assert_eq!(ran.lines().count(), 1, "install.py must run once: {ran}");
    let venv = std::fs::canonicalize(python::venv_dir(&home)).unwrap();
    assert!(
        ran.contains(&format!("ran in pack_script with {}", venv.display())),
        "{ran}"
    );
    let log = std::fs::read_to_string(python::install_log(&home, "pack_script")).unwrap();
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
    python::run_install_scripts(&home, &next, &env).unwrap();
    next[2].commit = "c".repeat(40);
    next[2].enabled = false;
    let off = python::run_install_scripts(&home, &next, &env).unwrap();
    assert_eq!(off[2].1, ScriptStatus::Disabled);
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
    python::build_env(&home, &fx.layout, &reqs, None, &uv()).unwrap();
    let script = InstallScript {
        name: broken.0,
        dir: broken.1,
        commit: "d".repeat(40),
        enabled: true,
    };
    let err = python::run_install_scripts(&home, &[script], &BTreeMap::new()).unwrap_err();
    let text = err.to_string();
    let log = python::install_log(&home, "broken_pack");
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
