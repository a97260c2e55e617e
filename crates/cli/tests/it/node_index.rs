//! Each version knows its node classes: after one run the home holds its
//! node index, workflows the version cannot run fail before ComfyUI starts,
//! a realize of a changed lock drops the index, and `import workflow` and
//! `nodes classes` read it.

use std::path::Path;
use std::process::Output;

use comfyver_testkit::world::{World, smoke_workflow};
use serde_json::{Value, json};

fn comfyver(w: &World, args: &[&str]) -> Output {
    w.comfyver(Path::new(env!("CARGO_BIN_EXE_comfyver")), args, None)
}

fn stdout_json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// How many times ComfyUI has started in this home (one log file each).
fn starts(w: &World) -> usize {
    std::fs::read_dir(w.home("v1").join(".comfyver/logs"))
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("comfyui-"))
                .count()
        })
        .unwrap_or(0)
}

fn run(w: &World, name: &str, wf: &Value) -> Output {
    let file = w.workflow(name, wf);
    comfyver(w, &["run", "v1", "--workflow", file.to_str().unwrap()])
}

#[test]
fn a_run_records_the_index_then_bad_workflows_fail_before_comfyui_starts() {
    let w = World::new(&["hello_pack"]);
    // First without the pack: the index then lacks HelloText.
    let mut spec = w.spec("v1");
    spec["custom_nodes"] = json!([]);
    w.write_spec("v1", &spec);

    let out = run(&w, "smoke", &smoke_workflow(false));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let index_file = w.home("v1").join(".comfyver/node-index.json");
    let index: Value =
        serde_json::from_slice(&std::fs::read(&index_file).expect("the home holds the index"))
            .unwrap();
    assert!(index["classes"]["EmptyImage"].is_object(), "{index}");
    assert!(index["classes"].get("HelloText").is_none());
    let started = starts(&w);
    assert_eq!(started, 1);

    // An unknown class: refused without a start, naming the class.
    let unknown = json!({"1": {"class_type": "NoSuchNode", "inputs": {}},
                         "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0]}}});
    let out = run(&w, "unknown", &unknown);
    assert!(!out.status.success());
    let j = stdout_json(&out);
    assert_eq!(j["kind"], "missing_node", "{j}");
    assert_eq!(j["missing_node"]["class_type"], "NoSuchNode");
    assert_eq!(j["missing_node"]["node_id"], "1");
    assert_eq!(starts(&w), started, "ComfyUI did not start");

    // A bad value: refused the same way, naming node, input and type (its
    // only output depends on it: ComfyUI runs a workflow with a good output).
    let mut bad = smoke_workflow(false);
    bad["1"]["inputs"]["width"] = json!("wide");
    bad.as_object_mut().unwrap().remove("3");
    let out = run(&w, "bad", &bad);
    assert!(!out.status.success());
    let j = stdout_json(&out);
    assert_eq!(j["kind"], "validation", "{j}");
    assert_eq!(j["node_errors"][0]["node_id"], "1");
    assert_eq!(j["node_errors"][0]["class_type"], "EmptyImage");
    assert_eq!(j["node_errors"][0]["input"], "width");
    assert!(
        j["node_errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("INT"),
        "{j}"
    );
    assert_eq!(starts(&w), started, "ComfyUI did not start");

    // `nodes classes` lists the classes with their pack.
    let out = comfyver(&w, &["--json", "nodes", "classes", "v1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = stdout_json(&out)["classes"].as_array().unwrap().clone();
    let save = rows
        .iter()
        .find(|r| r["class"] == "SaveImage")
        .expect("SaveImage listed");
    assert_eq!(save["pack"], Value::Null);

    // A realize of a changed lock (the pack added): the old index, which
    // lacks HelloText, is not used; the workflow runs and a new index has it.
    w.write_spec("v1", &w.spec("v1"));
    let out = run(&w, "hello", &smoke_workflow(true));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(starts(&w), started + 1);
    let out = comfyver(&w, &["--json", "nodes", "classes", "v1"]);
    let rows = stdout_json(&out)["classes"].as_array().unwrap().clone();
    let hello = rows
        .iter()
        .find(|r| r["class"] == "HelloText")
        .expect("HelloText listed");
    assert_eq!(hello["pack"], "hello_pack");

    // `import workflow` sees the version's classes, skips a note and
    // normalises a Windows subfolder.
    let ui = json!({"nodes": [
        {"id": 1, "type": "HelloText", "widgets_values": [""]},
        {"id": 2, "type": "CheckpointLoaderSimple", "widgets_values": ["hyvideo\\hunyuan.safetensors"]},
        {"id": 3, "type": "Note", "widgets_values": ["see https://example.invalid/m.safetensors"]},
    ], "links": []});
    let file = w.workflow("ui", &ui);
    let out = comfyver(
        &w,
        &[
            "--json",
            "import",
            "workflow",
            file.to_str().unwrap(),
            "--into",
            "v1",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = stdout_json(&out);
    assert_eq!(j["provided"]["HelloText"], "hello_pack", "{j}");
    assert_eq!(j["provided"]["CheckpointLoaderSimple"], Value::Null, "{j}");
    assert_eq!(j["skipped"], json!(["Note"]));
    let missing = j["missing_models"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "the note's URL is no model: {j}");
    assert_eq!(missing[0]["name"], "hyvideo/hunyuan.safetensors");
    assert_eq!(missing[0]["written_as"], "hyvideo\\hunyuan.safetensors");
    assert!(
        !j["notes"].to_string().contains("without pack information"),
        "{j}"
    );
}
