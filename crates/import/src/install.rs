//! A live ComfyUI install, as a version: `comfyver import install DIR --id ID`.
//!
//! Read from the folder, with no network:
//! - the core: the folder's own git work tree (remote and HEAD commit);
//! - `custom_nodes/*`: each git work tree's remote and HEAD commit; a
//!   registry install (`.tracking` beside `pyproject.toml`) as the snapshot
//!   import maps a registry pack (its repository at the git ref of its
//!   version); disabled packs (`*.disabled`, `.disabled/*`) are left out, as
//!   in a snapshot. A pack with uncommitted changes is kept at its HEAD, a
//!   folder that is neither is left out: each is named in the notes;
//! - `models/**`: every file, with its size and SHA-256, its folder as
//!   `target_subdir`; each is adopted into the model store by content (hard
//!   link on the same filesystem, else a copy) and named by its local path
//!   as the source, so a realize finds it in the store and downloads nothing;
//! - the venv (`venv`, `.venv`, or the one given): its installed set becomes
//!   the lock's Python set, replayed exactly by the first realize.
//!
//! The spec pins every commit it found, and the lock is built by the
//! resolver from those pins (no remote is asked for a pinned commit) and
//! written with the resolver's `write_lock`.

use std::path::{Path, PathBuf};

use comfyver_models::FetchStatus;
use comfyver_models::adopt::{AdoptedModel, LocalModel};
use comfyver_python::PythonInputs;
use comfyver_resolver::{NoReporter, ResolveOptions};
use comfyver_spec::edit::SpecDocument;
use comfyver_spec::lock::LockedPython;
use comfyver_spec::version::{ComfyCore, CustomNode, Model, PythonSettings};
use comfyver_spec::{RepoUrl, VersionSpec, names::unsafe_component_reason, redact};

use crate::ImportError;
use crate::git_tree::{Tree, is_work_tree, read_tree};
use crate::node_map::NodeMap;
use crate::workspace::{Workspace, Written};

/// Options of [`import_install`].
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// The install's venv, or its Python interpreter; default: `<dir>/venv`,
    /// else `<dir>/.venv`.
    pub python: Option<PathBuf>,
    /// Local `custom-node-list.json` / `extension-node-map.json` files that
    /// map registry ids to repositories (for registry installs).
    pub node_maps: Vec<PathBuf>,
}

/// How many changed files a note about a modified pack names.
const SHOWN_CHANGES: usize = 3;

