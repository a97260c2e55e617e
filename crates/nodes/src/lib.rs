//! Git mirrors, custom-node checkouts and linking for comfyver.
//!
//! - [`Mirror`]: a bare mirror per repository at `<cache>/git/<slug>.git`,
//!   created and fetched with gix; a commit already there costs no network.
//! - Checkouts: `<custom_nodes>/<slug>@<commit>`, one per repository commit,
//!   built in a temporary sibling and renamed into place with a completion
//!   marker ([`COMPLETE_MARKER`], `.git/comfyver-complete`) under a per-entry
//!   cross-process lock; submodules are checked out inside, recursively.
//! - Shared cores: `<cache>/core/<slug>@<commit>`, one ComfyUI core checkout
//!   per commit ([`ensure_shared_core`]), linked as `<home>/core`
//!   ([`link_core`]) for cores that take `--base-directory`; [`checkout_core`]
//!   gives a home its own copy for older cores. [`probe_core`] tells which,
//!   and reads core files, before any checkout and, where the remote serves
//!   it, before the commit is fetched (realize starts the Python install
//!   with the core's requirements); [`peek_core`] does it only where no
//!   fetch is needed.
//! - [`init_bare`]: a bare repository without git's templates (hooks,
//!   description), as every mirror and checkout here is made.
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
//! ([`GIT_TIMEOUT_ENV`]) seconds stops it with [`NodesError::FetchTimeout`].
//!
//! `COMFYVER_TEST_PAUSE_AT` (`comfyver_fs::test_pause`) is a test-only fault hook.

mod cache;
mod checkout;
mod ensure;
mod error;
mod git_dir;
mod isolate;
mod link;
mod mirror;
mod peek;
mod report;
mod shared_core;
mod transport;

pub use cache::{
    CacheEntry, EntryKind, NodesGcPlan, Unused, cache_entries, entry_name, gc_apply, gc_plan,
    own_bytes, referenced,
};
pub use checkout::{COMPLETE_MARKER, checkout_core, is_checkout_complete};
pub use ensure::{NodeCheckout, NodesOptions, ensure_nodes, fill_caches};
pub use error::{MissingCommit, NodesError};
pub use git_dir::init_bare;
pub use isolate::{checkout_changes, isolate_node, node_source};
pub use link::{LinkOutcome, link_nodes};
pub use mirror::{GIT_LOCK_STALE_AGE, Mirror, TreeFile};
pub use report::{NoReporter, Reporter};
pub use shared_core::{
    CoreProbe, core_cache_dir, core_link, ensure_shared_core, link_core, peek_core, probe_core,
    shared_core_path,
};
pub use transport::{
    BoundedTransport, DEFAULT_GIT_TIMEOUT, GIT_TIMEOUT_ENV, TransportGuard, bounded_transport,
    git_timeout,
};
mod users;
pub use users::users_by_entry;
