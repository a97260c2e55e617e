//! `comfyver validate [<id>...|--all]`.

use clap::Args;
use serde_json::json;

use crate::context::Ctx;
use crate::diagnostics::Exit;
use crate::diagnostics::Failures;

#[derive(Debug, Args)]
pub(crate) struct ValidateArgs {
    /// Version ids (or paths to spec files).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Every spec in the versions directory.
    #[arg(long)]
    pub all: bool,
}

pub(crate) fn run(ctx: &Ctx, args: ValidateArgs) -> anyhow::Result<Exit> {
    let targets = ctx.targets(&args.ids, args.all)?;
    let mut failures: Vec<(String, anyhow::Error)> = Vec::new();
    let mut reports = Vec::new();
    for target in &targets {
        match ctx.load(target) {
            Ok(loaded) => {
                if !ctx.json {
                    ctx.out.info(&format!(
                        "ok  {} ({})",
                        loaded.spec.version_id,
                        loaded.path.display()
                    ));
                }
                reports.push(json!({
                    "target": target, "ok": true, "version_id": loaded.spec.version_id,
                    "errors": [],
                    "warnings": loaded.warnings.iter().map(|w| json!({"path": w.path, "message": w.message})).collect::<Vec<_>>(),
                }));
            }
            Err(err) => {
                let issues: Vec<_> = err
                    .downcast_ref::<comfyver_spec::SpecError>()
                    .map(|e| {
                        e.issues()
                            .iter()
                            .map(|i| json!({"path": i.path, "message": i.message}))
                            .collect()
                    })
                    .unwrap_or_default();
                reports.push(json!({"target": target, "ok": false, "error": format!("{err:#}"), "errors": issues}));
                failures.push((target.clone(), err));
            }
        }
    }
    if ctx.json {
        ctx.out.json(&json!(reports));
    }
    Failures::finish(failures, targets.len(), ctx.json, |n, of| {
        format!("{n} of {of} spec(s) invalid")
    })
}
