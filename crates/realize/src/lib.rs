//! Realizes a resolved comfyver version on disk.
//!
//! [`realize`] turns a spec and its lock into a version home: the core
//! checkout at the locked commit, `custom_nodes/<name>` links into the node
//! cache, models in the shared store wired in by `extra_model_paths.yaml`, a
//! venv, the nodes' install scripts, and last the stamp. [`is_warm`] is the
//! warm path: a handful of stats decide that a home is complete. [`plan`]
//! describes a realize without doing it, [`verify`] checks a home deeply,
//! [`describe_home`] reads what a home holds as a lock (for `diff`),
//! [`remove_home`] deletes one, [`gc_plan`]/[`gc_apply`] clean the caches.
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

pub use build::{RealizeRequest, Realized, default_home, realize};
pub use describe::describe_home;
pub use error::RealizeError;
pub use gc::{CachePlan, RecordedLocks, References, gc_apply, gc_plan, recorded_locks};
pub use home::Home;
pub use in_use::{HomeInUse, realize_for_use};
pub use plan::{Item, RealizePlan, plan};
pub use remove::remove_home;
pub use report::{NoReporter, RealizeReporter};
pub use verify::{Problem, verify};
