//! Process groups, signals and the parent-death signal for the ComfyUI
//! child: the workspace's one implementation lives in `comfyver_fs::child`.

pub(crate) use comfyver_fs::child::{contain as prepare_child, register, signal_group, unregister};
