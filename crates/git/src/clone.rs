//! A checkout of one commit from a mirror: a new work tree whose
//! repository holds just that commit, its objects the mirror's packs.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::AtomicBool;

use crate::{GitError, Mirror};

impl Mirror {
    /// A new repository at `work` (created, or an empty directory) holding
    /// `commit`, which must be in the mirror (see [`Mirror::ensure_commit`]),
    /// one commit deep (`.git/shallow` names it), `HEAD` detached at it and
    /// its tree checked out. Its objects are the mirror's packs, hard-linked
    /// (copied across filesystems): packs are never changed once written, so
    /// this costs no disk and no second packing and indexing of the commit.
    /// Where the mirror's packs do not hold the commit (loose objects), it
    /// is fetched from the mirror instead, bounded by the git timeout. The
    /// caller points `origin` where it wants and checks out submodules.
    pub fn check_out(&self, commit: &str, work: &Path) -> Result<gix::Repository, GitError> {
        clone_one_commit(self, commit, work, self.shown_url())
    }
}

fn clone_one_commit(
    mirror: &Mirror,
    commit: &str,
    work: &Path,
    shown: &str,
) -> Result<gix::Repository, GitError> {
    let err = |e| GitError::git("checkout", shown, e);
    let id =
        gix::ObjectId::from_hex(commit.as_bytes()).map_err(|e| err(gix::Error::from_error(e)))?;
    let mut repo = crate::init::init(work, crate::init::Kind::WithWorktree, shown)?;
    link_packs(mirror, &repo)?;
    // Reopened, so the object store sees the packs just linked in.
    repo = gix::open_opts(repo.git_dir(), gix::open::Options::isolated()).map_err(err)?;
    if repo.has_object(id) {
        comfyver_fs::write_atomic(
            &repo.git_dir().join("shallow"),
            format!("{commit}\n").as_bytes(),
        )?;
    } else {
        fetch_one_commit(&repo, mirror, commit, shown)?;
    }
    // A detached HEAD is the commit id in `.git/HEAD` (no reflog: that would
    // need a committer identity, which a worker need not have).
    comfyver_fs::write_atomic(
        &repo.git_dir().join("HEAD"),
        format!("{commit}\n").as_bytes(),
    )?;
    let interrupt = AtomicBool::new(false);
    let tree = repo
        .find_commit(id)
        .and_then(|c| c.tree_id())
        .map_err(err)?
        .detach();
    let mut index = repo.index_from_tree(&tree).map_err(err)?;
    let mut opts = repo
        .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
        .map_err(err)?;
    opts.destination_is_initially_empty = true;
    let objects = repo
        .objects
        .clone()
        .into_arc()
        .map_err(|e| err(gix::Error::from_error(e)))?;
    gix::worktree::state::checkout(
        &mut index,
        work,
        objects,
        &gix::progress::Discard,
        &gix::progress::Discard,
        &interrupt,
        opts,
    )
    .map_err(err)?;
    index.write(Default::default()).map_err(err)?;
    Ok(repo)
}

/// Hard-links every complete pack of the mirror (its `.idx` beside its
/// `.pack`) into `repo`'s object store, copying where a link is refused
/// (another filesystem, `fs.protected_hardlinks`). A pack whose index is not
/// there yet is still being written by another worker's fetch, and skipped.
fn link_packs(mirror: &Mirror, repo: &gix::Repository) -> Result<(), GitError> {
    let from = mirror.path().join("objects/pack");
    let to = repo.objects.store_ref().path().join("pack");
    std::fs::create_dir_all(&to).map_err(|e| GitError::io("could not create directory", &to, e))?;
    let entries = match std::fs::read_dir(&from) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(GitError::io("could not list the packs of", &from, e)),
    };
    for entry in entries {
        let idx = entry
            .map_err(|e| GitError::io("could not list the packs of", &from, e))?
            .path();
        if idx.extension().is_none_or(|x| x != "idx") {
            continue;
        }
        let pack = idx.with_extension("pack");
        if !pack.is_file() {
            continue;
        }
        for file in [&pack, &idx] {
            let dest = to.join(file.file_name().unwrap_or_default());
            if std::fs::hard_link(file, &dest).is_err() {
                std::fs::copy(file, &dest)
                    .map_err(|e| GitError::io("could not copy the pack", file, e))?;
            }
        }
    }
    Ok(())
}

/// Fetches `commit` one commit deep from the mirror, where it is pinned,
/// into `repo`. The mirror is read through a contained `git upload-pack`
/// (own process group, killed with us and at the git timeout), not through
/// a transport gix would spawn itself.
fn fetch_one_commit(
    repo: &gix::Repository,
    mirror: &Mirror,
    commit: &str,
    shown: &str,
) -> Result<(), GitError> {
    let err = |e| GitError::git("checkout", shown, e);
    let limit = mirror.limit()?;
    let mirror_path = mirror.path().to_string_lossy().into_owned();
    let Some((conn, guard)) = crate::transport::bounded_transport(&mirror_path, limit)
        .map_err(|e| err(gix::Error::from_error(e)))?
    else {
        return Err(err(gix::Error::from_error(std::io::Error::other(format!(
            "the mirror {mirror_path} is not a local path"
        )))));
    };
    let one = NonZeroU32::MIN;
    let interrupt = AtomicBool::new(false);
    let pin = format!("refs/pins/{commit}");
    let fetched = (|| -> Result<(), gix::Error> {
        repo.remote_at_without_url_rewrite(mirror_path.as_str())?
            .with_fetch_tags(gix::remote::fetch::Tags::None)
            .with_refspecs([pin.as_str()], gix::remote::Direction::Fetch)?
            .to_connection_with_transport(conn)
            .prepare_fetch(gix::progress::Discard, Default::default())?
            .with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(one))
            .receive(gix::progress::Discard, &interrupt)?;
        Ok(())
    })();
    let stalled = guard.stalled();
    drop(guard);
    if stalled {
        return Err(GitError::FetchTimeout {
            repo: shown.to_string(),
            seconds: limit.as_secs(),
        });
    }
    fetched.map_err(err)
}
