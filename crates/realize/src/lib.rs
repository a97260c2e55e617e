//! Realizes a resolved comfyver version on disk.
//!
//! [`realize`] turns a spec and its lock into a version home: the core
//! checkout at the locked commit, `custom_nodes/<name>` links into the node
//! cache, models in the shared store wired in by `extra_model_paths.yaml`, a
//! venv, the nodes' install scripts, and last the stamp; then it records the
//! installed Python set in the version's lock (compare-and-swap through
//! `comfyver-resolver`: a lock resolved meanwhile is kept). Its warm path comes first: a handful
//! of stats decide that a home is complete. [`plan`]
//! describes a realize without doing it, [`verify`] checks a home deeply,
//! [`describe_home`] reads what a home holds as a lock (for `diff`),
//! [`remove_home`] deletes one, [`gc_plan`]/[`gc_apply`] clean the caches of
//! what [`references`] (every lock, every home's recorded lock, every spec)
//! does not keep.
//!
//! The version's Python environment (`<home>/.venv`) is built by the
//! `comfyver-python` crate, which this crate composes.

mod build;
mod describe;
mod error;
mod gc;
mod home;
mod in_use;
mod lease;
mod plan;
mod remove;
mod report;
mod stamp;
mod verify;

pub use build::{LockRecord, RealizeRequest, Realized, default_home, realize};
pub use describe::describe_home;
pub use error::RealizeError;
pub use gc::{CachePlan, References, Unreadable, gc_apply, gc_plan, references};
pub use home::Home;
pub use in_use::{HomeInUse, realize_for_use};
pub use plan::{RealizePlan, plan};
pub use remove::remove_home;
pub use report::{NoReporter, RealizeReporter};
pub use verify::{Problem, verify};
