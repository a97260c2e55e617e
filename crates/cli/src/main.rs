//! `comfyver`: the command-line composition of comfyver's libraries.
//!
//! Each command group lives in `commands/<group>.rs`; this file only parses
//! arguments, runs the command and turns its outcome into an exit code:
//! 0 success, 1 user error (bad input, unreachable source, failed check),
//! 2 internal error (a bug: a panic).

mod cli;
mod commands;
mod context;
mod diagnostics;
mod job_models;
mod output;
mod pipeline;
mod progress;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // One TLS crypto provider for ureq and gix's HTTP transport alike.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let args = cli::Cli::parse();
    let ctx = match context::Ctx::from_args(&args.global) {
        Ok(ctx) => ctx,
        Err(err) => return diagnostics::report(&err, args.global.color).into(),
    };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        commands::run(&ctx, args.command)
    }));
    let exit = match outcome {
        Ok(Ok(exit)) => exit,
        Ok(Err(err)) => diagnostics::report(&err, args.global.color),
        Err(_) => {
            output::stderr_line(
                "error: comfyver hit an internal error (a bug); please report it with the command you ran",
            );
            diagnostics::Exit::Bug
        }
    };
    match ctx.out.stdout_error() {
        // The reader had what it wanted (`| head`): not a failure.
        Some(e) if e.kind() == std::io::ErrorKind::BrokenPipe => exit.into(),
        Some(e) if exit == diagnostics::Exit::Success => {
            let err = anyhow::Error::new(e).context("could not write to stdout");
            diagnostics::report(&err, args.global.color).into()
        }
        _ => exit.into(),
    }
}
