//! `target_subdir` values and the model folders of ComfyUI and of packs.

use std::path::Path;

use comfyver_spec::{model_folders, parse_spec};

fn spec_with_subdir(subdir: &str) -> String {
    serde_json::json!({
        "schema_version": 2,
        "version_id": "f",
        "comfy": {"repo": "https://example.invalid/ComfyUI.git", "ref": "v1"},
        "models": [{"source": "https://example.invalid/m.bin", "target_subdir": subdir}]
    })
    .to_string()
}

#[test]
fn yaml_keys_with_another_meaning_are_refused_with_their_json_path() {
    for bad in [
        "custom_nodes",
        "base_path",
        "is_default",
        "custom/nodes",
        "is_default/x",
    ] {
        let err = parse_spec(&spec_with_subdir(bad), Path::new("f.json"), Some("f")).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("models[0].target_subdir") && text.contains("another meaning"),
            "{bad}: {text}"
        );
    }
}

#[test]
fn gguf_folders_get_a_hint_and_pack_folders_a_plain_warning() {
    for (name, instead) in [
        ("unet_gguf", "diffusion_models"),
        ("clip_gguf", "text_encoders"),
    ] {
        let loaded = parse_spec(&spec_with_subdir(name), Path::new("f.json"), Some("f")).unwrap();
        let w = &loaded.warnings[0];
        assert_eq!(w.path, "models[0].target_subdir");
        assert!(w.message.contains(instead), "{}", w.message);
    }
    let loaded = parse_spec(
        &spec_with_subdir("ultralytics/bbox"),
        Path::new("f.json"),
        Some("f"),
    )
    .unwrap();
    assert_eq!(
        loaded.spec.models[0].relative_path(),
        "ultralytics/bbox/m.bin"
    );
}

#[test]
fn t2i_adapter_is_a_known_folder() {
    assert!(model_folders::is_known("t2i_adapter"));
    let loaded = parse_spec(
        &spec_with_subdir("t2i_adapter"),
        Path::new("f.json"),
        Some("f"),
    )
    .unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(
        model_folders::nested_key("ultralytics/bbox"),
        "ultralytics_bbox"
    );
}
