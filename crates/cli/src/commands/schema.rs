//! `comfyver schema`.

use crate::context::Ctx;
use crate::diagnostics::Exit;

pub(crate) fn run(_ctx: &Ctx) -> anyhow::Result<Exit> {
    print!("{}", comfyver_spec::spec_json_schema());
    Ok(Exit::Success)
}
