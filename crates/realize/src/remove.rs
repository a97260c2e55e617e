//! `remove`: deletes a version's home and nothing outside it.

use crate::build::{discard, home_lock};
use crate::stamp::clear_stamp;
use crate::{Home, RealizeError};
use comfyver_fs::{CacheLayout, FileLock};

/// Deletes `home` (under its lock). The stamp goes first, then the whole
/// directory is renamed away and deleted; links into the shared caches are
/// removed as links, never followed. A directory comfyver did not make is
/// refused. Returns false when there was nothing to remove.
pub fn remove_home(home: &Home, layout: &CacheLayout) -> Result<bool, RealizeError> {
    home.check_place(layout)?;
    if !home.root().exists() {
        return Ok(false);
    }
    if !home.is_ours() {
        return Err(RealizeError::NotOurs {
            path: home.root().to_path_buf(),
        });
    }
    let _lock = FileLock::acquire(&home_lock(layout, home))?;
    clear_stamp(home)?;
    discard(home.root())?;
    Ok(true)
}
