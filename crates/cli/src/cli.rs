//! Argument definitions (clap derive). Global flags are accepted before or
//! after the subcommand.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;

/// Reproducible, fast ComfyUI environments from small version files.
#[derive(Debug, Parser)]
#[command(name = "comfyver", version, about, propagate_version = true)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub(crate) struct GlobalArgs {
    /// Directory holding the version specs (`<id>.json`).
    #[arg(long, global = true, env = comfyver_env::COMFY_VERSIONS_DIR, value_name = "DIR")]
    pub versions_dir: Option<PathBuf>,
    /// Cache root [default: /runpod-volume/.comfy-cache on RunPod, else ~/.comfy-cache].
    #[arg(long, global = true, env = comfyver_env::COMFY_CACHE, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Shared model store [default: <cache>/models].
    #[arg(long, global = true, env = comfyver_env::MODELS_DIR, value_name = "DIR")]
    pub models_dir: Option<PathBuf>,
    /// Node checkout cache [default: <cache>/custom_nodes].
    #[arg(long, global = true, env = comfyver_env::CUSTOM_NODES_CACHE, value_name = "DIR")]
    pub custom_nodes_dir: Option<PathBuf>,
    /// Use no network: only the lock, mirrors and stores already on disk.
    #[arg(long, global = true, env = comfyver_env::COMFYVER_OFFLINE)]
    pub offline: bool,
    /// At most this many git fetches, checkouts and downloads at once.
    #[arg(
        long,
        short = 'j',
        global = true,
        value_name = "N",
        default_value_t = 4,
        env = comfyver_env::COMFYVER_JOBS
    )]
    pub jobs: usize,
    /// More output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,
    /// Only errors and the command's data.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// When to use colors.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    pub color: ColorChoice,
    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
}

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ColorChoice {
    /// Colors when stderr is a terminal and NO_COLOR is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check version specs and report every problem with its JSON path.
    Validate(commands::validate::ValidateArgs),
    /// List the versions in the versions directory.
    List,
    /// Show a version: its spec and, once resolved, its locked commits.
    Show(commands::show::ShowArgs),
    /// Print the JSON Schema of a version spec.
    Schema,
    /// The node cache: fill it for a version (`fetch`) or inspect it (`list`).
    Nodes(commands::nodes::NodesArgs),
    /// Resolve refs to exact commits and write the version's lock.
    Resolve(commands::resolve::ResolveArgs),
    /// The shared model store: download a version's models (`fetch`), check
    /// them (`verify`), list the store (`list`), remove unused files (`gc`).
    Models(commands::models::ModelsArgs),
    /// Put a version on disk: core, node links, models, Python environment.
    Realize(commands::realize::RealizeArgs),
    /// Check a realized home against its lock (commits, links, models, packages).
    Verify(commands::realize::VerifyArgs),
    /// Delete a version's home (never anything in the shared caches), or
    /// `remove node|model ID NAME` from a spec.
    Remove(commands::edit::RemoveCommand),
    /// Remove node checkouts, mirrors and models no lock references (dry run unless --yes).
    Gc(commands::realize::GcArgs),
    /// Compare two environments (version ids, lock files or realized homes);
    /// exit 1 when they differ.
    Diff(commands::diff::DiffArgs),
    /// Run a workflow on a version: resolve, realize, start ComfyUI, run, stop.
    Run(commands::run::RunArgs),
    /// Smoke-test a version with a workflow (`--expect-outputs N`).
    Test(commands::run::TestArgs),
    /// Open a version's ComfyUI web UI: realize if needed, run ComfyUI in the
    /// foreground, print its URL; Ctrl-C stops it.
    Launch(commands::launch::LaunchArgs),
    /// Write a new version spec with the core only.
    New(commands::edit::NewArgs),
    /// Add a custom node (`add node ID REPO[@REF]`) or a model (`add model ID URL`) to a spec.
    Add(commands::edit::AddArgs),
    /// Start a new version from an existing one.
    Copy(commands::edit::CopyArgs),
    /// A version from a Manager snapshot, a live ComfyUI folder or a build definition; or a workflow's packs into a version.
    Import(commands::import::ImportArgs),
    /// A version as a ComfyUI-Manager snapshot or a Comfy build definition.
    Export(commands::import::ExportArgs),
    /// A schema 1 spec or an old per-tag lockfile → a schema 2 spec and its lock.
    Migrate(commands::import::MigrateArgs),
    /// Keep ComfyUI warm and run jobs: RunPod worker (RUNPOD_WEBHOOK_GET_JOB set) or a local job API.
    Serve(commands::serve::ServeArgs),
    /// The original plan's spelling: `handler run --version-id <id> --workflow <wf>`.
    #[command(hide = true)]
    Handler(commands::run::HandlerArgs),
}
