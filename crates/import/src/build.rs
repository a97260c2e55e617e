//! comfy-cli build definitions, both ways.
//!
//! The format (`comfy build scan --json`, what Comfy-Org's hosted serverless
//! builds from; comfy-cli's `comfy_cli/schemas/build.json`):
//! `{"schema": "distribution-definition/0", "baseComfyVersion": "v0.3.0",
//!   "pipDependencies": "name==1.0\n…", "environment": {…},
//!   "models": [{"type", "filename", "sha256", "sizeBytes", "source"}],
//!   "customNodes": [{"name", "repository", "gitRef", "source"}]}`.
//! The scan's whole payload (`{"models_dir", …, "definition": {…}}`) and
//! comfy-cli's authoring file (`{"schema": "comfy-build/1", "id", "definition"}`)
//! are read too, JSON or YAML.
//!
//! Mapped: `baseComfyVersion` ↔ the core's ref (or commit), `pipDependencies`
//! ↔ `python.requirements`, a model's `type`/`filename`/`sha256`/`sizeBytes`/
//! `source` ↔ `target_subdir`/`name`/`sha256`/`size`/`source`, a git node's
//! `name`/`repository`/`gitRef` ↔ `name`/`repo`/`commit` (or `ref`). What
//! cannot be mapped either way is named in the notes.

use std::path::Path;

use comfyver_spec::edit::SpecDocument;
use comfyver_spec::model_source::ModelSource;
use comfyver_spec::version::{ComfyCore, CustomNode, Model, PythonSettings};
use comfyver_spec::{VersionSpec, is_full_commit, redact};
use serde_json::{Map, Value, json};

use crate::workspace::{Workspace, Written, core_line, format_error, read_json};
use crate::yaml::{is_yaml, read_yaml};
use crate::{DEFAULT_COMFY_REPO, ImportError};

/// The definition schema comfy-cli writes.
const DEFINITION_SCHEMA: &str = "distribution-definition/0";

/// Options of [`import_build`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The new version's id; default: the authoring file's `id`, else the file's stem.
    pub id: Option<String>,
    /// The core repository ([`DEFAULT_COMFY_REPO`] when absent): a definition
    /// names only the core's version.
    pub comfy_repo: Option<String>,
}

