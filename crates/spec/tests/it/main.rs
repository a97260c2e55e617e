//! The spec crate's integration tests, one binary: the corpus of bad specs
//! (fixtures in `tests/fixtures`) and ComfyUI's model folders.

mod corpus;
mod model_folders;
