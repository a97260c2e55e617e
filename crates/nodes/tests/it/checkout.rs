//! Checkouts, submodules, sharing, links and offline errors against real
//! repositories served over file:// and git:// (git's daemon on loopback).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use comfyver_fs::CacheLayout;
use comfyver_nodes::shared_core::{
    core_cache_dir, core_link, ensure_shared_core, link_core, probe_core, shared_core_path,
};
use comfyver_nodes::{
    NoReporter, NodesError, NodesOptions, checkout_core, ensure_nodes, fill_caches,
    is_checkout_complete, link_nodes,
};
use comfyver_spec::{RepoUrl, ResolvedLock, lock::LOCK_VERSION, lock::LockedRepo};
use comfyver_testkit::git::{GitDaemon, Repo, git};

fn locked(name: Option<&str>, url: &str, commit: &str) -> LockedRepo {
    LockedRepo {
        name: name.map(str::to_string),
        repo: url.to_string(),
        git_ref: None,
        requested_commit: None,
        commit: commit.to_string(),
    }
}

fn lock(core: LockedRepo, nodes: Vec<LockedRepo>) -> ResolvedLock {
    ResolvedLock {
        lock_version: LOCK_VERSION,
        version_id: "v".into(),
        spec_digest: "blake3:00".into(),
        tool_version: "0".into(),
        comfy: core,
        custom_nodes: nodes,
        models: vec![],
        python: None,
    }
}

fn pack(root: &Path, name: &str) -> Repo {
    let mut r = Repo::new(root, name);
    r.write(&[("__init__.py", &format!("NAME = {name:?}\n"))]);
    r.commit("one");
    r.push();
    r
}

/// HEAD and `git log -1` in `dir` as the node itself would see them.
fn head_of(dir: &Path) -> (String, String) {
    (
        git(dir, &["rev-parse", "HEAD"]),
        git(dir, &["log", "-1", "--format=%H %s"]),
    )
}

