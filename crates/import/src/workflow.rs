//! The packs and models a UI-format workflow (the frontend's "Save") needs.
//!
//! Each node of `nodes` (and of `definitions.subgraphs[].nodes`) may carry
//! `properties.cnr_id` (registry id; `comfy-core` for the core), `ver` (a
//! version or a commit), `aux_id` (`owner/repo` of a pack not in the
//! registry) and `Node name for S&R` (its class). Loader nodes name model
//! files in `widgets_values`; newer frontends also list `properties.models`
//! (`[{name, url, directory}]`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use comfyver_spec::{RepoUrl, is_full_commit, model_folders, redact, version::CustomNode};
use serde::Serialize;
use serde_json::Value;

use crate::ImportError;
use crate::edit::add_node_renaming;
use crate::node_map::NodeMap;
use crate::workspace::{Workspace, Written, format_error, read_json};

/// Options of [`import_workflow`].
#[derive(Debug, Clone)]
pub struct WorkflowOptions {
    /// Local `custom-node-list.json` / `extension-node-map.json` files.
    pub node_maps: Vec<PathBuf>,
    /// The base URL an `aux_id` (`owner/repo`) is appended to.
    pub aux_base: String,
    /// The classes the target version provides (from its node index), each
    /// with its pack (`None`: ComfyUI's core); these are not looked up.
    pub provided: BTreeMap<String, Option<String>>,
}

impl Default for WorkflowOptions {
    fn default() -> WorkflowOptions {
        WorkflowOptions {
            node_maps: vec![],
            aux_base: "https://github.com".to_string(),
            provided: BTreeMap::new(),
        }
    }
}

/// What [`import_workflow`] found beyond the spec edit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorkflowFindings {
    /// Model files the workflow references that the spec lacks.
    pub missing_models: Vec<MissingModel>,
    /// Classes the workflow uses that the version already provides
    /// (per [`WorkflowOptions::provided`]), with their pack (`None`: core).
    pub provided: BTreeMap<String, Option<String>>,
    /// UI-only nodes (notes, primitives, reroutes) that were skipped, by class.
    pub skipped: Vec<String>,
}

/// Nodes that exist only in the frontend: they never reach ComfyUI, name
/// no pack, and their text (a note's URL) is no model.
const UI_ONLY: &[&str] = &["Note", "MarkdownNote", "PrimitiveNode", "Reroute"];

/// A model file the workflow references and the spec lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingModel {
    /// The file name, with `/` between subfolders (may hold a subfolder).
    pub name: String,
    /// The name as the workflow writes it, when that differs (a Windows
    /// `\` subfolder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_as: Option<String>,
    /// The ComfyUI model folder, when the loader is known.
    pub folder: Option<String>,
    /// The node class and id that reference it.
    pub node: String,
    /// A download URL, when the workflow records one.
    pub url: Option<String>,
}

/// Loader classes: which widgets hold file names, and their folder.
const LOADERS: &[(&str, &[usize], &str)] = &[
    ("CheckpointLoaderSimple", &[0], "checkpoints"),
    ("CheckpointLoader", &[1], "checkpoints"),
    ("ImageOnlyCheckpointLoader", &[0], "checkpoints"),
    ("unCLIPCheckpointLoader", &[0], "checkpoints"),
    ("LoraLoader", &[0], "loras"),
    ("LoraLoaderModelOnly", &[0], "loras"),
    ("VAELoader", &[0], "vae"),
    ("CLIPLoader", &[0], "text_encoders"),
    ("DualCLIPLoader", &[0, 1], "text_encoders"),
    ("TripleCLIPLoader", &[0, 1, 2], "text_encoders"),
    ("UNETLoader", &[0], "diffusion_models"),
    ("ControlNetLoader", &[0], "controlnet"),
    ("DiffControlNetLoader", &[0], "controlnet"),
    ("UpscaleModelLoader", &[0], "upscale_models"),
    ("CLIPVisionLoader", &[0], "clip_vision"),
    ("StyleModelLoader", &[0], "style_models"),
    ("GLIGENLoader", &[0], "gligen"),
    ("HypernetworkLoader", &[0], "hypernetworks"),
    ("PhotoMakerLoader", &[0], "photomaker"),
];

const MODEL_EXTENSIONS: &[&str] = &[
    ".safetensors",
    ".ckpt",
    ".pt",
    ".pth",
    ".bin",
    ".gguf",
    ".sft",
    ".onnx",
];

/// One pack the workflow names.
struct Wanted {
    repo: String,
    ver: Option<String>,
    classes: Vec<String>,
}

