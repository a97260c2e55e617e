//! `describe_home`: what a realized home actually holds, read from disk and
//! shaped like a lock, so that `comfyver diff` can compare homes and locks
//! with one pure function (`comfyver_spec::lock_diff`).

use comfyver_fs::CacheLayout;
use comfyver_python as python;
use comfyver_spec::{ResolvedLock, lock::LockedPython, lock::LockedRepo};

use crate::stamp::read_stamp;
use crate::verify::{head_commit, without_seed};
use crate::{Home, RealizeError};

/// What `describe_home` puts where a commit cannot be read.
const NO_COMMIT: &str = "(no git HEAD)";

/// A lock-shaped description of `home` as it is on disk: the core's and each
/// `custom_nodes/` entry's checked-out commit (read from git metadata), the
/// packages the venv really holds, the size and checksums of the models the
/// home was realized with as its store (the one its stamp names) holds them
/// now (from the store's
/// index when a file is unchanged, else hashed), and the comfyver version
/// that realized it. Repository URLs, ids and digests come from the lock the
/// home was realized from (`.comfyver/lock.json`); a node directory that lock
/// does not name is described with its directory as the repository.
pub fn describe_home(home: &Home, layout: &CacheLayout) -> Result<ResolvedLock, RealizeError> {
    if !home.root().is_dir() || !home.is_ours() {
        return Err(RealizeError::NotRealized {
            path: home.root().to_path_buf(),
        });
    }
    let file = home.lock_file();
    let bytes = std::fs::read(&file).map_err(|source| RealizeError::NoRecordedLock {
        path: file.clone(),
        source,
    })?;
    let recorded =
        ResolvedLock::from_json(&bytes, &file).map_err(|source| RealizeError::BadRecordedLock {
            path: file.clone(),
            source,
        })?;
    let mut actual = recorded.clone();
    actual.comfy.commit = head_commit(&home.core_dir()).unwrap_or_else(|| NO_COMMIT.into());
    actual.custom_nodes = node_entries(home, &recorded)?;
    let venv = python::venv_dir(home.root());
    actual.python = if venv.is_dir() {
        let recorded_packages = recorded
            .python
            .as_ref()
            .map(|p| p.packages.clone())
            .unwrap_or_default();
        let packages = without_seed(python::freeze(&venv)?, &recorded_packages);
        let mut p = recorded.python.clone().unwrap_or(LockedPython {
            inputs_digest: String::new(),
            packages: Vec::new(),
            torch_backend: None,
        });
        p.packages = packages;
        Some(p)
    } else {
        None
    };
    // The store the home was realized against (its stamp says), which may
    // be another than this command's.
    let stamp = read_stamp(home);
    let store = match &stamp {
        Some(s) if !s.models_dir.is_empty() => layout.clone().with_models_dir(s.models_dir.clone()),
        _ => layout.clone(),
    };
    actual.models = Vec::new();
    for m in &recorded.models {
        if let Some(found) = comfyver_models::verify::actual_model(&store, m)? {
            actual.models.push(found);
        }
    }
    if let Some(stamp) = stamp {
        actual.tool_version = stamp.tool_version;
    }
    Ok(actual)
}

/// Every directory or link in `custom_nodes/` (ComfyUI loads each of them),
/// sorted by name.
fn node_entries(home: &Home, recorded: &ResolvedLock) -> Result<Vec<LockedRepo>, RealizeError> {
    let dir = home.custom_nodes_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RealizeError::io("could not list", &dir, e)),
    };
    let mut nodes = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| RealizeError::io("could not list", &dir, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !path.is_dir() || name == "__pycache__" {
            continue;
        }
        let target = std::fs::read_link(&path).unwrap_or_else(|_| path.clone());
        let locked = recorded
            .custom_nodes
            .iter()
            .find(|n| n.name.as_deref() == Some(name.as_str()));
        nodes.push(LockedRepo {
            name: Some(name),
            repo: locked
                .map(|n| n.repo.clone())
                .unwrap_or_else(|| target.display().to_string()),
            git_ref: locked.and_then(|n| n.git_ref.clone()),
            requested_commit: locked.and_then(|n| n.requested_commit.clone()),
            commit: head_commit(&target).unwrap_or_else(|| NO_COMMIT.into()),
        });
    }
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(nodes)
}

/// Writes the lock a realize used into the home (atomically), so the home
/// can later be described against it.
pub(crate) fn record_lock(home: &Home, lock: &ResolvedLock) -> Result<(), RealizeError> {
    comfyver_fs::write_atomic_if_changed(&home.lock_file(), &lock.to_json())?;
    Ok(())
}

/// Whether the home already holds a recorded lock (one `stat`).
pub(crate) fn has_recorded_lock(home: &Home) -> bool {
    home.lock_file().is_file()
}
