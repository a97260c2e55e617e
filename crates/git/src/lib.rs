//! Git plumbing comfyver's resolver and node cache share.
//!
//! - [`Mirror`]: the bare mirror of a repository at `<cache>/git/<slug>.git`,
//!   created by rename under its cross-process lock, fetched with gix (a
//!   commit already there costs no network, every commit used is pinned by
//!   `refs/pins/<sha>`), its files and trees read without a checkout
//!   ([`Mirror::read_file`], [`TreeFile`]) or from the remote before the
//!   commit is fetched ([`Mirror::peek_files`]), and a checkout of one commit
//!   built from it ([`Mirror::check_out`]). This crate owns `<cache>/git/`:
//!   [`mirror_name`], [`mirror_dirs`] and [`lock_mirror`] are how the node
//!   cache's gc lists and removes mirrors.
//! - [`bounded_transport`]: fetch transports that cannot hang (`git://`,
//!   local repositories and ssh through contained children with a watchdog);
//!   http(s) through gix's client with the same limits.
//! - [`git_timeout`]: the one reading of `COMFYVER_GIT_TIMEOUT`, seconds a
//!   git network call may go without receiving anything: a positive whole
//!   number, [`DEFAULT_GIT_TIMEOUT`] when unset; 0 or anything else is
//!   [`GitError::BadTimeout`], so every network call has a limit.
//! - [`init_bare`]: a bare repository without git's templates (hooks,
//!   description), as every mirror and checkout here is made.
//!
//! Network events reach the caller through [`Reporter`].

mod clone;
mod error;
mod init;
mod mirror;
mod peek;
mod report;
mod timeout;
mod transport;

pub use error::GitError;
pub use init::init_bare;
pub use mirror::{Mirror, TreeFile, lock_mirror, mirror_dirs, mirror_name};
pub use report::Reporter;
pub use timeout::{DEFAULT_GIT_TIMEOUT, git_timeout};
pub use transport::bounded_transport;
