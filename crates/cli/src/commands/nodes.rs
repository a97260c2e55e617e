//! `comfyver nodes fetch|list`: the node cache (git mirrors and checkouts);
//! `comfyver nodes classes`: a version's node classes, from its node index.

use std::collections::BTreeMap;

use clap::{Args, Subcommand};
use comfyver_nodes::{NodesOptions, fill_caches};
use serde_json::json;

use crate::context::Ctx;
use crate::diagnostics::Exit;
use crate::output::human_bytes;
use crate::pipeline;
use crate::progress::{StatusLines, short};

/// `comfyver nodes`.
#[derive(Debug, Args)]
pub(crate) struct NodesArgs {
    #[command(subcommand)]
    pub command: NodesCommand,
}

/// The `nodes` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum NodesCommand {
    /// Fill the git mirrors and node checkouts of a version without realizing
    /// it (to pre-warm a shared cache); resolves the version first if needed.
    Fetch(FetchArgs),
    /// List node checkouts in the cache, with the versions that use them.
    List,
    /// List a version's node classes with the pack each comes from (from its
    /// node index, recorded when its ComfyUI first started).
    Classes(ClassesArgs),
}

/// `comfyver nodes classes`.
#[derive(Debug, Args)]
pub(crate) struct ClassesArgs {
    /// The version id.
    pub id: String,
    /// The version's home [default: <cache>/versions/comfy-<id>].
    #[arg(long, value_name = "DIR", env = comfyver_env::COMFY_HOME)]
    pub home: Option<std::path::PathBuf>,
}

/// `comfyver nodes fetch`.
#[derive(Debug, Args)]
pub(crate) struct FetchArgs {
    /// The version id (or a path to a spec file).
    pub id: String,
}

pub(crate) fn run(ctx: &Ctx, args: NodesArgs) -> anyhow::Result<Exit> {
    match args.command {
        NodesCommand::Fetch(a) => fetch(ctx, a),
        NodesCommand::List => list(ctx),
        NodesCommand::Classes(a) => classes(ctx, a),
    }
}

fn classes(ctx: &Ctx, args: ClassesArgs) -> anyhow::Result<Exit> {
    let Some(index) = pipeline::node_index(ctx, &args.id, args.home.as_ref()) else {
        anyhow::bail!(
            "version `{0}` has no node index: it is recorded when its ComfyUI first starts after a realize; \
             run a workflow with `comfyver run {0} --workflow FILE` (or `comfyver test {0}`) first",
            args.id
        );
    };
    if ctx.json {
        let rows: Vec<_> = index
            .classes()
            .iter()
            .map(|(name, c)| {
                json!({"class": name, "pack": c.pack, "python_module": c.python_module,
                       "output_node": c.output_node,
                       "required": c.required.keys().collect::<Vec<_>>(),
                       "optional": c.optional.keys().collect::<Vec<_>>(),
                       "outputs": c.outputs})
            })
            .collect();
        ctx.out
            .json(&json!({"version_id": args.id, "classes": rows}));
        return Ok(Exit::Success);
    }
    ctx.out.data(&format!("{:<48} PACK", "CLASS"));
    for (name, c) in index.classes() {
        ctx.out.data(&format!(
            "{name:<48} {}",
            c.pack.as_deref().unwrap_or("(core)")
        ));
    }
    Ok(Exit::Success)
}

fn fetch(ctx: &Ctx, args: FetchArgs) -> anyhow::Result<Exit> {
    let lock = pipeline::lock_for_id(ctx, &args.id)?;
    let opts = NodesOptions {
        jobs: ctx.jobs,
        offline: ctx.offline,
        rewrites: ctx.rewrites()?,
    };
    // The stored lock is redacted: credentials come from the spec, if it loads.
    let fetch_lock = match ctx.load(&args.id) {
        Ok(loaded) => lock.with_secrets_from(&loaded.spec),
        Err(_) => lock.clone(),
    };
    let nodes = fill_caches(&fetch_lock, &ctx.layout, &opts, &StatusLines(&ctx.out))?;
    if ctx.json {
        let rows: Vec<_> = nodes
            .iter()
            .map(|n| json!({"name": n.name, "slug": n.slug, "commit": n.commit, "path": n.path}))
            .collect();
        ctx.out
            .json(&json!({"version_id": lock.version_id, "custom_nodes": rows}));
    } else {
        ctx.out.info(&format!(
            "{}: core commit {} in its mirror, {} node checkout(s) ready in {}",
            lock.version_id,
            short(&lock.comfy.commit),
            nodes.len(),
            ctx.layout.custom_nodes_dir().display()
        ));
    }
    Ok(Exit::Success)
}

fn list(ctx: &Ctx) -> anyhow::Result<Exit> {
    let users = users_by_entry(ctx)?;
    let mut rows = Vec::new();
    for entry in comfyver_nodes::cache_entries(&ctx.layout)? {
        rows.push(json!({
            "entry": entry.name,
            "complete": entry.complete,
            "size": entry.own_bytes(),
            "versions": users.get(&entry.name).cloned().unwrap_or_default(),
            "path": entry.path,
        }));
    }
    rows.sort_by(|a, b| a["entry"].as_str().cmp(&b["entry"].as_str()));
    if ctx.json {
        ctx.out.json(&json!(rows));
        return Ok(Exit::Success);
    }
    ctx.out.data(&format!(
        "{:<60} {:<10} {:>10}  VERSIONS",
        "ENTRY", "STATE", "SIZE"
    ));
    for r in &rows {
        let versions: Vec<&str> = r["versions"]
            .as_array()
            .map(|v| v.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        ctx.out.data(&format!(
            "{:<60} {:<10} {:>10}  {}",
            r["entry"].as_str().unwrap_or(""),
            if r["complete"] == true {
                "complete"
            } else {
                "partial"
            },
            human_bytes(r["size"].as_u64().unwrap_or(0)),
            if versions.is_empty() {
                "-".to_string()
            } else {
                versions.join(", ")
            }
        ));
    }
    Ok(Exit::Success)
}

/// `<slug>@<commit>` → the ids of the resolved versions whose lock uses it
/// (a lock that cannot be read is named in a warning).
fn users_by_entry(ctx: &Ctx) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let scan = comfyver_resolver::locks(&ctx.layout)?;
    for (path, err) in &scan.unreadable {
        ctx.out.warn(&format!("skipping {}: {err}", path.display()));
    }
    Ok(comfyver_nodes::users_by_entry(&scan.locks))
}
