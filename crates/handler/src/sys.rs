//! Process groups, signals and the parent-death signal for ComfyUI children:
//! one implementation for the workspace, in `comfyver-fs`.

pub use comfyver_fs::child::process_exists;
pub(crate) use comfyver_fs::child::{prepare_child, register, signal_group, unregister};
