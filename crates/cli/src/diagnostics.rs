//! The one place that renders errors and decides exit codes.
//!
//! An error prints as `error: <message>`, then each cause once as
//! `caused by: <cause>`, then `hint:` lines for well-known causes. An error
//! that stands for several independent failures (a library's "several
//! failed" variant, or [`Failures`] built by a command) prints its summary
//! and then every failure with its own causes, indented.

use std::error::Error as StdError;
use std::fmt;
use std::process::ExitCode;

use crate::cli::ColorChoice;
use crate::output::{stderr_line, use_color};

/// How a command ended; the only source of comfyver's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: done, or a check that passed.
    Success,
    /// 1: a user-facing failure (bad input, unreachable source, a check that
    /// found problems).
    Failure,
    /// 2: an internal error (a bug).
    Bug,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        match e {
            Exit::Success => ExitCode::SUCCESS,
            Exit::Failure => ExitCode::from(1),
            Exit::Bug => ExitCode::from(2),
        }
    }
}

/// Several independent failures of one command (e.g. one per version of
/// `resolve --all`), each with its subject.
#[derive(Debug)]
pub(crate) struct Failures {
    /// The summary line.
    pub summary: String,
    /// `(subject, error)` pairs.
    pub failures: Vec<(String, anyhow::Error)>,
}

impl Failures {
    /// How a command over `targets` subjects ends: success when nothing
    /// failed; with `--json` (`json`), exit 1 and no error (the report was
    /// printed); the one error itself when one target was given; else all of
    /// them, summarised by `summary(failed, targets)`.
    pub(crate) fn finish(
        mut failures: Vec<(String, anyhow::Error)>,
        targets: usize,
        json: bool,
        summary: impl Fn(usize, usize) -> String,
    ) -> anyhow::Result<Exit> {
        match failures.len() {
            0 => Ok(Exit::Success),
            _ if json => Ok(Exit::Failure),
            1 if targets == 1 => Err(failures.remove(0).1),
            n => Err(Failures {
                summary: summary(n, targets),
                failures,
            }
            .into()),
        }
    }
}

impl fmt::Display for Failures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary)
    }
}

impl StdError for Failures {}

/// Prints `err` with its causes and hints; returns [`Exit::Failure`] (bugs
/// panic and are reported by `main` as [`Exit::Bug`]).
pub(crate) fn report(err: &anyhow::Error, color: ColorChoice) -> Exit {
    if err.chain().any(is_broken_pipe) {
        return Exit::Success;
    }
    let paint = |t: &str, c: &str| {
        if use_color(color) {
            format!("\x1b[1;{c}m{t}\x1b[0m")
        } else {
            t.to_string()
        }
    };
    let mut lines = Vec::new();
    render(err.as_ref(), "", &mut lines);
    for (i, (indent, label, text)) in lines.iter().enumerate() {
        let label = match *label {
            "error" if i == 0 => paint("error", "31"),
            "caused by" => paint("caused by", "33"),
            other => other.to_string(),
        };
        stderr_line(&format!("{indent}{label}: {text}"));
    }
    for hint in hints(err) {
        stderr_line(&format!("{}: {hint}", paint("hint", "36")));
    }
    Exit::Failure
}

/// Prints the reason a command refuses to go on without making it an error
/// chain (e.g. `verify`'s problems), in the same layout.
pub(crate) fn problem(subject: &str, message: &str) {
    stderr_line(&format!("problem: {subject}: {message}"));
}

/// Prints a hint line in the same layout as [`report`]'s.
pub(crate) fn hint(text: &str) {
    stderr_line(&format!("hint: {text}"));
}

type Line = (String, &'static str, String);

/// Appends `err`, its causes, and the errors it stands for, to `out`.
fn render(err: &(dyn StdError + 'static), indent: &str, out: &mut Vec<Line>) {
    out.push((indent.to_string(), "error", err.to_string()));
    let mut cause = err.source();
    let mut last = err;
    while let Some(c) = cause {
        out.push((format!("{indent}  "), "caused by", c.to_string()));
        last = c;
        cause = c.source();
    }
    let inner = format!("{indent}  ");
    for child in children(last) {
        let start = out.len();
        render(child, &inner, out);
        if let Some(first) = out.get_mut(start) {
            first.1 = "-";
        }
    }
    for (subject, e) in subjects(last) {
        let start = out.len();
        render(e, &inner, out);
        if let Some(first) = out.get_mut(start) {
            first.1 = "-";
            first.2 = format!("{subject}: {}", first.2);
        }
    }
}

/// The failures an error stands for that are each about one subject (a
/// version, a file), with that subject: a command's [`Failures`], and the
/// files gc could not read.
fn subjects<'a>(err: &'a (dyn StdError + 'static)) -> Vec<(String, &'a (dyn StdError + 'static))> {
    if let Some(f) = err.downcast_ref::<Failures>() {
        return (f.failures.iter())
            .map(|(subject, e)| (subject.clone(), e.as_ref()))
            .collect();
    }
    if let Some(comfyver_realize::RealizeError::Unreadable(files)) = err.downcast_ref() {
        return (files.iter())
            .map(|f| {
                let reason: &(dyn StdError + 'static) = f.reason.as_ref();
                (f.path.display().to_string(), reason)
            })
            .collect();
    }
    Vec::new()
}

/// The failures a library's "several failed" error stands for.
fn children<'a>(err: &'a (dyn StdError + 'static)) -> Vec<&'a (dyn StdError + 'static)> {
    fn each<E: StdError + 'static>(v: &[E]) -> Vec<&(dyn StdError + 'static)> {
        v.iter().map(|e| e as &(dyn StdError + 'static)).collect()
    }
    if let Some(comfyver_models::ModelsError::Several(v)) = err.downcast_ref() {
        return each(v);
    }
    if let Some(comfyver_nodes::NodesError::Many(v)) = err.downcast_ref() {
        return each(v);
    }
    if let Some(comfyver_resolver::ResolveError::Several(v)) = err.downcast_ref() {
        return each(v);
    }
    Vec::new()
}

fn is_broken_pipe(e: &(dyn StdError + 'static)) -> bool {
    e.downcast_ref::<std::io::Error>()
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Hints for well-known causes.
fn hints(err: &anyhow::Error) -> Vec<String> {
    let mut all: Vec<&(dyn StdError + 'static)> = Vec::new();
    for cause in err.chain() {
        all.push(cause);
        for (_, e) in subjects(cause) {
            let mut next = Some(e);
            while let Some(c) = next {
                all.push(c);
                next = c.source();
            }
        }
    }
    let mut out = Vec::new();
    for cause in all {
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
    out.sort();
    out.dedup();
    out
}
