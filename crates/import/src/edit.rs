//! `new`, `add node|model`, `remove node|model` and `copy`: edits of a
//! version's spec file that keep its formatting (see [`SpecDocument`]).

use comfyver_spec::{
    VersionSpec, edit::SpecDocument, version::ComfyCore, version::CustomNode, version::Model,
};

use crate::workspace::{Workspace, Written, free_name, parse_repo_at};
use crate::{DEFAULT_COMFY_REPO, ImportError};

/// `comfyver new ID [--comfy REPO[@REF]]`: a valid skeleton with the core
/// only ([`DEFAULT_COMFY_REPO`] when `comfy` is absent).
pub fn new_version(
    ws: &Workspace,
    id: &str,
    comfy: Option<&str>,
    description: Option<&str>,
) -> Result<Written, ImportError> {
    let path = ws.new_spec_path(id)?;
    let (repo, git_ref, commit) = parse_repo_at(comfy.unwrap_or(DEFAULT_COMFY_REPO))?;
    let spec = VersionSpec {
        schema_version: comfyver_spec::version::CURRENT_SCHEMA_VERSION,
        version_id: id.to_string(),
        description: description.map(str::to_string),
        comfy: ComfyCore {
            repo,
            git_ref,
            commit,
        },
        custom_nodes: vec![],
        models: vec![],
        python: None,
        env: Default::default(),
        options: None,
    };
    let doc = SpecDocument::from_spec(&spec, &path)?;
    let mut notes = Vec::new();
    if spec.comfy.git_ref.is_none() && spec.comfy.commit.is_none() {
        notes.push(
            "the core follows the remote's HEAD until you pin it (`--comfy REPO@TAG`); `comfyver resolve` records the commit"
                .to_string(),
        );
    }
    ws.write(&path, &doc, vec![format!("created {id}")], notes)
}

/// `comfyver add node ID REPO[@REF] [--name NAME]`.
pub fn add_node(
    ws: &Workspace,
    id: &str,
    repo_at: &str,
    name: Option<&str>,
) -> Result<Written, ImportError> {
    let mut doc = ws.open(id)?;
    let (repo, git_ref, commit) = parse_repo_at(repo_at)?;
    let node = CustomNode {
        repo,
        git_ref,
        commit,
        name: name.map(str::to_string),
        install_script: None,
        writable: None,
    };
    doc.add_node(&node)?;
    let path = ws.spec_path(id)?;
    let line = format!(
        "+ node {} {}",
        node.effective_name(),
        comfyver_spec::redact(&node.repo)
    );
    ws.write(&path, &doc, vec![line], vec![])
}

/// `comfyver add model ID URL [--to FOLDER] [--sha256 HEX] [--name NAME]`.
pub fn add_model(
    ws: &Workspace,
    id: &str,
    source: &str,
    to: Option<&str>,
    sha256: Option<&str>,
    name: Option<&str>,
) -> Result<Written, ImportError> {
    let mut doc = ws.open(id)?;
    let model = Model {
        source: source.to_string(),
        name: name.map(str::to_string),
        target_subdir: to.map(str::to_string),
        sha256: sha256.map(str::to_string),
        blake3: None,
        size: None,
    };
    doc.add_model(&model)?;
    let path = ws.spec_path(id)?;
    let added = doc.spec().models.last().map(Model::relative_path);
    let line = format!("+ model {}", added.unwrap_or_default());
    let mut notes = Vec::new();
    if sha256.is_none() {
        notes.push("no --sha256: the download is not checked against a known digest".to_string());
    }
    ws.write(&path, &doc, vec![line], notes)
}

/// `comfyver remove node ID NAME`.
pub fn remove_node(ws: &Workspace, id: &str, name: &str) -> Result<Written, ImportError> {
    let mut doc = ws.open(id)?;
    let removed = doc.remove_node(name)?;
    let path = ws.spec_path(id)?;
    let line = format!(
        "- node {} {}",
        removed.effective_name(),
        comfyver_spec::redact(&removed.repo)
    );
    ws.write(&path, &doc, vec![line], vec![])
}

/// `comfyver remove model ID NAME` (a file name or `folder/name`).
pub fn remove_model(ws: &Workspace, id: &str, name: &str) -> Result<Written, ImportError> {
    let mut doc = ws.open(id)?;
    let removed = doc.remove_model(name)?;
    let path = ws.spec_path(id)?;
    let line = format!("- model {}", removed.relative_path());
    ws.write(&path, &doc, vec![line], vec![])
}

/// `comfyver copy ID NEW`: the same spec under a new id (only `version_id`
/// changes in the text).
pub fn copy_version(ws: &Workspace, id: &str, new: &str) -> Result<Written, ImportError> {
    let mut doc = ws.open(id)?;
    let path = ws.new_spec_path(new)?;
    doc.set_version_id(new)?;
    ws.write(&path, &doc, vec![format!("copied {id} to {new}")], vec![])
}

/// Adds `node` to `doc`, renaming it (`<owner>-<repo>`) when its directory
/// name is taken by another repository. Returns the name it got.
pub(crate) fn add_node_renaming(
    doc: &mut SpecDocument,
    mut node: CustomNode,
) -> Result<String, ImportError> {
    let taken: Vec<String> = doc
        .spec()
        .custom_nodes
        .iter()
        .map(CustomNode::effective_name)
        .collect();
    if node.name.is_none() {
        node.name = free_name(&node.repo, &taken);
    }
    doc.add_node(&node)?;
    Ok(node.effective_name())
}
