//! `comfyver validate`, `list`, `show`, `schema` through the real binary.

use std::path::{Path, PathBuf};

use comfyver_testkit::cli::Sandbox;

fn sandbox() -> Sandbox {
    Sandbox::new(Path::new(env!("CARGO_BIN_EXE_comfyver")))
}

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../spec/tests/fixtures/bad")
}

/// Every file under `dir` with its size and mtime, to prove nothing changed.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                out.extend(snapshot(&e.path()));
            }
            out.push((e.path(), m.len(), m.modified().unwrap()));
        }
    }
    out.sort();
    out
}

#[test]
fn bad_specs_exit_1_name_the_path_and_write_nothing() {
    let env = sandbox();
    let expected = std::fs::read_to_string(corpus().join("EXPECTED.tsv")).unwrap();
    let before = snapshot(&corpus());
    let mut checked = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (file, needle) = line.split_once('\t').unwrap();
        let path = corpus().join(file);
        let out = env.run(&["validate", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{file}: {stderr}");
        assert!(
            stderr.contains(needle),
            "{file}: {needle:?} not in {stderr}"
        );
        assert!(out.stdout.is_empty(), "{file}: nothing on stdout");
        checked += 1;
    }
    assert!(checked >= 30);
    assert!(
        !env.cache().exists(),
        "validate created the cache directory"
    );
    assert_eq!(snapshot(env.versions()), vec![], "versions dir untouched");
    assert_eq!(snapshot(&corpus()), before, "fixtures untouched");
}

#[test]
fn validate_all_list_show_and_json() {
    let env =
        sandbox().with_versions(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../versions"));
    let out = env.run(&["validate", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = env.run(&["list", "--json"]);
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["version_id"] == "example")
    );

    // Global flags are accepted after the subcommand too.
    let out = env.run(&["show", "example", "--json"]);
    assert!(out.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["spec"]["version_id"], "example");

    let out = env.run(&["show", "../etc/passwd"]);
    assert_eq!(out.status.code(), Some(1));

    let out = env.run(&["show", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no version `nope`"));
    assert!(!env.cache().join("resolved").exists());
}

#[test]
fn validate_json_reports_every_issue() {
    let env = sandbox();
    let path = corpus().join("many-problems.json");
    let out = env.run(&["--json", "validate", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paths: Vec<&str> = report[0]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["comfy", "custom_nodes[0].commit", "models[0].name"]);
}

#[test]
fn schema_prints_the_committed_schema() {
    let out = sandbox().run(&["schema"]);
    assert!(out.status.success());
    let committed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/version.schema.json"))
            .unwrap();
    assert_eq!(out.stdout, committed);
}