#[test]
fn checkout_with_submodule_answers_git_like_a_clone() {
    let tmp = tempfile::tempdir().unwrap();
    let sub = pack(tmp.path(), "sub");
    let sub_commit = sub.head();
    let mut inner = pack(tmp.path(), "inner");
    inner.add_submodule(&sub, "deps/sub");
    inner.push();
    let inner_commit = inner.head();
    let mut node = pack(tmp.path(), "node");
    let node_commit = node.add_submodule(&inner, "vendor/inner");
    node.write(&[("later.py", "x = 2\n")]);
    node.commit("later, not locked");
    node.push();

    let layout = CacheLayout::new(tmp.path().join("cache"));
    let l = lock(
        locked(None, &node.file_url(), &node_commit),
        vec![locked(Some("node"), &node.file_url(), &node_commit)],
    );
    let got = ensure_nodes(&l, &layout, &NodesOptions::default(), &NoReporter).unwrap();
    assert_eq!(got.len(), 1);
    let entry = &got[0].path;
    assert_eq!(*entry, layout.node_checkout(&got[0].slug, &node_commit));
    assert!(is_checkout_complete(entry));
    assert!(
        !entry.join("later.py").exists(),
        "the locked commit, not the tip"
    );
    let (head, log) = head_of(entry);
    assert_eq!(head, node_commit);
    assert!(
        log.starts_with(&format!("{node_commit} add submodule")),
        "{log}"
    );
    assert_eq!(
        git(entry, &["remote", "get-url", "origin"]),
        node.file_url()
    );
    // One commit deep, and the work tree matches the index.
    assert_eq!(git(entry, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(
        git(
            entry,
            &["status", "--porcelain", "--ignore-submodules=none"]
        ),
        ""
    );
    // Submodules, recursively, at the recorded commits.
    assert_eq!(head_of(&entry.join("vendor/inner")).0, inner_commit);
    assert_eq!(head_of(&entry.join("vendor/inner/deps/sub")).0, sub_commit);
    assert!(entry.join("vendor/inner/deps/sub/__init__.py").is_file());
    // Each submodule went through its own mirror.
    for r in [&sub, &inner] {
        let slug = RepoUrl::parse(&r.file_url()).unwrap().slug();
        assert!(layout.git_mirror(&slug).is_dir());
    }
}

#[test]
fn missing_submodule_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let sub = pack(tmp.path(), "gone");
    let mut node = pack(tmp.path(), "node");
    let c = node.add_submodule(&sub, "libs/gone");
    node.push();
    std::fs::remove_dir_all(sub.bare()).unwrap();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let l = lock(
        locked(None, &node.file_url(), &c),
        vec![locked(Some("node"), &node.file_url(), &c)],
    );
    let err = ensure_nodes(&l, &layout, &NodesOptions::default(), &NoReporter).unwrap_err();
    assert!(
        matches!(err, NodesError::Submodule { ref path, .. } if path == "libs/gone"),
        "{err}"
    );
    assert!(err.to_string().contains("libs/gone"), "{err}");
    assert!(!is_checkout_complete(&layout.node_checkout(
        &RepoUrl::parse(&node.file_url()).unwrap().slug(),
        &c
    )));
}

#[test]
fn same_commit_shares_one_entry_and_links_follow_the_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = pack(tmp.path(), "a");
    let a1 = a.head();
    let b = pack(tmp.path(), "b");
    let mut daemon = GitDaemon::start(tmp.path());
    let a_url = daemon.url("a.git");
    let b_url = daemon.url("b.git");
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let opts = NodesOptions::default();
    let v1 = lock(
        locked(None, &a_url, &a1),
        vec![
            locked(Some("a"), &a_url, &a1),
            locked(Some("b"), &b_url, &b.head()),
        ],
    );
    let v2 = lock(
        locked(None, &a_url, &a1),
        vec![locked(Some("a"), &a_url, &a1)],
    );
    let homes: Vec<PathBuf> = (1..=3)
        .map(|i| tmp.path().join(format!("home{i}")))
        .collect();
    let link_all = |home: &Path, l: &ResolvedLock| {
        let got = ensure_nodes(l, &layout, &opts, &NoReporter).unwrap();
        let pairs: Vec<_> = got
            .iter()
            .map(|n| (n.name.clone(), n.path.clone()))
            .collect();
        link_nodes(home, &pairs, layout.custom_nodes_dir()).unwrap()
    };
    link_all(&homes[0], &v1);
    link_all(&homes[1], &v2);
    let ino = |home: &Path, name: &str| {
        std::fs::metadata(home.join("custom_nodes").join(name))
            .unwrap()
            .ino()
    };
    assert_eq!(
        ino(&homes[0], "a"),
        ino(&homes[1], "a"),
        "one shared checkout"
    );
    // A different commit of the same node gets its own entry.
    a.write(&[("new.py", "")]);
    let a2 = a.commit("two");
    a.push();
    let v3 = lock(
        locked(None, &a_url, &a1),
        vec![locked(Some("a"), &a_url, &a2)],
    );
    link_all(&homes[2], &v3);
    assert_ne!(ino(&homes[0], "a"), ino(&homes[2], "a"));
    assert!(homes[2].join("custom_nodes/a/new.py").exists());

    // Re-linking home1 with v2's nodes removes b's now-stale link only.
    let core_file = homes[0].join("custom_nodes/websocket_image_save.py");
    std::fs::write(&core_file, "# shipped with the core\n").unwrap();
    let out = link_all(&homes[0], &v2);
    assert_eq!(out.removed, vec!["b".to_string()]);
    assert!(!homes[0].join("custom_nodes/b").exists());
    assert!(core_file.exists(), "files comfyver did not create stay");

    // A real directory at a link's place is kept and reported.
    let own = homes[1].join("custom_nodes/b");
    std::fs::create_dir_all(&own).unwrap();
    std::fs::write(own.join("mine.py"), "").unwrap();
    let got = ensure_nodes(&v1, &layout, &opts, &NoReporter).unwrap();
    let pairs: Vec<_> = got
        .iter()
        .map(|n| (n.name.clone(), n.path.clone()))
        .collect();
    let err = link_nodes(&homes[1], &pairs, layout.custom_nodes_dir()).unwrap_err();
    assert!(
        matches!(err, NodesError::ForeignEntry { ref name, .. } if name == "b"),
        "{err}"
    );
    assert!(err.to_string().contains("move it away"), "{err}");
    assert!(own.join("mine.py").exists());
    assert_eq!(
        ino(&homes[1], "a"),
        ino(&homes[0], "a"),
        "other links still made"
    );

    // Warm and offline with the daemon gone: stat-only, no error.
    daemon.stop();
    let offline = NodesOptions {
        offline: true,
        ..NodesOptions::default()
    };
    ensure_nodes(&v1, &layout, &offline, &NoReporter).unwrap();
}

