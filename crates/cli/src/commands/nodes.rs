//! `comfyver nodes fetch|list`: the node cache (git mirrors and checkouts).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use comfyver_nodes::{NodesOptions, fill_caches, is_checkout_complete};
use comfyver_spec::{RepoUrl, ResolvedLock};
use serde_json::json;

use crate::context::Ctx;
use crate::output::human_bytes;
use crate::progress::{StatusLines, short};

/// `comfyver nodes`.
#[derive(Debug, Args)]
pub struct NodesArgs {
    #[command(subcommand)]
    pub command: NodesCommand,
}

/// The `nodes` subcommands.
#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Fill the git mirrors and node checkouts of a resolved version without
    /// realizing it (to pre-warm a shared cache).
    Fetch(FetchArgs),
    /// List node checkouts in the cache, with the versions that use them.
    List,
}

/// `comfyver nodes fetch`.
#[derive(Debug, Args)]
pub struct FetchArgs {
    /// The version id (its lock must exist: run `comfyver resolve <id>` first).
    pub id: String,
    /// At most this many fetches and checkouts at once.
    #[arg(short, long, env = "COMFYVER_JOBS", default_value_t = 4)]
    pub jobs: usize,
}

pub fn run(ctx: &Ctx, args: NodesArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        NodesCommand::Fetch(a) => fetch(ctx, a),
        NodesCommand::List => list(ctx),
    }
}

fn fetch(ctx: &Ctx, args: FetchArgs) -> anyhow::Result<ExitCode> {
    if let Some(reason) = comfyver_spec::names::version_id_reason(&args.id) {
        anyhow::bail!("`{}` is not a version id: {reason}", args.id);
    }
    let Some(lock) = comfyver_resolver::read_lock(&ctx.layout, &args.id)? else {
        anyhow::bail!(
            "version `{}` is not resolved yet ({} does not exist); run `comfyver resolve {}` first",
            args.id,
            ctx.layout.lock_file(&args.id).display(),
            args.id
        );
    };
    let opts = NodesOptions {
        jobs: args.jobs.max(1),
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
            .json(&json!({"version_id": args.id, "custom_nodes": rows}));
    } else {
        ctx.out.info(&format!(
            "{}: core commit {} in its mirror, {} node checkout(s) ready in {}",
            args.id,
            short(&lock.comfy.commit),
            nodes.len(),
            ctx.layout.custom_nodes_dir().display()
        ));
    }
    Ok(ExitCode::SUCCESS)
}

fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let users = users_by_entry(ctx);
    let mut rows = Vec::new();
    if let Ok(entries) = std::fs::read_dir(ctx.layout.custom_nodes_dir()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || !name.contains('@') {
                continue;
            }
            let path = entry.path();
            rows.push(json!({
                "entry": name,
                "complete": is_checkout_complete(&path),
                "size": dir_size(&path),
                "versions": users.get(&name).cloned().unwrap_or_default(),
                "path": path,
            }));
        }
    }
    rows.sort_by(|a, b| a["entry"].as_str().cmp(&b["entry"].as_str()));
    if ctx.json {
        ctx.out.json(&json!(rows));
        return Ok(ExitCode::SUCCESS);
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
    Ok(ExitCode::SUCCESS)
}

/// `<slug>@<commit>` → the ids of the resolved versions whose lock uses it.
fn users_by_entry(ctx: &Ctx) -> BTreeMap<String, Vec<String>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(ctx.layout.resolved_dir()) else {
        return users;
    };
    let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if !path.to_string_lossy().ends_with(".lock.json") {
            continue;
        }
        let lock = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| ResolvedLock::from_json(&b, &path).map_err(|e| e.to_string()))
        {
            Ok(l) => l,
            Err(e) => {
                ctx.out.warn(&format!("skipping {}: {e}", path.display()));
                continue;
            }
        };
        for node in &lock.custom_nodes {
            if let Ok(url) = RepoUrl::parse(&node.repo) {
                let key = format!("{}@{}", url.slug(), node.commit.to_ascii_lowercase());
                let ids = users.entry(key).or_default();
                if !ids.contains(&lock.version_id) {
                    ids.push(lock.version_id.clone());
                }
            }
        }
    }
    users
}

/// Bytes of the regular files under `path` (symlinks not followed).
fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
