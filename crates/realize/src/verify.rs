//! `verify`: a realized home checked against its lock, more deeply than the
//! warm path (commit ids read from git metadata, model checksums, the venv's
//! installed set).

use comfyver_fs::CacheLayout;
use comfyver_python as python;
use comfyver_spec::ResolvedLock;

use crate::stamp::{is_warm, read_stamp};
use crate::{Home, RealizeError};

/// One thing found wrong with a home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What part: `core` (its commit, or its shared checkout changed), `custom_nodes/<name>`, `models/<path>`, `python`, `stamp`.
    pub what: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Checks `home` against `lock`; an empty list means it is whole.
/// With `rehash`, model files are hashed again instead of trusting the
/// store's index.
pub fn verify(
    home: &Home,
    lock: &ResolvedLock,
    layout: &CacheLayout,
    rehash: bool,
) -> Result<Vec<Problem>, RealizeError> {
    let mut problems = Vec::new();
    let mut add = |what: &str, message: String| {
        problems.push(Problem {
            what: what.to_string(),
            message,
        })
    };
    if !home.root().is_dir() {
        add(
            "home",
            format!(
                "{} does not exist: run `comfyver realize`",
                home.root().display()
            ),
        );
        return Ok(problems);
    }
    match read_stamp(home) {
        None => add(
            "stamp",
            "no realized stamp: the home was never completed; run `comfyver realize --repair`"
                .into(),
        ),
        Some(_) if !is_warm(home, lock, layout) => add(
            "stamp",
            "the stamp does not match the lock, or a part is missing or changed: run \
             `comfyver realize --repair`"
                .into(),
        ),
        Some(_) => {}
    }
    let core = home.core_dir();
    match head_commit(&core) {
        Some(c) if c.eq_ignore_ascii_case(&lock.comfy.commit) => {}
        Some(c) => add(
            "core",
            format!("checked out at {c}, the lock says {}", lock.comfy.commit),
        ),
        None => add("core", "no git HEAD in the home".into()),
    }
    if home.base_dir().is_some() {
        let target = std::fs::canonicalize(&core).unwrap_or(core);
        if let Ok(changed) = comfyver_nodes::checkout_changes(&target)
            && !changed.is_empty()
        {
            add("core", changed_message(&target, &changed));
        }
    }
    for node in &lock.custom_nodes {
        let name = node.name.clone().unwrap_or_default();
        let what = format!("custom_nodes/{name}");
        let link = home.custom_nodes_dir().join(&name);
        match comfyver_nodes::node_source(&link) {
            None => add(&what, "missing or not a link into the node cache".into()),
            Some(target) => {
                match comfyver_nodes::checkout_changes(&target) {
                    Ok(changed) if changed.is_empty() => {}
                    Ok(changed) => add(&what, changed_message(&target, &changed)),
                    Err(_) => {}
                }
                if !comfyver_nodes::is_checkout_complete(&target) {
                    add(
                        &what,
                        format!("{} is not a complete checkout", target.display()),
                    );
                }
                match head_commit(&target) {
                    Some(c) if c.eq_ignore_ascii_case(&node.commit) => {}
                    other => add(
                        &what,
                        format!(
                            "at {}, the lock says {}",
                            other.unwrap_or_default(),
                            node.commit
                        ),
                    ),
                }
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(home.custom_nodes_dir()) {
        let mut extra: Vec<String> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| {
                name != "__pycache__"
                    && !lock
                        .custom_nodes
                        .iter()
                        .any(|n| n.name.as_deref() == Some(name.as_str()))
            })
            .collect();
        extra.sort();
        for name in extra {
            add(
                &format!("custom_nodes/{name}"),
                "not in the lock: ComfyUI loads it too; remove it or add the pack to the spec"
                    .into(),
            );
        }
    }
    for report in comfyver_models::verify::verify_models(&lock.models, layout, rehash)? {
        if report.status.is_problem() {
            add(
                &format!("models/{}", report.path),
                format!(
                    "{:?}: `comfyver realize --repair` fetches it again (a wrong file is moved aside)",
                    report.status
                ),
            );
        }
    }
    let venv = python::venv_dir(home.root());
    if let Some(locked) = &lock.python {
        match python::freeze(&venv).map(|i| without_seed(i, &locked.packages)) {
            Ok(installed) if installed == locked.packages => {}
            Ok(installed) => add(
                "python",
                format!(
                    "installed set differs from the lock: {}",
                    diff(&locked.packages, &installed)
                ),
            ),
            Err(e) => add("python", format!("could not list the venv's packages: {e}")),
        }
    } else if !venv.is_dir() {
        add("python", "no .venv".into());
    }
    Ok(problems)
}

/// The problem of a shared checkout (node or core) changed after it was published.
fn changed_message(target: &std::path::Path, changed: &[std::path::PathBuf]) -> String {
    format!(
        "the shared checkout {} was changed after it was checked out ({}); every version \
         using it sees the change: delete that directory and run `comfyver realize` to check \
         it out again",
        target.display(),
        changed
            .iter()
            .take(5)
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// What `python -m venv` seeds a pip venv with (pip, setuptools, wheel) is
/// not recorded in the lock unless the install changed it (see
/// `python::build_env`), so it is not a difference either.
pub(crate) fn without_seed(installed: Vec<String>, locked: &[String]) -> Vec<String> {
    let name = |line: &str| {
        let end = line.find(['=', ' ']).unwrap_or(line.len());
        line[..end].to_string()
    };
    let locked_names: Vec<String> = locked.iter().map(|l| name(l)).collect();
    installed
        .into_iter()
        .filter(|l| {
            let n = name(l);
            !matches!(n.as_str(), "pip" | "setuptools" | "wheel") || locked_names.contains(&n)
        })
        .collect()
}

/// The commit a checkout's HEAD points at, read from its git metadata.
pub(crate) fn head_commit(dir: &std::path::Path) -> Option<String> {
    let head = std::fs::read_to_string(dir.join(".git/HEAD")).ok()?;
    let head = head.trim();
    if comfyver_spec::is_full_commit(head) {
        return Some(head.to_string());
    }
    let reference = head.strip_prefix("ref: ")?;
    std::fs::read_to_string(dir.join(".git").join(reference))
        .ok()
        .map(|s| s.trim().to_string())
}

fn diff(want: &[String], have: &[String]) -> String {
    let missing: Vec<&String> = want.iter().filter(|p| !have.contains(p)).collect();
    let extra: Vec<&String> = have.iter().filter(|p| !want.contains(p)).collect();
    format!("missing {missing:?}, unexpected {extra:?}")
}
