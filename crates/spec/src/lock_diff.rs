//! The difference between two locks (or lock-shaped descriptions of realized
//! homes): pure data, no I/O.
//!
//! What counts: the core's repository and commit, the node set with each
//! node's repository and commit, the installed Python packages (by
//! normalized name), any other recorded Python setting (such as a torch
//! backend), the models (path, source, size, checksums) and the tool
//! version. What does not: the version id, the spec digest and the digest of
//! the Python inputs, which name a lock rather than describe an environment.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::lock::{LockedModel, LockedRepo};
use crate::{ResolvedLock, redact};

/// Every difference between two locks, in a stable order (core, nodes,
/// Python, models, tool); empty when they describe the same environment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LockDiff {
    /// The differences.
    pub changes: Vec<Change>,
}

impl LockDiff {
    /// Whether the two sides are the same environment.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// One difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// `core`, `node`, `python`, `model` or `tool`.
    pub section: &'static str,
    /// What differs: `comfy`, a node name, a package name, another Python
    /// setting's name, a model's store path, or `tool_version`.
    pub name: String,
    /// `added` (only on the right), `removed` (only on the left) or `changed`.
    pub change: &'static str,
    /// The left side's value (absent when added); URLs redacted.
    pub left: Option<String>,
    /// The right side's value (absent when removed); URLs redacted.
    pub right: Option<String>,
}

/// Compares `left` with `right`.
///
/// A model field (size, checksum) that one side does not record is not a
/// difference: a spec without a checksum says nothing about the content.
/// Python packages recorded on one side only are one `python`/`packages`
/// change, since the other side has not been realized yet.
pub fn lock_diff(left: &ResolvedLock, right: &ResolvedLock) -> LockDiff {
    let mut changes = Vec::new();
    repo_change(
        &mut changes,
        "core",
        "comfy",
        Some(&left.comfy),
        Some(&right.comfy),
    );
    let names = |l: &ResolvedLock| -> BTreeMap<String, LockedRepo> {
        l.custom_nodes
            .iter()
            .map(|n| (n.name.clone().unwrap_or_default(), n.clone()))
            .collect()
    };
    for (name, (l, r)) in paired(names(left), names(right)) {
        repo_change(&mut changes, "node", &name, l.as_ref(), r.as_ref());
    }
    python_changes(&mut changes, left, right);
    let models = |l: &ResolvedLock| -> BTreeMap<String, LockedModel> {
        l.models
            .iter()
            .map(|m| (m.path.clone(), m.clone()))
            .collect()
    };
    for (path, (l, r)) in paired(models(left), models(right)) {
        if let Some(change) = model_change(&path, l.as_ref(), r.as_ref()) {
            changes.push(change);
        }
    }
    if left.tool_version != right.tool_version {
        changes.push(Change {
            section: "tool",
            name: "tool_version".into(),
            change: "changed",
            left: Some(left.tool_version.clone()),
            right: Some(right.tool_version.clone()),
        });
    }
    LockDiff { changes }
}

/// The keys of both maps, in order, with each side's value.
fn paired<V>(
    mut left: BTreeMap<String, V>,
    right: BTreeMap<String, V>,
) -> BTreeMap<String, (Option<V>, Option<V>)> {
    let mut out: BTreeMap<String, (Option<V>, Option<V>)> = BTreeMap::new();
    for (k, r) in right {
        let l = left.remove(&k);
        out.insert(k, (l, Some(r)));
    }
    for (k, l) in left {
        out.insert(k, (Some(l), None));
    }
    out
}

fn kind(left: bool, right: bool) -> &'static str {
    match (left, right) {
        (false, _) => "added",
        (_, false) => "removed",
        _ => "changed",
    }
}

fn repo_change(
    out: &mut Vec<Change>,
    section: &'static str,
    name: &str,
    left: Option<&LockedRepo>,
    right: Option<&LockedRepo>,
) {
    let same = match (left, right) {
        (Some(l), Some(r)) => l.repo == r.repo && l.commit.eq_ignore_ascii_case(&r.commit),
        _ => false,
    };
    if same {
        return;
    }
    let show = |r: &LockedRepo| format!("{} @ {}", redact(&r.repo), r.commit);
    out.push(Change {
        section,
        name: name.to_string(),
        change: kind(left.is_some(), right.is_some()),
        left: left.map(show),
        right: right.map(show),
    });
}

