//! ComfyUI-Manager's node databases, read from local files: `custom-node-list.json`
//! (`{"custom_nodes": [{"id", "reference", "files", ...}]}`) maps a registry
//! (CNR) id to its repository; `extension-node-map.json`
//! (`{"<repo url>": [["NodeClass", ...], {"title_aux", "cnr_id"?, ...}]}`) maps a
//! node class to the repository that provides it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::ImportError;
use crate::workspace::{format_error, read_json};

/// Repositories by registry id and by node class.
#[derive(Debug, Default)]
pub(crate) struct NodeMap {
    by_cnr: HashMap<String, String>,
    by_class: HashMap<String, String>,
}

impl NodeMap {
    /// Reads each file, detecting its format.
    pub(crate) fn load(files: &[PathBuf]) -> Result<NodeMap, ImportError> {
        let mut map = NodeMap::default();
        for f in files {
            map.read(f, &read_json(f)?)?;
        }
        Ok(map)
    }

    fn read(&mut self, path: &Path, v: &Value) -> Result<(), ImportError> {
        let Some(top) = v.as_object() else {
            return Err(format_error(
                path,
                "$",
                "expected a node list ({\"custom_nodes\": [...]}) or an extension-node-map ({\"<repo url>\": [[classes], {meta}]})",
            ));
        };
        if let Some(list) = top.get("custom_nodes") {
            let Some(items) = list.as_array() else {
                return Err(format_error(
                    path,
                    "custom_nodes",
                    "expected an array of node packs",
                ));
            };
            for (i, item) in items.iter().enumerate() {
                let repo = item
                    .get("reference")
                    .and_then(Value::as_str)
                    .or_else(|| item.pointer("/files/0").and_then(Value::as_str));
                match (item.get("id").and_then(Value::as_str), repo) {
                    (Some(id), Some(repo)) => {
                        self.by_cnr
                            .entry(id.to_ascii_lowercase())
                            .or_insert_with(|| repo.to_string());
                    }
                    (Some(_), None) => {
                        return Err(format_error(
                            path,
                            format!("custom_nodes[{i}]"),
                            "expected a `reference` or `files` repository URL",
                        ));
                    }
                    _ => {}
                }
            }
            return Ok(());
        }
        for (repo, entry) in top {
            let (Some(classes), meta) = (
                entry.get(0).and_then(Value::as_array),
                entry.get(1).and_then(Value::as_object),
            ) else {
                return Err(format_error(
                    path,
                    format!("[{repo:?}]"),
                    "expected [[\"NodeClass\", ...], {...}]",
                ));
            };
            for c in classes.iter().filter_map(Value::as_str) {
                self.by_class
                    .entry(c.to_string())
                    .or_insert_with(|| repo.clone());
            }
            if let Some(id) = meta.and_then(|m| m.get("cnr_id")).and_then(Value::as_str) {
                self.by_cnr
                    .entry(id.to_ascii_lowercase())
                    .or_insert_with(|| repo.clone());
            }
        }
        Ok(())
    }

    /// The repository of registry pack `id`.
    pub(crate) fn repo_of_cnr(&self, id: &str) -> Option<&str> {
        self.by_cnr
            .get(&id.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The repository that provides node class `class`.
    pub(crate) fn repo_of_class(&self, class: &str) -> Option<&str> {
        self.by_class.get(class).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_formats() {
        let mut m = NodeMap::default();
        m.read(
            Path::new("list.json"),
            &json!({"custom_nodes": [
                {"id": "Comfyui-A", "reference": "https://h/o/a", "files": ["https://h/o/a"]},
                {"title": "no id", "reference": "https://h/o/z"}
            ]}),
        )
        .unwrap();
        m.read(
            Path::new("map.json"),
            &json!({"https://h/o/b": [["BNode"], {"title_aux": "B", "cnr_id": "comfyui-b"}]}),
        )
        .unwrap();
        assert_eq!(m.repo_of_cnr("comfyui-a"), Some("https://h/o/a"));
        assert_eq!(m.repo_of_cnr("comfyui-b"), Some("https://h/o/b"));
        assert_eq!(m.repo_of_class("BNode"), Some("https://h/o/b"));
        assert_eq!(m.repo_of_class("Other"), None);
        let err = m
            .read(Path::new("bad.json"), &json!({"https://h/o/c": "x"}))
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad.json: [\"https://h/o/c\"]: expected"),
            "{err}"
        );
    }
}
