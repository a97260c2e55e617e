//! `comfyver new`, `add node|model`, `remove node|model` (and `remove <id>`,
//! which deletes a home) and `copy`: editing specs in place.

use clap::{Args, Subcommand};
use comfyver_import::{Preview, Workspace, Written};
use serde_json::json;

use crate::commands::realize;
use crate::context::Ctx;
use crate::diagnostics::Exit;

#[derive(Debug, Args)]
pub(crate) struct NewArgs {
    /// The new version's id.
    pub id: String,
    /// The ComfyUI core as REPO[@REF] [default: the upstream ComfyUI repository].
    #[arg(long, value_name = "REPO[@REF]")]
    pub comfy: Option<String>,
    /// The spec's description.
    #[arg(long)]
    pub description: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct AddArgs {
    #[command(subcommand)]
    pub what: AddWhat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AddWhat {
    /// Add a custom node pack: `add node ID REPO[@REF]`.
    Node {
        /// The version id.
        id: String,
        /// The pack's repository, optionally `@branch`, `@tag` or `@commit`.
        #[arg(value_name = "REPO[@REF]")]
        repo: String,
        /// Directory name under custom_nodes/ [default: the repo's name].
        #[arg(long)]
        name: Option<String>,
    },
    /// Add a model: `add model ID URL [--to FOLDER] [--sha256 HEX]`.
    Model {
        /// The version id.
        id: String,
        /// http(s) URL, hf://owner/repo/path[@rev], file:// URL or absolute path.
        url: String,
        /// ComfyUI model folder (e.g. loras) [default: checkpoints].
        #[arg(long, value_name = "FOLDER")]
        to: Option<String>,
        /// Expected SHA-256 of the file.
        #[arg(long, value_name = "HEX")]
        sha256: Option<String>,
        /// File name in the store [default: from the URL].
        #[arg(long)]
        name: Option<String>,
    },
}

/// `remove <id>` deletes a version's home; `remove node|model` edits a spec.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct RemoveCommand {
    #[command(subcommand)]
    pub what: Option<RemoveWhat>,
    /// The version id whose home to delete.
    #[arg(required = true)]
    pub id: Option<String>,
    /// The version's home (default as for `realize`).
    #[arg(long, value_name = "DIR", env = "COMFY_HOME")]
    pub home: Option<std::path::PathBuf>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RemoveWhat {
    /// Remove a custom node from a spec: `remove node ID NAME`.
    Node {
        /// The version id.
        id: String,
        /// The node's directory name.
        name: String,
    },
    /// Remove a model from a spec: `remove model ID NAME` (file name or folder/name).
    Model {
        /// The version id.
        id: String,
        /// The model's file name, or `folder/name`.
        name: String,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CopyArgs {
    /// The version to copy.
    pub id: String,
    /// The new version's id.
    pub new: String,
}

/// The versions directory, cache and resolver settings of this invocation.
pub(crate) fn workspace(ctx: &Ctx) -> anyhow::Result<Workspace> {
    Ok(Workspace {
        versions_dir: ctx.versions_dir.clone(),
        layout: ctx.layout.clone(),
        resolve: ctx.resolve_options(None)?,
    })
}

pub(crate) fn new(ctx: &Ctx, args: NewArgs) -> anyhow::Result<Exit> {
    let w = comfyver_import::new_version(
        &workspace(ctx)?,
        &args.id,
        args.comfy.as_deref(),
        args.description.as_deref(),
    )?;
    print_written(ctx, &w);
    Ok(Exit::Success)
}

pub(crate) fn add(ctx: &Ctx, args: AddArgs) -> anyhow::Result<Exit> {
    let ws = workspace(ctx)?;
    let w = match args.what {
        AddWhat::Node { id, repo, name } => {
            comfyver_import::add_node(&ws, &id, &repo, name.as_deref())?
        }
        AddWhat::Model {
            id,
            url,
            to,
            sha256,
            name,
        } => comfyver_import::add_model(
            &ws,
            &id,
            &url,
            to.as_deref(),
            sha256.as_deref(),
            name.as_deref(),
        )?,
    };
    print_written(ctx, &w);
    Ok(Exit::Success)
}

pub(crate) fn remove(ctx: &Ctx, args: RemoveCommand) -> anyhow::Result<Exit> {
    let w = match (args.what, args.id) {
        (Some(RemoveWhat::Node { id, name }), _) => {
            comfyver_import::remove_node(&workspace(ctx)?, &id, &name)?
        }
        (Some(RemoveWhat::Model { id, name }), _) => {
            comfyver_import::remove_model(&workspace(ctx)?, &id, &name)?
        }
        (None, Some(id)) => {
            let home = args.home;
            return realize::remove(ctx, realize::RemoveArgs { id, home });
        }
        (None, None) => anyhow::bail!(
            "say what to remove: `comfyver remove <id>` (a version's home), `remove node <id> <name>` or `remove model <id> <name>`"
        ),
    };
    print_written(ctx, &w);
    Ok(Exit::Success)
}

pub(crate) fn copy(ctx: &Ctx, args: CopyArgs) -> anyhow::Result<Exit> {
    let w = comfyver_import::copy_version(&workspace(ctx)?, &args.id, &args.new)?;
    print_written(ctx, &w);
    Ok(Exit::Success)
}

/// What a write did, the notes, and what `resolve` would change.
pub(crate) fn print_written(ctx: &Ctx, w: &Written) {
    let preview = match &w.preview {
        None => json!(null),
        Some(Preview::Changes(c)) => json!(c.iter().map(|c| c.to_string()).collect::<Vec<_>>()),
        Some(Preview::Unavailable(e)) => json!({"error": e.to_string()}),
    };
    if ctx.json {
        ctx.out.json(&json!({
            "version_id": w.spec.version_id,
            "path": w.path,
            "changed": w.changed,
            "done": w.done,
            "notes": w.notes,
            "resolve_would_change": preview,
        }));
        return;
    }
    let o = &ctx.out;
    for d in &w.done {
        o.data(d);
    }
    for n in &w.notes {
        o.warn(n);
    }
    if w.changed {
        o.info(&format!("wrote {}", w.path.display()));
    } else {
        o.info(&format!("{} unchanged", w.path.display()));
    }
    match &w.preview {
        None => {}
        Some(Preview::Changes(c)) if c.is_empty() => o.info("resolve would change nothing"),
        Some(Preview::Changes(c)) => {
            o.info(&format!(
                "`comfyver resolve {}` would change:",
                w.spec.version_id
            ));
            for c in c {
                o.info(&format!("  {c}"));
            }
        }
        Some(Preview::Unavailable(e)) => o.warn(&format!("could not preview the resolve: {e}")),
    }
}