#[test]
fn offline_lists_exactly_what_is_missing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = pack(tmp.path(), "a");
    let a1 = a.head();
    let b = pack(tmp.path(), "b");
    let core = pack(tmp.path(), "core");
    let mut daemon = GitDaemon::start(tmp.path());
    let port_url = daemon.url("");
    let url = |n: &str| format!("{port_url}{n}.git");
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let first = lock(
        locked(None, &url("core"), &core.head()),
        vec![locked(Some("a"), &url("a"), &a1)],
    );
    fill_caches(&first, &layout, &NodesOptions::default(), &NoReporter).unwrap();
    let a2 = a.commit("two");
    a.push();
    let second = lock(
        locked(None, &url("core"), &core.head()),
        vec![
            locked(Some("a"), &url("a"), &a1),
            locked(Some("a2"), &url("a"), &a2),
            locked(Some("b"), &url("b"), &b.head()),
        ],
    );
    daemon.stop();
    let offline = NodesOptions {
        offline: true,
        ..NodesOptions::default()
    };
    let err = fill_caches(&second, &layout, &offline, &NoReporter).unwrap_err();
    let NodesError::OfflineMissing { missing } = &err else {
        panic!("{err}");
    };
    let mut got: Vec<_> = missing
        .iter()
        .map(|m| (m.repo.clone(), m.commit.clone(), m.no_mirror))
        .collect();
    got.sort();
    let mut want = vec![(url("a"), a2.clone(), false), (url("b"), b.head(), true)];
    want.sort();
    assert_eq!(got, want, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&a2) && text.contains(&b.head()) && !text.contains(&a1),
        "{text}"
    );
}

#[test]
fn core_checkout_is_per_home_and_refuses_foreign_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let core = pack(tmp.path(), "ComfyUI");
    let c = core.head();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let url = RepoUrl::parse(&core.file_url()).unwrap();
    let opts = NodesOptions::default();
    let home = tmp.path().join("comfy-v/ComfyUI");
    assert!(!checkout_core(&layout, &url, &c, &home, &opts, &NoReporter).unwrap());
    assert!(is_checkout_complete(&home));
    assert_eq!(head_of(&home).0, c);
    assert!(
        checkout_core(&layout, &url, &c, &home, &opts, &NoReporter).unwrap(),
        "second time cached"
    );
    // Offline from the mirror for another home: no network needed.
    std::fs::remove_dir_all(core.bare()).unwrap();
    let other = tmp.path().join("comfy-w/ComfyUI");
    let offline = NodesOptions {
        offline: true,
        ..NodesOptions::default()
    };
    checkout_core(&layout, &url, &c, &other, &offline, &NoReporter).unwrap();
    assert_ne!(
        std::fs::metadata(home.join("__init__.py")).unwrap().ino(),
        std::fs::metadata(other.join("__init__.py")).unwrap().ino(),
        "each home has its own core"
    );
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("x"), "").unwrap();
    let err = checkout_core(&layout, &url, &c, &foreign, &opts, &NoReporter).unwrap_err();
    assert!(matches!(err, NodesError::CoreInTheWay { .. }), "{err}");
    assert!(foreign.join("x").exists());
}

#[test]
fn entry_without_marker_is_rebuilt_and_temps_cleaned() {
    let tmp = tempfile::tempdir().unwrap();
    let node = pack(tmp.path(), "n");
    let c = node.head();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let slug = RepoUrl::parse(&node.file_url()).unwrap().slug();
    let entry = layout.node_checkout(&slug, &c);
    // What a crash could leave: a half entry and a temp sibling.
    std::fs::create_dir_all(entry.join("half")).unwrap();
    let stale = layout.custom_nodes_dir().join(format!(
        ".tmp-{slug}@{c}.{}-{}-crashed0",
        comfyver_fs::host_id(),
        dead_pid()
    ));
    std::fs::create_dir_all(&stale).unwrap();
    let l = lock(
        locked(None, &node.file_url(), &c),
        vec![locked(Some("n"), &node.file_url(), &c)],
    );
    ensure_nodes(&l, &layout, &NodesOptions::default(), &NoReporter).unwrap();
    assert!(is_checkout_complete(&entry));
    assert!(!entry.join("half").exists());
    assert!(entry.join("__init__.py").exists());
    assert!(!stale.exists());
}

