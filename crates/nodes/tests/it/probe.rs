//! `probe_core`: what realize learns of a core before its checkout, read from
//! a remote that serves partial fetches without fetching the commit, and
//! from one that does not by fetching it. Real repositories served by git's
//! own `upload-pack`, over file://, git:// (git's daemon on loopback) and
//! http:// (`git http-backend` on loopback).

use std::path::Path;
use std::sync::Mutex;

use comfyver_fs::CacheLayout;
use comfyver_git::{Mirror, TreeFile};
use comfyver_nodes::shared_core::{ensure_shared_core, probe_core};
use comfyver_nodes::{NodesOptions, Reporter};
use comfyver_spec::{RepoUrl, UrlRewrites};
use comfyver_testkit::git::{GitDaemon, GitHttp, Repo};

const REQUIREMENTS: &str = "torch>=2.0\nnumpy\n";

/// A core that takes `--base-directory`, with a requirements file, a link
/// and a file big enough that a full fetch is not the same as a peek.
fn core(root: &Path, filter: bool) -> (Repo, String) {
    let mut core = Repo::new(root, "ComfyUI");
    core.write(&[
        (
            "comfy/cli_args.py",
            "parser.add_argument(\"--base-directory\")\n",
        ),
        ("requirements.txt", REQUIREMENTS),
        ("comfy/weights.py", &"# padding\n".repeat(50_000)),
    ]);
    std::os::unix::fs::symlink("requirements.txt", core.work().join("linked.txt")).unwrap();
    let commit = core.commit("core");
    core.push();
    if filter {
        core.allow_filter();
    }
    (core, commit)
}

/// Records the events the probe reports.
#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl comfyver_git::Reporter for Events {
    fn fetching(&self, _repo: &str, what: &str) {
        self.0.lock().unwrap().push(format!("fetch {what}"));
    }
    fn reading_remote(&self, _repo: &str, _commit: &str, paths: &[&str]) {
        self.0
            .lock()
            .unwrap()
            .push(format!("peek {}", paths.join(" ")));
    }
}

impl Reporter for Events {}

impl Events {
    fn taken(&self) -> Vec<String> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

const PATHS: [&str; 4] = ["requirements.txt", "linked.txt", "comfy", "no/such.txt"];

fn expected() -> Vec<TreeFile> {
    vec![
        TreeFile::Blob(REQUIREMENTS.as_bytes().to_vec()),
        TreeFile::Other,
        TreeFile::Other,
        TreeFile::Absent,
    ]
}

fn mirror_has(layout: &CacheLayout, url: &RepoUrl, commit: &str) -> bool {
    Mirror::existing(layout, url, &UrlRewrites::default()).is_some_and(|m| m.has_commit(commit))
}

/// Names in `<cache>/git` other than mirrors: temporaries left behind.
fn leftovers(layout: &CacheLayout) -> Vec<String> {
    std::fs::read_dir(layout.root().join("git"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".git"))
        .collect()
}

/// Probes the core at `<root>/ComfyUI.git` through `url` (made by `url_of`
/// from that path), checks what it read and what it fetched, then checks it
/// out and probes again.
fn probe_through(filter: bool, url_of: impl FnOnce(&Path) -> String) {
    let tmp = tempfile::tempdir().unwrap();
    let (core, commit) = core(tmp.path(), filter);
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let url = RepoUrl::parse(&url_of(core.bare())).unwrap();
    let opts = NodesOptions::default();
    let events = Events::default();
    let probe = probe_core(&layout, &url, &commit, &PATHS, &opts, &events).unwrap();
    assert!(probe.shared);
    assert_eq!(probe.files, expected());
    let seen = events.taken();
    assert_eq!(
        seen[0],
        format!("peek comfy/cli_args.py {}", PATHS.join(" "))
    );
    if filter {
        assert_eq!(seen.len(), 1, "nothing fetched into the mirror: {seen:?}");
        assert!(
            !mirror_has(&layout, &url, &commit),
            "read without the commit"
        );
    } else {
        assert_eq!(seen.len(), 2, "the commit fetched: {seen:?}");
        assert!(seen[1].starts_with("fetch "), "{seen:?}");
        assert!(mirror_has(&layout, &url, &commit));
    }
    assert_eq!(leftovers(&layout), Vec::<String>::new());

    // The checkout gives the same files, and once it is there the probe
    // reads them from it: no network.
    ensure_shared_core(&layout, &url, &commit, &opts, &events).unwrap();
    events.taken();
    let again = probe_core(&layout, &url, &commit, &PATHS, &opts, &events).unwrap();
    assert_eq!(again, probe);
    assert_eq!(events.taken(), Vec::<String>::new());
}

#[test]
fn a_remote_that_filters_gives_the_files_without_the_commit() {
    probe_through(true, |bare| format!("file://{}", bare.display()));
}

#[test]
fn a_remote_that_does_not_filter_gives_the_same_files_by_fetching_the_commit() {
    probe_through(false, |bare| format!("file://{}", bare.display()));
}

#[test]
fn over_git_daemon_both_kinds_of_remote_give_the_same_files() {
    for filter in [true, false] {
        let mut daemon = None;
        probe_through(filter, |bare| {
            let served = daemon.insert(GitDaemon::start(bare.parent().unwrap()));
            served.url("ComfyUI.git")
        });
    }
}

#[test]
fn over_http_both_kinds_of_remote_give_the_same_files() {
    for filter in [true, false] {
        let mut server = None;
        probe_through(filter, |bare| {
            let served = server.insert(GitHttp::start(bare.parent().unwrap()));
            served.url("ComfyUI.git")
        });
    }
}

#[test]
fn offline_the_probe_reads_the_mirror_or_says_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let (core, commit) = core(tmp.path(), true);
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let url = RepoUrl::parse(&core.file_url()).unwrap();
    let offline = NodesOptions {
        offline: true,
        ..NodesOptions::default()
    };
    let err = probe_core(&layout, &url, &commit, &PATHS, &offline, &Events::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains(&commit) && err.contains("offline"), "{err}");
    let events = Events::default();
    Mirror::open(&layout, &url, &UrlRewrites::default())
        .unwrap()
        .ensure_commit(&commit, false)
        .unwrap();
    let probe = probe_core(&layout, &url, &commit, &PATHS, &offline, &events).unwrap();
    assert_eq!(probe.files, expected());
    assert_eq!(events.taken(), Vec::<String>::new());
}
