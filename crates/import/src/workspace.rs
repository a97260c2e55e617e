//! Where versions live, what a write produced, and small shared parsers.

use std::path::{Path, PathBuf};

use comfyver_fs::CacheLayout;
use comfyver_resolver::{LockChange, NoReporter, ResolveError, ResolveOptions};
use comfyver_spec::version::ComfyCore;
use comfyver_spec::{RepoUrl, VersionSpec, edit::SpecDocument, is_full_commit};
use serde_json::Value;

use crate::ImportError;

/// The ComfyUI core repository used when none is given (`new` without
/// `--comfy`, a snapshot, which records only the core's commit).
pub const DEFAULT_COMFY_REPO: &str = "https://github.com/comfyanonymous/ComfyUI";

/// The versions directory and cache the commands work on.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The versions directory (`<id>.json` files).
    pub versions_dir: PathBuf,
    /// The cache (for the resolved locks).
    pub layout: CacheLayout,
    /// How the resolver may reach remotes (offline, rewrites, timeout).
    pub resolve: ResolveOptions,
}

/// What `resolve` would change after a write.
#[derive(Debug)]
pub enum Preview {
    /// The lock entries that would be added, removed or changed.
    Changes(Vec<LockChange>),
    /// The dry run failed (e.g. a remote is unreachable); the write stands.
    Unavailable(ResolveError),
}

/// A spec written (or, when nothing changed, left alone) by an import or edit.
#[derive(Debug)]
pub struct Written {
    /// The spec file.
    pub path: PathBuf,
    /// The spec as it now is.
    pub spec: VersionSpec,
    /// Whether the file was written (false when the edit changed nothing).
    pub changed: bool,
    /// One line per entry the command added or removed.
    pub done: Vec<String>,
    /// What was left out or needs attention, one line each.
    pub notes: Vec<String>,
    /// What `resolve` would change; `None` when not asked for.
    pub preview: Option<Preview>,
}

impl Workspace {
    /// `<versions_dir>/<id>.json`, with `id` checked to be a safe name.
    pub(crate) fn spec_path(&self, id: &str) -> Result<PathBuf, ImportError> {
        if let Some(reason) = comfyver_spec::names::version_id_reason(id) {
            return Err(ImportError::BadId {
                id: id.to_string(),
                reason,
            });
        }
        Ok(self.versions_dir.join(format!("{id}.json")))
    }

    /// The path of a new version, refused when it exists.
    pub(crate) fn new_spec_path(&self, id: &str) -> Result<PathBuf, ImportError> {
        let path = self.spec_path(id)?;
        if path.exists() {
            return Err(ImportError::Exists {
                id: id.to_string(),
                path,
            });
        }
        Ok(path)
    }

    /// Loads an existing version's document.
    pub(crate) fn open(&self, id: &str) -> Result<SpecDocument, ImportError> {
        let path = self.spec_path(id)?;
        if !path.exists() {
            return Err(ImportError::NoVersion {
                id: id.to_string(),
                path,
            });
        }
        Ok(SpecDocument::load(&path)?)
    }

    /// Writes `doc` to `path` atomically and previews the resolve.
    pub(crate) fn write(
        &self,
        path: &Path,
        doc: &SpecDocument,
        done: Vec<String>,
        notes: Vec<String>,
    ) -> Result<Written, ImportError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| comfyver_fs::FsError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        comfyver_fs::write_atomic(path, doc.text().as_bytes())?;
        Ok(Written {
            path: path.to_path_buf(),
            spec: doc.spec().clone(),
            changed: true,
            done,
            notes,
            preview: Some(self.preview(doc.spec())),
        })
    }

    /// What `resolve` would change for `spec` (a dry run: nothing written).
    pub(crate) fn preview(&self, spec: &VersionSpec) -> Preview {
        let opts = ResolveOptions {
            dry_run: true,
            locked: false,
            offline: self.resolve.offline || spec.offline(),
            ..self.resolve.clone()
        };
        match comfyver_resolver::resolve(spec, &self.layout, &opts, &NoReporter) {
            Ok(outcome) => Preview::Changes(outcome.changes),
            Err(e) => Preview::Unavailable(e),
        }
    }
}

