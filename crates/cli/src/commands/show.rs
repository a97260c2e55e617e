//! `comfyver show <id>`.

use clap::Args;
use serde_json::json;

use crate::context::Ctx;
use crate::diagnostics::Exit;

#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The version id (or a path to a spec file).
    pub id: String,
}

pub(crate) fn run(ctx: &Ctx, args: ShowArgs) -> anyhow::Result<Exit> {
    let loaded = ctx.load(&args.id)?;
    let spec = &loaded.spec;
    let lock = comfyver_resolver::read_lock(&ctx.layout, &spec.version_id)?;
    if ctx.json {
        let mut v = json!({"spec": spec.redacted(), "spec_path": loaded.path, "spec_digest": spec.digest().as_str()});
        v["lock"] = serde_json::to_value(&lock)?;
        v["lock_current"] = lock.as_ref().is_some_and(|l| l.matches(spec)).into();
        ctx.out.json(&v);
        return Ok(Exit::Success);
    }
    let o = &ctx.out;
    o.data(&format!("version   {}", spec.version_id));
    if let Some(d) = &spec.description {
        o.data(&format!("about     {d}"));
    }
    o.data(&format!("spec      {}", loaded.path.display()));
    o.data(&format!(
        "comfy     {} @ {}",
        redact(&spec.comfy.repo),
        pin(spec.comfy.git_ref.as_deref(), spec.comfy.commit.as_deref())
    ));
    for n in &spec.custom_nodes {
        o.data(&format!(
            "node      {:<28} {} @ {}",
            n.effective_name(),
            redact(&n.repo),
            pin(n.git_ref.as_deref(), n.commit.as_deref())
        ));
    }
    for m in &spec.models {
        o.data(&format!(
            "model     {:<28} {}",
            m.relative_path(),
            redact(&m.source)
        ));
    }
    match &lock {
        None => o.data(&format!(
            "lock      not resolved yet (run `comfyver resolve {}`)",
            spec.version_id
        )),
        Some(lock) => {
            let state = if lock.matches(spec) {
                "current"
            } else {
                "stale: the spec changed since; run `comfyver resolve`"
            };
            o.data(&format!(
                "lock      {} ({state})",
                ctx.layout.lock_file(&spec.version_id).display()
            ));
            o.data(&format!("locked    {:<28} {}", "comfy", lock.comfy.commit));
            for n in &lock.custom_nodes {
                o.data(&format!(
                    "locked    {:<28} {}",
                    n.name.as_deref().unwrap_or_default(),
                    n.commit
                ));
            }
        }
    }
    Ok(Exit::Success)
}

fn pin(r: Option<&str>, c: Option<&str>) -> String {
    match (c, r) {
        (Some(c), _) => c.to_string(),
        (None, Some(r)) => r.to_string(),
        (None, None) => "HEAD".to_string(),
    }
}

fn redact(s: &str) -> String {
    comfyver_spec::redact(s)
}
