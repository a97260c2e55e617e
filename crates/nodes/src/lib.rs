//! Git mirrors, custom-node checkouts and linking for comfyver.
//!
//! - [`Mirror`]: a bare mirror per repository at `<cache>/git/<slug>.git`,
//!   created and fetched with gix; a commit already there costs no network.
//! - Checkouts: `<custom_nodes>/<slug>@<commit>`, one per repository commit,
//!   built in a temporary sibling and renamed into place with a completion
//!   marker (`.git/comfyver-complete`) under a per-entry cross-process lock.
//! - [`checkout_core`]: a version home's own ComfyUI core checkout.
//! - [`link_nodes`]: `<home>/custom_nodes/<name>` symlinks into the cache.
//! - [`ensure_nodes`]: the realize stage's entry point (parallel, offline-aware).
//!
//! `COMFYVER_TEST_PAUSE_AT` ([`PAUSE_ENV`]) is a test-only fault hook.

mod error;
mod mirror;
mod pause;
mod report;

pub use error::{MissingCommit, NodesError};
pub use mirror::Mirror;
pub use pause::PAUSE_ENV;
pub use report::{NoReport, Reporter};
