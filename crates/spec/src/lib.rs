//! The two documents of comfyver and the vocabulary every stage shares.
//!
//! - [`VersionSpec`]: a `versions/<id>.json` file (schema_version 2) that pins the
//!   ComfyUI core, custom nodes, models and the Python environment of one version.
//!   [`load_spec`] / [`parse_spec`] parse it with line/column syntax errors and
//!   validate it, returning *every* problem at once with its JSON path.
//!   [`SpecDocument`] edits a spec's text in place, keeping its formatting.
//! - [`ResolvedLock`]: the resolved lock, with every ref pinned to a full commit,
//!   serialized deterministically; [`lock_diff`] compares two of them.
//!
//! It also owns the rules that several stages must agree on: repository URL
//! normalization and cache slugs ([`RepoUrl`]), model sources ([`ModelSource`]),
//! ComfyUI's model folders ([`model_folders`]) and safe path names ([`names`]).

mod digest;
mod edit;
mod error;
mod lock;
mod lock_diff;
pub mod model_folders;
mod model_source;
pub mod names;
mod parse;
mod repo_url;
mod rewrite;
mod schema;
mod strict_json;
pub mod suggest;
mod validate;
mod version;

pub use digest::{Digest, digest_json};
pub use edit::{EditError, SpecDocument};
pub use error::{Issue, SpecError};
pub use lock::{LOCK_VERSION, LockParseError, LockedModel, LockedPython, LockedRepo, ResolvedLock};
pub use lock_diff::{Change, LockDiff, lock_diff};
pub use model_source::{ModelSource, ModelSourceError, hf_endpoint, host_of};
pub use parse::{Loaded, SpecScan, load_spec, load_specs, parse_spec, spec_files};
pub use repo_url::{RepoUrl, RepoUrlError, redact};
pub use rewrite::{RewriteError, RewriteRule, UrlRewrites};
pub use schema::spec_json_schema;
pub use version::{
    CURRENT_SCHEMA_VERSION, ComfyCore, CustomNode, Model, Options, PythonSettings, VersionSpec,
};

/// The version of the comfyver tool, recorded in locks and stamps.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Whether a string is a full 40-character lowercase-or-uppercase hex SHA-1.
pub fn is_full_commit(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}
