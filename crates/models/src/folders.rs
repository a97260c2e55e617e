//! Model folders that packs define for themselves (`ultralytics/bbox`,
//! `sams`, `insightface`, `ipadapter`, `LLM`, …). Packs find their files in
//! three ways: by a folder name registered in `extra_model_paths.yaml` (see
//! [`crate::extra_model_paths_yaml`]), by `folder_paths.models_dir` joined
//! with a directory name, or by replacing the folder's entry with such a
//! path. The last two look inside the home's own `models/` directory, so
//! [`link_custom_folders`] makes `<home>/models/<top>` a link into the store
//! for each custom top directory.

use std::path::Path;

use comfyver_spec::model_folders::{RESERVED_YAML_KEYS, is_known, map_legacy};

use crate::ModelsError;

/// The distinct top directories of the custom (non-ComfyUI) folders among
/// `subdirs`, in order.
pub(crate) fn custom_tops(subdirs: &[String]) -> Vec<&str> {
    let mut tops: Vec<&str> = Vec::new();
    for s in subdirs {
        let top = map_legacy(s.trim_matches('/').split('/').next().unwrap_or_default());
        if top.is_empty()
            || is_known(top)
            || RESERVED_YAML_KEYS.contains(&top)
            || tops.contains(&top)
        {
            continue;
        }
        tops.push(top);
    }
    tops.sort_unstable();
    tops
}

/// Makes `<home_models>/<top>` a symlink to `<models_dir>/<top>` for each
/// custom top directory of `subdirs` (creating the store directory), so a
/// pack that reads `folder_paths.models_dir` finds the store's files. An
/// existing link is replaced atomically; an empty directory is replaced; a
/// directory with files is left alone and reported in the returned warnings.
pub fn link_custom_folders(
    home_models: &Path,
    models_dir: &Path,
    subdirs: &[String],
) -> Result<Vec<String>, ModelsError> {
    let mut warnings = Vec::new();
    for top in custom_tops(subdirs) {
        let target = models_dir.join(top);
        std::fs::create_dir_all(&target).map_err(|e| ModelsError::io("create", &target, e))?;
        std::fs::create_dir_all(home_models)
            .map_err(|e| ModelsError::io("create", home_models, e))?;
        let link = home_models.join(top);
        match std::fs::symlink_metadata(&link) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if std::fs::read_link(&link).is_ok_and(|t| t == target) {
                    continue;
                }
            }
            Ok(meta) if meta.is_dir() => {
                if std::fs::remove_dir(&link).is_err() {
                    warnings.push(format!(
                        "{} is a directory with files, so packs that read folder_paths.models_dir \
                         see it instead of the model store's {}; move its files into the store",
                        link.display(),
                        target.display()
                    ));
                    continue;
                }
            }
            Ok(_) => {
                warnings.push(format!(
                    "{} is a file, not a link to the model store; remove it",
                    link.display()
                ));
                continue;
            }
            Err(_) => {}
        }
        let tmp = home_models.join(format!(".tmp-link-{top}-{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&target, &tmp).map_err(|e| ModelsError::io("link", &tmp, e))?;
        std::fs::rename(&tmp, &link).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ModelsError::io("link", &link, e)
        })?;
    }
    Ok(warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_tops_are_linked_into_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (home, store) = (dir.path().join("home/models"), dir.path().join("store"));
        std::fs::create_dir_all(home.join("sams")).unwrap();
        std::fs::create_dir_all(home.join("insightface")).unwrap();
        std::fs::write(home.join("insightface/own.onnx"), b"x").unwrap();
        let subdirs: Vec<String> = [
            "ultralytics/bbox",
            "sams",
            "loras/sdxl",
            "insightface",
            "t2i_adapter",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(
            custom_tops(&subdirs),
            ["insightface", "sams", "ultralytics"]
        );
        let warnings = link_custom_folders(&home, &store, &subdirs).unwrap();
        assert_eq!(
            std::fs::read_link(home.join("ultralytics")).unwrap(),
            store.join("ultralytics")
        );
        assert_eq!(
            std::fs::read_link(home.join("sams")).unwrap(),
            store.join("sams"),
            "an empty dir is replaced"
        );
        assert!(
            home.join("insightface/own.onnx").is_file(),
            "a dir with files is kept"
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(!home.join("loras").exists() && !home.join("t2i_adapter").exists());
        // Idempotent.
        assert!(link_custom_folders(&home, &store, &subdirs).unwrap().len() == 1);
    }
}
