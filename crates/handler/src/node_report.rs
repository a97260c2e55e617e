//! Which custom node packs ComfyUI loaded: `/object_info` (`python_module` =
//! `custom_nodes.<dir>`) and ComfyUI's "Import times for custom nodes" log
//! lines, compared with the spec's packs, with the log lines of every pack that
//! failed to import.
//!
//! - A pack that imports but registers no class (a front-end-only pack that
//!   just serves JavaScript) is loaded, not failed: the import-times list shows
//!   it without `(IMPORT FAILED)`.
//! - Core's own single-file modules (`custom_nodes/websocket_image_save.py`
//!   in the ComfyUI checkout) are not packs and are not listed.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::{FailedPack, HandlerError};
use crate::process::ComfyProcess;

/// The custom node packs of a running ComfyUI.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeReport {
    /// Loaded packs (directory name) and the classes each registered (none
    /// for a front-end-only pack).
    pub loaded: BTreeMap<String, Vec<String>>,
    /// Expected packs that did not load, with their log lines.
    pub failed: Vec<FailedPack>,
}

impl NodeReport {
    /// Whether every expected pack loaded.
    pub fn all_loaded(&self) -> bool {
        self.failed.is_empty()
    }

    /// `[{"name", "error", "log"}]` for each failed pack: the JSON field
    /// `failed_packs` of `run` and `test`.
    pub fn failed_json(&self) -> Value {
        json!(
            self.failed
                .iter()
                .map(FailedPack::to_json)
                .collect::<Vec<_>>()
        )
    }
}

/// Compares the packs `comfy` loaded with `expected_packs` (the version's node
/// pack directory names) and reports each one that did not load, with the
/// traceback, `Cannot import ...` and `(IMPORT FAILED)` lines of the log.
/// Without a list of packs, every pack the log marks `(IMPORT FAILED)` is
/// expected (and so failed).
pub(crate) fn report(
    comfy: &ComfyProcess,
    expected_packs: &[String],
) -> Result<NodeReport, HandlerError> {
    let log = comfy.log_text();
    let from_log: Vec<String>;
    let expected_packs = if expected_packs.is_empty() {
        from_log = log
            .lines()
            .filter_map(|l| l.split_once("(IMPORT FAILED):").map(|(_, p)| p.trim()))
            .filter_map(|p| p.rsplit('/').next().map(String::from))
            .collect();
        &from_log
    } else {
        expected_packs
    };
    let info = comfy.object_info()?;
    let imports = import_times(&log);
    let core_custom = comfy.core_dir().join("custom_nodes");
    let mut loaded = packs_of(&info);
    // Core's own `custom_nodes/<name>.py` files are part of ComfyUI.
    loaded.retain(|name, _| {
        let file = core_custom.join(format!("{name}.py"));
        !file.symlink_metadata().is_ok_and(|m| m.is_file())
    });
    for (name, ok) in &imports {
        if *ok && expected_packs.contains(name) {
            loaded.entry(name.clone()).or_default();
        }
    }
    let failed = expected_packs
        .iter()
        .filter(|p| !loaded.contains_key(p.as_str()))
        .map(|p| FailedPack {
            name: p.clone(),
            log_lines: pack_log_lines(&log, p),
        })
        .collect();
    Ok(NodeReport { loaded, failed })
}

/// `pack -> classes` from `/object_info`.
fn packs_of(info: &Value) -> BTreeMap<String, Vec<String>> {
    let mut packs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if let Some(classes) = info.as_object() {
        for (class, def) in classes {
            let module = def.get("python_module").and_then(Value::as_str);
            if let Some(pack) = module.and_then(|m| m.strip_prefix("custom_nodes.")) {
                packs
                    .entry(pack.to_string())
                    .or_default()
                    .push(class.clone());
            }
        }
    }
    packs
}