/// `comfyver import workflow FILE --into ID`: adds the packs the workflow
/// names (pinned to the `ver` it was saved with) to the spec, and reports
/// the model files it references that the spec lacks. The spec is not
/// written when no pack is added.
pub fn import_workflow(
    ws: &Workspace,
    file: &Path,
    id: &str,
    opts: &WorkflowOptions,
) -> Result<(Written, WorkflowFindings), ImportError> {
    let mut doc = ws.open(id)?;
    let path = ws.spec_path(id)?;
    let raw = read_json(file)?;
    let nodes = ui_nodes(file, &raw)?;
    let map = NodeMap::load(&opts.node_maps)?;
    let mut notes = Vec::new();
    let mut wanted: BTreeMap<String, Wanted> = BTreeMap::new();
    let mut unplaced: BTreeMap<String, ()> = BTreeMap::new();
    let mut core_ver = None;
    let mut models = Vec::new();
    let mut provided = BTreeMap::new();
    let mut skipped = Vec::new();

    for (at, node) in &nodes {
        let class = node
            .get("type")
            .and_then(Value::as_str)
            .or_else(|| {
                node.pointer("/properties/Node name for S&R")
                    .and_then(Value::as_str)
            })
            .unwrap_or("?")
            .to_string();
        if UI_ONLY.contains(&class.as_str()) {
            skipped.push(class);
            continue;
        }
        let props = node.get("properties");
        let prop = |k: &str| props.and_then(|p| p.get(k)).and_then(Value::as_str);
        let ver = prop("ver").filter(|v| !v.is_empty()).map(str::to_string);
        if let Some(pack) = opts.provided.get(&class) {
            provided.insert(class.clone(), pack.clone());
            models.extend(model_refs(at, &class, node));
            continue;
        }
        let repo = match (prop("cnr_id"), prop("aux_id")) {
            (Some("comfy-core"), _) => {
                core_ver = core_ver.or(ver.clone());
                None
            }
            (Some(cnr), aux) => match map.repo_of_cnr(cnr) {
                Some(r) => Some(r.to_string()),
                None => match aux {
                    Some(aux) => Some(aux_url(&opts.aux_base, aux)),
                    None => {
                        notes.push(format!(
                            "{at} ({class}) is from registry pack `{cnr}` {}: pass --node-map custom-node-list.json or `comfyver add node {id} REPO@REF`",
                            ver.as_deref().unwrap_or("")
                        ));
                        None
                    }
                },
            },
            (None, Some(aux)) => Some(aux_url(&opts.aux_base, aux)),
            (None, None) => match map.repo_of_class(&class) {
                Some(r) => Some(r.to_string()),
                None => {
                    unplaced.insert(class.clone(), ());
                    None
                }
            },
        };
        if let Some(repo) = repo {
            let key = RepoUrl::parse(&repo)
                .map(|r| r.canonical().to_string())
                .unwrap_or_else(|_| repo.clone());
            let w = wanted.entry(key).or_insert_with(|| Wanted {
                repo: repo.clone(),
                ver: None,
                classes: vec![],
            });
            if w.ver.is_none() {
                w.ver = ver.clone();
            } else if ver.is_some() && w.ver != ver {
                notes.push(format!(
                    "{} is saved at both {} and {}: using {}",
                    redact(&repo),
                    w.ver.as_deref().unwrap_or(""),
                    ver.as_deref().unwrap_or(""),
                    w.ver.as_deref().unwrap_or("")
                ));
            }
            if !w.classes.contains(&class) {
                w.classes.push(class.clone());
            }
        }
        models.extend(model_refs(at, &class, node));
    }

    let mut done = Vec::new();
    for w in wanted.values() {
        let canonical = RepoUrl::parse(&w.repo).map(|r| r.canonical().to_string());
        let Ok(canonical) = canonical else {
            notes.push(format!(
                "`{}` is not a repository URL: not added",
                redact(&w.repo)
            ));
            continue;
        };
        let existing = doc
            .spec()
            .custom_nodes
            .iter()
            .find(|n| RepoUrl::parse(&n.repo).is_ok_and(|r| r.canonical() == canonical));
        if let Some(n) = existing {
            let pinned = n.commit.as_deref().or(n.git_ref.as_deref());
            if let (Some(v), Some(p)) = (&w.ver, pinned)
                && !p.starts_with(v.as_str())
                && !v.starts_with(p)
            {
                notes.push(format!(
                    "{} is pinned to {p} in the spec; the workflow was saved with {v} (kept the spec's)",
                    n.effective_name()
                ));
            }
            continue;
        }
        let (git_ref, commit) = match &w.ver {
            Some(v) if is_full_commit(v) => (None, Some(v.to_ascii_lowercase())),
            Some(v) if v != "unknown" && v != "nightly" => (Some(v.clone()), None),
            _ => {
                notes.push(format!(
                    "{} has no version in the workflow: it follows the remote's HEAD",
                    redact(&w.repo)
                ));
                (None, None)
            }
        };
        let node = CustomNode {
            repo: w.repo.clone(),
            git_ref,
            commit,
            name: None,
            install_script: None,
            writable: None,
        };
        let name = add_node_renaming(&mut doc, node)?;
        done.push(format!(
            "+ node {name} {} @ {} (for {})",
            redact(&w.repo),
            w.ver.as_deref().unwrap_or("HEAD"),
            w.classes.join(", ")
        ));
    }
    if let Some(v) = core_ver {
        let c = &doc.spec().comfy;
        let pinned = c
            .commit
            .as_deref()
            .or(c.git_ref.as_deref())
            .unwrap_or("HEAD");
        if !pinned
            .trim_start_matches('v')
            .starts_with(v.trim_start_matches('v'))
        {
            notes.push(format!(
                "the workflow was saved with ComfyUI {v}; the spec's core is {pinned}"
            ));
        }
    }
    if !unplaced.is_empty() {
        notes.push(format!(
            "node types without pack information (core nodes, or packs to add by hand; --node-map extension-node-map.json places them): {}",
            unplaced.keys().cloned().collect::<Vec<_>>().join(", ")
        ));
    }
    let have: Vec<(String, String)> = doc
        .spec()
        .models
        .iter()
        .map(|m| (m.effective_subdir(), m.effective_name()))
        .collect();
    let mut missing: Vec<MissingModel> = Vec::new();
    for m in models {
        let base = m
            .name
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or(&m.name)
            .to_string();
        let present = have.iter().any(|(folder, name)| {
            *name == base
                && m.folder
                    .as_ref()
                    .is_none_or(|f| folder.starts_with(f.as_str()))
        });
        if !present
            && !missing
                .iter()
                .any(|x| x.name == m.name && x.folder == m.folder)
        {
            missing.push(m);
        }
    }
    let written = if done.is_empty() {
        Written {
            path,
            spec: doc.spec().clone(),
            changed: false,
            done,
            notes,
            preview: None,
        }
    } else {
        ws.write(&path, &doc, done, notes)?
    };
    Ok((
        written,
        WorkflowFindings {
            missing_models: missing,
            provided,
            skipped,
        },
    ))
}