/// `name==1.0` → (`name`, `1.0`); `name @ url` → (`name`, `@ url`).
fn package(line: &str) -> (String, String) {
    if let Some((name, url)) = line.split_once(" @ ") {
        return (name.trim().to_string(), format!("@ {}", redact(url.trim())));
    }
    match line.split_once("==") {
        Some((name, version)) => (name.trim().to_string(), version.trim().to_string()),
        None => (line.trim().to_string(), String::new()),
    }
}

fn python_changes(out: &mut Vec<Change>, left: &ResolvedLock, right: &ResolvedLock) {
    let (l, r) = match (&left.python, &right.python) {
        (None, None) => return,
        (Some(l), Some(r)) => (l, r),
        (l, r) => {
            let count = |p: &Option<crate::lock::LockedPython>| {
                p.as_ref()
                    .map(|p| format!("{} package(s)", p.packages.len()))
                    .unwrap_or_else(|| "not recorded (never realized)".into())
            };
            out.push(Change {
                section: "python",
                name: "packages".into(),
                change: "changed",
                left: Some(count(l)),
                right: Some(count(r)),
            });
            return;
        }
    };
    // Every recorded setting but the package list and the inputs digest (a
    // torch backend, for one), compared generically so that settings added
    // to the lock later are compared too.
    let settings = |p: &crate::lock::LockedPython| -> BTreeMap<String, String> {
        match serde_json::to_value(p) {
            Ok(serde_json::Value::Object(map)) => map
                .into_iter()
                .filter(|(k, _)| k != "packages" && k != "inputs_digest")
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => (k, s),
                    other => (k, other.to_string()),
                })
                .collect(),
            _ => BTreeMap::new(),
        }
    };
    for (name, (lv, rv)) in paired(settings(l), settings(r)) {
        if lv != rv {
            out.push(Change {
                section: "python",
                name,
                change: kind(lv.is_some(), rv.is_some()),
                left: lv,
                right: rv,
            });
        }
    }
    let packages = |p: &crate::lock::LockedPython| -> BTreeMap<String, String> {
        p.packages.iter().map(|line| package(line)).collect()
    };
    for (name, (lv, rv)) in paired(packages(l), packages(r)) {
        if lv != rv {
            out.push(Change {
                section: "python",
                name,
                change: kind(lv.is_some(), rv.is_some()),
                left: lv,
                right: rv,
            });
        }
    }
}

fn model_change(
    path: &str,
    left: Option<&LockedModel>,
    right: Option<&LockedModel>,
) -> Option<Change> {
    let differs = match (left, right) {
        (Some(l), Some(r)) => {
            let both_differ = |a: &Option<String>, b: &Option<String>| matches!((a, b), (Some(a), Some(b)) if !a.eq_ignore_ascii_case(b));
            redact(&l.source) != redact(&r.source)
                || matches!((l.size, r.size), (Some(a), Some(b)) if a != b)
                || both_differ(&l.sha256, &r.sha256)
                || both_differ(&l.blake3, &r.blake3)
        }
        _ => true,
    };
    if !differs {
        return None;
    }
    Some(Change {
        section: "model",
        name: path.to_string(),
        change: kind(left.is_some(), right.is_some()),
        left: left.map(show_model),
        right: right.map(show_model),
    })
}

