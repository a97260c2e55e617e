//! `comfyver validate [<id>...|--all]`.

use std::process::ExitCode;

use clap::Args;
use serde_json::json;

use crate::context::Ctx;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Version ids (or paths to spec files).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub ids: Vec<String>,
    /// Every spec in the versions directory.
    #[arg(long)]
    pub all: bool,
}

pub fn run(ctx: &Ctx, args: ValidateArgs) -> anyhow::Result<ExitCode> {
    let targets = ctx.targets(&args.ids, args.all)?;
    let mut failed = 0;
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
                failed += 1;
                let issues: Vec<_> = err
                    .downcast_ref::<comfyver_spec::SpecError>()
                    .map(|e| {
                        e.issues()
                            .iter()
                            .map(|i| json!({"path": i.path, "message": i.message}))
                            .collect()
                    })
                    .unwrap_or_default();
                if ctx.json {
                    reports.push(json!({"target": target, "ok": false, "error": format!("{err:#}"), "errors": issues}));
                } else {
                    eprintln!("error: {err}");
                    for cause in err.chain().skip(1) {
                        eprintln!("  caused by: {cause}");
                    }
                }
            }
        }
    }
    if ctx.json {
        ctx.out.json(&json!(reports));
    }
    if failed > 0 {
        if !ctx.json {
            eprintln!("{failed} of {} spec(s) invalid", targets.len());
            eprintln!(
                "hint: `comfyver schema` prints the JSON Schema; docs/spec.md describes every field"
            );
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}
