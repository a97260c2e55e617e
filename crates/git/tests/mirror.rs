//! Mirror behaviour against real repositories over file:// and git://.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

use comfyver_fs::CacheLayout;
use comfyver_git::{GitError, Mirror, Reporter};
use comfyver_spec::{RepoUrl, UrlRewrites};
use comfyver_testkit::git::{GitDaemon, Repo};
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    assert!(matches!(err, GitError::CommitUnavailable { .. }), "{err}");
    assert!(err.to_string().contains(absent));
    commits.push(r.commit("three"));
    r.push();
    daemon.stop();
    let err = m.ensure_commit(&commits[2], true).unwrap_err();
    match err {
        GitError::Offline { commit, .. } => assert_eq!(commit, commits[2]),
        other => panic!("{other}"),
    }
}

/// A fetch from `url` with a 1 s limit: it must end with `FetchTimeout` soon,
/// and the mirror's lock must be free again.
fn assert_fetch_times_out(url: &str, layout: &CacheLayout) {
    let repo = RepoUrl::parse(url).unwrap();
    let m = Mirror::open(layout, &repo, &UrlRewrites::default())
        .unwrap()
        .with_git_timeout(Duration::from_secs(1));
    let t0 = Instant::now();
    let err = m
        .ensure_commit("2222222222222222222222222222222222222222", false)
        .unwrap_err();
    let took = t0.elapsed();
    assert!(matches!(err, GitError::FetchTimeout { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains("COMFYVER_GIT_TIMEOUT"), "{text}");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    let lock = layout.lock_path("git", &repo.slug());
    assert!(
        comfyver_fs::FileLock::try_acquire(&lock).unwrap().is_some(),
        "the stalled fetch released the mirror lock"
    );
}

#[test]
fn a_server_that_accepts_and_never_answers_ends_in_a_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accept and hold connections, never writing a byte.
    let held = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in listener.incoming().take(2) {
            conns.push(c);
        }
        std::thread::sleep(Duration::from_secs(5));
    });
    let layout = CacheLayout::new(tmp.path().join("cache"));
    assert_fetch_times_out(&format!("git://127.0.0.1:{port}/o/stall.git"), &layout);
    drop(held);
}

#[test]
fn a_git_daemon_paused_with_sigstop_ends_in_a_timeout() {
    let tmp = tempfile::tempdir().unwrap();
    let _ = pack(tmp.path());
    let daemon = GitDaemon::start(tmp.path());
    let signal = |sig: &str| {
        let ok = std::process::Command::new("kill")
            .args([sig, &daemon.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP");
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let url = daemon.url("pack.git");
    let outcome = std::panic::catch_unwind(|| assert_fetch_times_out(&url, &layout));
    signal("-CONT");
    outcome.unwrap();
}

#[test]
fn fetch_errors_never_show_the_credentials_of_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let port = comfyver_testkit::git::free_port();
    for url in [
        format!("http://user:pw-s3cret-1@127.0.0.1:{port}/o/r.git"),
        format!("https://tok-s3cret-2@127.0.0.1:{port}/o/r.git"),
        format!("git://user:pw-s3cret-3@127.0.0.1:{port}/o/r.git"),
    ] {
        let repo = RepoUrl::parse(&url).unwrap();
        let m = Mirror::open(&layout, &repo, &UrlRewrites::default())
            .unwrap()
            .with_git_timeout(Duration::from_secs(5));
        let err = m
            .ensure_commit("3333333333333333333333333333333333333333", false)
            .unwrap_err();
        let mut text = err.to_string();
        let mut cause = std::error::Error::source(&err);
        while let Some(c) = cause {
            text.push_str(&format!(" | {c} | {c:?}"));
            cause = c.source();
        }
        text.push_str(&format!("{err:?}"));
        assert!(!text.contains("s3cret"), "{url}: {text}");
    }
}

/// A loopback HTTP server that accepts every connection, reads the request
/// and then stalls: with `headers`, after sending a response head that
/// promises a body it never sends; without, before answering at all.
fn stalling_http_server(headers: bool) -> u16 {
    use std::io::{Read, Write};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
            let _ = conn.read(&mut [0u8; 4096]);
            if headers {
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\n\
                      Content-Type: application/x-git-upload-pack-advertisement\r\n\
                      Content-Length: 4096\r\n\r\n001e# service=git-upload-pack\n",
                );
            }
            held.push(conn);
        }
    });
    port
}

#[test]
fn an_http_server_that_stalls_ends_in_a_timeout_naming_the_setting() {
    for headers in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let layout = CacheLayout::new(tmp.path().join("cache"));
        let port = stalling_http_server(headers);
        let url = format!("http://127.0.0.1:{port}/o/stall.git");
        // The watchdog: the fetch must end on its own, long before this.
        let (done, finished) = std::sync::mpsc::channel();
        let worker = std::thread::spawn(move || {
            let repo = RepoUrl::parse(&url).unwrap();
            let m = Mirror::open(&layout, &repo, &UrlRewrites::default())
                .unwrap()
                .with_git_timeout(Duration::from_secs(2));
            let t0 = Instant::now();
            let err = m
                .ensure_commit("4444444444444444444444444444444444444444", false)
                .unwrap_err();
            let took = t0.elapsed();
            let lock = layout.lock_path("git", &repo.slug());
            let free = comfyver_fs::FileLock::try_acquire(&lock).unwrap().is_some();
            let _ = done.send(());
            (err, took, free)
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(60)).is_ok(),
            "headers={headers}: the fetch still hangs after 60 s"
        );
        let (err, took, free) = worker.join().unwrap();
        assert!(
            matches!(err, GitError::FetchTimeout { seconds: 2, .. }),
            "headers={headers}: {err}"
        );
        assert!(err.to_string().contains("COMFYVER_GIT_TIMEOUT"), "{err}");
        // Two fetches (by id, then all refs), each bounded by the 2 s limit.
        assert!(
            took < Duration::from_secs(15),
            "headers={headers}: took {took:?}"
        );
        assert!(
            free,
            "headers={headers}: the stalled fetch released the mirror lock"
        );
    }
}
