//! `comfyver diff A B`: two environments compared, each a version id (its
//! lock), a lock file or a realized home.

use std::path::Path;

use clap::Args;
use comfyver_spec::{ResolvedLock, lock_diff};
use serde_json::json;

use crate::context::Ctx;
use crate::diagnostics::Exit;

#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The left side: a version id, a lock file or a realized home directory.
    pub left: String,
    /// The right side: a version id, a lock file or a realized home directory.
    pub right: String,
}

pub(crate) fn run(ctx: &Ctx, args: DiffArgs) -> anyhow::Result<Exit> {
    let left = side(ctx, &args.left)?;
    let right = side(ctx, &args.right)?;
    let diff = lock_diff(&left, &right);
    if ctx.json {
        ctx.out.json(&json!({
            "left": args.left,
            "right": args.right,
            "equal": diff.is_empty(),
            "changes": diff.changes,
        }));
    } else {
        for c in &diff.changes {
            let what = match (&c.left, &c.right) {
                (Some(l), Some(r)) => format!("{l}  →  {r}"),
                (Some(l), None) => format!("- {l}"),
                (None, Some(r)) => format!("+ {r}"),
                (None, None) => String::new(),
            };
            ctx.out.data(&format!(
                "{:<7} {:<8} {:<28} {what}",
                c.section, c.change, c.name
            ));
        }
        if diff.is_empty() {
            ctx.out
                .info(&format!("{} and {} are equal", args.left, args.right));
        } else {
            ctx.out.info(&format!(
                "{} difference(s) between {} and {}",
                diff.changes.len(),
                args.left,
                args.right
            ));
        }
    }
    Ok(if diff.is_empty() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// A side: an existing directory is a home, an existing file a lock, anything
/// else a version id whose lock is read.
fn side(ctx: &Ctx, arg: &str) -> anyhow::Result<ResolvedLock> {
    let path = Path::new(arg);
    if path.is_dir() {
        let home = comfyver_realize::Home::new(std::path::absolute(path)?);
        return Ok(comfyver_realize::describe_home(&home, &ctx.layout)?);
    }
    if path.is_file() {
        return read_lock_file(path);
    }
    if let Some(reason) = comfyver_spec::names::version_id_reason(arg) {
        anyhow::bail!(
            "`{arg}` is neither a file, a directory nor a version id ({reason}): name a version id, a lock file or a realized home"
        );
    }
    comfyver_resolver::read_lock(&ctx.layout, arg)?.ok_or_else(|| {
        anyhow::anyhow!("version `{arg}` is not resolved yet: run `comfyver resolve {arg}` first")
    })
}

/// Reads a lock file the user named.
pub(crate) fn read_lock_file(path: &Path) -> anyhow::Result<ResolvedLock> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::Error::new(e).context(format!("could not read {}", path.display())))?;
    Ok(ResolvedLock::from_json(&bytes, path)?)
}
