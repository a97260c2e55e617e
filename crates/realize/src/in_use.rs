//! A home in use: while a ComfyUI runs from a home, nothing may change it.
//!
//! `run` (and `serve`) hold the home's lock in shared mode for as long as
//! ComfyUI runs; `realize` (which changes a home only under the exclusive
//! lock), `remove` and gc's planning wait for every shared holder to let go.
//! A realize of a changed lock for the same version therefore waits for the
//! running job instead of deleting `.venv`, links or the core under it.

use comfyver_fs::FileLock;

use crate::build::home_lock;
use crate::stamp::is_warm_for;
use crate::{RealizeError, RealizeReporter, RealizeRequest, Realized};

/// How often a home changed by another process between our realize and our
/// hold is realized again before giving up.
const ATTEMPTS: usize = 5;

/// Proof that a home is in use; the home is not changed while it lives.
#[derive(Debug)]
pub struct HomeInUse {
    _lock: FileLock,
}

/// Realizes the version (warm path first) and holds its home in shared mode,
/// checking under the hold that the home is still the one realized (another
/// process may have realized a different lock into it in between; then it is
/// realized again).
pub fn realize_for_use(
    req: &RealizeRequest<'_>,
    reporter: &dyn RealizeReporter,
) -> Result<(Realized, HomeInUse), RealizeError> {
    let skip = req.skip_models || req.spec.skip_models();
    let mut attempts = 0;
    loop {
        let realized = crate::realize(req, reporter)?;
        let lock = FileLock::acquire_shared(&home_lock(req.layout, &req.home))?;
        attempts += 1;
        if is_warm_for(&req.home, req.lock, req.layout, skip) || attempts >= ATTEMPTS {
            return Ok((realized, HomeInUse { _lock: lock }));
        }
    }
}
