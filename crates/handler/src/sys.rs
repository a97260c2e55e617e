//! Process groups, signals and the parent-death signal for the ComfyUI
//! child: the workspace's one implementation lives in `comfyver_fs::child`.

pub use comfyver_fs::child::process_alive as process_exists;
pub(crate) use comfyver_fs::child::{
    contain as prepare_child, enable_graceful_stop, register, signal_group, stop_requested,
    unregister,
};
