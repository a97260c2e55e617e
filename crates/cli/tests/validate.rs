//! `comfyver validate`, `list`, `show`, `schema` through the real binary.

use std::path::{Path, PathBuf};
use std::process::Output;

fn comfyver(cache: &Path, versions: &Path, args: &[&str]) -> Output {
    let bin = Path::new(env!("CARGO_BIN_EXE_comfyver"));
    comfyver_testkit::cli::comfyver_command(bin, cache, versions)
        .args(args)
        .output()
        .unwrap()
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
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let versions = tmp.path().join("versions");
    std::fs::create_dir_all(&versions).unwrap();
    let expected = std::fs::read_to_string(corpus().join("EXPECTED.tsv")).unwrap();
    let before = snapshot(&corpus());
    let mut checked = 0;
    for line in expected
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (file, needle) = line.split_once('\t').unwrap();
        let path = corpus().join(file);
        let out = comfyver(&cache, &versions, &["validate", path.to_str().unwrap()]);
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
    assert!(!cache.exists(), "validate created the cache directory");
    assert_eq!(snapshot(&versions), vec![], "versions dir untouched");
    assert_eq!(snapshot(&corpus()), before, "fixtures untouched");
}

#[test]
fn validate_all_list_show_and_json() {
    let tmp = tempfile::tempdir().unwrap();
    let versions = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../versions");
    let out = comfyver(tmp.path(), &versions, &["validate", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = comfyver(tmp.path(), &versions, &["list", "--json"]);
    assert!(out.status.success());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        rows.as_array()
            .unwrap()
            .iter()
            .any(|r| r["version_id"] == "example")
    );

    // Global flags are accepted after the subcommand too.
    let out = comfyver(tmp.path(), &versions, &["show", "example", "--json"]);
    assert!(out.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["spec"]["version_id"], "example");

    let out = comfyver(tmp.path(), &versions, &["show", "../etc/passwd"]);
    assert_eq!(out.status.code(), Some(1));

    let out = comfyver(tmp.path(), &versions, &["show", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no version `nope`"));
    assert!(!tmp.path().join("resolved").exists());
}

#[test]
fn validate_json_reports_every_issue() {
    let tmp = tempfile::tempdir().unwrap();
    let path = corpus().join("many-problems.json");
    let out = comfyver(
        tmp.path(),
        tmp.path(),
        &["--json", "validate", path.to_str().unwrap()],
    );
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
    let tmp = tempfile::tempdir().unwrap();
    let out = comfyver(tmp.path(), tmp.path(), &["schema"]);
    assert!(out.status.success());
    let committed =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/version.schema.json"))
            .unwrap();
    assert_eq!(out.stdout, committed);
}
