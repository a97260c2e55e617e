//! The corpus of bad specs: each must fail with an error that names the JSON
//! path (or the line and column) and says what was expected.

use std::path::{Path, PathBuf};

use comfyver_spec::{SpecError, load_spec};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn expectations() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(fixtures().join("bad/EXPECTED.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (f, e) = l.split_once('\t').expect("file<TAB>expectation");
            (f.to_string(), e.to_string())
        })
        .collect()
}

#[test]
fn every_bad_spec_fails_with_its_path() {
    let cases = expectations();
    assert!(cases.len() >= 30, "the corpus has {} cases", cases.len());
    let on_disk = std::fs::read_dir(fixtures().join("bad"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(on_disk, cases.len(), "every fixture has an expectation");
    for (file, expected) in cases {
        let path = fixtures().join("bad").join(&file);
        let err = load_spec(&path).expect_err(&file);
        let text = err.to_string();
        assert!(
            text.contains(&expected),
            "{file}: expected the error to contain {expected:?}, got:\n{text}"
        );
        assert!(
            text.contains(&file),
            "{file}: the error names the file: {text}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let err = load_spec(&fixtures().join("bad/many-problems.json")).unwrap_err();
    let paths: Vec<&str> = err.issues().iter().map(|i| i.path.as_str()).collect();
    assert_eq!(
        paths,
        ["comfy", "custom_nodes[0].commit", "models[0].name"],
        "{err}"
    );
}

#[test]
fn syntax_errors_have_line_and_column() {
    let err = load_spec(&fixtures().join("bad/syntax-missing-comma.json")).unwrap_err();
    match err {
        SpecError::Syntax { line, column, .. } => assert_eq!((line, column), (3, 3)),
        other => panic!("expected a syntax error, got {other}"),
    }
}

#[test]
fn full_spec_parses_with_defaults_and_warnings() {
    let loaded = load_spec(&fixtures().join("good/full.json")).unwrap();
    let s = &loaded.spec;
    assert_eq!(s.custom_nodes[0].effective_name(), "pack-a");
    assert_eq!(s.custom_nodes[1].effective_name(), "PackB");
    assert!(!s.custom_nodes[1].runs_install_script());
    assert!(!s.custom_nodes[1].is_writable() && s.custom_nodes[2].is_writable());
    assert_eq!(
        s.models[0].relative_path(),
        "text_encoders/model.safetensors"
    );
    assert_eq!(s.models[2].relative_path(), "my_custom/folder/up.pth");
    assert!(s.skip_models() && !s.offline());
    let warned: Vec<&str> = loaded.warnings.iter().map(|w| w.path.as_str()).collect();
    assert_eq!(warned, ["models[2].target_subdir"]);
    // The digest ignores formatting.
    let compact = serde_json::to_string(
        &serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(fixtures().join("good/full.json")).unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    let again = comfyver_spec::parse_spec(&compact, Path::new("full.json"), Some("full")).unwrap();
    assert_eq!(again.spec.digest(), s.digest());
}

#[test]
fn committed_schema_matches_the_generated_one() {
    let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/version.schema.json");
    let committed = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        committed == comfyver_spec::spec_json_schema(),
        "docs/version.schema.json is out of date: run `cargo run -q -- schema > docs/version.schema.json`"
    );
}

#[test]
fn example_versions_validate() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../versions");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            load_spec(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 1);
}

#[test]
fn a_utf8_bom_at_the_start_is_accepted() {
    let text = std::fs::read_to_string(fixtures().join("good/full.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.json");
    std::fs::write(&path, format!("\u{feff}{text}")).unwrap();
    let with_bom = load_spec(&path).unwrap();
    let without = load_spec(&fixtures().join("good/full.json")).unwrap();
    assert_eq!(with_bom.spec.digest(), without.spec.digest());
}

#[test]
fn a_duplicate_key_is_a_syntax_error_at_its_line() {
    let err = load_spec(&fixtures().join("bad/node-duplicate-key.json")).unwrap_err();
    match err {
        SpecError::Syntax { line, .. } => assert_eq!(line, 12),
        other => panic!("expected a syntax error, got {other}"),
    }
}
