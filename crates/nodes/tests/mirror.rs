//! Mirror behaviour against real repositories over file:// and git://.

use comfyver_fs::CacheLayout;
use comfyver_nodes::{Mirror, NodesError, Reporter};
use comfyver_spec::{RepoUrl, UrlRewrites};
use comfyver_testkit::git::{GitDaemon, Repo};
use std::sync::Mutex;

#[derive(Default)]
struct Count(Mutex<Vec<String>>);
impl Reporter for Count {
    fn fetching(&self, repo: &str, what: &str) {
        self.0.lock().unwrap().push(format!("{repo} {what}"));
    }
}

fn pack(root: &std::path::Path) -> (Repo, Vec<String>) {
    let mut r = Repo::new(root, "pack");
    r.write(&[("__init__.py", "NODE_CLASS_MAPPINGS = {}\n")]);
    let c1 = r.commit("one");
    let c2 = r.commit("two");
    r.push();
    (r, vec![c1, c2])
}

#[test]
fn file_mirror_fetches_once_and_then_costs_no_network() {
    let tmp = tempfile::tempdir().unwrap();
    let (r, commits) = pack(tmp.path());
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let url = RepoUrl::parse(&r.file_url()).unwrap();
    let m = Mirror::open(&layout, &url, &UrlRewrites::default()).unwrap();
    assert_eq!(m.path(), layout.git_mirror(&url.slug()));
    assert!(!m.has_commit(&commits[0]));
    let count = Count::default();
    // A non-tip commit, fetched by id.
    m.ensure_commit_with(&commits[0], false, &count).unwrap();
    assert!(m.has_commit(&commits[0]));
    assert_eq!(count.0.lock().unwrap().len(), 1);
    m.ensure_commit_with(&commits[0], false, &count).unwrap();
    m.ensure_commit_with(&commits[0], true, &count).unwrap();
    assert_eq!(
        count.0.lock().unwrap().len(),
        1,
        "cached commit: no network"
    );
    assert!(
        m.path().join(format!("refs/pins/{}", commits[0])).exists() || {
            let packed = std::fs::read_to_string(m.path().join("packed-refs")).unwrap_or_default();
            packed.contains(&commits[0])
        }
    );
    m.fetch_all().unwrap();
    assert_eq!(
        m.commits_with_prefix(&commits[1][..7]).unwrap(),
        vec![commits[1].clone()]
    );
    assert!(m.commits_with_prefix("zz").unwrap().is_empty());
}

#[test]
fn git_daemon_mirror_and_missing_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut r, mut commits) = pack(tmp.path());
    let mut daemon = GitDaemon::start(tmp.path());
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let url = RepoUrl::parse(&daemon.url("pack.git")).unwrap();
    let m = Mirror::open(&layout, &url, &UrlRewrites::default()).unwrap();
    m.ensure_commit(&commits[1], false).unwrap();
    let absent = "1111111111111111111111111111111111111111";
    let err = m.ensure_commit(absent, false).unwrap_err();
    assert!(matches!(err, NodesError::CommitUnavailable { .. }), "{err}");
    assert!(err.to_string().contains(absent));
    commits.push(r.commit("three"));
    r.push();
    daemon.stop();
    let err = m.ensure_commit(&commits[2], true).unwrap_err();
    match err {
        NodesError::OfflineMissing { missing } => {
            assert_eq!(missing.len(), 1);
            assert_eq!(missing[0].commit, commits[2]);
        }
        other => panic!("{other}"),
    }
}