/// `comfyver import build FILE [--id ID]`: writes `versions/<ID>.json`.
pub fn import_build(
    ws: &Workspace,
    file: &Path,
    opts: &BuildOptions,
) -> Result<Written, ImportError> {
    let raw = if is_yaml(file) {
        read_yaml(file)?
    } else {
        read_json(file)?
    };
    let Found {
        def,
        at,
        id: wrapper_id,
    } = definition(file, &raw)?;
    let id = match (&opts.id, wrapper_id) {
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id,
        (None, None) => file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    };
    let path = ws.new_spec_path(&id)?;
    let mut done = Vec::new();
    let mut notes = Vec::new();
    let field = |name: &str| format!("{at}{name}");

    match def.get("schema") {
        Some(Value::String(s)) if s == DEFINITION_SCHEMA => {}
        Some(Value::String(s)) => notes.push(format!(
            "the definition's schema is `{s}`, not `{DEFINITION_SCHEMA}`: read as {DEFINITION_SCHEMA}"
        )),
        _ => {
            return Err(format_error(
                file,
                field("schema"),
                format!("expected the definition's schema, e.g. \"{DEFINITION_SCHEMA}\""),
            ));
        }
    }

    let repo = opts
        .comfy_repo
        .clone()
        .unwrap_or_else(|| DEFAULT_COMFY_REPO.to_string());
    let comfy = match def.get("baseComfyVersion") {
        Some(Value::String(v)) if is_full_commit(v) => ComfyCore {
            repo,
            git_ref: None,
            commit: Some(v.to_ascii_lowercase()),
        },
        Some(Value::String(v)) if !v.trim().is_empty() => ComfyCore {
            repo,
            git_ref: Some(v.trim().to_string()),
            commit: None,
        },
        None | Some(Value::Null) => {
            notes.push(
                "the definition names no baseComfyVersion: the core follows the remote's HEAD (pin it with `comfyver edit`)"
                    .to_string(),
            );
            ComfyCore {
                repo,
                git_ref: None,
                commit: None,
            }
        }
        Some(_) => {
            return Err(format_error(
                file,
                field("baseComfyVersion"),
                "expected a ComfyUI version (a tag such as \"v0.3.0\") or a 40-hex commit",
            ));
        }
    };
    done.push(core_line(&comfy));

    let python = match def.get("pipDependencies") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => pip_dependencies(text, &mut notes),
        Some(_) => {
            return Err(format_error(
                file,
                field("pipDependencies"),
                "expected requirement lines in one string (pip freeze output)",
            ));
        }
    };
    if def.get("environment").is_some_and(|e| !e.is_null()) {
        notes.push(
            "`environment` (the machine the scan ran on) has no place in a spec and was not carried over"
                .to_string(),
        );
    }

    let mut models = Vec::new();
    for (i, m) in array(file, def, &at, "models")?.iter().enumerate() {
        let at = format!("{at}models[{i}]");
        if let Some(model) = model_of(file, &at, m, &mut notes)? {
            done.push(format!("+ model {}", model.relative_path()));
            models.push(model);
        }
    }
    let mut custom_nodes = Vec::new();
    for (i, n) in array(file, def, &at, "customNodes")?.iter().enumerate() {
        let at = format!("{at}customNodes[{i}]");
        if let Some(node) = node_of(file, &at, n, &mut notes)? {
            done.push(format!(
                "+ node {} {}",
                node.effective_name(),
                redact(&node.repo)
            ));
            custom_nodes.push(node);
        }
    }

    let spec = VersionSpec {
        schema_version: comfyver_spec::version::CURRENT_SCHEMA_VERSION,
        version_id: id.to_string(),
        description: Some(format!(
            "imported from the comfy build definition {}",
            file.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        )),
        comfy,
        custom_nodes,
        models,
        python,
        env: Default::default(),
        options: None,
    };
    let doc = SpecDocument::from_spec(&spec, &path)?;
    ws.write(&path, &doc, done, notes)
}

/// Where the definition is in a file.
struct Found<'a> {
    /// The definition object.
    def: &'a Map<String, Value>,
    /// The JSON path prefix it sits at (`definition.` or empty).
    at: String,
    /// The authoring file's `id`, when there is one.
    id: Option<String>,
}

/// The definition in `raw`: bare, or under `definition`.
fn definition<'a>(file: &Path, raw: &'a Value) -> Result<Found<'a>, ImportError> {
    let top = raw
        .as_object()
        .ok_or_else(|| format_error(file, "$", "expected a comfy build definition object"))?;
    match top.get("definition") {
        Some(Value::Object(def)) => {
            let id = top.get("id").and_then(Value::as_str).map(str::to_string);
            Ok(Found {
                def,
                at: "definition.".to_string(),
                id,
            })
        }
        Some(_) => Err(format_error(
            file,
            "definition",
            "expected the build definition object",
        )),
        None if top.contains_key("models") || top.contains_key("customNodes") => Ok(Found {
            def: top,
            at: String::new(),
            id: None,
        }),
        None => Err(format_error(
            file,
            "$",
            "expected a comfy build definition with `schema`, `models` and `customNodes` (or a scan payload with `definition`)",
        )),
    }
}

fn array<'a>(
    file: &Path,
    def: &'a Map<String, Value>,
    at: &str,
    key: &str,
) -> Result<&'a [Value], ImportError> {
    match def.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(format_error(
            file,
            format!("{at}{key}"),
            "expected an array",
        )),
    }
}

