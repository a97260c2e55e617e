//! `comfyver schema`.

use std::process::ExitCode;

use crate::context::Ctx;

pub fn run(_ctx: &Ctx) -> anyhow::Result<ExitCode> {
    print!("{}", comfyver_spec::spec_json_schema());
    Ok(ExitCode::SUCCESS)
}