/// A pid that is certainly not running: a child we started and reaped.
fn dead_pid() -> u32 {
    let mut c = std::process::Command::new("true").spawn().unwrap();
    let pid = c.id();
    c.wait().unwrap();
    pid
}

#[test]
fn rewrite_to_a_directory_of_mirror_clones_finds_name_dot_git() {
    let tmp = tempfile::tempdir().unwrap();
    let sub = pack(tmp.path(), "sub");
    let mut node = pack(tmp.path(), "node");
    node.add_submodule(&sub, "vendor/sub");
    // As published: the submodule is recorded by its public URL.
    node.write(&[(
        ".gitmodules",
        "[submodule \"vendor/sub\"]\n\tpath = vendor/sub\n\turl = https://git.example.invalid/o/sub\n",
    )]);
    let c = node.commit("public submodule url");
    node.push();
    // What a user keeps: `git clone --mirror` copies named `<name>.git`.
    let mirrors = tmp.path().join("mirrors/o");
    std::fs::create_dir_all(&mirrors).unwrap();
    for (repo, name) in [(&node, "node.git"), (&sub, "sub.git")] {
        git(
            &mirrors,
            &[
                "clone",
                "-q",
                "--mirror",
                repo.bare().to_str().unwrap(),
                name,
            ],
        );
    }
    let rewrites = comfyver_spec::UrlRewrites::parse_list(
        &format!(
            "https://git.example.invalid/=file://{}/",
            tmp.path().join("mirrors").display()
        ),
        "test",
    )
    .unwrap();
    let opts = NodesOptions {
        rewrites,
        ..NodesOptions::default()
    };
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let url = "https://git.example.invalid/o/node";
    let l = lock(locked(None, url, &c), vec![locked(Some("node"), url, &c)]);
    let got = ensure_nodes(&l, &layout, &opts, &NoReporter).unwrap();
    let entry = &got[0].path;
    assert!(is_checkout_complete(entry));
    assert_eq!(head_of(entry).0, c);
    assert!(
        entry.join("vendor/sub/__init__.py").is_file(),
        "the submodule came through the same rewrite"
    );
    // The checkout's origin is the public URL, not the mirror.
    let origin = git(entry, &["config", "remote.origin.url"]);
    assert_eq!(origin, url);
}

#[test]
fn a_symlinked_gitmodules_is_not_followed_outside_the_checkout() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside.ini");
    std::fs::write(
        &outside,
        "[submodule \"x\"]\n\tpath = x\n\turl = https://git.example.invalid/secret\n",
    )
    .unwrap();
    let node = pack(tmp.path(), "node");
    // git refuses to add such a link, but a server can serve one: craft the
    // commit with plumbing in the bare repository.
    let bare = node.bare();
    let blob = git_stdin(
        bare,
        &["hash-object", "-w", "--stdin"],
        outside.to_str().unwrap(),
    );
    let mut tree = git(bare, &["ls-tree", "main"]);
    tree.push_str(&format!("\n120000 blob {blob}\t.gitmodules\n"));
    let tree = git_stdin(bare, &["mktree"], &tree);
    let c = git(
        bare,
        &[
            "commit-tree",
            &tree,
            "-p",
            "main",
            "-m",
            "linked .gitmodules",
        ],
    );
    git(bare, &["update-ref", "refs/heads/main", &c]);
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let l = lock(
        locked(None, &node.file_url(), &c),
        vec![locked(Some("node"), &node.file_url(), &c)],
    );
    let err = ensure_nodes(&l, &layout, &NodesOptions::default(), &NoReporter).unwrap_err();
    let text = format!("{err}: {:?}", std::error::Error::source(&err));
    assert!(text.contains(".gitmodules"), "{text}");
    // gix refuses it at checkout; `read_inside` would refuse it after.
    assert!(
        text.contains("must not be a symlink") || text.contains("leads outside"),
        "{text}"
    );
    assert!(
        !text.contains("secret"),
        "the outside file was not read: {text}"
    );
    let slug = RepoUrl::parse(&node.file_url()).unwrap().slug();
    assert!(
        !layout.node_checkout(&slug, &c).exists(),
        "no entry published"
    );
}