/// A required string field of an entry.
fn text<'a>(
    file: &Path,
    at: &str,
    entry: &'a Value,
    key: &str,
    expected: &str,
) -> Result<&'a str, ImportError> {
    match entry.get(key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        _ => Err(format_error(file, format!("{at}.{key}"), expected)),
    }
}

/// `pipDependencies` → requirements; pip options and local paths are named.
fn pip_dependencies(text: &str, notes: &mut Vec<String>) -> Option<PythonSettings> {
    let mut py = PythonSettings::default();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('-') || line.contains(" @ file:") || line.starts_with('/') {
            notes.push(format!(
                "pip line `{}` (an option or a file on the scanned machine) was not carried over",
                redact(line)
            ));
            continue;
        }
        py.requirements.push(line.to_string());
    }
    if py.requirements.is_empty() {
        return None;
    }
    if py
        .requirements
        .iter()
        .any(|l| l.contains("+cu") || l.contains("+rocm"))
    {
        notes.push(
            "the pins include CUDA/ROCm builds (`+cu…`/`+rocm…`): add their package index to python.extra_index_urls"
                .to_string(),
        );
    }
    Some(py)
}

/// One `models[]` entry; `None` (with a note) when it has no source to fetch.
fn model_of(
    file: &Path,
    at: &str,
    m: &Value,
    notes: &mut Vec<String>,
) -> Result<Option<Model>, ImportError> {
    if !m.is_object() {
        return Err(format_error(file, at, "expected a model object"));
    }
    let folder = text(
        file,
        at,
        m,
        "type",
        "expected the model folder, e.g. \"checkpoints\"",
    )?;
    let filename = text(file, at, m, "filename", "expected the model's file name")?;
    let sha256 = match m.get("sha256") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(s.to_ascii_lowercase())
        }
        Some(_) => {
            return Err(format_error(
                file,
                format!("{at}.sha256"),
                "expected 64 hex digits",
            ));
        }
    };
    let size = match m.get("sizeBytes") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or_else(|| {
            format_error(
                file,
                format!("{at}.sizeBytes"),
                "expected a whole number of bytes",
            )
        })?),
    };
    // `source` is a URL once the model has a public origin; comfy-cli's scan
    // writes `local` (uploaded as a blob) and may add the origin as `sourceUri`.
    let source = ["source", "sourceUri"]
        .iter()
        .filter_map(|k| m.get(*k).and_then(Value::as_str))
        .find(|s| ModelSource::parse(s).is_ok());
    let Some(source) = source else {
        let how = m.get("source").and_then(Value::as_str).unwrap_or("none");
        notes.push(format!(
            "model {folder}/{filename} has no URL to fetch it from (source `{how}`): add it with `comfyver add model <id> URL --to {folder}`"
        ));
        return Ok(None);
    };
    Ok(Some(Model {
        source: source.to_string(),
        name: Some(filename.to_string()),
        target_subdir: Some(folder.to_string()),
        sha256,
        blake3: None,
        size,
    }))
}

