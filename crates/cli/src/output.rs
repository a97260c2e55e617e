//! stdout carries data only; messages, warnings and progress go to stderr.
//!
//! A reader that goes away (a closed pipe, a full disk) never stops the work
//! whose output it reads: stderr lines that cannot be written are dropped,
//! and the first failed write to stdout is kept for [`Printer::stdout_error`]
//! (the command goes on; its exit then says what happened).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use crate::cli::ColorChoice;

/// Writes messages according to `-q`/`-v` and `--color`.
pub(crate) struct Printer {
    verbose: u8,
    quiet: bool,
    color: bool,
    stdout_error: Mutex<Option<std::io::Error>>,
}

impl Printer {
    pub(crate) fn new(verbose: u8, quiet: bool, color: ColorChoice) -> Printer {
        Printer {
            verbose,
            quiet,
            color: use_color(color),
            stdout_error: Mutex::new(None),
        }
    }

    /// A progress or status line (hidden by `-q`).
    pub(crate) fn info(&self, msg: &str) {
        if !self.quiet {
            stderr_line(msg);
        }
    }

    /// A detail shown with `-v`.
    pub(crate) fn debug(&self, msg: &str) {
        if self.verbose > 0 && !self.quiet {
            stderr_line(msg);
        }
    }

    /// A warning (shown unless `-q`).
    pub(crate) fn warn(&self, msg: &str) {
        if !self.quiet {
            stderr_line(&format!("{}: {msg}", self.paint("warning", "33")));
        }
    }

    /// Whether progress bars may be drawn.
    pub(crate) fn progress_enabled(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    /// Data on stdout.
    pub(crate) fn data(&self, text: &str) {
        let mut failed = self
            .stdout_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if failed.is_none()
            && let Err(e) = writeln!(std::io::stdout().lock(), "{text}")
        {
            *failed = Some(e);
        }
    }

    /// `value` as pretty JSON on stdout.
    pub(crate) fn json(&self, value: &serde_json::Value) {
        self.data(&serde_json::to_string_pretty(value).expect("JSON values serialize"));
    }

    /// The first write to stdout that failed, if one did.
    pub(crate) fn stdout_error(&self) -> Option<std::io::Error> {
        self.stdout_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    fn paint(&self, text: &str, code: &str) -> String {
        if self.color {
            format!("\x1b[1;{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
}

/// One line on stderr; dropped when it cannot be written (its reader went
/// away), since a message must never stop the work it reports on.
pub(crate) fn stderr_line(line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Whether to color stderr.
pub(crate) fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os(comfyver_env::NO_COLOR).is_none() && std::io::stderr().is_terminal()
        }
    }
}

/// Bytes in binary units: `512 B`, `1.5 KiB`, `3.2 GiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