#[test]
fn a_locked_commit_that_is_not_hex_never_becomes_a_path() {
    let tmp = tempfile::tempdir().unwrap();
    let node = pack(tmp.path(), "node");
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let bad = "../../../../escape";
    let l = lock(
        locked(None, &node.file_url(), &node.head()),
        vec![locked(Some("node"), &node.file_url(), bad)],
    );
    let err = ensure_nodes(&l, &layout, &NodesOptions::default(), &NoReporter).unwrap_err();
    assert!(err.to_string().contains("full 40-hex-digit"), "{err}");
    assert!(!tmp.path().join("escape").exists());
}

/// `git <args>` in `dir` with `input` on stdin; its trimmed stdout.
fn git_stdin(dir: &Path, args: &[&str], input: &str) -> String {
    use std::io::Write;
    let mut child = comfyver_testkit::git::git_command(dir)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "git {args:?} failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn a_shared_core_is_checked_out_once_and_linked_into_homes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut core = Repo::new(tmp.path(), "ComfyUI");
    core.write(&[
        ("main.py", "print('core')\n"),
        (
            "comfy/cli_args.py",
            "parser.add_argument(\"--base-directory\")\n",
        ),
        (
            "custom_nodes/websocket_image_save.py",
            "NODE_CLASS_MAPPINGS = {}\n",
        ),
        ("custom_nodes/gone_later.py", "NODE_CLASS_MAPPINGS = {}\n"),
    ]);
    let c1 = core.commit("core 1");
    core.push();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let url = RepoUrl::parse(&core.file_url()).unwrap();
    let opts = NodesOptions::default();
    let takes = |c: &str| {
        probe_core(&layout, &url, c, &[], &opts, &NoReporter)
            .unwrap()
            .shared
    };
    assert!(takes(&c1), "read from the mirror");
    assert!(
        !core_cache_dir(&layout).exists(),
        "nothing checked out to tell"
    );
    // Filling the caches for a version checks its shared core out.
    let filled = lock(locked(None, &core.file_url(), &c1), vec![]);
    fill_caches(&filled, &layout, &opts, &NoReporter).unwrap();
    let shared = shared_core_path(&layout, &url, &c1);
    assert!(shared.starts_with(core_cache_dir(&layout)));
    assert!(is_checkout_complete(&shared));
    assert!(takes(&c1), "read from the shared checkout");
    assert_eq!(
        ensure_shared_core(&layout, &url, &c1, &opts, &NoReporter).unwrap(),
        shared
    );

    // Two homes link the one checkout; each gets the core's own node files.
    let (h1, h2) = (tmp.path().join("comfy-a"), tmp.path().join("comfy-b"));
    for h in [&h1, &h2] {
        std::fs::create_dir_all(h).unwrap();
        link_core(h, &shared).unwrap();
        assert_eq!(core_link(h), Some(h.join("core")));
        assert!(h.join("custom_nodes/websocket_image_save.py").is_file());
    }
    assert_eq!(
        std::fs::metadata(h1.join("core/main.py")).unwrap().ino(),
        std::fs::metadata(h2.join("core/main.py")).unwrap().ino()
    );

    // Another core commit: the link is re-pointed, a core file it no longer
    // has loses its link, a pack's entry of the same name is kept.
    core.write(&[("comfy/cli_args.py", "parser.add_argument(\"--cpu\")\n")]);
    git(core.work(), &["rm", "-q", "custom_nodes/gone_later.py"]);
    let c2 = core.commit("core 2, no --base-directory");
    core.push();
    assert!(!takes(&c2));
    let newer = ensure_shared_core(&layout, &url, &c2, &opts, &NoReporter).unwrap();
    assert!(!takes(&c2));
    std::fs::remove_file(h1.join("custom_nodes/websocket_image_save.py")).unwrap();
    std::fs::write(h1.join("custom_nodes/websocket_image_save.py"), "mine").unwrap();
    link_core(&h1, &newer).unwrap();
    assert_eq!(std::fs::read_link(h1.join("core")).unwrap(), newer);
    assert!(!h1.join("custom_nodes/gone_later.py").exists());
    assert!(
        std::fs::symlink_metadata(h1.join("custom_nodes/gone_later.py")).is_err(),
        "the stale link is removed"
    );
    assert_eq!(
        std::fs::read_to_string(h1.join("custom_nodes/websocket_image_save.py")).unwrap(),
        "mine"
    );
    assert!(is_checkout_complete(&shared), "the first core is untouched");

    // A real directory where the link goes is not replaced.
    let h3 = tmp.path().join("comfy-c");
    std::fs::create_dir_all(h3.join("core")).unwrap();
    std::fs::write(h3.join("core/precious"), "x").unwrap();
    let err = link_core(&h3, &shared).unwrap_err();
    assert!(matches!(err, NodesError::CoreInTheWay { .. }), "{err}");
    assert!(h3.join("core/precious").is_file());
    assert_eq!(core_link(&h3), None);
}

