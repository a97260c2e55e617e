//! One module per command group.

pub mod diff;
pub mod edit;
pub mod import;
pub mod list;
pub mod models;
pub mod nodes;
pub mod realize;
pub mod resolve;
pub mod run;
pub mod schema;
pub mod serve;
pub mod show;
pub mod validate;

use crate::cli::Command;
use crate::context::Ctx;
use crate::diagnostics::Exit;

/// Runs one command.
pub fn run(ctx: &Ctx, command: Command) -> anyhow::Result<Exit> {
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
