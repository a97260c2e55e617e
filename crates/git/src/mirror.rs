//! Bare git mirrors: `<cache>/git/<slug>.git`, one per repository, shared by
//! every commit of it. Writers serialise on `<cache>/locks/git/<slug>.lock`.
//! This crate owns `<cache>/git/`: the names of its entries and their lock
//! are decided here ([`mirror_name`], [`mirror_dirs`], [`lock_mirror`]).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use comfyver_fs::{CacheLayout, FileLock, TempDir, remove_stale_temps};
use comfyver_spec::{RepoUrl, UrlRewrites};
use gix::remote::{Direction, fetch::Tags};

use crate::{GitError, Reporter, transport};

/// The cross-process lock kind of a mirror (key: the slug).
const MIRROR_LOCK: &str = "git";

/// `<slug>.git`: the name of `repo`'s mirror in `<cache>/git/`.
pub fn mirror_name(repo: &RepoUrl) -> String {
    format!("{}.git", repo.slug())
}

/// Every mirror in `<cache>/git/` as (name, path), sorted by name
/// (temporary siblings of mirrors being created are left out).
pub fn mirror_dirs(layout: &CacheLayout) -> Result<Vec<(String, PathBuf)>, GitError> {
    let dir = layout.git_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(GitError::io("could not list", &dir, e)),
    };
    let mut out: Vec<(String, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !name.starts_with('.') && name.ends_with(".git"))
        .collect();
    out.sort();
    Ok(out)
}

/// Takes the cross-process lock of the mirror named `name` (as
/// [`mirror_dirs`] lists it), which every fetch into it holds: for removing
/// it while no fetch runs.
pub fn lock_mirror(layout: &CacheLayout, name: &str) -> Result<FileLock, GitError> {
    let slug = name.strip_suffix(".git").unwrap_or(name);
    Ok(FileLock::acquire(&layout.lock_path(MIRROR_LOCK, slug))?)
}

/// A [`Reporter`] for the calls that take none.
struct Silent;

impl Reporter for Silent {}

/// A path of a commit's tree, read from the mirror (no checkout needed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TreeFile {
    /// The tree has nothing at that path.
    Absent,
    /// A regular or executable file: its bytes.
    Blob(Vec<u8>),
    /// Something a checkout resolves (a symlink, a submodule, a directory).
    Other,
}

/// A path of a commit's tree as its entry says, before any blob is read.
pub(crate) enum TreeEntry {
    Absent,
    Blob(gix::ObjectId),
    Other,
}

/// The entry at `path` in the tree of `commit`; needs the commit and its
/// trees in `repo`, not the blob.
pub(crate) fn tree_entry(
    repo: &gix::Repository,
    commit: gix::ObjectId,
    path: &str,
) -> Result<TreeEntry, gix::Error> {
    let tree = repo.find_commit(commit)?.tree()?;
    let entry = tree
        .lookup_entry_by_path(path)
        .map_err(gix::Error::from_error)?;
    Ok(match entry {
        None => TreeEntry::Absent,
        Some(e) if e.mode().is_blob() => TreeEntry::Blob(e.object_id()),
        Some(_) => TreeEntry::Other,
    })
}

/// What one connection to the remote is for.
enum Session<'a> {
    /// Fetching the connection's refspecs into the mirror.
    Fetch,
    /// Reading a few files of a commit into a throwaway repository.
    Peek(&'a mut crate::peek::Peek),
}

impl Session<'_> {
    fn run<T>(
        self,
        mirror: &Mirror,
        conn: gix::remote::Connection<'_, '_, '_, T>,
    ) -> Result<(), GitError>
    where
        T: gix::protocol::transport::client::blocking_io::Transport,
    {
        match self {
            Session::Fetch => mirror.receive(conn),
            Session::Peek(peek) => peek.run(conn).map_err(|e| {
                GitError::git(
                    "reading files of a commit from the remote",
                    &mirror.shown_url,
                    e,
                )
            }),
        }
    }
}

/// The refspecs of [`Mirror::fetch_all`]: every branch and tag.
const ALL_REFSPECS: [&str; 2] = ["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"];

/// A bare mirror of one repository in the cache.
#[derive(Debug, Clone)]
pub struct Mirror {
    path: PathBuf,
    lock_path: PathBuf,
    fetch_url: String,
    shown_url: String,
    /// Overrides `COMFYVER_GIT_TIMEOUT` for this mirror's fetches.
    git_timeout: Option<Duration>,
}

