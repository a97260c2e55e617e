//! `gc`: node checkouts, git mirrors and models that nothing references.
//!
//! The node cache and the model store each plan and remove their own
//! entries; this module composes them behind one rule for what is still in
//! use ([`references`]): every resolved lock, every home's recorded lock and
//! every spec counts.

use std::path::{Path, PathBuf};

use comfyver_fs::CacheLayout;
use comfyver_models::gc::GcPlan;
use comfyver_nodes::NodesGcPlan;
use comfyver_spec::{ResolvedLock, lock::LockedModel};

use crate::{Home, RealizeError};

/// What keeps cache entries alive: every resolved lock, and the models of
/// every spec (a spec not resolved yet still protects its models).
#[derive(Debug, Clone, Default)]
pub struct References {
    /// Every lock in the cache, and the lock every home was realized from.
    pub locks: Vec<ResolvedLock>,
    /// The models every spec names.
    pub spec_models: Vec<LockedModel>,
}

/// A spec, lock or home's recorded lock that could not be read.
#[derive(Debug)]
pub struct Unreadable {
    /// The file.
    pub path: PathBuf,
    /// Why it could not be read.
    pub reason: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// What keeps cache entries alive, for the cache's gc and the model store's
/// alike: every lock in `<cache>/resolved/`, the lock every home on disk was
/// realized from, and every spec in `versions_dir`. When one of them cannot
/// be read, what it references is unknown, so this fails with
/// [`RealizeError::Unreadable`] naming each file and its reason; with
/// `force` those files are ignored instead (what only they reference counts
/// as unused) and returned beside the references, for the caller to say so.
pub fn references(
    layout: &CacheLayout,
    versions_dir: &Path,
    force: bool,
) -> Result<(References, Vec<Unreadable>), RealizeError> {
    let locks = comfyver_resolver::locks(layout)?;
    let homes = recorded_locks(layout);
    let specs = comfyver_spec::load_specs(versions_dir)?;
    let unreadable: Vec<Unreadable> = (locks.unreadable.into_iter())
        .map(|(path, e)| Unreadable {
            path,
            reason: e.into(),
        })
        .chain(homes.unreadable.into_iter().map(|(path, e)| Unreadable {
            path,
            reason: e.into(),
        }))
        .chain(specs.unreadable.into_iter().map(|(path, e)| Unreadable {
            path,
            reason: e.into(),
        }))
        .collect();
    if !unreadable.is_empty() && !force {
        return Err(RealizeError::Unreadable(unreadable));
    }
    let refs = References {
        locks: locks.locks.into_iter().chain(homes.locks).collect(),
        spec_models: specs
            .specs
            .iter()
            .flat_map(|l| ResolvedLock::models_from(&l.spec))
            .collect(),
    };
    Ok((refs, unreadable))
}

impl References {
    /// Every model a lock or a spec names.
    pub fn models(&self) -> Vec<LockedModel> {
        self.locks
            .iter()
            .flat_map(|l| l.models.iter().cloned())
            .chain(self.spec_models.iter().cloned())
            .collect()
    }
}

/// The locks the homes on disk were realized from (`.comfyver/lock.json`),
/// from the homes directory and, on RunPod, the volume's `comfy-*` homes: a
/// home keeps what it links to even when its version's lock has since
/// changed (a job may be running from it). Files that cannot be read are
/// returned with their error; homes realized before comfyver recorded the
/// lock there are skipped.
pub(crate) fn recorded_locks(layout: &CacheLayout) -> RecordedLocks {
    let mut out = RecordedLocks::default();
    let volume = std::path::Path::new(comfyver_fs::RUNPOD_VOLUME);
    let mut places = vec![layout.homes_dir().to_path_buf()];
    if volume.is_dir() && layout.root().starts_with(volume) {
        places.push(volume.to_path_buf());
    }
    for dir in places {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut homes: Vec<_> = entries
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("comfy-"))
            .map(|e| Home::new(e.path()))
            .filter(Home::is_ours)
            .collect();
        homes.sort_by(|a, b| a.root().cmp(b.root()));
        for home in homes {
            let file = home.lock_file();
            match std::fs::read(&file) {
                Ok(bytes) => match ResolvedLock::from_json(&bytes, &file) {
                    Ok(lock) => out.locks.push(lock),
                    Err(source) => out.unreadable.push((
                        file.clone(),
                        RealizeError::BadRecordedLock { path: file, source },
                    )),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => out.unreadable.push((
                    file.clone(),
                    RealizeError::NoRecordedLock { path: file, source },
                )),
            }
        }
    }
    out
}

/// What [`recorded_locks`] found.
#[derive(Debug, Default)]
pub(crate) struct RecordedLocks {
    /// The locks the homes were realized from.
    pub(crate) locks: Vec<ResolvedLock>,
    /// Recorded locks that could not be read, with the reason.
    pub(crate) unreadable: Vec<(PathBuf, RealizeError)>,
}

/// What a gc would remove.
#[derive(Debug, Clone, Default)]
pub struct CachePlan {
    /// Node checkouts and mirrors.
    pub nodes: NodesGcPlan,
    /// Models (the model store's own plan).
    pub models: GcPlan,
}

impl CachePlan {
    /// Bytes the plan frees.
    pub fn bytes(&self) -> u64 {
        self.nodes.bytes() + self.models.bytes()
    }
}

/// Finds what `refs` do not reference. Reads only.
pub fn gc_plan(layout: &CacheLayout, refs: &References) -> Result<CachePlan, RealizeError> {
    Ok(CachePlan {
        nodes: comfyver_nodes::gc_plan(layout, &refs.locks)?,
        models: comfyver_models::gc::gc_plan(layout, &refs.models())?,
    })
}

/// Removes what `plan` lists, each entry under its cache lock. Before each
/// node entry goes, `current` is asked for the references again (under that
/// entry's lock), so an entry a realize started using since the plan is kept.
/// Returns the bytes freed.
pub fn gc_apply(
    layout: &CacheLayout,
    plan: &CachePlan,
    current: &dyn Fn() -> Option<References>,
) -> Result<u64, RealizeError> {
    let current_locks = || current().map(|refs| refs.locks);
    let mut freed = comfyver_nodes::gc_apply(layout, &plan.nodes, &current_locks)?;
    freed += comfyver_models::gc::gc_apply(layout, &plan.models)?;
    Ok(freed)
}