/// One `customNodes[]` entry; `None` (with a note) unless it is a git pack.
fn node_of(
    file: &Path,
    at: &str,
    n: &Value,
    notes: &mut Vec<String>,
) -> Result<Option<CustomNode>, ImportError> {
    if !n.is_object() {
        return Err(format_error(file, at, "expected a custom node object"));
    }
    let name = text(file, at, n, "name", "expected the pack's directory name")?;
    let repository = n.get("repository").and_then(Value::as_str);
    let source = n.get("source").and_then(Value::as_str).unwrap_or("");
    let Some(repository) = repository.filter(|r| comfyver_spec::RepoUrl::parse(r).is_ok()) else {
        let what = match source {
            "registry" => format!(
                "is a registry pack ({} {}) without a repository",
                n.get("id").and_then(Value::as_str).unwrap_or("?"),
                n.get("registryVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            ),
            "local" => "is local to the scanned machine (uploaded as a blob)".to_string(),
            _ => "has no repository".to_string(),
        };
        notes.push(format!(
            "node `{name}` {what}: put it in a git repository and `comfyver add node <id> REPO@REF`"
        ));
        return Ok(None);
    };
    let (git_ref, commit) = match n.get("gitRef") {
        None | Some(Value::Null) => {
            notes.push(format!(
                "node `{name}` has no gitRef: it follows the remote's HEAD"
            ));
            (None, None)
        }
        Some(Value::String(r)) if is_full_commit(r) => (None, Some(r.to_ascii_lowercase())),
        Some(Value::String(r)) if !r.is_empty() => (Some(r.clone()), None),
        Some(_) => {
            return Err(format_error(
                file,
                format!("{at}.gitRef"),
                "expected a commit, tag or branch",
            ));
        }
    };
    let mut node = CustomNode {
        repo: repository.to_string(),
        git_ref,
        commit,
        name: None,
        install_script: None,
        writable: None,
    };
    if node.effective_name() != name {
        node.name = Some(name.to_string());
    }
    Ok(Some(node))
}

/// What [`export_build`] produced.
#[derive(Debug, Clone)]
pub struct ExportedBuild {
    /// The definition (`distribution-definition/0`).
    pub definition: Value,
    /// What the spec holds that a definition cannot, one line each.
    pub notes: Vec<String>,
}

/// `comfyver export build ID`: the version's spec as a comfy build
/// definition. A node without a commit in the spec takes the lock's commit
/// when the version is resolved. Credentials in URLs are removed.
pub fn export_build(ws: &Workspace, id: &str) -> Result<ExportedBuild, ImportError> {
    let spec = ws.open(id)?.spec().clone();
    let lock = comfyver_resolver::read_lock(&ws.layout, id)
        .ok()
        .flatten()
        .filter(|l| l.version_id == spec.version_id);
    let mut notes = Vec::new();
    let comfy = &spec.comfy;
    if comfy.repo != DEFAULT_COMFY_REPO {
        notes.push(format!(
            "the core repository {} is not in a definition (it names only the version): builders use the official ComfyUI",
            redact(&comfy.repo)
        ));
    }
    let mut def = Map::new();
    def.insert("schema".into(), json!(DEFINITION_SCHEMA));
    match comfy.commit.as_deref().or(comfy.git_ref.as_deref()) {
        Some(v) => {
            def.insert("baseComfyVersion".into(), json!(v));
        }
        None => notes.push(
            "the core follows the remote's HEAD: the definition has no baseComfyVersion".into(),
        ),
    }
    if let Some(py) = &spec.python {
        if !py.requirements.is_empty() {
            let mut text = py.requirements.join("\n");
            text.push('\n');
            def.insert("pipDependencies".into(), json!(text));
        }
        for (what, n) in [
            ("constraints", py.constraints.len()),
            ("overrides", py.overrides.len()),
            ("extra_index_urls", py.extra_index_urls.len()),
            ("find_links", py.find_links.len()),
        ] {
            if n > 0 {
                notes.push(format!("python.{what} ({n}) are not in a definition"));
            }
        }
        for (what, set) in [
            ("version", py.version.is_some()),
            ("index_url", py.index_url.is_some()),
            ("torch_backend", py.torch_backend.is_some()),
            ("torch_index_url", py.torch_index_url.is_some()),
            ("system_site_packages", py.system_site_packages.is_some()),
        ] {
            if set {
                notes.push(format!("python.{what} is not in a definition"));
            }
        }
    }
    let models: Vec<Value> = spec
        .models
        .iter()
        .map(|m| {
            if m.blake3.is_some() && m.sha256.is_none() {
                notes.push(format!(
                    "model {} has only a BLAKE3 digest: a definition carries SHA-256",
                    m.relative_path()
                ));
            }
            let mut e = Map::new();
            e.insert("type".into(), json!(m.effective_subdir()));
            e.insert("filename".into(), json!(m.effective_name()));
            e.insert("sha256".into(), json!(m.sha256));
            e.insert("sizeBytes".into(), json!(m.size));
            e.insert("source".into(), json!(redact(&m.source)));
            Value::Object(e)
        })
        .collect();
    let nodes: Vec<Value> = spec
        .custom_nodes
        .iter()
        .map(|n| {
            let locked = lock.as_ref().and_then(|l| {
                l.custom_nodes
                    .iter()
                    .find(|ln| ln.repo == n.repo)
                    .map(|ln| ln.commit.clone())
            });
            let git_ref = n.commit.clone().or(locked).or(n.git_ref.clone());
            if n.install_script == Some(false) {
                notes.push(format!(
                    "node `{}`: `install_script: false` is not in a definition",
                    n.effective_name()
                ));
            }
            if n.is_writable() {
                notes.push(format!(
                    "node `{}`: `writable: true` is not in a definition",
                    n.effective_name()
                ));
            }
            json!({
                "name": n.effective_name(),
                "repository": redact(&n.repo),
                "gitRef": git_ref,
                "source": "git",
            })
        })
        .collect();
    def.insert("models".into(), Value::Array(models));
    def.insert("customNodes".into(), Value::Array(nodes));
    if !spec.env.is_empty() {
        notes.push(format!(
            "env ({} variables) is not in a definition",
            spec.env.len()
        ));
    }
    if spec.options.is_some() {
        notes.push("options are not in a definition".into());
    }
    Ok(ExportedBuild {
        definition: Value::Object(def),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_text_becomes_requirements_and_options_are_named() {
        let mut notes = vec![];
        let py = pip_dependencies(
            "# frozen\nnumpy==1.26.4\n\n--extra-index-url https://u:p@x/simple\ntorch==2.4.0+cu121\n",
            &mut notes,
        )
        .unwrap();
        assert_eq!(py.requirements, ["numpy==1.26.4", "torch==2.4.0+cu121"]);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(!notes[0].contains("u:p@"), "{notes:?}");
        assert!(pip_dependencies("\n# nothing\n", &mut vec![]).is_none());
    }

    #[test]
    fn the_definition_is_found_bare_wrapped_or_refused() {
        let bare = json!({"schema": DEFINITION_SCHEMA, "models": [], "customNodes": []});
        let found = definition(Path::new("d.json"), &bare).unwrap();
        assert_eq!((found.at.as_str(), found.id), ("", None));
        let wrapped = json!({"schema": "comfy-build/1", "id": "b1", "definition": bare});
        let found = definition(Path::new("d.json"), &wrapped).unwrap();
        assert_eq!(
            (found.at.as_str(), found.id.as_deref()),
            ("definition.", Some("b1"))
        );
        let Err(err) = definition(Path::new("d.json"), &json!({"nodes": []})) else {
            panic!("not a definition");
        };
        assert!(
            err.to_string()
                .starts_with("d.json: $: expected a comfy build definition"),
            "{err}"
        );
    }

    #[test]
    fn a_model_without_a_url_is_named_not_invented() {
        let mut notes = vec![];
        let m = json!({"type": "loras", "filename": "a.safetensors", "sha256": "ab".repeat(32),
            "sizeBytes": 7, "source": "local"});
        assert!(
            model_of(Path::new("d"), "models[0]", &m, &mut notes)
                .unwrap()
                .is_none()
        );
        assert!(notes[0].contains("loras/a.safetensors"), "{notes:?}");
        let bad = json!({"type": "loras", "filename": "a", "sha256": "xyz", "source": "local"});
        let err = model_of(Path::new("d"), "models[1]", &bad, &mut notes).unwrap_err();
        assert_eq!(
            err.to_string(),
            "d: models[1].sha256: expected 64 hex digits"
        );
    }
}