impl Mirror {
    /// Opens the mirror of `repo` at `layout.git_mirror(repo.slug())`, creating
    /// an empty one when missing. Creation happens in a temporary sibling that
    /// is renamed into place under the mirror's lock, so a half-initialised
    /// mirror is never used. Fetches go to `rewrites.apply(repo.as_str())`.
    pub fn open(
        layout: &CacheLayout,
        repo: &RepoUrl,
        rewrites: &UrlRewrites,
    ) -> Result<Mirror, GitError> {
        let slug = repo.slug();
        let mirror = Mirror {
            path: layout.git_mirror(&slug),
            lock_path: layout.lock_path(MIRROR_LOCK, &slug),
            fetch_url: rewrites.apply(repo.as_str()),
            shown_url: repo.redacted(),
            git_timeout: None,
        };
        if !mirror.path.is_dir() {
            let _lock = FileLock::acquire(&mirror.lock_path)?;
            if !mirror.path.is_dir() {
                mirror.create()?;
            }
        }
        Ok(mirror)
    }

    /// Opens the mirror only if it already exists (no lock, no writes): for
    /// offline checks and listings.
    pub fn existing(
        layout: &CacheLayout,
        repo: &RepoUrl,
        rewrites: &UrlRewrites,
    ) -> Option<Mirror> {
        let slug = repo.slug();
        let path = layout.git_mirror(&slug);
        path.is_dir().then(|| Mirror {
            path,
            lock_path: layout.lock_path(MIRROR_LOCK, &slug),
            fetch_url: rewrites.apply(repo.as_str()),
            shown_url: repo.redacted(),
            git_timeout: None,
        })
    }

    /// Fetches stop after `limit` without receiving anything, instead of
    /// `COMFYVER_GIT_TIMEOUT`.
    pub fn with_git_timeout(mut self, limit: Duration) -> Mirror {
        self.git_timeout = Some(limit);
        self
    }

    /// The mirror's directory (a bare repository).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The repository URL with credentials removed, for messages.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// Fetches every branch and tag of the remote into the mirror (under the
    /// mirror's lock).
    pub fn fetch_all(&self) -> Result<(), GitError> {
        self.fetch_all_with(&Silent)
    }

    /// [`Mirror::fetch_all`], telling `reporter` when the network is used.
    pub fn fetch_all_with(&self, reporter: &dyn Reporter) -> Result<(), GitError> {
        let _lock = self.lock()?;
        self.fetch_locked(&ALL_REFSPECS, reporter)
    }

    /// The full ids of every commit in the mirror whose id starts with `prefix`
    /// (hex, at least 4 characters; fewer gives an empty list).
    pub fn commits_with_prefix(&self, prefix: &str) -> Result<Vec<String>, GitError> {
        let Ok(prefix_id) = gix::hash::Prefix::from_hex(prefix) else {
            return Ok(Vec::new());
        };
        let repo = self.repo()?;
        let mut candidates = HashSet::new();
        repo.objects
            .lookup_prefix(prefix_id, Some(&mut candidates))
            .map_err(|e| GitError::git("object lookup", &self.shown_url, e))?;
        let mut out: Vec<String> = candidates
            .into_iter()
            .filter(|id| {
                repo.find_header(*id)
                    .is_ok_and(|h| h.kind() == gix::object::Kind::Commit)
            })
            .map(|id| id.to_string())
            .collect();
        out.sort();
        Ok(out)
    }

    /// The file at `path` in the tree of `commit` (which must be in the
    /// mirror).
    pub fn read_file(&self, commit: &str, path: &str) -> Result<TreeFile, GitError> {
        let err = |e: gix::Error| GitError::git("reading a file of a commit", &self.shown_url, e);
        let id = gix::ObjectId::from_hex(commit.as_bytes())
            .map_err(|e| err(gix::Error::from_error(e)))?;
        let repo = self.repo()?;
        match tree_entry(&repo, id, path).map_err(err)? {
            TreeEntry::Absent => Ok(TreeFile::Absent),
            TreeEntry::Other => Ok(TreeFile::Other),
            TreeEntry::Blob(blob) => Ok(TreeFile::Blob(
                repo.find_object(blob).map_err(err)?.detach().data,
            )),
        }
    }

