//! What a git work tree of a ComfyUI install holds: its HEAD commit, its
//! remote, its uncommitted changes. Read with `git` as a bounded child
//! (`comfyver_fs::child`), so a hung git never hangs the import.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use comfyver_spec::is_full_commit;

use crate::ImportError;

/// A work tree as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Tree {
    /// HEAD's full commit.
    pub commit: String,
    /// The URL of `origin`, else of the first remote; `None` without one.
    pub remote: Option<String>,
    /// Tracked files changed since HEAD (`git status --porcelain` lines);
    /// untracked files are not counted.
    pub changed: Vec<String>,
    /// Whether HEAD is on a branch of the remote as last fetched.
    pub on_remote: bool,
}

/// Whether `dir` is a git work tree of its own (`.git` directory or file).
pub(crate) fn is_work_tree(dir: &Path) -> bool {
    dir.join(".git").exists()
}

/// Reads the work tree at `dir`; each git run is bounded by `timeout`.
pub(crate) fn read_tree(dir: &Path, timeout: Duration) -> Result<Tree, ImportError> {
    let commit = git(dir, &["rev-parse", "--verify", "HEAD"], timeout)?;
    if !is_full_commit(&commit) {
        return Err(ImportError::Git {
            dir: dir.to_path_buf(),
            what: format!("HEAD is `{commit}`, not a commit: check out a commit first"),
            source: None,
        });
    }
    let remotes = git(dir, &["remote"], timeout)?;
    let remote_name = remotes
        .lines()
        .find(|r| *r == "origin")
        .or_else(|| remotes.lines().next());
    let remote = match remote_name {
        Some(name) => {
            let url = git(
                dir,
                &["config", "--get", &format!("remote.{name}.url")],
                timeout,
            )?;
            Some(url).filter(|u| !u.is_empty())
        }
        None => None,
    };
    let status = git(
        dir,
        &["status", "--porcelain", "--untracked-files=no"],
        timeout,
    )?;
    let changed = status.lines().map(str::to_string).collect();
    let on_remote = remote.is_some()
        && !git(dir, &["branch", "-r", "--contains", "HEAD"], timeout)?
            .trim()
            .is_empty();
    Ok(Tree {
        commit: commit.to_ascii_lowercase(),
        remote,
        changed,
        on_remote,
    })
}

/// Runs `git -C dir args`; its trimmed stdout, or an error naming the
/// command and git's message.
fn git(dir: &Path, args: &[&str], timeout: Duration) -> Result<String, ImportError> {
    let err = |what: String, source: Option<std::io::Error>| ImportError::Git {
        dir: dir.to_path_buf(),
        what,
        source,
    };
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let shown = format!("`git {}`", args.join(" "));
    let done = comfyver_fs::child::run_bounded(&mut cmd, timeout).map_err(|e| {
        err(
            format!("{shown} could not start: is git installed and on PATH?"),
            Some(e),
        )
    })?;
    let Some(status) = done.status else {
        return Err(err(
            format!(
                "{shown} did not finish within {} s (raise {})",
                timeout.as_secs(),
                comfyver_env::COMFYVER_GIT_TIMEOUT
            ),
            None,
        ));
    };
    // Only the end is trimmed: a status line starts with a space.
    let stdout = String::from_utf8_lossy(&done.stdout).trim_end().to_string();
    // `config --get` exits 1 for a missing key: an empty answer.
    let missing_key = args.first() == Some(&"config") && status.code() == Some(1);
    if !(status.success() || missing_key) {
        return Err(err(
            format!(
                "{shown} failed: {}",
                String::from_utf8_lossy(&done.stderr).trim()
            ),
            None,
        ));
    }
    Ok(stdout)
}
