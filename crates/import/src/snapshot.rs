//! ComfyUI-Manager snapshots, both ways.
//!
//! The format (Manager's `save-snapshot`, JSON):
//! `{"comfyui": "<commit>"|null, "git_custom_nodes": {"<url>": {"hash", "disabled"}},
//!   "cnr_custom_nodes": {"<id>": "<version>"}, "file_custom_nodes": [{"filename", "disabled"}],
//!   "pips": {"name==1.0": "", "name": "<url>"}}`; its YAML output
//! (`--output x.yaml`, and comfy-cli's `snapshot save`) wraps the same object
//! as `custom_nodes:`, and a `.yaml`/`.yml` file is read as YAML.

use std::path::{Path, PathBuf};

use comfyver_spec::{
    RepoUrl, VersionSpec, edit::SpecDocument, is_full_commit, redact, version::ComfyCore,
    version::CustomNode, version::PythonSettings,
};
use serde_json::{Map, Value, json};

use crate::edit::add_node_renaming;
use crate::node_map::NodeMap;
use crate::workspace::{Workspace, Written, core_line, format_error, parse_repo_at, read_json};
use crate::yaml::{is_yaml, read_yaml};
use crate::{DEFAULT_COMFY_REPO, ImportError};

/// Where a snapshot's `pips` go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PipsAs {
    /// `name==version` pins become `python.constraints` (URL entries become
    /// requirements): the nodes' own requirements decide what is installed.
    #[default]
    Constraints,
    /// Every entry becomes a requirement, installed whether a node needs it or not.
    Requirements,
    /// Ignore `pips`.
    Skip,
}

/// Options of [`import_snapshot`].
#[derive(Debug, Clone, Default)]
pub struct SnapshotOptions {
    /// The core as `REPO[@REF]` ([`DEFAULT_COMFY_REPO`] when absent); the
    /// snapshot's `comfyui` commit, when recorded, wins over `REF`.
    pub comfy: Option<String>,
    /// Local `custom-node-list.json` / `extension-node-map.json` files that map
    /// registry ids to repositories.
    pub node_maps: Vec<PathBuf>,
    /// Where `pips` go.
    pub pips: PipsAs,
}

