//! The shared model store of comfyver (`MODELS_DIR`).
//!
//! Each model lives once at `<MODELS_DIR>/<target_subdir>/<name>`, shared by
//! every version whose spec names the same source; the source is the model's
//! key ([`source_key`]). The store keeps an index (`.comfyver/index.json`)
//! with each file's redacted source, size, BLAKE3, SHA-256 when known,
//! ETag/Last-Modified and when it was verified.
//!
//! - [`fetch_models`]: downloads over HTTP(S) (ureq; `hf://` and CivitAI URLs,
//!   `HF_TOKEN`/`CIVITAI_TOKEN` by host) into `.comfyver/partial/`, hashed on
//!   the fly, resumed with `Range` + `If-Range`, retried with backoff, verified
//!   and renamed into place; local sources are hard-linked or copied. Existing
//!   files are adopted when their checksum matches, kept when there is none.
//!   Nothing incomplete or unverified is ever put at a model's final path.
//! - [`adopt_files`]: files a ComfyUI install already has, taken into the
//!   store by content (hard link or copy) and indexed with their SHA-256.
//! - [`is_present`]: the warm-path check (one `stat`).
//! - [`verify_models`], [`actual_model`] (what the store holds for a model), [`list_store`], [`gc_plan`] / [`gc_apply`].
//! - [`fetch_job_models`]: the models a job brings by URL, only from hosts
//!   its [`HostRule`] allows (redirects included), held in use while the job
//!   runs; [`evict_job_models`] keeps files only jobs brought within a
//!   budget, least recently used first.
//! - [`extra_model_paths_yaml`]: the file that points ComfyUI at the store,
//!   and [`link_custom_folders`]: the home's links for packs' own folders.

pub mod adopt;
mod auth;
mod chunked;
mod download;
mod error;
mod fetch;
mod folders;
pub mod gc;
mod hash;
mod hosts;
mod index;
pub mod job_models;
mod local;
mod progress;
mod store;
pub mod verify;
mod yaml;

pub use error::ModelsError;
pub use fetch::{
    FetchOptions, FetchOutcome, FetchStatus, ModelReport, fetch_models, is_present, models_intact,
};
pub use folders::link_custom_folders;
pub use hosts::HostRule;
pub use index::{Index, IndexEntry};
pub use progress::{NoReporter, Reporter};
pub use store::source_key;
pub use yaml::extra_model_paths_yaml;
