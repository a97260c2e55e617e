//! Packs' own model folders through the real binary and the stand-in
//! ComfyUI (issue 14 items 2 and 7): files with a custom `target_subdir` are
//! found by a pack that reads `folder_paths.models_dir`, one that replaces a
//! folder entry and one that uses a nested folder name; and
//! `extra_model_paths.yaml` is loaded once, so each path is registered once.

use std::path::Path;

use comfyver_testkit::world::World;
use serde_json::{Value, json};

#[test]
fn pack_folders_are_found_and_each_path_is_registered_once() {
    let w = World::new(&["models_dir_pack", "registers_pack"]);
    let server = w.server.as_ref().unwrap();
    let files = [
        ("ultralytics/bbox", "face_yolov8m.pt"),
        ("ultralytics/segm", "person_yolov8m-seg.pt"),
        ("sams", "sam_vit_b.pth"),
    ];
    let mut spec = w.spec("v1");
    for (dir, name) in files {
        server.add_file(&format!("/m/{name}"), format!("model {name}").into_bytes());
        spec["models"].as_array_mut().unwrap().push(json!({
            "source": server.url(&format!("/m/{name}")),
            "target_subdir": dir,
        }));
    }
    w.write_spec("v1", &spec);
    let wf = w.workflow(
        "folders",
        &json!({
            "1": {"class_type": "ModelsDirList", "inputs": {"subdir": "ultralytics/bbox"}},
            "2": {"class_type": "ReplacedFolderList", "inputs": {}},
            "3": {"class_type": "RegisteredList", "inputs": {}},
            "4": {"class_type": "FakeModelList", "inputs": {"folder": "sams"}},
        }),
    );
    let out = w.comfyver(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &["run", "v1", "--workflow", wf.to_str().unwrap()],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    let text = result.to_string();
    for want in [
        "models_dir/ultralytics/bbox: face_yolov8m.pt",
        "ultralytics_segm: person_yolov8m-seg.pt",
        "ultralytics_bbox: face_yolov8m.pt",
        "sam_vit_b.pth",
    ] {
        assert!(text.contains(want), "{want:?} not in {result}");
    }

    // The home's models/<top> links into the store; the yaml names the
    // nested folder and is not passed again on the command line.
    let home = w.home("v1");
    let store = w.root.join("cache/models");
    assert_eq!(
        std::fs::read_link(home.join("models/ultralytics")).unwrap(),
        store.join("ultralytics")
    );
    let yaml = std::fs::read_to_string(home.join("extra_model_paths.yaml")).unwrap();
    assert!(
        yaml.contains("\"ultralytics_bbox\": \"ultralytics/bbox\""),
        "{yaml}"
    );
    let logs: String = std::fs::read_dir(home.join(".comfyver/logs"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("comfyui-"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap())
        .collect();
    let line = format!(
        "Adding extra search path checkpoints {}",
        store.join("checkpoints").display()
    );
    assert_eq!(logs.matches(&line).count(), 1, "{logs}");
    assert!(!logs.contains("--extra-model-paths-config"));
}
