//! `realize --dry-run`: the complete plan, computed without changing
//! anything on disk.

use std::path::PathBuf;

use comfyver_python::{self as python, InstallScript, Installer, PythonInputs, PythonPlan};
use serde::Serialize;

use crate::RealizeError;
use crate::build::RealizeRequest;
use crate::stamp::is_warm_for;

/// The plan of a realize.
#[derive(Debug, Clone, Serialize)]
pub struct RealizePlan {
    /// The home.
    pub home: PathBuf,
    /// True when the home is already complete: nothing would happen.
    pub warm: bool,
    /// The core: commit and whether the home already holds it.
    pub core: Item,
    /// Each node: cached in the node cache or to fetch and check out; linked or not.
    pub nodes: Vec<Item>,
    /// Each model: present or to download, with its size when known.
    pub models: Vec<Item>,
    /// The Python part, when the core and every node are on disk to read
    /// their requirements from.
    pub python: Option<PythonPlan>,
    /// Why the Python part is not planned in detail, when it is not.
    pub python_note: Option<String>,
}

/// One line of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Name or path.
    pub name: String,
    /// Commit or source.
    pub what: String,
    /// What would happen.
    pub action: String,
    /// Size in bytes when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
}

/// Computes the plan; reads only.
pub fn plan(req: &RealizeRequest<'_>) -> Result<RealizePlan, RealizeError> {
    let home = &req.home;
    let skip = req.skip_models || req.spec.skip_models();
    let warm = is_warm_for(home, req.lock, req.layout, skip);
    let at_commit = |dir: &std::path::Path| {
        comfyver_nodes::checkout_commit(dir)
            .is_some_and(|c| c.eq_ignore_ascii_case(&req.lock.comfy.commit))
    };
    let core_dir = Some(home.core_dir())
        .filter(|dir| at_commit(dir))
        .or_else(|| {
            comfyver_spec::RepoUrl::parse(&req.lock.comfy.repo)
                .map(|u| {
                    comfyver_nodes::shared_core::shared_core_path(
                        req.layout,
                        &u,
                        &req.lock.comfy.commit,
                    )
                })
                .ok()
                .filter(|dir| at_commit(dir))
        });
    let core = Item {
        name: "comfy".into(),
        what: req.lock.comfy.commit.clone(),
        action: match &core_dir {
            Some(dir) if *dir == home.core_dir() => "checked out".into(),
            Some(_) => "checked out in the core cache: link it into the home".into(),
            None => "fetch into the mirror if missing, check out once into the core cache and \
                     link it into the home (a core without --base-directory is checked out \
                     into the home)"
                .into(),
        },
        bytes: None,
    };
    let mut nodes = Vec::new();
    let mut all_nodes_cached = true;
    let mut node_dirs = Vec::new();
    let mut scripts = Vec::new();
    for n in &req.lock.custom_nodes {
        let name = n.name.clone().unwrap_or_default();
        let slug = comfyver_spec::RepoUrl::parse(&n.repo)
            .map(|u| u.slug())
            .unwrap_or_default();
        let dir = req.layout.node_checkout(&slug, &n.commit);
        let cached = comfyver_nodes::is_checkout_complete(&dir);
        all_nodes_cached &= cached;
        let linked = comfyver_nodes::node_source(&home.custom_nodes_dir().join(&name))
            .is_some_and(|t| t == dir);
        let action = match (cached, linked) {
            (true, true) => "cached, linked".to_string(),
            (true, false) => "cached; link into custom_nodes/".to_string(),
            (false, _) => {
                "fetch and check out into the node cache; link into custom_nodes/".to_string()
            }
        };
        nodes.push(Item {
            name: name.clone(),
            what: n.commit.clone(),
            action,
            bytes: None,
        });
        node_dirs.push((name.clone(), dir.clone()));
        scripts.push(InstallScript {
            name: name.clone(),
            dir,
            commit: n.commit.clone(),
            enabled: req
                .spec
                .custom_nodes
                .iter()
                .find(|c| c.effective_name() == name)
                .is_none_or(|c| c.runs_install_script()),
        });
    }
    let models = req
        .lock
        .models
        .iter()
        .map(|m| {
            let present = comfyver_models::is_present(req.layout, m);
            let action = match (present, skip, req.offline) {
                (true, _, _) => "in the store",
                (false, true, _) => "missing; skipped (skip_models)",
                (false, false, true) => "missing; offline, not downloaded",
                (false, false, false) => "download into the store",
            };
            Item {
                name: m.path.clone(),
                what: comfyver_spec::redact(&m.source),
                action: action.into(),
                bytes: m.size,
            }
        })
        .collect();
    let (python, python_note) = if let Some(core_dir) = core_dir.filter(|_| all_nodes_cached) {
        let inputs = PythonInputs {
            core_dir,
            nodes: node_dirs,
            settings: req.spec.python.clone().unwrap_or_default(),
            wheels_dir: req.wheels_dir.clone(),
            offline: req.offline,
            limits: python::Limits::default(),
            rewrites: req.rewrites.clone(),
        };
        let reqs = python::collect_requirements(&inputs)?;
        let installer = match &req.installer {
            Some(i) => i.clone(),
            None => Installer::detect(reqs.python_version.as_deref())?,
        };
        (
            Some(python::plan(
                home.root(),
                &reqs,
                req.lock.python.as_ref(),
                &installer,
                &scripts,
            )?),
            None,
        )
    } else {
        (None, Some("requirements are read from the core and the node packs once they are checked out; then one resolution installs them into .venv".to_string()))
    };
    Ok(RealizePlan {
        home: home.root().to_path_buf(),
        warm,
        core,
        nodes,
        models,
        python,
        python_note,
    })
}
