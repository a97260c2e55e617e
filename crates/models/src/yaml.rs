//! `extra_model_paths.yaml`, written by hand: every key and value is a JSON
//! string, which is a valid YAML double-quoted scalar, so paths with `: #`,
//! quotes or non-ASCII characters round-trip exactly. Folders with several
//! directories get one newline-separated string (ComfyUI splits values on
//! `\n`; a YAML list would crash it).

use std::path::Path;

use comfyver_spec::model_folders::{MODEL_FOLDERS, is_known, map_legacy};

/// The section name in the generated file.
pub const YAML_SECTION: &str = "comfyver";

fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialize")
}

/// The `extra_model_paths.yaml` that points ComfyUI at the store `models_dir`:
/// every ComfyUI model folder mapped to its subdirectory (with the legacy
/// aliases `clip`, `unet` and `t2i_adapter` listed too), plus each custom
/// `target_subdir` that is not a known folder.
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
    let mut extra: Vec<&str> = Vec::new();
    for s in custom_subdirs {
        let top = s.trim_matches('/').split('/').next().unwrap_or_default();
        let top = map_legacy(top);
        if top.is_empty() || is_known(top) || extra.contains(&top) {
            continue;
        }
        extra.push(top);
    }
    extra.sort_unstable();
    for top in extra {
        out.push_str(&format!("  {}: {}\n", q(top), q(top)));
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
            ],
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