/// The inode numbers of the pack files under `dir/objects/pack`.
fn pack_inodes(git_dir: &Path) -> Vec<u64> {
    let mut inodes: Vec<u64> = std::fs::read_dir(git_dir.join("objects/pack"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pack"))
        .map(|p| std::fs::metadata(p).unwrap().ino())
        .collect();
    inodes.sort();
    inodes
}

/// A pack with two commits, pushed: the repository, the first, the second.
fn two_commits(root: &Path) -> (Repo, String, String) {
    let mut node = pack(root, "node");
    let first = node.head();
    node.write(&[("later.py", "x = 2\n")]);
    let second = node.commit("two");
    node.push();
    (node, first, second)
}

#[test]
fn a_checkout_links_the_mirrors_packs_and_stays_one_commit_deep() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, first, second) = two_commits(tmp.path());
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let opts = NodesOptions::default();
    // The later commit first, so the mirror holds more than the checkout needs.
    for commit in [&second, &first] {
        let l = lock(
            locked(None, &node.file_url(), commit),
            vec![locked(Some("node"), &node.file_url(), commit)],
        );
        ensure_nodes(&l, &layout, &opts, &NoReporter).unwrap();
    }
    let slug = RepoUrl::parse(&node.file_url()).unwrap().slug();
    let entry = layout.node_checkout(&slug, &first);
    let mirror = pack_inodes(&layout.git_mirror(&slug));
    assert!(!mirror.is_empty());
    assert_eq!(
        pack_inodes(&entry.join(".git")),
        mirror,
        "the checkout's objects are the mirror's packs, not a second copy"
    );
    assert_eq!(head_of(&entry).0, first);
    assert!(!entry.join("later.py").exists());
    assert_eq!(git(&entry, &["rev-list", "--count", "HEAD"]), "1");
    assert_eq!(git(&entry, &["status", "--porcelain"]), "");
    // git itself finds the repository whole (the later commit's objects are
    // there but unreachable from HEAD).
    git(&entry, &["fsck", "--no-dangling", "--no-progress"]);
    // No sample hooks, description or exclude file: nothing reads them, and
    // each costs a file created beside the Python install.
    for (repo, extra) in [
        (
            entry.join(".git"),
            &["index", "shallow", "comfyver-complete"][..],
        ),
        (layout.git_mirror(&slug), &[][..]),
    ] {
        let mut names: Vec<String> = walkdir::WalkDir::new(&repo)
            .into_iter()
            .map(Result::unwrap)
            .filter(|e| e.file_type().is_file())
            .map(|e| e.path().strip_prefix(&repo).unwrap().display().to_string())
            .filter(|n| !n.starts_with("objects/pack/") && !n.starts_with("refs/pins/"))
            .collect();
        names.sort();
        let mut expected: Vec<&str> = ["HEAD", "config"]
            .into_iter()
            .chain(extra.iter().copied())
            .collect();
        expected.sort();
        assert_eq!(names, expected, "files of {}", repo.display());
    }
}