    /// The files at `paths` in the tree of `commit`, read from the remote
    /// without fetching the commit into the mirror: its trees at depth 1
    /// into a throwaway repository beside the mirror, then just those blobs.
    /// `Ok(None)` when the remote cannot serve it so (no `filter` or
    /// `shallow` support, blobs not given by id) or the attempt fails: the
    /// caller then fetches the commit and reads it from the mirror, which
    /// reports any error there is. A remote that stalls is
    /// [`GitError::FetchTimeout`] at once: it would not do better for the
    /// fetch.
    pub fn peek_files(
        &self,
        commit: &str,
        paths: &[&str],
        reporter: &dyn Reporter,
    ) -> Result<Option<Vec<TreeFile>>, GitError> {
        let Ok(commit) = gix::ObjectId::from_hex(commit.as_bytes()) else {
            return Ok(None);
        };
        let place = self.path.with_extension("peek");
        let parent = place.parent().unwrap_or(Path::new("."));
        remove_stale_temps(parent, Some(&file_name(&place)))?;
        let tmp = TempDir::beside(&place)?;
        let Ok(repo) = crate::init::init(tmp.path(), crate::init::Kind::Bare, &self.shown_url)
        else {
            return Ok(None);
        };
        reporter.reading_remote(&self.shown_url, &commit.to_string(), paths);
        let mut peek = crate::peek::Peek::new(commit, paths);
        match self.over_connection(&repo, &[], Session::Peek(&mut peek)) {
            Ok(()) => Ok(peek.into_files()),
            Err(e @ GitError::FetchTimeout { .. }) => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// The mirror's branches and tags as (full ref name, commit), sorted by
    /// name, in the shape a remote advertises them: remote-tracking
    /// `refs/remotes/origin/x` counted as `refs/heads/x` (a real branch wins
    /// over a remote-tracking one of the same name), tags peeled. The
    /// mirror's own HEAD is left out: fetches do not record the remote's
    /// HEAD, so it says nothing about what the remote's default branch is.
    pub fn branches_and_tags(&self) -> Result<Vec<(String, String)>, GitError> {
        let err =
            |e: gix::Error| GitError::git("listing the refs of the mirror", &self.shown_url, e);
        let repo = self.repo()?;
        let platform = repo.references().map_err(err)?;
        let mut out = Vec::new();
        for reference in platform.all().map_err(err)? {
            let Ok(mut reference) = reference else {
                continue;
            };
            let full = reference.name().as_bstr().to_string();
            let name = match full.strip_prefix("refs/remotes/origin/") {
                Some("HEAD") => continue,
                Some(branch) => format!("refs/heads/{branch}"),
                None => full,
            };
            if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
                continue;
            }
            let Ok(commit) = reference.peel_to_id() else {
                continue;
            };
            out.push((name, commit.to_string()));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.dedup_by(|a, b| a.0 == b.0);
        Ok(out)
    }

    /// Whether the mirror holds `commit` (a full hex id) as a commit object.
    pub fn has_commit(&self, commit: &str) -> bool {
        let Ok(id) = gix::ObjectId::from_hex(commit.as_bytes()) else {
            return false;
        };
        self.repo().is_ok_and(|repo| {
            repo.find_header(id)
                .is_ok_and(|h| h.kind() == gix::object::Kind::Commit)
        })
    }

    /// Makes sure `commit` is in the mirror and pinned by `refs/pins/<commit>`
    /// (so no gc drops it). Costs no network when it is already there.
    /// Otherwise fetches it by id, falling back to fetching every branch and
    /// tag; offline, or when the remote no longer has it, returns a clear error.
    pub fn ensure_commit(&self, commit: &str, offline: bool) -> Result<(), GitError> {
        self.ensure_commit_with(commit, offline, &Silent)
    }

    /// [`Mirror::ensure_commit`], telling `reporter` when the network is used.
    pub fn ensure_commit_with(
        &self,
        commit: &str,
        offline: bool,
        reporter: &dyn Reporter,
    ) -> Result<(), GitError> {
        let commit = commit.to_ascii_lowercase();
        // Warm path, one stat: a loose pin is written only after its objects.
        if gix::ObjectId::from_hex(commit.as_bytes()).is_ok()
            && self.path.join("refs/pins").join(&commit).is_file()
        {
            return Ok(());
        }
        if self.has_commit(&commit) {
            if !self.is_pinned(&commit) {
                let _lock = self.lock()?;
                self.pin_locked(&commit)?;
            }
            return Ok(());
        }
        if offline {
            return Err(GitError::Offline {
                repo: self.shown_url.clone(),
                commit,
            });
        }
        let _lock = self.lock()?;
        // Another process may have fetched it while we waited for the lock.
        if self.has_commit(&commit) {
            return self.pin_locked(&commit);
        }
        let by_id = format!("+{commit}:refs/pins/{commit}");
        match self.fetch_locked(&[by_id.as_str()], reporter) {
            Ok(()) if self.has_commit(&commit) => return self.pin_locked(&commit),
            // A stalled server will not do better for a second request.
            Err(e @ GitError::FetchTimeout { .. }) => return Err(e),
            _ => {}
        }
        // The server may refuse unadvertised ids: take every branch and tag.
        let all = self.fetch_locked(&ALL_REFSPECS, reporter);
        // Also when the fetch failed: a writer whose lock we did not see (or
        // a ref lock in the way) may have brought the commit meanwhile.
        if self.has_commit(&commit) {
            return self.pin_locked(&commit);
        }
        all?;
        Err(GitError::CommitUnavailable {
            repo: self.shown_url.clone(),
            commit,
            mirror: self.path.clone(),
        })
    }

    /// The fetch limit: the one set by [`Mirror::with_git_timeout`], else
    /// `COMFYVER_GIT_TIMEOUT`.
    pub(crate) fn limit(&self) -> Result<Duration, GitError> {
        self.git_timeout.map_or_else(crate::git_timeout, Ok)
    }

    fn lock(&self) -> Result<FileLock, GitError> {
        Ok(FileLock::acquire(&self.lock_path)?)
    }

    pub(crate) fn repo(&self) -> Result<gix::Repository, GitError> {
        gix::open_opts(&self.path, gix::open::Options::isolated())
            .map_err(|e| GitError::git("open of the mirror", &self.shown_url, e))
    }

    fn create(&self) -> Result<(), GitError> {
        let parent = self.path.parent().unwrap_or(Path::new("."));
        let name = file_name(&self.path);
        remove_stale_temps(parent, Some(&name))?;
        let tmp = TempDir::beside(&self.path)?;
        crate::init::init(tmp.path(), crate::init::Kind::Bare, &self.shown_url)?;
        comfyver_fs::test_pause("mirror-before-publish");
        match tmp.publish(&self.path) {
            // Another worker whose lock we did not see published it first.
            Err(_) if self.path.is_dir() => Ok(()),
            other => Ok(other?),
        }
    }

    /// Runs one fetch with `refspecs`; the caller holds the mirror's lock.
    fn fetch_locked(&self, refspecs: &[&str], reporter: &dyn Reporter) -> Result<(), GitError> {
        let _writing = self.begin_write();
        comfyver_fs::test_pause("fetch-before-receive");
        let what = if refspecs == ALL_REFSPECS {
            "all branches and tags".to_string()
        } else {
            refspecs.join(" ")
        };
        reporter.fetching(&self.shown_url, &what);
        let repo = self.repo()?;
        self.over_connection(&repo, refspecs, Session::Fetch)?;
        comfyver_fs::test_pause("fetch-after-receive");
        Ok(())
    }

    /// Opens a bounded connection to the remote for `repo` (the mirror, or
    /// a throwaway for a peek) and runs `session` over it. A connection
    /// that ran into the limit is [`GitError::FetchTimeout`].
    fn over_connection(
        &self,
        repo: &gix::Repository,
        refspecs: &[&str],
        session: Session<'_>,
    ) -> Result<(), GitError> {
        let limit = self.limit()?;
        let err = |e| GitError::git("fetch", &self.shown_url, e);
        let remote = repo
            .remote_at_without_url_rewrite(self.fetch_url.as_str())
            .map_err(err)?
            .with_fetch_tags(Tags::None)
            .with_refspecs(refspecs.iter().copied(), Direction::Fetch)
            .map_err(err)?;
        let unreachable = |e: std::io::Error| err(gix::Error::from_error(e));
        let mut stalled = false;
        let result = match transport::bounded_transport(&self.fetch_url, limit) {
            Ok(Some((conn, guard))) => {
                let r = session.run(self, remote.to_connection_with_transport(conn));
                stalled = guard.stalled();
                r
            }
            Ok(None) => match remote.connect(Direction::Fetch) {
                Ok(conn) => {
                    let conn = match transport::http_options(repo, &self.fetch_url, limit) {
                        Some(opts) => conn.with_transport_options(opts),
                        None => conn,
                    };
                    let r = session.run(self, conn);
                    if let Err(GitError::Git { source, .. }) = &r {
                        stalled = transport::chain_timed_out(source);
                    }
                    r
                }
                Err(e) => Err(err(e)),
            },
            Err(e) => {
                stalled = transport::is_timeout(&e);
                Err(unreachable(e))
            }
        };
        match result {
            Err(_) if stalled => Err(GitError::FetchTimeout {
                repo: self.shown_url.clone(),
                seconds: limit.as_secs(),
            }),
            other => other,
        }
    }

    /// Negotiates and receives the pack over an open connection.
    fn receive<T>(&self, conn: gix::remote::Connection<'_, '_, '_, T>) -> Result<(), GitError>
    where
        T: gix::protocol::transport::client::blocking_io::Transport,
    {
        let err = |e| GitError::git("fetch", &self.shown_url, e);
        let interrupt = AtomicBool::new(false);
        conn.prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(err)?
            .receive(gix::progress::Discard, &interrupt)
            .map_err(err)?;
        Ok(())
    }

    fn is_pinned(&self, commit: &str) -> bool {
        self.repo().is_ok_and(|repo| {
            repo.try_find_reference(format!("refs/pins/{commit}").as_str())
                .is_ok_and(|r| r.is_some())
        })
    }

    /// Writes `refs/pins/<commit>`; the caller holds the mirror's lock.
    fn pin_locked(&self, commit: &str) -> Result<(), GitError> {
        if self.is_pinned(commit) {
            return Ok(());
        }
        let _writing = self.begin_write();
        let repo = self.repo()?;
        let err = |e| GitError::git("pinning a commit in the mirror", &self.shown_url, e);
        let id = gix::ObjectId::from_hex(commit.as_bytes())
            .map_err(|e| err(gix::Error::from_error(e)))?;
        let mut attempt = 0;
        loop {
            let result = repo.reference(
                format!("refs/pins/{commit}").as_str(),
                id,
                gix::refs::transaction::PreviousValue::Any,
                "comfyver: pin",
            );
            match result {
                Ok(_) => return Ok(()),
                // A writer whose lock we did not see pinned it meanwhile.
                Err(_) if self.is_pinned(commit) => return Ok(()),
                // Its ref lock file is in the way for a moment: try again.
                Err(_) if attempt < PIN_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(50 * attempt));
                }
                Err(e) => return Err(err(e)),
            }
        }
    }

    /// Clears git lock files left by a dead writer (see
    /// [`Mirror::clear_stale_git_locks`]) and records this process as the
    /// mirror's writer until the returned guard is dropped.
    fn begin_write(&self) -> WriterRecord {
        self.clear_stale_git_locks();
        let path = self.path.join(WRITER_RECORD);
        let mine = format!("{} {}\n", comfyver_fs::host_id(), std::process::id());
        let _ = comfyver_fs::write_atomic(&path, mine.as_bytes());
        WriterRecord { path, mine }
    }

    /// Removes `*.lock` files left in the mirror by a process killed mid-fetch.
    /// The caller holds the mirror's cross-process lock, but that lock may not
    /// be seen by another host, so a lock file goes at once only when the
    /// last recorded writer is provably gone (no record, or same host and a
    /// dead pid); otherwise only lock files older than [`GIT_LOCK_STALE_AGE`].
    fn clear_stale_git_locks(&self) {
        let record = self.path.join(WRITER_RECORD);
        let writer_gone = match std::fs::read_to_string(&record) {
            Err(_) => true,
            Ok(text) => {
                let mut parts = text.split_whitespace();
                let host = parts.next().unwrap_or_default();
                let pid = parts.next().and_then(|p| p.parse::<u32>().ok());
                let dead_here = host == comfyver_fs::host_id()
                    && pid.is_some_and(|p| {
                        p != std::process::id() && !comfyver_fs::child::process_alive(p)
                    });
                dead_here || older_than(&record, GIT_LOCK_STALE_AGE)
            }
        };
        for entry in walkdir::WalkDir::new(&self.path)
            .max_depth(6)
            .into_iter()
            .filter_entry(|e| e.file_name() != "objects")
            .flatten()
        {
            if entry.file_type().is_file()
                && entry.file_name().to_string_lossy().ends_with(".lock")
                && (writer_gone || older_than(entry.path(), GIT_LOCK_STALE_AGE))
            {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// `<mirror>/comfyver-writer`: `<host id> <pid>` of the process writing the
/// mirror now (removed when it is done).
const WRITER_RECORD: &str = "comfyver-writer";

/// How often a pin is retried while another writer's ref lock is in the way.
const PIN_ATTEMPTS: u64 = 5;

/// How old a git lock file (or writer record) in a mirror must be before it
/// is removed when its writer cannot be proven dead (it may be another host
/// whose lock we do not see): 10 minutes. git holds such files for moments.
const GIT_LOCK_STALE_AGE: Duration = Duration::from_secs(600);

/// Removes the writer record on drop, if it is still ours.
struct WriterRecord {
    path: PathBuf,
    mine: String,
}

impl Drop for WriterRecord {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|t| t == self.mine) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn older_than(path: &Path, age: Duration) -> bool {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|e| e > age)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}
