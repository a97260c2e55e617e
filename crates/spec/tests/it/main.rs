//! The spec crate's integration tests, one binary: the corpus of bad specs
//! (fixtures in `tests/fixtures`) and ComfyUI's model folders.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

mod corpus;
mod model_folders;
