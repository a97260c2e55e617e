//! `comfyver list`.

use serde_json::json;

use crate::context::Ctx;
use crate::diagnostics::Exit;

pub(crate) fn run(ctx: &Ctx) -> anyhow::Result<Exit> {
    let mut rows = Vec::new();
    let mut invalid = 0;
    for path in ctx.all_spec_paths()? {
        match comfyver_spec::load_spec(&path) {
            Ok(l) => {
                let s = &l.spec;
                let pin = s
                    .comfy
                    .commit
                    .clone()
                    .or(s.comfy.git_ref.clone())
                    .unwrap_or_else(|| "HEAD".into());
                rows.push(json!({
                    "version_id": s.version_id,
                    "description": s.description,
                    "comfy": pin,
                    "custom_nodes": s.custom_nodes.len(),
                    "models": s.models.len(),
                }));
            }
            Err(e) => {
                invalid += 1;
                ctx.out.warn(&format!(
                    "{} is invalid (run `comfyver validate` for details): {}",
                    path.display(),
                    first_line(&e.to_string())
                ));
            }
        }
    }
    if ctx.json {
        ctx.out.json(&json!(rows));
    } else {
        ctx.out.data(&format!(
            "{:<28} {:<14} {:>5} {:>6}  {}",
            "VERSION", "COMFY", "NODES", "MODELS", "DESCRIPTION"
        ));
        for r in &rows {
            ctx.out.data(&format!(
                "{:<28} {:<14} {:>5} {:>6}  {}",
                r["version_id"].as_str().unwrap_or(""),
                short(r["comfy"].as_str().unwrap_or("")),
                r["custom_nodes"].as_u64().unwrap_or(0),
                r["models"].as_u64().unwrap_or(0),
                r["description"].as_str().unwrap_or("")
            ));
        }
    }
    Ok(if invalid > 0 {
        Exit::Failure
    } else {
        Exit::Success
    })
}

fn short(s: &str) -> &str {
    if comfyver_spec::is_full_commit(s) {
        &s[..12]
    } else {
        s
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}