/// `comfyver import snapshot FILE --id NEW`: writes `versions/<NEW>.json`.
pub fn import_snapshot(
    ws: &Workspace,
    file: &Path,
    id: &str,
    opts: &SnapshotOptions,
) -> Result<Written, ImportError> {
    let path = ws.new_spec_path(id)?;
    let raw = if is_yaml(file) {
        read_yaml(file)?
    } else {
        read_json(file)?
    };
    let top = snapshot_object(file, &raw)?;
    let map = NodeMap::load(&opts.node_maps)?;
    let mut done = Vec::new();
    let mut notes = Vec::new();

    let (repo, git_ref, _) = parse_repo_at(opts.comfy.as_deref().unwrap_or(DEFAULT_COMFY_REPO))?;
    let comfy = match top.get("comfyui") {
        Some(Value::String(c)) if is_full_commit(c) => {
            if let Some(r) = &git_ref {
                notes.push(format!(
                    "the snapshot's core commit wins over `@{r}` given with --comfy"
                ));
            }
            ComfyCore {
                repo,
                git_ref: None,
                commit: Some(c.to_ascii_lowercase()),
            }
        }
        None | Some(Value::Null) => {
            notes.push(format!(
                "the snapshot records no ComfyUI commit: the core follows {}",
                git_ref
                    .as_deref()
                    .unwrap_or("the remote's HEAD (pin it with --comfy REPO@TAG)")
            ));
            ComfyCore {
                repo,
                git_ref,
                commit: None,
            }
        }
        Some(_) => {
            return Err(format_error(
                file,
                "comfyui",
                "expected a 40-hex commit or null",
            ));
        }
    };
    done.push(core_line(&comfy));
    let spec = VersionSpec {
        schema_version: comfyver_spec::version::CURRENT_SCHEMA_VERSION,
        version_id: id.to_string(),
        description: Some(format!(
            "imported from the ComfyUI-Manager snapshot {}",
            file.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        )),
        comfy,
        custom_nodes: vec![],
        models: vec![],
        python: pips(file, top, opts.pips, &mut notes)?,
        env: Default::default(),
        options: None,
    };
    let mut doc = SpecDocument::from_spec(&spec, &path)?;

    let mut git_repos = Vec::new();
    for (url, entry) in object(file, top, "git_custom_nodes")? {
        let at = format!("git_custom_nodes[{url:?}]");
        let hash = entry.get("hash");
        let disabled = match entry.get("disabled") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(format_error(
                    file,
                    format!("{at}.disabled"),
                    "expected true or false",
                ));
            }
        };
        if disabled {
            notes.push(format!(
                "left out {} (disabled in the snapshot)",
                redact(url)
            ));
            continue;
        }
        let Ok(parsed) = RepoUrl::parse(url) else {
            notes.push(format!("left out `{}`: not a repository URL", redact(url)));
            continue;
        };
        let commit = match hash {
            Some(Value::String(h)) if is_full_commit(h) => Some(h.to_ascii_lowercase()),
            None | Some(Value::Null) => {
                notes.push(format!(
                    "{} has no recorded commit: it follows the remote's HEAD",
                    redact(url)
                ));
                None
            }
            Some(_) => {
                return Err(format_error(
                    file,
                    format!("{at}.hash"),
                    "expected a 40-hex commit",
                ));
            }
        };
        let node = CustomNode {
            repo: url.clone(),
            git_ref: None,
            commit,
            name: None,
            install_script: None,
            writable: None,
        };
        let name = add_node_renaming(&mut doc, node)?;
        done.push(format!("+ node {name} {}", redact(url)));
        git_repos.push(parsed.canonical().to_string());
    }

    for (cnr, version) in object(file, top, "cnr_custom_nodes")? {
        let Some(version) = version.as_str() else {
            return Err(format_error(
                file,
                format!("cnr_custom_nodes[{cnr:?}]"),
                "expected a version string",
            ));
        };
        let Some(repo) = map.repo_of_cnr(cnr) else {
            notes.push(format!(
                "registry pack `{cnr}` {version} needs a repository URL: add it with `comfyver add node {id} REPO@REF` (or pass --node-map custom-node-list.json)"
            ));
            continue;
        };
        let canonical = RepoUrl::parse(repo).map(|r| r.canonical().to_string()).ok();
        if canonical.as_ref().is_some_and(|c| git_repos.contains(c)) {
            notes.push(format!(
                "registry pack `{cnr}` is already in the snapshot as {}",
                redact(repo)
            ));
            continue;
        }
        let node = CustomNode {
            repo: repo.to_string(),
            git_ref: Some(version.to_string()),
            commit: None,
            name: None,
            install_script: None,
            writable: None,
        };
        let name = add_node_renaming(&mut doc, node)?;
        done.push(format!("+ node {name} {} @ {version}", redact(repo)));
        notes.push(format!(
            "registry pack `{cnr}` {version} is taken from {} at the git ref `{version}`: resolve fails with the repository's tags if it has no such tag",
            redact(repo)
        ));
    }

    match top.get("file_custom_nodes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(files)) => {
            for (i, f) in files.iter().enumerate() {
                let Some(name) = f.get("filename").and_then(Value::as_str) else {
                    return Err(format_error(
                        file,
                        format!("file_custom_nodes[{i}].filename"),
                        "expected a file name",
                    ));
                };
                notes.push(format!(
                    "single-file node `{name}` is not in a repository and was not carried over: put it in a git repository and `comfyver add node`"
                ));
            }
        }
        Some(_) => return Err(format_error(file, "file_custom_nodes", "expected an array")),
    }
    ws.write(&path, &doc, done, notes)
}

/// The snapshot's object, unwrapping the YAML form's `custom_nodes` key.
fn snapshot_object<'a>(file: &Path, raw: &'a Value) -> Result<&'a Map<String, Value>, ImportError> {
    let top = raw
        .as_object()
        .ok_or_else(|| format_error(file, "$", "expected a ComfyUI-Manager snapshot object"))?;
    if let Some(Value::Object(inner)) = top.get("custom_nodes")
        && !top.contains_key("git_custom_nodes")
    {
        return Ok(inner);
    }
    if ![
        "comfyui",
        "git_custom_nodes",
        "cnr_custom_nodes",
        "file_custom_nodes",
        "pips",
    ]
    .iter()
    .any(|k| top.contains_key(*k))
    {
        return Err(format_error(
            file,
            "$",
            "expected a ComfyUI-Manager snapshot with `comfyui`, `git_custom_nodes`, `cnr_custom_nodes`, `file_custom_nodes` or `pips`",
        ));
    }
    Ok(top)
}

fn object<'a>(
    file: &Path,
    top: &'a Map<String, Value>,
    key: &str,
) -> Result<Vec<(&'a String, &'a Value)>, ImportError> {
    match top.get(key) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Object(m)) => Ok(m.iter().collect()),
        Some(_) => Err(format_error(file, key, "expected an object")),
    }
}

