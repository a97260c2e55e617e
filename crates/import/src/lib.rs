//! Version specs from what ComfyUI users already have, and editing specs on disk.
//!
//! - [`import_snapshot`]: a ComfyUI-Manager snapshot, JSON or YAML (`comfyui`,
//!   `git_custom_nodes`, `cnr_custom_nodes`, `file_custom_nodes`, `pips`) → a
//!   new schema 2 spec pinned to the same commits; [`export_snapshot`] is the
//!   reverse, from a version's lock.
//! - [`import_build`]: a comfy-cli build definition (`comfy build scan`, what
//!   Comfy-Org's hosted serverless builds from), JSON or YAML → a new spec;
//!   [`export_build`] is the reverse, from a version's spec. What one side
//!   cannot hold is named, never dropped silently.
//! - [`import_install`]: a live ComfyUI folder (its core and packs' git
//!   checkouts, its models, its venv) → a new spec pinned to the commits
//!   found and its lock with the venv's packages; the models are adopted
//!   into the model store by content. What cannot be carried over (a
//!   folder that is no checkout, uncommitted changes) is named.
//! - [`import_workflow`]: the node packs a UI-format workflow names
//!   (`properties.cnr_id`, `aux_id`, `ver`) added to a spec, and the model
//!   files its loader nodes reference that the spec lacks (`\` subfolders
//!   read as `/`); classes the version already provides (its node index,
//!   passed in [`WorkflowOptions::provided`]) and UI-only nodes are not
//!   looked up ([`WorkflowFindings`]).
//! - [`migrate`]: a schema 1 spec or an old per-tag lockfile → a schema 2 spec
//!   and its resolved lock, with what could not be carried over.
//! - [`new_version`], [`add_node`], [`add_model`], [`remove_node`],
//!   [`remove_model`], [`copy_version`]: `cargo add`-style edits that keep the
//!   file's formatting, validate before writing, write atomically, and preview
//!   what `resolve` would change.
//!
//! Every function that writes refuses invalid results before touching the
//! file, so a refused import or edit leaves the versions directory unchanged.

mod build;
mod edit;
mod error;
mod git_tree;
mod install;
mod legacy;
mod node_map;
mod snapshot;
mod workflow;
mod workspace;
mod yaml;

pub use build::{BuildOptions, ExportedBuild, export_build, import_build};
pub use edit::{add_model, add_node, copy_version, new_version, remove_model, remove_node};
pub use error::ImportError;
pub use install::{InstallOptions, import_install};
pub use legacy::migrate;
pub use snapshot::{PipsAs, SnapshotOptions, export_snapshot, import_snapshot};
pub use workflow::{MissingModel, WorkflowFindings, WorkflowOptions, import_workflow};
pub use workspace::{DEFAULT_COMFY_REPO, Preview, Workspace, Written};
pub use yaml::to_yaml;
