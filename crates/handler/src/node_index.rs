//! [`NodeIndex`]: the node classes one realized version provides, recorded
//! from its ComfyUI's `/object_info` after a successful start, so later jobs
//! can be checked ([`crate::precheck`]) and workflows imported without
//! starting ComfyUI.
//!
//! The file lives where the caller says ([`NodeIndexFile`], in the home's
//! `.comfyver/`) and carries the home's stamp key: an index whose key differs
//! from the home's current one (a realize of a changed lock) is never read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::HandlerError;

/// The index file's format; another value is not read.
const SCHEMA: u32 = 1;

/// Where a version's node index lives, and the key it must carry to be used
/// (the realized stamp's key: a new realize of a changed lock changes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeIndexFile {
    /// The index file (`<home>/.comfyver/node-index.json`).
    pub path: PathBuf,
    /// The home's stamp key.
    pub key: String,
}

/// The node classes of one version: inputs, types, outputs and the pack each
/// class comes from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeIndex {
    schema: u32,
    key: String,
    classes: BTreeMap<String, NodeClass>,
}

/// One node class as `/object_info` describes it (what validation needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeClass {
    /// The custom node pack (directory under `custom_nodes/`) it comes from;
    /// `None`: ComfyUI's core.
    pub pack: Option<String>,
    /// ComfyUI's `python_module` (`nodes`, `comfy_extras.…`, `custom_nodes.<pack>`).
    pub python_module: String,
    /// Whether it is an output node (a prompt needs at least one).
    pub output_node: bool,
    /// Required inputs, in ComfyUI's order.
    pub required: BTreeMap<String, InputSpec>,
    /// Optional inputs.
    pub optional: BTreeMap<String, InputSpec>,
    /// Output types (`IMAGE`, `MODEL`, …; `*` for any).
    pub outputs: Vec<String>,
}

/// One input of a node class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// The type (`INT`, `FLOAT`, `STRING`, `BOOLEAN`, `IMAGE`, …), `COMBO`
    /// for a list of choices.
    #[serde(rename = "type")]
    pub kind: String,
    /// A combo's choices, unless they are file names (models, input images:
    /// those change without a realize, so they are not recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<Value>>,
}

impl NodeIndex {
    /// The index of `object_info` (ComfyUI's `/object_info`), under `key`;
    /// classes from `custom_nodes.<name>` where `core_custom/<name>.py` is a
    /// file belong to the core (ComfyUI's own example nodes).
    pub(crate) fn from_object_info(object_info: &Value, key: &str, core_custom: &Path) -> Self {
        let mut classes = BTreeMap::new();
        for (name, def) in object_info.as_object().into_iter().flatten() {
            let python_module = def
                .get("python_module")
                .and_then(Value::as_str)
                .unwrap_or("nodes")
                .to_string();
            let pack = python_module
                .strip_prefix("custom_nodes.")
                .filter(|p| {
                    !core_custom
                        .join(format!("{p}.py"))
                        .symlink_metadata()
                        .is_ok_and(|m| m.is_file())
                })
                .map(String::from);
            let inputs = |category: &str| -> BTreeMap<String, InputSpec> {
                def.pointer(&format!("/input/{category}"))
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                    .map(|(input, spec)| (input.clone(), input_spec(spec)))
                    .collect()
            };
            let outputs = def
                .get("output")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|t| match t {
                    Value::String(s) => s.clone(),
                    // A combo output (a list of choices).
                    _ => "COMBO".to_string(),
                })
                .collect();
            classes.insert(
                name.clone(),
                NodeClass {
                    pack,
                    python_module,
                    output_node: def.get("output_node").and_then(Value::as_bool) == Some(true),
                    required: inputs("required"),
                    optional: inputs("optional"),
                    outputs,
                },
            );
        }
        NodeIndex {
            schema: SCHEMA,
            key: key.to_string(),
            classes,
        }
    }

    /// The index at `file`, when there is one of this format carrying
    /// `file.key`; `None` otherwise (no index yet, an older realize's, or
    /// unreadable: then the caller behaves as without an index).
    pub fn read(file: &NodeIndexFile) -> Option<NodeIndex> {
        let bytes = std::fs::read(&file.path).ok()?;
        let index: NodeIndex = serde_json::from_slice(&bytes).ok()?;
        (index.schema == SCHEMA && index.key == file.key).then_some(index)
    }

    /// Writes the index to `path` atomically.
    pub(crate) fn write(&self, path: &Path) -> Result<(), HandlerError> {
        let mut bytes = serde_json::to_vec(self).map_err(|e| HandlerError::Io {
            what: "could not encode the node index for",
            path: path.to_path_buf(),
            source: e.into(),
        })?;
        bytes.push(b'\n');
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| HandlerError::io("could not create directory", dir, e))?;
        }
        comfyver_fs::write_atomic(path, &bytes).map_err(HandlerError::NodeIndex)
    }

    /// Every class with its description, by name.
    pub fn classes(&self) -> &BTreeMap<String, NodeClass> {
        &self.classes
    }

    /// The class `name`, if this version has it.
    pub fn class(&self, name: &str) -> Option<&NodeClass> {
        self.classes.get(name)
    }
}