#[test]
fn a_mirror_of_loose_objects_is_still_checked_out() {
    let tmp = tempfile::tempdir().unwrap();
    let node = pack(tmp.path(), "node");
    let commit = node.head();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let url = RepoUrl::parse(&node.file_url()).unwrap();
    let slug = url.slug();
    let mirror =
        comfyver_git::Mirror::open(&layout, &url, &comfyver_spec::UrlRewrites::default()).unwrap();
    mirror.ensure_commit(&commit, false).unwrap();
    // Unpack the mirror's packs into loose objects, as a mirror written by
    // another tool may hold them.
    let pack_dir = layout.git_mirror(&slug).join("objects/pack");
    for p in std::fs::read_dir(&pack_dir).unwrap() {
        let p = p.unwrap().path();
        if p.extension().is_some_and(|x| x == "pack") {
            let moved = tmp.path().join("unpack-me.pack");
            std::fs::rename(&p, &moved).unwrap();
            std::fs::remove_file(p.with_extension("idx")).unwrap();
            let status = comfyver_testkit::git::git_command(&layout.git_mirror(&slug))
                .args(["unpack-objects", "-q"])
                .stdin(std::fs::File::open(&moved).unwrap())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    assert!(pack_inodes(&layout.git_mirror(&slug)).is_empty());
    let l = lock(
        locked(None, &node.file_url(), &commit),
        vec![locked(Some("node"), &node.file_url(), &commit)],
    );
    let got = ensure_nodes(&l, &layout, &NodesOptions::default(), &NoReporter).unwrap();
    let entry = &got[0].path;
    assert_eq!(head_of(entry).0, commit);
    assert!(entry.join("__init__.py").is_file());
    assert_eq!(
        pack_inodes(&entry.join(".git")).len(),
        1,
        "fetched from the mirror"
    );
    git(entry, &["fsck", "--no-dangling", "--no-progress"]);
}

/// Bytes of the distinct files (by inode) under `dirs`, as `find` lists them.
fn find_bytes(dirs: &[&Path], extra: &[&str]) -> u64 {
    let out = std::process::Command::new("find")
        .args(dirs)
        .args(["-type", "f"])
        .args(extra)
        .args(["-printf", "%i %s\n"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let lines: std::collections::BTreeSet<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    lines
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn gc_counts_a_pack_shared_by_a_checkout_and_its_mirror_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (node, first, second) = two_commits(tmp.path());
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let on = |commit: &str| {
        lock(
            locked(None, &node.file_url(), commit),
            vec![locked(Some("node"), &node.file_url(), commit)],
        )
    };
    ensure_nodes(&on(&first), &layout, &NodesOptions::default(), &NoReporter).unwrap();
    let slug = RepoUrl::parse(&node.file_url()).unwrap().slug();
    let entry = layout.node_checkout(&slug, &first);
    let mirror = layout.git_mirror(&slug);

    // The mirror stays (a lock names the repository at another commit):
    // removing the checkout frees its own files, not the packs it links.
    let plan = comfyver_nodes::gc_plan(&layout, &[on(&second)]).unwrap();
    assert_eq!(plan.unused.len(), 1, "{plan:?}");
    let own = find_bytes(&[&entry], &["-links", "1"]);
    assert!(own < find_bytes(&[&entry], &[]), "the checkout links packs");
    assert_eq!(plan.bytes(), own);

    // Both go: every file is counted once.
    let plan = comfyver_nodes::gc_plan(&layout, &[]).unwrap();
    assert_eq!(plan.unused.len(), 2, "{plan:?}");
    let all = find_bytes(&[&entry, &mirror], &[]);
    assert_eq!(plan.bytes(), all);
    let freed = comfyver_nodes::gc_apply(&layout, &plan, &|| Some(Vec::new())).unwrap();
    assert_eq!(freed, all);
    assert!(!entry.exists() && !mirror.exists());
}

#[test]
fn a_checkout_keeps_executable_bits_and_symlinks() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let mut node = pack(tmp.path(), "node");
    node.write(&[("tool.sh", "#!/bin/sh\necho hi\n")]);
    std::fs::set_permissions(
        node.work().join("tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::os::unix::fs::symlink("tool.sh", node.work().join("alias.sh")).unwrap();
    let commit = node.commit("tools");
    node.push();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let l = lock(
        locked(None, &node.file_url(), &commit),
        vec![locked(Some("node"), &node.file_url(), &commit)],
    );
    ensure_nodes(&l, &layout, &NodesOptions::default(), &NoReporter).unwrap();
    let entry = layout.node_checkout(&RepoUrl::parse(&node.file_url()).unwrap().slug(), &commit);
    let mode = std::fs::metadata(entry.join("tool.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o111,
        0o111,
        "tool.sh lost its executable bit: {mode:o}"
    );
    assert_eq!(
        std::fs::read_link(entry.join("alias.sh")).unwrap(),
        Path::new("tool.sh")
    );
    assert_eq!(git(&entry, &["status", "--porcelain"]), "");
    assert_eq!(git(&entry, &["config", "core.filemode"]), "true");
}
