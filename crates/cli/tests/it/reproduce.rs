//! Reproducibility through the real binary: `diff` between realized homes
//! and locks, `verify --against`, and output hashes (`test --record` /
//! `--expect`). Real git repositories (file://), a real model server on
//! loopback, real uv with local wheels, the stand-in ComfyUI.

use std::path::Path;
use std::process::Output;

use comfyver_testkit::world::{World, smoke_workflow};
use serde_json::{Value, json};

fn comfyver(w: &World, args: &[&str]) -> Output {
    w.comfyver(Path::new(env!("CARGO_BIN_EXE_comfyver")), args, None)
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            text(&out.stdout),
            text(&out.stderr)
        )
    })
}

/// `(section, name, change)` of every change of a `diff --json`.
fn changes(v: &Value) -> Vec<(String, String, String)> {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["section"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
                c["change"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn diff_reports_equal_realizes_and_exactly_the_changed_node_package_and_model() {
    let mut w = World::new(&["hello_pack"]);
    let home1 = w.home("v1");
    let home2 = w.root.join("second-home");
    let (h1, h2) = (home1.to_str().unwrap(), home2.to_str().unwrap());
    ok(&comfyver(&w, &["realize", "v1"]));
    ok(&comfyver(&w, &["realize", "v1", "--home", h2]));

    // Two realizes of one lock: equal, whichever way they are named.
    for (a, b) in [(h1, h2), ("v1", h1), (h2, "v1")] {
        let out = comfyver(&w, &["--json", "diff", a, b]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{a} vs {b}: {}",
            text(&out.stderr)
        );
        let v = stdout_json(&out);
        assert_eq!(v["equal"], true, "{a} vs {b}: {v}");
        assert_eq!(changes(&v), vec![], "{a} vs {b}");
    }
    let lock1 = w.root.join("cache/resolved/v1.lock.json");
    let out = comfyver(&w, &["diff", lock1.to_str().unwrap(), h1]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("are equal"));
    ok(&comfyver(
        &w,
        &["verify", "v1", "--against", lock1.to_str().unwrap()],
    ));

    // v2: the node pack one commit later, one more package, the model with
    // other content (in a store of its own, under the same path).
    let (_, pack) = &mut w.packs[0];
    pack.write(&[("CHANGES.txt", "a second commit\n")]);
    let new_commit = pack.commit("second");
    pack.push();
    let server = w.server.as_ref().unwrap();
    server.add_file("/m2/tiny.safetensors", b"another model entirely".to_vec());
    let mut spec = w.spec("v2");
    spec["models"][0]["source"] = json!(server.url("/m2/tiny.safetensors"));
    spec["python"]["requirements"] = json!(["nodedep-b==1.0"]);
    w.write_spec("v2", &spec);
    let models2 = w.root.join("models2");
    let home3 = w.root.join("third-home");
    let h3 = home3.to_str().unwrap();
    ok(&comfyver(
        &w,
        &[
            "--models-dir",
            models2.to_str().unwrap(),
            "realize",
            "v2",
            "--home",
            h3,
        ],
    ));

    let want = vec![
        (
            "node".to_string(),
            "hello_pack".to_string(),
            "changed".to_string(),
        ),
        ("python".into(), "nodedep-b".into(), "added".into()),
        (
            "model".into(),
            "checkpoints/tiny.safetensors".into(),
            "changed".into(),
        ),
    ];
    for (a, b) in [(h1, h3), ("v1", "v2")] {
        let out = comfyver(&w, &["--json", "diff", a, b]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{a} vs {b}: {}",
            text(&out.stderr)
        );
        let v = stdout_json(&out);
        assert_eq!(v["equal"], false);
        assert_eq!(changes(&v), want, "{a} vs {b}: {v}");
        let node = &v["changes"][0];
        assert!(
            node["right"].as_str().unwrap().ends_with(&new_commit),
            "{node}"
        );
        assert_eq!(v["changes"][1]["right"], "1.0");
    }
    // The human table names the same three.
    let out = comfyver(&w, &["diff", h1, h3]);
    assert_eq!(out.status.code(), Some(1));
    let table = text(&out.stdout);
    assert_eq!(table.lines().count(), 3, "{table}");
    for needle in ["hello_pack", "nodedep-b", "checkpoints/tiny.safetensors"] {
        assert!(table.contains(needle), "{needle} not in\n{table}");
    }

    // verify --against: v1's home is not v2's lock.
    let lock2 = w.root.join("cache/resolved/v2.lock.json");
    let out = comfyver(&w, &["verify", "v1", "--against", lock2.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("custom_nodes/hello_pack"),
        "{}",
        text(&out.stderr)
    );

    // A home changed by hand after realize: an extra package in its venv.
    let venv_python = home2.join(".venv/bin/python");
    let wheel = std::fs::read_dir(w.root.join("wheels"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().contains("pyprojdep"))
        .unwrap();
    let install = std::process::Command::new("uv")
        .args(["pip", "install", "--no-deps", "--offline", "--python"])
        .arg(&venv_python)
        .arg(&wheel)
        .output()
        .unwrap();
    assert!(install.status.success(), "{}", text(&install.stderr));
    let out = comfyver(&w, &["--json", "diff", "v1", h2]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        changes(&stdout_json(&out)),
        vec![("python".into(), "pyprojdep".into(), "added".into())]
    );

    // A directory in custom_nodes/ that no lock names: ComfyUI loads it, so
    // diff and verify both see it.
    std::fs::create_dir_all(home2.join("custom_nodes/stray_pack")).unwrap();
    let out = comfyver(&w, &["--json", "diff", "v1", h2]);
    assert_eq!(
        changes(&stdout_json(&out)),
        vec![
            ("node".into(), "stray_pack".into(), "added".into()),
            ("python".into(), "pyprojdep".into(), "added".into())
        ]
    );
    let out = comfyver(&w, &["verify", "v1", "--home", h2]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("custom_nodes/stray_pack: not in the lock"),
        "{stderr}"
    );
    assert!(stderr.contains("python"), "{stderr}");

    // A home realized before homes recorded their lock: diff says what to
    // do, and the (warm) realize it names adds the file.
    std::fs::remove_file(home1.join(".comfyver/lock.json")).unwrap();
    let out = comfyver(&w, &["diff", "v1", h1]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("run `comfyver realize`"),
        "{}",
        text(&out.stderr)
    );
    let out = comfyver(&w, &["--json", "realize", "v1"]);
    assert_eq!(stdout_json(&out)["warm"], true);
    assert_eq!(comfyver(&w, &["diff", "v1", h1]).status.code(), Some(0));

    // A directory that is no home, and something that is nothing: clear errors.
    let out = comfyver(&w, &["diff", "v1", w.root.join("wheels").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a realized comfyver home"),
        "{}",
        text(&out.stderr)
    );
    let out = comfyver(&w, &["diff", "v1", "no-such-version"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("comfyver resolve no-such-version"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn recorded_output_hashes_match_twice_then_name_the_output_a_changed_input_changes() {
    let mut w = World::new(&["hello_pack"]);
    let wf = w.workflow("smoke", &smoke_workflow(true));
    let wf = wf.to_str().unwrap();
    let first = w.root.join("hashes.json");
    let again = w.root.join("hashes-again.json");
    let out = comfyver(
        &w,
        &[
            "-v",
            "test",
            "v1",
            "--workflow",
            wf,
            "--record",
            first.to_str().unwrap(),
        ],
    );
    ok(&out);
    assert!(
        text(&out.stderr).contains("ComfyUI gets --deterministic"),
        "{}",
        text(&out.stderr)
    );
    let recorded: Value = serde_json::from_slice(&std::fs::read(&first).unwrap()).unwrap();
    assert_eq!(recorded["format"], "comfyver-output-hashes");
    let ids: Vec<&str> = recorded["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["2/images/0", "3/text/0", "4/text/0"], "{recorded}");
    assert!(recorded["outputs"][0]["pixels"].is_string(), "{recorded}");

    // Every start has --disable-metadata, so the files themselves are
    // identical from run to run (else the PNG would carry the job's prompt).
    ok(&comfyver(
        &w,
        &[
            "test",
            "v1",
            "--workflow",
            wf,
            "--record",
            again.to_str().unwrap(),
        ],
    ));
    let again: Value = serde_json::from_slice(&std::fs::read(&again).unwrap()).unwrap();
    let shas = |v: &Value| -> Vec<String> {
        v["outputs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["sha256"].to_string())
            .collect()
    };
    assert_eq!(shas(&recorded), shas(&again));

    for round in 0..2 {
        let out = comfyver(
            &w,
            &[
                "test",
                "v1",
                "--workflow",
                wf,
                "--expect",
                first.to_str().unwrap(),
            ],
        );
        assert!(out.status.success(), "round {round}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("every output matches"),
            "{}",
            text(&out.stderr)
        );
    }

    // Outputs written to a directory are hashed from the files: the same.
    let sink = format!("dir:{}", w.root.join("out").display());
    let out = comfyver(
        &w,
        &[
            "test",
            "v1",
            "--workflow",
            wf,
            "--output",
            &sink,
            "--expect",
            first.to_str().unwrap(),
        ],
    );
    assert!(out.status.success(), "dir sink: {}", text(&out.stderr));
    assert!(w.root.join("out").read_dir().unwrap().next().is_some());

    // Another color in: exactly the image is reported, exit 1.
    let mut changed = smoke_workflow(true);
    changed["1"]["inputs"]["color"] = json!(0x112233);
    let changed = w.workflow("changed", &changed);
    let out = comfyver(
        &w,
        &[
            "--json",
            "test",
            "v1",
            "--workflow",
            changed.to_str().unwrap(),
            "--expect",
            first.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("2/images/0 changed (pixels"), "{stderr}");
    assert!(!stderr.contains("text/0"), "{stderr}");
    let summary = stdout_json(&out);
    assert_eq!(summary["ok"], false);
    assert_eq!(summary["changed"].as_array().unwrap().len(), 1, "{summary}");

    // A changed lock shows as a changed output of a workflow that depends on
    // it: v2 has the node pack at a commit whose node says something else.
    let (_, pack) = &mut w.packs[0];
    let source = std::fs::read_to_string(pack.work().join("__init__.py")).unwrap();
    pack.write(&[(
        "__init__.py",
        &source.replace("hello from", "greetings from"),
    )]);
    pack.commit("other greeting");
    pack.push();
    w.write_spec("v2", &w.spec("v2"));
    let out = comfyver(
        &w,
        &[
            "test",
            "v2",
            "--workflow",
            wf,
            "--expect",
            first.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("1 output(s) differ"), "{stderr}");
    assert!(stderr.contains("4/text/0 changed (sha256"), "{stderr}");

    // A file that is not a hashes file: a clear error naming it.
    let bogus = w.workflow("bogus", &json!({"images": []}));
    let out = comfyver(
        &w,
        &[
            "test",
            "v1",
            "--workflow",
            wf,
            "--expect",
            bogus.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bogus.json"),
        "{}",
        text(&out.stderr)
    );
}