/// `["INT", {...}]`, `[["a", "b"], {...}]` or `["COMBO", {"options": [...]}]`.
fn input_spec(spec: &Value) -> InputSpec {
    let head = spec.get(0).unwrap_or(spec);
    let (kind, options) = match head {
        Value::String(s) if s == "COMBO" => (
            "COMBO".to_string(),
            spec.pointer("/1/options")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
        ),
        Value::String(s) => (s.clone(), Vec::new()),
        Value::Array(list) => ("COMBO".to_string(), list.clone()),
        _ => ("*".to_string(), Vec::new()),
    };
    let is_combo = kind == "COMBO";
    let meta = spec.get(1);
    let uploads = meta.is_some_and(|m| {
        ["image_upload", "video_upload", "audio_upload", "remote"]
            .iter()
            .any(|k| m.get(k).is_some())
    });
    let options = (is_combo && !uploads && !is_file_list(&options)).then_some(options);
    InputSpec { kind, options }
}

/// Whether a combo's choices look like file names (models, input images):
/// empty (no files yet), or any choice with a path separator or an extension.
fn is_file_list(options: &[Value]) -> bool {
    options.is_empty()
        || options.iter().any(|o| {
            o.as_str().is_some_and(|s| {
                s.contains('/')
                    || s.contains('\\')
                    || s.rsplit_once('.').is_some_and(|(stem, ext)| {
                        !stem.is_empty()
                            && (1..=12).contains(&ext.len())
                            && ext.chars().all(|c| c.is_ascii_alphanumeric())
                            && ext.chars().any(|c| c.is_ascii_alphabetic())
                    })
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_info_becomes_classes_with_packs_types_and_non_file_combos() {
        let info = json!({
            "KSampler": {"python_module": "nodes", "output_node": false,
                "input": {"required": {"seed": ["INT", {"min": 0}], "model": ["MODEL"],
                    "sampler_name": [["euler", "ddim"], {}]}},
                "output": ["LATENT"]},
            "CheckpointLoaderSimple": {"python_module": "nodes",
                "input": {"required": {"ckpt_name": [["a.safetensors", "sub/b.ckpt"]]}},
                "output": ["MODEL", "CLIP", "VAE"]},
            "LoadImage": {"python_module": "nodes",
                "input": {"required": {"image": [[], {"image_upload": true}]}}, "output": ["IMAGE"]},
            "Hello": {"python_module": "custom_nodes.hello_pack", "output_node": true,
                "input": {"optional": {"mode": ["COMBO", {"options": ["fast", "slow"]}]}},
                "output": []},
        });
        let index = NodeIndex::from_object_info(&info, "k", Path::new("/nonexistent"));
        let ks = index.class("KSampler").expect("KSampler");
        assert_eq!(ks.pack, None);
        assert_eq!(ks.required["seed"].kind, "INT");
        assert_eq!(
            ks.required["sampler_name"].options,
            Some(vec![json!("euler"), json!("ddim")])
        );
        assert_eq!(ks.outputs, vec!["LATENT".to_string()]);
        let ckpt = &index
            .class("CheckpointLoaderSimple")
            .expect("ckpt")
            .required["ckpt_name"];
        assert_eq!((ckpt.kind.as_str(), &ckpt.options), ("COMBO", &None));
        assert_eq!(
            index.class("LoadImage").expect("LoadImage").required["image"].options,
            None
        );
        let hello = index.class("Hello").expect("Hello");
        assert_eq!(hello.pack.as_deref(), Some("hello_pack"));
        assert!(hello.output_node);
        assert_eq!(
            hello.optional["mode"].options,
            Some(vec![json!("fast"), json!("slow")])
        );
    }

    #[test]
    fn an_index_is_read_only_under_its_own_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(".comfyver").join("node-index.json");
        let index = NodeIndex::from_object_info(&json!({}), "key-1", dir.path());
        index.write(&path).expect("write");
        let file = |key: &str| NodeIndexFile {
            path: path.clone(),
            key: key.into(),
        };
        assert_eq!(NodeIndex::read(&file("key-1")), Some(index));
        assert_eq!(NodeIndex::read(&file("key-2")), None);
    }
}
