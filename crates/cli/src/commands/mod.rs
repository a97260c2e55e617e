//! One module per command group.

pub(crate) mod diff;
pub(crate) mod edit;
pub(crate) mod import;
pub(crate) mod launch;
pub(crate) mod list;
pub(crate) mod models;
pub(crate) mod nodes;
pub(crate) mod realize;
pub(crate) mod resolve;
pub(crate) mod run;
pub(crate) mod schema;
pub(crate) mod serve;
mod session_flags;
pub(crate) mod show;
pub(crate) mod validate;

use crate::cli::Command;
use crate::context::Ctx;
use crate::diagnostics::Exit;

/// Runs one command.
pub(crate) fn run(ctx: &Ctx, command: Command) -> anyhow::Result<Exit> {
    match command {
        Command::Validate(args) => validate::run(ctx, args),
        Command::List => list::run(ctx),
        Command::Show(args) => show::run(ctx, args),
        Command::Schema => schema::run(ctx),
        Command::Nodes(args) => nodes::run(ctx, args),
        Command::Resolve(args) => resolve::run(ctx, args),
        Command::Models(args) => models::run(ctx, args),
        Command::Realize(args) => realize::realize(ctx, args),
        Command::Verify(args) => realize::verify(ctx, args),
        Command::Remove(args) => edit::remove(ctx, args),
        Command::Gc(args) => realize::gc(ctx, args),
        Command::Diff(args) => diff::run(ctx, args),
        Command::Run(args) => run::run(ctx, args),
        Command::Test(args) => run::test(ctx, args),
        Command::Launch(args) => launch::run(ctx, args),
        Command::New(args) => edit::new(ctx, args),
        Command::Add(args) => edit::add(ctx, args),
        Command::Copy(args) => edit::copy(ctx, args),
        Command::Import(args) => import::import(ctx, args),
        Command::Export(args) => import::export(ctx, args),
        Command::Migrate(args) => import::migrate(ctx, args),
        Command::Serve(args) => serve::run(ctx, args),
        Command::Handler(args) => run::handler(ctx, args),
    }
}
