//! Realizes a resolved comfyver version on disk.
//!
//! - [`python`]: the version's Python environment (`<home>/.venv`): one
//!   resolution of the core's, the nodes' and the spec's requirements with uv
//!   (pip as fallback), exact replay of a locked package set, nodes'
//!   `install.py` scripts, freeze and dry-run plan.

pub mod python;
