//! `extra_model_paths.yaml`, written by hand: every key and value is a JSON
//! string, which is a valid YAML double-quoted scalar, so paths with `: #`,
//! quotes or non-ASCII characters round-trip exactly. Folders with several
//! directories get one newline-separated string (ComfyUI splits values on
//! `\n`; a YAML list would crash it).

use std::path::Path;

use comfyver_spec::model_folders::{MODEL_FOLDERS, RESERVED_YAML_KEYS, is_known, nested_key};

use crate::folders::custom_tops;

/// The section name in the generated file.
pub(crate) const YAML_SECTION: &str = "comfyver";

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// The `extra_model_paths.yaml` that points ComfyUI at the store `models_dir`:
/// every ComfyUI model folder mapped to its subdirectory (with the legacy
/// aliases `clip`, `unet` and `t2i_adapter` listed too), plus each custom
/// `target_subdir` that is not a known folder: its top directory under its
/// own name (`ultralytics`), and a nested one under the name packs register
/// it by (`ultralytics/bbox` as `ultralytics_bbox`).
pub fn extra_model_paths_yaml(models_dir: &Path, custom_subdirs: &[String]) -> String {
    let mut out =
        String::from("# Written by comfyver: ComfyUI's model folders in the shared model store.\n");
    out.push_str(&format!("{YAML_SECTION}:\n"));
    out.push_str(&format!(
        "  {}: {}\n",
        q("base_path"),
        q(&models_dir.to_string_lossy())
    ));
    for (folder, dirs) in MODEL_FOLDERS {
        let mut lines = vec![*folder];
        lines.extend(dirs.iter().filter(|d| *d != folder));
        out.push_str(&format!("  {}: {}\n", q(folder), q(&lines.join("\n"))));
    }
    let mut keys: Vec<(String, String)> = custom_tops(custom_subdirs)
        .into_iter()
        .map(|t| (t.to_string(), t.to_string()))
        .collect();
    for s in custom_subdirs {
        let s = s.trim_matches('/');
        let key = nested_key(s);
        let top = s.split('/').next().unwrap_or_default();
        if !s.contains('/')
            || is_known(top)
            || is_known(&key)
            || RESERVED_YAML_KEYS.contains(&key.as_str())
            || keys.iter().any(|(k, _)| *k == key)
        {
            continue;
        }
        keys.push((key, s.to_string()));
    }
    keys.sort();
    for (key, dir) in keys {
        out.push_str(&format!("  {}: {}\n", q(&key), q(&dir)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_and_custom_dirs_are_quoted_strings() {
        let y = extra_model_paths_yaml(
            Path::new("/vol/models: #1"),
            &[
                "ipadapter".into(),
                "loras/sdxl".into(),
                "ipadapter/x".into(),
                "ultralytics/bbox".into(),
                "custom/nodes".into(),
                "t2i_adapter".into(),
            ],
        );
        assert!(y.contains("  \"ultralytics\": \"ultralytics\"\n"), "{y}");
        assert!(
            y.contains("  \"ultralytics_bbox\": \"ultralytics/bbox\"\n"),
            "{y}"
        );
        assert!(y.contains("  \"ipadapter_x\": \"ipadapter/x\"\n"), "{y}");
        assert!(!y.contains("\"custom_nodes\""), "{y}");
        assert_eq!(
            y.matches("t2i_adapter").count(),
            1,
            "only under controlnet: {y}"
        );
        assert!(y.contains("  \"base_path\": \"/vol/models: #1\"\n"), "{y}");
        assert!(
            y.contains("  \"text_encoders\": \"text_encoders\\nclip\"\n"),
            "{y}"
        );
        assert!(
            y.contains("  \"diffusion_models\": \"diffusion_models\\nunet\"\n"),
            "{y}"
        );
        assert!(
            y.contains("  \"controlnet\": \"controlnet\\nt2i_adapter\"\n"),
            "{y}"
        );
        assert_eq!(y.matches("\"ipadapter\"").count(), 2, "{y}");
        assert!(!y.contains("\"loras/sdxl\""));
        assert!(!y.contains("\n  - "), "never a YAML list");
    }
}