/// The directory packs of ComfyUI's "Import times for custom nodes" lines
/// (`   0.0 seconds: <path>/<name>` or `... (IMPORT FAILED): <path>/<name>`),
/// each with whether it imported. Single-file modules (`<name>.py`) are skipped.
fn import_times(log: &str) -> Vec<(String, bool)> {
    log.lines()
        .filter_map(|line| {
            let (head, path) = line.split_once(": ")?;
            let head = head.trim();
            let ok = if head.ends_with(" seconds") {
                true
            } else if head.ends_with(" seconds (IMPORT FAILED)") {
                false
            } else {
                return None;
            };
            head.split(' ').next()?.parse::<f64>().ok()?;
            let name = path.trim_end().rsplit('/').next()?;
            (!name.is_empty() && !name.ends_with(".py")).then(|| (name.to_string(), ok))
        })
        .collect()
}

/// The log lines about pack `name`: for each `Cannot import <dir>/<name> module`
/// (or `Skip <dir>/<name> module`) line, the traceback logged just before it and
/// the line itself; then the `(IMPORT FAILED)` summary line.
fn pack_log_lines(log: &str, name: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    let module_marker = format!("/{name} module");
    let path_end = format!("/{name}");
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let about_us = line.contains(&module_marker);
        if about_us && (line.contains("Cannot import") || line.starts_with("Skip ")) {
            let start = lines[..i]
                .iter()
                .rposition(|l| l.starts_with("Traceback (most recent call last)"))
                .filter(|&s| {
                    i - s <= 200
                        && !lines[s..i]
                            .iter()
                            .any(|l| l.contains("module for custom nodes"))
                })
                .unwrap_or(i);
            out.extend(lines[start..=i].iter().map(|l| l.to_string()));
        } else if line.contains("(IMPORT FAILED)") && line.trim_end().ends_with(&path_end) {
            out.push(line.to_string());
        }
    }
    if out.is_empty() {
        out.push(format!(
            "(no log line mentions {name}: is custom_nodes/{name} present, and does it define NODE_CLASS_MAPPINGS?)"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packs_come_from_python_module() {
        let info = json!({
            "SaveImage": {"python_module": "nodes"},
            "HelloText": {"python_module": "custom_nodes.hello_pack"},
        });
        let packs = packs_of(&info);
        assert_eq!(packs.len(), 1);
        assert_eq!(packs["hello_pack"], vec!["HelloText".to_string()]);
    }

    #[test]
    fn import_times_say_which_dirs_loaded() {
        let log = "\
Import times for custom nodes:
   0.0 seconds: /h/ComfyUI/custom_nodes/websocket_image_save.py
   0.0 seconds: /h/ComfyUI/custom_nodes/js_only_pack
   0.1 seconds (IMPORT FAILED): /h/ComfyUI/custom_nodes/broken_pack
note: 3 seconds: not an import line
";
        assert_eq!(
            import_times(log),
            [
                ("js_only_pack".to_string(), true),
                ("broken_pack".to_string(), false)
            ]
        );
    }

    #[test]
    fn log_lines_hold_traceback_and_summary() {
        let log = "\
Traceback (most recent call last):
  File \"/h/custom_nodes/hello_pack/__init__.py\", line 1
Traceback (most recent call last):
  File \"/h/custom_nodes/broken_pack/__init__.py\", line 6, in <module>
ImportError: needs v9
Cannot import /h/custom_nodes/broken_pack module for custom nodes: needs v9
Import times for custom nodes:
   0.0 seconds: /h/custom_nodes/hello_pack
   0.0 seconds (IMPORT FAILED): /h/custom_nodes/broken_pack
";
        let lines = pack_log_lines(log, "broken_pack");
        assert_eq!(lines.len(), 5, "{lines:#?}");
        assert!(lines[0].starts_with("Traceback"));
        assert!(lines[2].contains("ImportError"));
        assert!(lines[4].contains("(IMPORT FAILED)"));
        assert!(pack_log_lines(log, "other")[0].contains("no log line"));
    }
}