/// Splits `REPO[@REF]`: the `@` must come after the repository's last path
/// separator (so `git@host:o/r` is a repository); a 40-hex ref is a commit.
/// Returns (repo, ref, commit).
pub(crate) fn parse_repo_at(
    given: &str,
) -> Result<(String, Option<String>, Option<String>), ImportError> {
    let tail_start = given.rfind(['/', ':']).map(|i| i + 1).unwrap_or(0);
    let (repo, rev) = match given[tail_start..].rfind('@') {
        Some(i) => (&given[..tail_start + i], Some(&given[tail_start + i + 1..])),
        None => (given, None),
    };
    if RepoUrl::parse(repo).is_err() || rev.is_some_and(str::is_empty) {
        return Err(ImportError::BadRepo {
            given: given.to_string(),
        });
    }
    let (git_ref, commit) = match rev {
        Some(r) if is_full_commit(r) => (None, Some(r.to_ascii_lowercase())),
        Some(r) => (Some(r.to_string()), None),
        None => (None, None),
    };
    Ok((repo.to_string(), git_ref, commit))
}

/// Reads a JSON input file.
pub(crate) fn read_json(path: &Path) -> Result<Value, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| ImportError::Json {
        path: path.to_path_buf(),
        source,
    })
}

/// A format error at `at` in `path`.
pub(crate) fn format_error(
    path: &Path,
    at: impl Into<String>,
    expected: impl Into<String>,
) -> ImportError {
    ImportError::Format {
        path: path.to_path_buf(),
        at: at.into(),
        expected: expected.into(),
    }
}

/// A node directory name that is not taken yet: the repo's last segment,
/// else `<owner>-<repo>`, else with a numeric suffix.
pub(crate) fn free_name(repo: &str, taken: &[String]) -> Option<String> {
    let segs: Vec<&str> = repo
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .rsplit(['/', ':'])
        .filter(|s| !s.is_empty())
        .take(2)
        .collect();
    let last = segs.first()?.to_string();
    if !taken.contains(&last) {
        return None;
    }
    let owner = segs
        .get(1)
        .map(|o| format!("{o}-{last}"))
        .unwrap_or(last.clone());
    if !taken.contains(&owner) {
        return Some(owner);
    }
    (2..)
        .map(|n| format!("{owner}-{n}"))
        .find(|c| !taken.contains(c))
}

/// The report line of an imported core: its redacted repository and the
/// commit, else the ref, it is pinned to.
pub(crate) fn core_line(comfy: &ComfyCore) -> String {
    let pin = (comfy.commit.as_deref())
        .or(comfy.git_ref.as_deref())
        .unwrap_or("HEAD");
    format!("core {} {pin}", comfyver_spec::redact(&comfy.repo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_at_ref() {
        let (r, g, c) = parse_repo_at("https://h/o/r@v1.2").unwrap();
        assert_eq!(
            (r.as_str(), g.as_deref(), c),
            ("https://h/o/r", Some("v1.2"), None)
        );
        let (r, g, _) = parse_repo_at("git@h:o/r").unwrap();
        assert_eq!((r.as_str(), g), ("git@h:o/r", None));
        let (r, g, _) = parse_repo_at("git@h:o/r@main").unwrap();
        assert_eq!((r.as_str(), g.as_deref()), ("git@h:o/r", Some("main")));
        let sha = "A".repeat(40);
        let (_, g, c) = parse_repo_at(&format!("/srv/r@{sha}")).unwrap();
        assert_eq!((g, c), (None, Some("a".repeat(40))));
        assert!(parse_repo_at("relative/r").is_err());
        assert!(parse_repo_at("https://h/o/r@").is_err());
    }

    #[test]
    fn free_names() {
        let taken = vec!["r".to_string()];
        assert_eq!(free_name("https://h/o/x", &taken), None);
        assert_eq!(
            free_name("https://h/o/r.git", &taken).as_deref(),
            Some("o-r")
        );
    }
}