/// `comfyver import install DIR --id ID`: writes `versions/<ID>.json` and
/// its lock, and adopts the install's models into the store.
pub fn import_install(
    ws: &Workspace,
    dir: &Path,
    id: &str,
    opts: &InstallOptions,
) -> Result<Written, ImportError> {
    let path = ws.new_spec_path(id)?;
    let not_install = |why: String| ImportError::NotInstall {
        dir: dir.to_path_buf(),
        why,
    };
    if !dir.is_dir() {
        return Err(not_install("not a directory".into()));
    }
    let dir = std::fs::canonicalize(dir).map_err(|source| ImportError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    if !is_work_tree(&dir) {
        return Err(not_install(
            "not a git checkout of ComfyUI (no .git): install ComfyUI with `git clone`, or start from `comfyver new`".into(),
        ));
    }
    let map = NodeMap::load(&opts.node_maps)?;
    let timeout = ws.resolve.timeout;
    let mut done = Vec::new();
    let mut notes = Vec::new();

    let core = read_tree(&dir, timeout)?;
    let Some(core_repo) = core.remote.clone().filter(|r| RepoUrl::parse(r).is_ok()) else {
        return Err(not_install(format!(
            "the ComfyUI checkout has no usable remote ({}): add one with `git remote add origin URL`",
            core.remote
                .as_deref()
                .map(redact)
                .unwrap_or_else(|| "none".into())
        )));
    };
    note_tree(&mut notes, "the core", &core);
    done.push(format!("core {} {}", redact(&core_repo), core.commit));

    let Packs {
        nodes: custom_nodes,
        dirs: node_dirs,
    } = scan_nodes(&dir, &map, timeout, &mut done, &mut notes)?;
    let found_models = scan_models(&dir, &mut notes);
    if dir.join("extra_model_paths.yaml").is_file() {
        notes.push(
            "extra_model_paths.yaml was not read: add the models it points at with `comfyver add model`"
                .into(),
        );
    }
    let venv = find_venv(&dir, opts.python.as_deref());
    let python = venv
        .as_deref()
        .and_then(venv_version)
        .map(|v| PythonSettings {
            version: Some(v),
            ..PythonSettings::default()
        });

    let mut spec = VersionSpec {
        schema_version: comfyver_spec::version::CURRENT_SCHEMA_VERSION,
        version_id: id.to_string(),
        description: Some(format!(
            "imported from the ComfyUI install {}",
            dir.display()
        )),
        comfy: ComfyCore {
            repo: core_repo,
            git_ref: None,
            commit: Some(core.commit.clone()),
        },
        custom_nodes,
        models: found_models.iter().map(|(m, _)| m.clone()).collect(),
        python,
        env: Default::default(),
        options: None,
    };
    // Refused before anything is written, the store included.
    SpecDocument::from_spec(&spec, &path)?;

    let files: Vec<LocalModel> = found_models
        .iter()
        .map(|(m, file)| LocalModel {
            file: file.clone(),
            path: m.relative_path(),
        })
        .collect();
    let adopted =
        comfyver_models::adopt::adopt_files(&files, &ws.layout, &comfyver_models::NoReporter)
            .map_err(|e| ImportError::Models(Box::new(e)))?;
    for (m, a) in spec.models.iter_mut().zip(&adopted) {
        m.sha256 = a.model.sha256.clone();
        m.size = a.model.size;
        done.push(format!("+ model {} ({})", m.relative_path(), how(a)));
    }

    let packages = match &venv {
        Some(venv) => {
            let set = comfyver_python::freeze(venv).map_err(|source| ImportError::Python {
                venv: venv.clone(),
                source: Box::new(source),
            })?;
            if set.is_empty() {
                notes.push(format!(
                    "the venv {} has no packages installed: the first realize resolves the Python set",
                    venv.display()
                ));
            }
            set
        }
        None => {
            notes.push(
                "no venv found (venv, .venv): the first realize resolves the Python set; pass --python PATH to record one"
                    .into(),
            );
            Vec::new()
        }
    };

    let doc = SpecDocument::from_spec(&spec, &path)?;
    let spec = doc.spec().clone();
    let mut written = ws.write(&path, &doc, done, notes)?;
    let locked_python = if packages.is_empty() {
        None
    } else {
        python_set(&dir, &spec, &node_dirs, packages, &mut written.notes)
    };
    write_lock(ws, &spec, locked_python, &mut written)?;
    // What `resolve` would change now that the lock is written.
    written.preview = Some(ws.preview(&spec));
    Ok(written)
}

/// Notes what a work tree's state means for the version.
fn note_tree(notes: &mut Vec<String>, what: &str, tree: &Tree) {
    if !tree.changed.is_empty() {
        let mut shown: Vec<&str> = tree
            .changed
            .iter()
            .take(SHOWN_CHANGES)
            .map(|l| l.get(3..).unwrap_or(l))
            .collect();
        if tree.changed.len() > SHOWN_CHANGES {
            shown.push("…");
        }
        notes.push(format!(
            "{what} has uncommitted changes ({}): kept at its HEAD commit {}, without them",
            shown.join(", "),
            tree.commit
        ));
    }
    if !tree.on_remote {
        notes.push(format!(
            "{what}: commit {} is on no branch of its remote as last fetched: a realize elsewhere fails unless it was pushed",
            tree.commit
        ));
    }
}

/// The packs found in `<dir>/custom_nodes`, in name order.
struct Packs {
    /// As spec entries.
    nodes: Vec<CustomNode>,
    /// `(name, directory)` of each, for the Python inputs.
    dirs: Vec<(String, PathBuf)>,
}

/// The packs of `<dir>/custom_nodes`.
fn scan_nodes(
    dir: &Path,
    map: &NodeMap,
    timeout: std::time::Duration,
    done: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<Packs, ImportError> {
    let root = dir.join("custom_nodes");
    let mut nodes = Vec::new();
    let mut dirs = Vec::new();
    for (name, path) in sorted_entries(&root) {
        if name == "__pycache__" {
            continue;
        }
        if name == ".disabled" && path.is_dir() {
            for (inner, _) in sorted_entries(&path) {
                notes.push(format!(
                    "left out custom_nodes/.disabled/{inner} (disabled)"
                ));
            }
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        if !path.is_dir() {
            if name.ends_with(".py") && !is_tracked_by_core(dir, &name) {
                notes.push(format!(
                    "single-file node `{name}` is not in a repository and was not carried over: put it in a git repository and `comfyver add node`"
                ));
            }
            continue;
        }
        if name.ends_with(".disabled") {
            notes.push(format!("left out custom_nodes/{name} (disabled)"));
            continue;
        }
        if let Some(reason) = unsafe_component_reason(&name) {
            notes.push(format!(
                "left out custom_nodes/{name}: its name cannot be a node directory ({reason})"
            ));
            continue;
        }
        let node = if is_work_tree(&path) {
            let tree = read_tree(&path, timeout)?;
            let Some(repo) = tree.remote.clone().filter(|r| RepoUrl::parse(r).is_ok()) else {
                notes.push(format!(
                    "left out custom_nodes/{name}: a git checkout without a usable remote ({}): push it somewhere and `comfyver add node`",
                    tree.remote.as_deref().map(redact).unwrap_or_else(|| "none".into())
                ));
                continue;
            };
            note_tree(notes, &format!("pack `{name}`"), &tree);
            done.push(format!("+ node {name} {} {}", redact(&repo), tree.commit));
            CustomNode {
                repo,
                git_ref: None,
                commit: Some(tree.commit),
                name: None,
                install_script: None,
                writable: None,
            }
        } else if path.join(".tracking").is_file() {
            let Some(node) = registry_node(&name, &path, map, done, notes) else {
                continue;
            };
            node
        } else {
            notes.push(format!(
                "left out custom_nodes/{name}: not a git checkout (no .git) nor a registry install (no .tracking): put it in a git repository and `comfyver add node`"
            ));
            continue;
        };
        let mut node = node;
        if node.effective_name() != name {
            node.name = Some(name.clone());
        }
        dirs.push((name, path));
        nodes.push(node);
    }
    Ok(Packs { nodes, dirs })
}

/// A registry install, mapped as a snapshot's `cnr_custom_nodes` entry:
/// its repository (from the node maps, else its pyproject's
/// `[project.urls] Repository`) at the git ref of its version.
fn registry_node(
    name: &str,
    path: &Path,
    map: &NodeMap,
    done: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Option<CustomNode> {
    let text = std::fs::read_to_string(path.join("pyproject.toml")).unwrap_or_default();
    let project = Project::parse(&text);
    let (Some(cnr), Some(version)) = (project.name, project.version) else {
        notes.push(format!(
            "left out custom_nodes/{name}: a registry install whose pyproject.toml names no project name and version"
        ));
        return None;
    };
    let cnr = cnr.to_ascii_lowercase();
    let repo = map
        .repo_of_cnr(&cnr)
        .map(str::to_string)
        .or(project.repository)
        .filter(|r| RepoUrl::parse(r).is_ok());
    let Some(repo) = repo else {
        notes.push(format!(
            "registry pack `{cnr}` {version} (custom_nodes/{name}) needs a repository URL: pass --node-map custom-node-list.json, or add it with `comfyver add node ID REPO@REF`"
        ));
        return None;
    };
    done.push(format!("+ node {name} {} @ {version}", redact(&repo)));
    notes.push(format!(
        "registry pack `{cnr}` {version} is taken from {} at the git ref `{version}`: resolve fails with the repository's tags if it has no such tag",
        redact(&repo)
    ));
    Some(CustomNode {
        repo,
        git_ref: Some(version),
        commit: None,
        name: None,
        install_script: None,
        writable: None,
    })
}

/// What a registry install's `pyproject.toml` says about itself.
#[derive(Debug, Default, PartialEq, Eq)]
struct Project {
    name: Option<String>,
    version: Option<String>,
    repository: Option<String>,
}

impl Project {
    /// Reads `[project] name`, `version` and `[project.urls] Repository`
    /// (one-line string values; anything else is left out).
    fn parse(text: &str) -> Project {
        let mut p = Project::default();
        let mut table = String::new();
        for line in text.lines().map(str::trim) {
            if line.starts_with('[') {
                table = line.trim_matches(['[', ']']).trim().to_string();
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let key = key.trim().trim_matches('"');
            let value = value.split(" #").next().unwrap_or("").trim();
            let Some(value) = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            else {
                continue;
            };
            let slot = match (table.as_str(), key) {
                ("project", "name") => &mut p.name,
                ("project", "version") => &mut p.version,
                ("project.urls", k) if k.eq_ignore_ascii_case("repository") => &mut p.repository,
                _ => continue,
            };
            if !value.is_empty() {
                *slot = Some(value.to_string());
            }
        }
        p
    }
}

/// Whether `custom_nodes/<name>` is a file of the core's own checkout
/// (ComfyUI ships `websocket_image_save.py` there).
fn is_tracked_by_core(dir: &Path, name: &str) -> bool {
    let index = dir.join(".git/index");
    // A single file shipped by the core is in the core's index; reading the
    // index's bytes for the path avoids another git run.
    std::fs::read(index).is_ok_and(|bytes| {
        let needle = format!("custom_nodes/{name}\0");
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    })
}

/// Every file under `<dir>/models`, as a spec entry (without digests yet)
/// and its real path. Hidden names and ComfyUI's `put_*_here` placeholders
/// are skipped; a file straight in `models/` or whose name is not safe is
/// named in a note.
fn scan_models(dir: &Path, notes: &mut Vec<String>) -> Vec<(Model, PathBuf)> {
    let root = dir.join("models");
    let mut found: Vec<(Model, PathBuf)> = Vec::new();
    let mut stack = vec![(root.clone(), Vec::<String>::new())];
    while let Some((at, parts)) = stack.pop() {
        // Links to folders are followed; a cycle stops at this depth.
        if parts.len() > 8 {
            continue;
        }
        let mut dirs = Vec::new();
        for (name, path) in sorted_entries(&at) {
            if name.starts_with('.') {
                continue;
            }
            if path.is_dir() {
                let mut p = parts.clone();
                p.push(name);
                dirs.push((path, p));
                continue;
            }
            if !path.is_file() || (name.starts_with("put_") && name.ends_with("_here")) {
                continue;
            }
            let shown = format!(
                "models/{}{name}",
                parts.iter().map(|p| format!("{p}/")).collect::<String>()
            );
            if parts.is_empty() {
                notes.push(format!("{shown} is in no model folder: not carried over"));
                continue;
            }
            let real = std::fs::canonicalize(&path).unwrap_or(path);
            let Some(source) = real.to_str().map(str::to_string) else {
                notes.push(format!("{shown}: its path is not UTF-8: not carried over"));
                continue;
            };
            if let Some(reason) = unsafe_component_reason(&name) {
                notes.push(format!("{shown}: not carried over ({reason})"));
                continue;
            }
            let model = Model {
                source,
                name: Some(name),
                target_subdir: Some(parts.join("/")),
                sha256: None,
                blake3: None,
                size: None,
            };
            let landing = model.relative_path();
            if found.iter().any(|(m, _)| m.relative_path() == landing) {
                notes.push(format!(
                    "{shown} lands on `{landing}` like another file: not carried over"
                ));
                continue;
            }
            found.push((model, real));
        }
        stack.extend(dirs.into_iter().rev());
    }
    found
}

/// The entries of `dir` as (name, path), sorted by name; empty when it
/// cannot be read.
fn sorted_entries(dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    out.sort();
    out
}

/// How a model got into the store, for the report.
fn how(a: &AdoptedModel) -> &'static str {
    match a.status {
        FetchStatus::Placed { linked: true } => "hard-linked into the model store",
        FetchStatus::Placed { linked: false } => "copied into the model store",
        _ => "already in the model store",
    }
}

/// The venv: the one given (a venv directory or its interpreter), else
/// `<dir>/venv`, else `<dir>/.venv`.
fn find_venv(dir: &Path, given: Option<&Path>) -> Option<PathBuf> {
    if let Some(g) = given {
        if g.is_file() {
            // `<venv>/bin/python`
            return g.parent().and_then(Path::parent).map(Path::to_path_buf);
        }
        return Some(g.to_path_buf());
    }
    ["venv", ".venv"]
        .iter()
        .map(|v| dir.join(v))
        .find(|v| v.join("pyvenv.cfg").is_file())
}

/// `major.minor` of the venv's interpreter, from its `pyvenv.cfg`.
fn venv_version(venv: &Path) -> Option<String> {
    let text = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    let full = text.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        matches!(k.trim(), "version_info" | "version").then(|| v.trim().to_string())
    })?;
    let mut parts = full.split('.');
    let (major, minor) = (parts.next()?, parts.next()?);
    (major.bytes().all(|b| b.is_ascii_digit()) && minor.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{major}.{minor}"))
}

/// The venv's set as the lock's Python set, keyed by the digest a realize
/// computes from the same core and pack files (so it replays the set).
fn python_set(
    dir: &Path,
    spec: &VersionSpec,
    node_dirs: &[(String, PathBuf)],
    packages: Vec<String>,
    notes: &mut Vec<String>,
) -> Option<LockedPython> {
    let inputs = PythonInputs {
        core_dir: dir.to_path_buf(),
        nodes: node_dirs.to_vec(),
        settings: spec.python.clone().unwrap_or_default(),
        wheels_dir: None,
        offline: true,
        limits: comfyver_python::Limits::default(),
        rewrites: comfyver_spec::UrlRewrites::default(),
    };
    match comfyver_python::collect_requirements(&inputs) {
        Ok(reqs) => Some(LockedPython {
            inputs_digest: reqs.inputs_digest().to_string(),
            packages,
            torch_backend: spec.python.as_ref().and_then(|p| p.torch_backend.clone()),
        }),
        Err(e) => {
            notes.push(format!(
                "the venv's packages were not recorded ({e}): the first realize resolves the Python set"
            ));
            None
        }
    }
}

/// Builds the lock from the spec's pins (the resolver asks no remote for a
/// pinned commit) with the Python set, and writes it.
fn write_lock(
    ws: &Workspace,
    spec: &VersionSpec,
    python: Option<LockedPython>,
    written: &mut Written,
) -> Result<(), ImportError> {
    let id = &spec.version_id;
    let opts = ResolveOptions {
        dry_run: true,
        locked: false,
        ..ws.resolve.clone()
    };
    let lock_err = |source| ImportError::WriteLock {
        id: id.clone(),
        source: Box::new(source),
    };
    let lock = match comfyver_resolver::resolve(spec, &ws.layout, &opts, &NoReporter) {
        Ok(outcome) => outcome.lock,
        Err(e) => {
            written.notes.push(format!(
                "no lock was written ({e}): run `comfyver resolve {id}`"
            ));
            return Ok(());
        }
    };
    let Some(mut lock) = lock else {
        written.notes.push(format!(
            "no lock was written (a registry pack's version is not resolved yet): run `comfyver resolve {id}`"
        ));
        return Ok(());
    };
    let packages = python.as_ref().map_or(0, |p| p.packages.len());
    lock.python = python;
    let lock = lock.redacted();
    comfyver_resolver::write_lock(&ws.layout, &lock).map_err(lock_err)?;
    written.done.push(format!(
        "locked: core and {} pack(s) at the commits found, {} model(s), {packages} Python package(s)",
        lock.custom_nodes.len(),
        lock.models.len(),
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_pyproject_names_its_id_version_and_repository() {
        let p = Project::parse(
            "[project]\nname = \"ComfyUI-Foo\" # id\nversion = '1.2.0'\ndependencies = [\"x\"]\n\n[project.urls]\nRepository = \"https://h.example/o/foo\"\n[tool.comfy]\nname = \"other\"\n",
        );
        assert_eq!(
            p,
            Project {
                name: Some("ComfyUI-Foo".into()),
                version: Some("1.2.0".into()),
                repository: Some("https://h.example/o/foo".into()),
            }
        );
        assert_eq!(Project::parse("[tool]\nname = \"x\"\n"), Project::default());
    }

    #[test]
    fn models_take_their_folder_and_placeholders_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let m = tmp.path().join("models");
        std::fs::create_dir_all(m.join("checkpoints/sd15")).unwrap();
        std::fs::create_dir_all(m.join("loras")).unwrap();
        std::fs::write(m.join("checkpoints/put_checkpoints_here"), "").unwrap();
        std::fs::write(m.join("checkpoints/sd15/a.safetensors"), "a").unwrap();
        std::fs::write(m.join("loras/b.safetensors"), "b").unwrap();
        std::fs::write(m.join("stray.bin"), "s").unwrap();
        let mut notes = vec![];
        let found = scan_models(tmp.path(), &mut notes);
        let paths: Vec<String> = found.iter().map(|(m, _)| m.relative_path()).collect();
        assert_eq!(
            paths,
            ["checkpoints/sd15/a.safetensors", "loras/b.safetensors"]
        );
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].contains("models/stray.bin"), "{notes:?}");
    }

    #[test]
    fn the_venv_version_is_major_minor() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("pyvenv.cfg"),
            "home = /usr/bin\nimplementation = CPython\nversion_info = 3.11.9\n",
        )
        .unwrap();
        assert_eq!(venv_version(tmp.path()).as_deref(), Some("3.11"));
        assert_eq!(venv_version(&tmp.path().join("none")), None);
    }
}
