use std::fmt;
use std::path::PathBuf;

/// Why the Python environment could not be planned, built or frozen.
#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    /// A file comfyver wrote itself (the resolution) could not be read back.
    #[error("could not read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A requirement line comfyver will not pass on (editable, nested file,
    /// local path, unknown option, ...).
    #[error("{origin} line {line_no}: `{line}` {reason}")]
    UnsupportedLine {
        /// Where the line comes from (`custom_nodes/<name>/requirements.txt`).
        origin: String,
        /// 1-based line number.
        line_no: usize,
        /// The line, redacted.
        line: String,
        /// What is wrong and what to do instead.
        reason: String,
    },
    /// A node's `pyproject.toml` could not be parsed.
    #[error(
        "{path}: cannot read [project].dependencies ({message}); \
         add the pack's requirements to the spec's python.requirements instead"
    )]
    Pyproject {
        /// The file.
        path: PathBuf,
        /// What the parser found.
        message: String,
    },
    /// A node name cannot be used as a file name.
    #[error("node name `{name}` cannot be used in a file name: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// No interpreter to build the environment with.
    #[error(
        "no Python interpreter `{name}` on PATH; install Python, or set the spec's \
         python.version to an interpreter path, or install uv (or set UV to its path)"
    )]
    NoInterpreter {
        /// The interpreter name looked for.
        name: String,
    },
    /// A program could not be started.
    #[error("could not run {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// uv, pip or python failed.
    #[error("{what} failed ({status}): {command}")]
    Tool {
        /// What was being done.
        what: String,
        /// The command line, redacted.
        command: String,
        /// The exit status.
        status: String,
        /// The tool's own output, redacted.
        #[source]
        output: ToolOutput,
    },
    /// The requirements cannot be installed together.
    #[error("{summary}; see the resolver's output below, then change or pin the packs' versions")]
    Conflict {
        /// Which requirements (and their origins) clash.
        summary: String,
        /// The resolver's output, redacted.
        #[source]
        output: ToolOutput,
    },
    /// Replaying a locked package set did not give exactly that set.
    #[error(
        "the environment does not match the lock after installing it: missing {missing:?}, \
         unexpected {unexpected:?}; check that the index or --wheels-dir still offers these \
         versions, or re-resolve with --update"
    )]
    LockNotReproduced {
        /// Locked lines not installed.
        missing: Vec<String>,
        /// Installed lines not in the lock.
        unexpected: Vec<String>,
    },
    /// A node's `install.py` failed.
    #[error(
        "install.py of custom node `{name}` failed ({status}); its output is in {log}, last lines:\n{tail}\n\
         fix the script's cause, or set `install_script: false` on the node in the spec"
    )]
    InstallScript {
        /// The node.
        name: String,
        /// The exit status.
        status: String,
        /// The log file.
        log: PathBuf,
        /// The last lines of the output.
        tail: String,
    },
    /// A confined node's `install.py` failed on a path outside its area.
    #[error(
        "install.py of custom node `{name}` failed ({status}): it was refused a path outside its \
         area{at}; its output is in {log}, last lines:\n{tail}\n\
         comfyver confines install scripts to writing their pack's per-home copy, the venv, uv's \
         cache and a private TMPDIR (see docs/run.md, \"What a job can touch\"); have the script \
         write there, or realize with `--confine off`"
    )]
    ScriptRefused {
        /// The node.
        name: String,
        /// The exit status.
        status: String,
        /// The log file.
        log: PathBuf,
        /// The last lines of the output.
        tail: String,
        /// ` (<path>)` when the output names the refused path, else empty.
        at: String,
    },
    /// `--confine required` and an install script to run on a kernel
    /// without Landlock.
    #[error(
        "install.py of custom node `{name}` must run confined (--confine required, or \
         COMFYVER_CONFINE=required) but {reason}; use a Linux 5.13+ kernel with Landlock \
         enabled, or `--confine auto` to run it unconfined"
    )]
    ScriptUnconfined {
        /// The node.
        name: String,
        /// Why the kernel offers no Landlock.
        reason: String,
    },
    /// A pack asks for a torch-family version below the core's.
    #[error(
        "{origin} line {line_no}: `{line}` would downgrade {package} below the core's {package} \
         {core}, which breaks ComfyUI; use a version of the pack that supports {package} {core}, \
         or, to force it, pin {package} in the spec's python.overrides"
    )]
    TorchDowngrade {
        /// The pack's requirements file.
        origin: String,
        /// 1-based line number.
        line_no: usize,
        /// The requirement.
        line: String,
        /// `torch`, `torchvision` or `torchaudio`.
        package: String,
        /// The core's version.
        core: String,
    },
    /// A time-limit variable does not hold a number of seconds.
    #[error(
        "{variable}=`{value}` is not a time limit; set it to a whole number of seconds above 0, or unset it for the default"
    )]
    BadLimit {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
    /// uv, pip or an install script ran past its time limit and was stopped.
    #[error(
        "{what} did not finish within {seconds} s and was stopped (with everything it started): \
         {command}; if it needs longer, raise {variable}"
    )]
    TimedOut {
        /// What was being done.
        what: String,
        /// The command line, redacted.
        command: String,
        /// The limit in seconds.
        seconds: u64,
        /// The variable that sets the limit.
        variable: &'static str,
    },
    /// A file in the home could not be written or locked.
    #[error(transparent)]
    Fs(#[from] comfyver_fs::FsError),
}

/// A tool's combined output (stderr then stdout), with secrets redacted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolOutput(pub String);

impl fmt::Display for ToolOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.trim_end())
    }
}

impl std::error::Error for ToolOutput {}

/// Redacts every URL-looking word of a text (tokens in index URLs).
pub(crate) fn redact_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    for c in text.chars() {
        if c.is_whitespace() || c == '\'' || c == '"' || c == '`' || c == '(' || c == ')' {
            flush_word(&mut out, &mut word);
            out.push(c);
        } else {
            word.push(c);
        }
    }
    flush_word(&mut out, &mut word);
    out
}

fn flush_word(out: &mut String, word: &mut String) {
    if word.contains("://") {
        // `name @ git+https://tok@host` and `--index-url=https://...`: redact from the scheme on.
        let start = word.find("://").and_then(|i| {
            word[..i]
                .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.'))
                .map(|j| j + 1)
                .or(Some(0))
        });
        let start = start.unwrap_or(0);
        out.push_str(&word[..start]);
        out.push_str(&comfyver_spec::redact(&word[start..]));
    } else {
        out.push_str(word);
    }
    word.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_tokens_inside_text() {
        let t =
            "error: --index-url=https://user:s3cret@idx.example/simple failed\n  (https://tok@h/x)";
        let r = redact_text(t);
        assert!(!r.contains("s3cret"), "{r}");
        assert!(!r.contains("tok@"), "{r}");
        assert!(
            r.contains("--index-url=https://user:***@idx.example/simple"),
            "{r}"
        );
    }
}