/// `pips` → python settings.
fn pips(
    file: &Path,
    top: &Map<String, Value>,
    how: PipsAs,
    notes: &mut Vec<String>,
) -> Result<Option<PythonSettings>, ImportError> {
    let entries = object(file, top, "pips")?;
    if how == PipsAs::Skip || entries.is_empty() {
        if !entries.is_empty() {
            notes.push(format!(
                "{} pip entries ignored (--pips skip)",
                entries.len()
            ));
        }
        return Ok(None);
    }
    let mut py = PythonSettings::default();
    let mut local = 0;
    for (key, value) in entries {
        let Some(value) = value.as_str() else {
            return Err(format_error(
                file,
                format!("pips[{key:?}]"),
                "expected a string (\"\" or a URL)",
            ));
        };
        if value.is_empty() {
            match how {
                PipsAs::Requirements => py.requirements.push(key.clone()),
                _ => py.constraints.push(key.clone()),
            }
        } else if value.starts_with("file:") || value.starts_with('/') {
            local += 1;
            notes.push(format!("pip `{key}` came from a local file on the snapshot's machine ({}): not carried over", redact(value)));
        } else {
            py.requirements.push(format!("{key} @ {value}"));
        }
    }
    if local > 0 && py.requirements.is_empty() && py.constraints.is_empty() {
        return Ok(None);
    }
    if py
        .constraints
        .iter()
        .chain(&py.requirements)
        .any(|l| l.contains("+cu") || l.contains("+rocm"))
    {
        notes.push(
            "the pins include CUDA/ROCm builds (`+cu…`/`+rocm…`): add their package index to python.extra_index_urls"
                .to_string(),
        );
    }
    Ok(Some(py))
}

/// `comfyver export snapshot ID`: a ComfyUI-Manager snapshot of the version's
/// lock (core and node commits; `pips` from the realized package set when
/// the lock has one). Credentials in URLs are removed.
pub fn export_snapshot(ws: &Workspace, id: &str) -> Result<Value, ImportError> {
    ws.spec_path(id)?;
    let lock = comfyver_resolver::read_lock(&ws.layout, id)
        .map_err(|source| ImportError::Lock {
            id: id.to_string(),
            source: Box::new(source),
        })?
        .ok_or_else(|| ImportError::NoLock { id: id.to_string() })?;
    let mut git = Map::new();
    for n in &lock.custom_nodes {
        git.insert(
            redact(&n.repo),
            json!({"hash": n.commit, "disabled": false}),
        );
    }
    let mut pips = Map::new();
    for p in lock.python.iter().flat_map(|p| &p.packages) {
        pips.insert(p.clone(), json!(""));
    }
    Ok(json!({
        "comfyui": lock.comfy.commit,
        "git_custom_nodes": git,
        "cnr_custom_nodes": {},
        "file_custom_nodes": [],
        "pips": pips,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_form_is_unwrapped_and_other_json_refused() {
        let wrapped = json!({"custom_nodes": {"comfyui": null, "git_custom_nodes": {}}});
        let top = snapshot_object(Path::new("s.json"), &wrapped).unwrap();
        assert!(top.contains_key("git_custom_nodes"));
        let err = snapshot_object(Path::new("s.json"), &json!({"nodes": []})).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("s.json: $: expected a ComfyUI-Manager snapshot")
        );
    }

    #[test]
    fn pips_go_where_asked() {
        let top = json!({"pips": {
            "numpy==1.26.4": "",
            "ffmpy": "git+https://git.example/o/ffmpy.git@f000737698b387ffaeab7cd871b0e9185811230d",
            "mine": "file:///home/u/mine.whl"
        }});
        let top = top.as_object().unwrap();
        let mut notes = vec![];
        let py = pips(Path::new("s"), top, PipsAs::Constraints, &mut notes)
            .unwrap()
            .unwrap();
        assert_eq!(py.constraints, ["numpy==1.26.4"]);
        assert_eq!(
            py.requirements,
            [
                "ffmpy @ git+https://git.example/o/ffmpy.git@f000737698b387ffaeab7cd871b0e9185811230d"
            ]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        let py = pips(Path::new("s"), top, PipsAs::Requirements, &mut vec![])
            .unwrap()
            .unwrap();
        assert_eq!(py.requirements[0], "numpy==1.26.4");
        assert!(
            pips(Path::new("s"), top, PipsAs::Skip, &mut vec![])
                .unwrap()
                .is_none()
        );
    }
}
