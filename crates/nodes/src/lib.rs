//! Custom-node checkouts, shared core checkouts and linking for comfyver.
//!
//! The bare mirrors these are built from (`<cache>/git/<slug>.git`) are
//! `comfyver-git`'s.
//!
//! - Checkouts: `<custom_nodes>/<slug>@<commit>`, one per repository commit,
//!   built in a temporary sibling and renamed into place with a completion
//!   marker (`.git/comfyver-complete`, holding the commit: [`checkout_commit`],
//!   [`is_checkout_complete`]) under a per-entry cross-process lock;
//!   submodules are checked out inside, recursively.
//! - Shared cores: `<cache>/core/<slug>@<commit>`, one ComfyUI core checkout
//!   per commit ([`ensure_shared_core`](shared_core::ensure_shared_core)), linked as `<home>/core`
//!   ([`link_core`](shared_core::link_core)) for cores that take `--base-directory`; [`checkout_core`]
//!   gives a home its own copy for older cores. [`probe_core`](shared_core::probe_core) tells which,
//!   and reads core files, before any checkout and, where the remote serves
//!   it, before the commit is fetched (realize starts the Python install
//!   with the core's requirements); [`peek_core`](shared_core::peek_core) does it only where no
//!   fetch is needed.
//! - [`link_nodes`]: `<home>/custom_nodes/<name>` symlinks into the cache.
//! - [`cache_entries`], [`gc_plan`] / [`gc_apply`]: the cache as a whole,
//!   what no lock references, and its removal under each entry's lock.
//! - [`isolate_node`]: a per-home copy instead of the link, for a pack whose
//!   `install.py` runs (it writes into its directory); [`checkout_changes`]
//!   tells whether a shared checkout was changed after it was published.
//! - [`ensure_nodes`] / [`fill_caches`]: entry points for realize and for
//!   `comfyver nodes fetch` (parallel, offline-aware), with progress through
//!   [`Reporter`].
//!
//! Every fetch is bounded: nothing received for `COMFYVER_GIT_TIMEOUT`
//! seconds stops it with `comfyver_git::GitError::FetchTimeout` (inside
//! [`NodesError::Mirror`]).
//!
//! `COMFYVER_TEST_PAUSE_AT` (`comfyver_fs::test_pause`) is a test-only fault hook.

mod cache;
mod checkout;
mod ensure;
mod error;
mod isolate;
mod link;
mod report;
pub mod shared_core;

pub use cache::{NodesGcPlan, cache_entries, entry_name, gc_apply, gc_plan};
pub use checkout::{checkout_commit, checkout_core, is_checkout_complete};
pub use ensure::{NodeCheckout, NodesOptions, ensure_nodes, fill_caches};
pub use error::NodesError;
pub use isolate::{checkout_changes, isolate_node, node_source};
pub use link::link_nodes;
pub use report::{NoReporter, Reporter};
mod users;
pub use users::users_by_entry;
