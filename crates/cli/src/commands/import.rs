//! `comfyver import snapshot|build|install|workflow`, `export snapshot|build` and `migrate`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use comfyver_import::{BuildOptions, InstallOptions, PipsAs, SnapshotOptions, WorkflowOptions};
use serde_json::json;

use crate::commands::edit::{print_written, workspace};
use crate::context::Ctx;
use crate::diagnostics::Exit;
use crate::pipeline;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    #[command(subcommand)]
    pub what: ImportWhat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImportWhat {
    /// A ComfyUI-Manager snapshot → a new version pinned to the same commits.
    Snapshot {
        /// The snapshot, as Manager's `save-snapshot` writes it: JSON, or YAML (`.yaml`/`.yml`, as with `--output x.yaml` or comfy-cli's `snapshot save`).
        file: PathBuf,
        /// The new version's id.
        #[arg(long)]
        id: String,
        /// The core repository as REPO[@REF] (the snapshot records only the commit).
        #[arg(long, value_name = "REPO[@REF]")]
        comfy: Option<String>,
        /// A local custom-node-list.json or extension-node-map.json mapping registry
        /// ids to repositories (repeatable).
        #[arg(long, value_name = "FILE")]
        node_map: Vec<PathBuf>,
        /// Where the snapshot's `pips` go.
        #[arg(long, value_enum, default_value_t = PipsArg::Constraints)]
        pips: PipsArg,
    },
    /// A comfy-cli build definition (`comfy build scan`) → a new version.
    Build {
        /// The definition, JSON or YAML (`.yaml`/`.yml`): bare, the scan's `--json` payload, or comfy-cli's build file.
        file: PathBuf,
        /// The new version's id [default: the build file's `id`, else the file's stem].
        #[arg(long)]
        id: Option<String>,
        /// The core repository (a definition names only the core's version).
        #[arg(long, value_name = "REPO")]
        comfy: Option<String>,
    },
    /// A live ComfyUI folder → a new version pinned to the commits it has
    /// checked out, locked with its venv's packages; its models are adopted
    /// into the model store (hard link on the same filesystem, else a copy).
    Install {
        /// The ComfyUI folder (a git checkout, with custom_nodes/, models/ and a venv).
        dir: PathBuf,
        /// The new version's id.
        #[arg(long)]
        id: String,
        /// The install's venv or its Python interpreter [default: DIR/venv, else DIR/.venv].
        #[arg(long, value_name = "PATH")]
        python: Option<PathBuf>,
        /// A local custom-node-list.json or extension-node-map.json mapping registry
        /// ids to repositories, for registry installs (repeatable).
        #[arg(long, value_name = "FILE")]
        node_map: Vec<PathBuf>,
    },
    /// The packs a UI-format workflow needs → added to a version.
    Workflow {
        /// The workflow (the frontend's Save, not Export (API)).
        file: PathBuf,
        /// The version to add them to.
        #[arg(long)]
        into: String,
        /// A local custom-node-list.json or extension-node-map.json (repeatable).
        #[arg(long, value_name = "FILE")]
        node_map: Vec<PathBuf>,
        /// The base URL an `aux_id` (owner/repo) is appended to.
        #[arg(long, value_name = "URL", default_value = "https://github.com")]
        aux_base: String,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum PipsArg {
    /// `name==version` pins become python.constraints (URLs become requirements).
    Constraints,
    /// Every entry becomes a python requirement.
    Requirements,
    /// Ignore them.
    Skip,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(subcommand)]
    pub what: ExportWhat,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ExportWhat {
    /// A ComfyUI-Manager snapshot of a version's lock, on stdout.
    Snapshot {
        /// The version id (resolved).
        id: String,
    },
    /// A comfy-cli build definition of a version's spec (JSON on stdout by default).
    Build {
        /// The version id.
        id: String,
        /// Write it to FILE instead: YAML when it ends in `.yaml`/`.yml`, else JSON.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// A schema 1 spec or an old `lockfiles/comfy-<tag>.lock.json`.
    pub file: PathBuf,
    /// The new version's id [default: the file's version_id, else its tag or stem].
    #[arg(long)]
    pub id: Option<String>,
    /// The core repository when the old file records only a commit.
    #[arg(long, value_name = "REPO")]
    pub comfy: Option<String>,
}

pub(crate) fn import(ctx: &Ctx, args: ImportArgs) -> anyhow::Result<Exit> {
    let ws = workspace(ctx)?;
    match args.what {
        ImportWhat::Snapshot {
            file,
            id,
            comfy,
            node_map,
            pips,
        } => {
            let opts = SnapshotOptions {
                comfy,
                node_maps: node_map,
                pips: match pips {
                    PipsArg::Constraints => PipsAs::Constraints,
                    PipsArg::Requirements => PipsAs::Requirements,
                    PipsArg::Skip => PipsAs::Skip,
                },
            };
            let w = comfyver_import::import_snapshot(&ws, &file, &id, &opts)?;
            print_written(ctx, &w);
        }
        ImportWhat::Build { file, id, comfy } => {
            let opts = BuildOptions {
                id,
                comfy_repo: comfy,
            };
            let w = comfyver_import::import_build(&ws, &file, &opts)?;
            print_written(ctx, &w);
        }
        ImportWhat::Install {
            dir,
            id,
            python,
            node_map,
        } => {
            let opts = InstallOptions {
                python,
                node_maps: node_map,
            };
            let w = comfyver_import::import_install(&ws, &dir, &id, &opts)?;
            print_written(ctx, &w);
        }
        ImportWhat::Workflow {
            file,
            into,
            node_map,
            aux_base,
        } => {
            // The classes the version provides, when its ComfyUI has run once.
            let provided = pipeline::node_index(ctx, &into, None)
                .map(|index| {
                    index
                        .classes()
                        .iter()
                        .map(|(name, class)| (name.clone(), class.pack.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let opts = WorkflowOptions {
                node_maps: node_map,
                aux_base,
                provided,
            };
            let (w, found) = comfyver_import::import_workflow(&ws, &file, &into, &opts)?;
            if ctx.json {
                ctx.out.json(&json!({
                    "version_id": w.spec.version_id, "path": w.path, "changed": w.changed,
                    "done": w.done, "notes": w.notes, "missing_models": found.missing_models,
                    "provided": found.provided, "skipped": found.skipped,
                }));
                return Ok(Exit::Success);
            }
            print_written(ctx, &w);
            let mut by_pack: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
            for (class, pack) in &found.provided {
                by_pack
                    .entry(pack.as_deref().unwrap_or("core"))
                    .or_default()
                    .push(class);
            }
            for (pack, classes) in by_pack {
                ctx.out.data(&format!(
                    "provided by {into} ({pack}): {}",
                    classes.join(", ")
                ));
            }
            if !found.skipped.is_empty() {
                ctx.out.info(&format!(
                    "skipped UI-only nodes: {}",
                    found.skipped.join(", ")
                ));
            }
            for m in &found.missing_models {
                let folder = m.folder.as_deref().unwrap_or("?");
                let hint = match &m.url {
                    Some(u) => format!(": comfyver add model {into} {u} --to {folder}"),
                    None => String::new(),
                };
                let written = match &m.written_as {
                    Some(w) => format!(" (written `{w}` in the workflow)"),
                    None => String::new(),
                };
                ctx.out.data(&format!(
                    "missing model {folder}/{}{written} (used by {}){hint}",
                    m.name, m.node
                ));
            }
        }
    }
    Ok(Exit::Success)
}

pub(crate) fn export(ctx: &Ctx, args: ExportArgs) -> anyhow::Result<Exit> {
    match args.what {
        ExportWhat::Snapshot { id } => {
            let snapshot = comfyver_import::export_snapshot(&workspace(ctx)?, &id)?;
            ctx.out.json(&snapshot);
        }
        ExportWhat::Build { id, output } => {
            let b = comfyver_import::export_build(&workspace(ctx)?, &id)?;
            for n in &b.notes {
                ctx.out.warn(&format!("not exported: {n}"));
            }
            match output {
                None => ctx.out.json(&b.definition),
                Some(path) => {
                    let is_yaml = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                        e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml")
                    });
                    let text = if is_yaml {
                        comfyver_import::to_yaml(&b.definition)?
                    } else {
                        let mut t = serde_json::to_string_pretty(&b.definition)?;
                        t.push('\n');
                        t
                    };
                    comfyver_fs::write_atomic(&path, text.as_bytes())?;
                    ctx.out.info(&format!("wrote {}", path.display()));
                }
            }
        }
    }
    Ok(Exit::Success)
}

pub(crate) fn migrate(ctx: &Ctx, args: MigrateArgs) -> anyhow::Result<Exit> {
    let w = comfyver_import::migrate(
        &workspace(ctx)?,
        &args.file,
        args.id.as_deref(),
        args.comfy.as_deref(),
    )?;
    print_written(ctx, &w);
    Ok(Exit::Success)
}
