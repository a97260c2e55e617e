//! Renders an error chain as `error:`, `caused by:` and `hint:` lines.

use std::process::ExitCode;

use crate::cli::ColorChoice;
use crate::output::use_color;

/// Prints `err` with its causes and hints; returns exit code 1 (a user-facing
/// failure; bugs panic and exit 2).
pub fn report(err: &anyhow::Error, color: ColorChoice) -> ExitCode {
    if err.chain().any(is_broken_pipe) {
        return ExitCode::SUCCESS;
    }
    let paint = |t: &str, c: &str| {
        if use_color(color) {
            format!("\x1b[1;{c}m{t}\x1b[0m")
        } else {
            t.to_string()
        }
    };
    eprintln!("{}: {err}", paint("error", "31"));
    for cause in err.chain().skip(1) {
        eprintln!("  {}: {cause}", paint("caused by", "33"));
    }
    for hint in hints(err) {
        eprintln!("{}: {hint}", paint("hint", "36"));
    }
    ExitCode::from(1)
}

fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Hints for well-known causes.
fn hints(err: &anyhow::Error) -> Vec<String> {
    let mut out = Vec::new();
    for cause in err.chain() {
        if let Some(comfyver_spec::SpecError::Invalid { .. }) = cause.downcast_ref() {
            out.push(
                "`comfyver schema` prints the JSON Schema; docs/spec.md describes every field"
                    .to_string(),
            );
        }
        if let Some(comfyver_spec::SpecError::Syntax { .. }) = cause.downcast_ref() {
            out.push(
                "check for a missing comma or quote just before the position shown".to_string(),
            );
        }
    }
    out.dedup();
    out
}