fn show_model(m: &LockedModel) -> String {
    let mut parts = vec![redact(&m.source)];
    if let Some(size) = m.size {
        parts.push(format!("size {size}"));
    }
    if let Some(sha) = &m.sha256 {
        parts.push(format!("sha256 {sha}"));
    } else if let Some(b3) = &m.blake3 {
        parts.push(format!("blake3 {b3}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lock::{LOCK_VERSION, LockedPython};

    fn repo(name: Option<&str>, commit: char) -> LockedRepo {
        LockedRepo {
            name: name.map(str::to_string),
            repo: format!("https://h/o/{}", name.unwrap_or("ComfyUI")),
            git_ref: None,
            requested_commit: None,
            commit: commit.to_string().repeat(40),
        }
    }

    fn model(path: &str, sha: &str) -> LockedModel {
        LockedModel {
            source: format!("https://m/{path}"),
            path: path.into(),
            sha256: Some(sha.into()),
            blake3: None,
            size: Some(10),
        }
    }

    fn lock() -> ResolvedLock {
        ResolvedLock {
            lock_version: LOCK_VERSION,
            version_id: "a".into(),
            spec_digest: "blake3:1".into(),
            tool_version: "0.1.0".into(),
            comfy: repo(None, 'a'),
            custom_nodes: vec![repo(Some("one"), 'b'), repo(Some("two"), 'c')],
            models: vec![model("checkpoints/x.safetensors", "aa")],
            python: Some(LockedPython {
                inputs_digest: "blake3:2".into(),
                packages: vec!["foo==1.0".into(), "bar==2.0".into()],
                torch_backend: None,
            }),
        }
    }

    #[test]
    fn the_same_environment_under_another_id_is_equal() {
        let mut b = lock();
        b.version_id = "b".into();
        b.spec_digest = "blake3:9".into();
        b.python.as_mut().unwrap().inputs_digest = "blake3:8".into();
        assert!(lock_diff(&lock(), &b).is_empty());
    }

    #[test]
    fn each_kind_of_difference_is_one_change() {
        let mut b = lock();
        b.custom_nodes[0].commit = "d".repeat(40);
        b.custom_nodes.remove(1);
        b.custom_nodes.push(repo(Some("three"), 'e'));
        let py = b.python.as_mut().unwrap();
        py.packages = vec!["foo==1.1".into(), "baz==3".into()];
        b.models[0].sha256 = Some("bb".into());
        b.tool_version = "0.2.0".into();
        let d = lock_diff(&lock(), &b);
        let got: Vec<(&str, &str, &str)> = d
            .changes
            .iter()
            .map(|c| (c.section, c.name.as_str(), c.change))
            .collect();
        assert_eq!(
            got,
            vec![
                ("node", "one", "changed"),
                ("node", "three", "added"),
                ("node", "two", "removed"),
                ("python", "bar", "removed"),
                ("python", "baz", "added"),
                ("python", "foo", "changed"),
                ("model", "checkpoints/x.safetensors", "changed"),
                ("tool", "tool_version", "changed"),
            ]
        );
        let foo = d.changes.iter().find(|c| c.name == "foo").unwrap();
        assert_eq!(
            (foo.left.as_deref(), foo.right.as_deref()),
            (Some("1.0"), Some("1.1"))
        );
    }

    #[test]
    fn a_checksum_one_side_does_not_record_is_no_difference() {
        let mut b = lock();
        b.models[0].sha256 = None;
        b.models[0].size = None;
        assert!(lock_diff(&lock(), &b).is_empty());
    }

    #[test]
    fn a_changed_torch_backend_is_one_python_change() {
        let mut b = lock();
        b.python.as_mut().unwrap().torch_backend = Some("cu128".into());
        let d = lock_diff(&lock(), &b);
        assert_eq!(d.changes.len(), 1, "{d:?}");
        let c = &d.changes[0];
        assert_eq!((c.section, c.name.as_str()), ("python", "torch_backend"));
        assert_eq!(c.right.as_deref(), Some("cu128"));
    }

    #[test]
    fn python_recorded_on_one_side_only_is_one_change() {
        let mut b = lock();
        b.python = None;
        let d = lock_diff(&lock(), &b);
        assert_eq!(d.changes.len(), 1);
        assert_eq!(
            (d.changes[0].section, d.changes[0].name.as_str()),
            ("python", "packages")
        );
    }

    #[test]
    fn secrets_in_urls_are_redacted() {
        let mut b = lock();
        b.comfy.repo = "https://user:hunter2@h/o/ComfyUI".into();
        let d = lock_diff(&lock(), &b);
        let text = serde_json::to_string(&d).unwrap();
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(d.changes[0].section, "core");
    }
}
