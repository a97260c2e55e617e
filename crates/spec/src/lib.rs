//! The two documents of comfyver and the vocabulary every stage shares.
//!
//! - [`VersionSpec`]: a `versions/<id>.json` file (schema_version 2) that pins the
//!   ComfyUI core, custom nodes, models and the Python environment of one version.
//!   [`load_spec`] / [`parse_spec`] parse it with line/column syntax errors and
//!   validate it, returning *every* problem at once with its JSON path.
//!   Its parts are in [`version`]; [`edit::SpecDocument`] edits a spec's
//!   text in place, keeping its formatting.
//! - [`ResolvedLock`]: the resolved lock, with every ref pinned to a full commit,
//!   serialized deterministically (its parts in [`lock`]); [`lock_diff`]
//!   compares two of them.
//!
//! It also owns the rules that several stages must agree on: repository URL
//! normalization and cache slugs ([`RepoUrl`]), model sources
//! ([`model_source`]), ComfyUI's model folders ([`model_folders`]), safe path
//! names ([`names`]), content digests ([`digest`]) and URL rewrite rules
//! ([`UrlRewrites`], read from the environment and the cache's settings file).

pub mod digest;
pub mod edit;
mod error;
pub mod lock;
mod lock_diff;
pub mod model_folders;
pub mod model_source;
pub mod names;
mod parse;
mod repo_url;
mod rewrite;
mod schema;
mod strict_json;
pub mod suggest;
mod validate;
pub mod version;

pub use error::SpecError;
pub use lock::ResolvedLock;
pub use lock_diff::lock_diff;
pub use parse::{Loaded, load_spec, load_specs, parse_spec, spec_files};
pub use repo_url::{RepoUrl, RepoUrlError, redact};
pub use rewrite::UrlRewrites;
pub use schema::spec_json_schema;
pub use version::VersionSpec;

/// The version of the comfyver tool, recorded in locks and stamps.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether a string is a full 40-character lowercase-or-uppercase hex SHA-1.
pub fn is_full_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
