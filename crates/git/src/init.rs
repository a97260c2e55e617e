//! New git directories holding only what git and gix read: `HEAD`,
//! `config`, `objects/` and `refs/`. `git init` and `gix::init` also write
//! eleven sample hooks, `description` and `info/exclude`, and gix probes the
//! filesystem with a few files it creates and removes: about twenty file
//! operations per repository that nothing reads, for every mirror, peek and
//! checkout of a realize, on the same disk as the Python install.

use std::path::Path;
use std::sync::Mutex;

use crate::GitError;

/// A new, empty bare repository in `dir` (created if missing, else empty),
/// without git's templates, opened isolated from the user's and system's
/// git configuration: for a caller's scratch repository.
pub fn init_bare(dir: &Path) -> Result<gix::Repository, GitError> {
    init(dir, Kind::Bare, &dir.display().to_string())
}

/// Which repository to make.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `dir` is the repository itself (mirrors and peeks).
    Bare,
    /// `dir` is a work tree, its repository in `dir/.git` (checkouts).
    WithWorktree,
}

/// Makes the repository in `dir` (created if missing; a bare one must be
/// empty, a work tree must have no `.git` yet) and opens it, isolated from
/// the user's and system's git configuration.
pub(crate) fn init(dir: &Path, kind: Kind, shown: &str) -> Result<gix::Repository, GitError> {
    std::fs::create_dir_all(dir).map_err(|e| GitError::io("could not create directory", dir, e))?;
    let (git_dir, core) = match kind {
        Kind::Bare => (dir.to_path_buf(), "\tbare = true\n".to_string()),
        Kind::WithWorktree => {
            let caps = capabilities(dir);
            let core = format!(
                "\tbare = false\n\tfilemode = {}\n\tsymlinks = {}\n\tignorecase = {}\n\tprecomposeunicode = {}\n\tlogallrefupdates = true\n",
                caps.executable_bit, caps.symlink, caps.ignore_case, caps.precompose_unicode
            );
            (dir.join(".git"), core)
        }
    };
    for sub in ["objects/info", "objects/pack", "refs/heads", "refs/tags"] {
        let d = git_dir.join(sub);
        std::fs::create_dir_all(&d)
            .map_err(|e| GitError::io("could not create directory", &d, e))?;
    }
    for (name, text) in [
        ("HEAD", "ref: refs/heads/main\n".to_string()),
        (
            "config",
            format!("[core]\n\trepositoryformatversion = 0\n{core}"),
        ),
    ] {
        let path = git_dir.join(name);
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .map_err(|e| GitError::io("could not write", &path, e))?;
    }
    gix::open_opts(&git_dir, gix::open::Options::isolated())
        .map_err(|e| GitError::git("opening the new repository", shown, e))
}

/// The filesystem's capabilities where `dir` is, probed once per device and
/// process (each probe creates and removes a few files).
fn capabilities(dir: &Path) -> gix::fs::Capabilities {
    use std::os::unix::fs::MetadataExt;
    static PROBED: Mutex<Vec<(u64, gix::fs::Capabilities)>> = Mutex::new(Vec::new());
    let Ok(dev) = std::fs::metadata(dir).map(|m| m.dev()) else {
        return gix::fs::Capabilities::probe_dir(dir);
    };
    let mut probed = PROBED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, caps)) = probed.iter().find(|(d, _)| *d == dev) {
        return *caps;
    }
    let caps = gix::fs::Capabilities::probe_dir(dir);
    probed.push((dev, caps));
    caps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_new_repository_has_no_hooks_or_templates_and_git_reads_it() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work");
        let repo = init(&work, Kind::WithWorktree, "test").unwrap();
        assert_eq!(files(&work), [".git/HEAD", ".git/config"]);
        assert!(!repo.is_bare());
        assert_eq!(repo.workdir(), Some(work.as_path()));
        let bare = tmp.path().join("bare.git");
        let repo = init(&bare, Kind::Bare, "test").unwrap();
        assert_eq!(files(&bare), ["HEAD", "config"]);
        assert!(repo.is_bare());
        for (dir, expected) in [(&work, "false"), (&bare, "true")] {
            let bare = comfyver_testkit::git::git(dir, &["rev-parse", "--is-bare-repository"]);
            assert_eq!(bare, expected, "git reads {}", dir.display());
        }
        assert!(
            init(&work, Kind::WithWorktree, "test").is_err(),
            "a second init must not overwrite"
        );
    }
}