fn aux_url(base: &str, aux: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), aux.trim_matches('/'))
}

/// Every node of the UI workflow with its JSON path.
fn ui_nodes<'a>(file: &Path, raw: &'a Value) -> Result<Vec<(String, &'a Value)>, ImportError> {
    let Some(nodes) = raw.get("nodes") else {
        let api = raw
            .as_object()
            .is_some_and(|o| o.values().any(|v| v.get("class_type").is_some()));
        return Err(format_error(
            file,
            "nodes",
            if api {
                "this is an API-format workflow, which records no pack information: save the workflow from the ComfyUI frontend (Workflow → Save), not Export (API)"
            } else {
                "expected a UI-format ComfyUI workflow with a `nodes` array"
            },
        ));
    };
    let Some(list) = nodes.as_array() else {
        return Err(format_error(file, "nodes", "expected an array of nodes"));
    };
    let mut out: Vec<(String, &Value)> = list
        .iter()
        .enumerate()
        .map(|(i, n)| (format!("nodes[{i}]"), n))
        .collect();
    if let Some(subgraphs) = raw
        .pointer("/definitions/subgraphs")
        .and_then(Value::as_array)
    {
        for (s, g) in subgraphs.iter().enumerate() {
            for (i, n) in g
                .get("nodes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                out.push((format!("definitions.subgraphs[{s}].nodes[{i}]"), n));
            }
        }
    }
    for (at, n) in &out {
        if !n.is_object() {
            return Err(format_error(file, at.clone(), "expected a node object"));
        }
    }
    Ok(out)
}

/// The model files one node references.
fn model_refs(at: &str, class: &str, node: &Value) -> Vec<MissingModel> {
    let label = format!(
        "{class} {}",
        node.get("id")
            .map(|v| v.to_string())
            .unwrap_or_else(|| at.to_string())
    );
    let mut out = Vec::new();
    let from_props: Vec<&Value> = node
        .pointer("/properties/models")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    for m in from_props {
        if let Some(name) = m.get("name").and_then(Value::as_str) {
            let (name, written_as) = normalised(name);
            out.push(MissingModel {
                name,
                written_as,
                folder: m
                    .get("directory")
                    .and_then(Value::as_str)
                    .map(|d| model_folders::map_legacy(d).to_string()),
                node: label.clone(),
                url: m.get("url").and_then(Value::as_str).map(redact),
            });
        }
    }
    let widgets: Vec<&Value> = node
        .get("widgets_values")
        .and_then(Value::as_array)
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    let loader = LOADERS.iter().find(|(c, _, _)| *c == class);
    for (i, w) in widgets.iter().enumerate() {
        let Some(s) = w.as_str() else { continue };
        let folder = match loader {
            Some((_, idx, folder)) if idx.contains(&i) => Some(folder.to_string()),
            Some(_) => continue,
            None if MODEL_EXTENSIONS
                .iter()
                .any(|e| s.to_ascii_lowercase().ends_with(e)) =>
            {
                None
            }
            None => continue,
        };
        let (name, written_as) = normalised(s);
        if out.iter().any(|m: &MissingModel| m.name == name) {
            continue;
        }
        out.push(MissingModel {
            name,
            written_as,
            folder,
            node: label.clone(),
            url: None,
        });
    }
    out
}

/// A model name with `/` between subfolders (ComfyUI on Windows writes
/// `sub\\file`, which never matches on Linux), and the original spelling when
/// it differed.
fn normalised(name: &str) -> (String, Option<String>) {
    if name.contains('\\') {
        (name.replace('\\', "/"), Some(name.to_string()))
    } else {
        (name.to_string(), None)
    }
}
