//! Taking the model files a ComfyUI install already has into the store, by
//! content: each is hard-linked into place when the store is on the same
//! filesystem, else copied, hashed on the way (SHA-256 and BLAKE3) and
//! indexed, so a version naming the file as its local source finds it
//! present and fetches nothing.

use std::path::PathBuf;

use comfyver_fs::CacheLayout;
use comfyver_spec::lock::LockedModel;

use crate::fetch::{FetchOptions, FetchStatus, fetch_models};
use crate::hash::hash_file;
use crate::index::Index;
use crate::store::{model_file, source_key};
use crate::{ModelsError, Reporter};

/// A file to adopt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalModel {
    /// The file's absolute path: it becomes the model's local source.
    pub file: PathBuf,
    /// `<target_subdir>/<name>` in the store.
    pub path: String,
}

/// A file the store now holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdoptedModel {
    /// The model as a version names it: the file as its source, its
    /// SHA-256 and size.
    pub model: LockedModel,
    /// How it got there: [`FetchStatus::Placed`] (`linked` or copied), or
    /// [`FetchStatus::Present`]/[`FetchStatus::Adopted`] when the store
    /// already held it.
    pub status: FetchStatus,
}

/// Adopts every file into the store of `layout`, without any network.
/// Paths are checked and conflicts (another model already at a path)
/// refused as [`fetch_models`] does.
pub fn adopt_files(
    files: &[LocalModel],
    layout: &CacheLayout,
    reporter: &dyn Reporter,
) -> Result<Vec<AdoptedModel>, ModelsError> {
    let mut models = Vec::with_capacity(files.len());
    for f in files {
        let meta = std::fs::metadata(&f.file).map_err(|e| ModelsError::io("read", &f.file, e))?;
        models.push(LockedModel {
            source: f.file.to_string_lossy().into_owned(),
            path: f.path.clone(),
            sha256: None,
            blake3: None,
            size: Some(meta.len()),
        });
    }
    let opts = FetchOptions {
        jobs: 2,
        offline: true,
        ..FetchOptions::default()
    };
    let outcome = fetch_models(&models, layout, &opts, reporter)?;
    let index = Index::read(layout.models_dir())?;
    let mut adopted = Vec::with_capacity(models.len());
    for mut model in models {
        let Some(report) = outcome.models.iter().find(|r| r.path == model.path) else {
            continue;
        };
        let indexed = index
            .models
            .get(&model.path)
            .filter(|e| e.key == source_key(&model.source))
            .and_then(|e| e.sha256.clone());
        model.sha256 = match indexed {
            Some(sha) => Some(sha),
            None => hash_file(&model_file(layout.models_dir(), &model)?, true)?.sha256,
        };
        adopted.push(AdoptedModel {
            model,
            status: report.status.clone(),
        });
    }
    Ok(adopted)
}
