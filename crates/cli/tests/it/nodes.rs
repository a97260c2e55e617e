//! `comfyver nodes fetch|list` as a real process: caches filled from real
//! repositories (file:// and git://), crash safety under SIGKILL at named
//! points (the test-only COMFYVER_TEST_PAUSE_AT hook), two processes at once,
//! offline errors.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use comfyver_spec::{RepoUrl, ResolvedLock, lock::LOCK_VERSION, lock::LockedRepo};
use comfyver_testkit::cli::{Paused, Sandbox};
use comfyver_testkit::git::{GitDaemon, Repo, git};

fn sandbox() -> Sandbox {
    Sandbox::new(Path::new(env!("CARGO_BIN_EXE_comfyver")))
}

fn write_lock(env: &Sandbox, id: &str, core: (&str, &str), nodes: &[(&str, &str, &str)]) {
    let repo = |name: Option<&str>, url: &str, commit: &str| LockedRepo {
        name: name.map(str::to_string),
        repo: url.to_string(),
        git_ref: None,
        requested_commit: None,
        commit: commit.to_string(),
    };
    let lock = ResolvedLock {
        lock_version: LOCK_VERSION,
        version_id: id.into(),
        spec_digest: "blake3:00".into(),
        tool_version: "0".into(),
        comfy: repo(None, core.0, core.1),
        custom_nodes: nodes.iter().map(|(n, u, c)| repo(Some(n), u, c)).collect(),
        models: vec![],
        python: None,
    };
    let path = env.lock_path(id);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, lock.to_json()).unwrap();
}

fn entry(env: &Sandbox, url: &str, commit: &str) -> PathBuf {
    let slug = RepoUrl::parse(url).unwrap().slug();
    env.cache().join(format!("custom_nodes/{slug}@{commit}"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn pack(root: &Path, name: &str) -> Repo {
    let mut r = Repo::new(root, name);
    r.write(&[("__init__.py", &format!("NAME = {name:?}\n"))]);
    r.commit("one");
    r.push();
    r
}

/// A core, a plain node and a node with a submodule, all pushed.
struct Fixture {
    core: Repo,
    plain: Repo,
    with_sub: Repo,
}

fn fixture(root: &Path) -> Fixture {
    let core = pack(root, "ComfyUI");
    let plain = pack(root, "plain");
    let sub = pack(root, "sub");
    let mut with_sub = pack(root, "with_sub");
    with_sub.add_submodule(&sub, "lib/sub");
    with_sub.push();
    Fixture {
        core,
        plain,
        with_sub,
    }
}

fn lock_fixture(env: &Sandbox, f: &Fixture, id: &str) {
    write_lock(
        env,
        id,
        (&f.core.file_url(), &f.core.head()),
        &[
            ("plain", &f.plain.file_url(), &f.plain.head()),
            ("with_sub", &f.with_sub.file_url(), &f.with_sub.head()),
        ],
    );
}

fn assert_whole(env: &Sandbox, f: &Fixture) {
    for r in [&f.plain, &f.with_sub] {
        let e = entry(env, &r.file_url(), &r.head());
        assert!(
            e.join(".git/comfyver-complete").is_file(),
            "{}",
            e.display()
        );
        assert_eq!(git(&e, &["rev-parse", "HEAD"]), r.head());
    }
    let e = entry(env, &f.with_sub.file_url(), &f.with_sub.head());
    assert!(e.join("lib/sub/__init__.py").is_file());
    // No temporaries left next to the entries or the mirrors.
    for dir in ["custom_nodes", "git"] {
        let left: Vec<_> = std::fs::read_dir(env.cache().join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{dir}: {left:?}");
    }
}

#[test]
fn fetch_of_a_version_with_neither_spec_nor_lock_names_the_missing_spec() {
    let env = sandbox();
    let out = env.run(&["nodes", "fetch", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no version `nope`") && stderr(&out).contains("nope.json"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn fetch_then_list_shows_entries_and_their_versions() {
    let env = sandbox();
    let f = fixture(env.root());
    lock_fixture(&env, &f, "one");
    write_lock(
        &env,
        "two",
        (&f.core.file_url(), &f.core.head()),
        &[("plain", &f.plain.file_url(), &f.plain.head())],
    );
    let out = env.run(&["nodes", "fetch", "one"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_whole(&env, &f);
    let core_mirror = env.cache().join(format!(
        "git/{}.git",
        RepoUrl::parse(&f.core.file_url()).unwrap().slug()
    ));
    assert!(core_mirror.is_dir(), "the core commit is in its mirror");
    // Warm: no fetch at all.
    let again = env.run(&["nodes", "fetch", "one"]);
    assert!(again.status.success());
    assert!(!stderr(&again).contains("fetching"), "{}", stderr(&again));

    let out = env.run(&["--json", "nodes", "list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let plain_entry = entry(&env, &f.plain.file_url(), &f.plain.head());
    let name = plain_entry.file_name().unwrap().to_str().unwrap();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["entry"] == name)
        .expect("plain listed");
    assert_eq!(row["complete"], true);
    assert_eq!(row["versions"], serde_json::json!(["one", "two"]));
    // What removing the entry frees: not the packs it links from its mirror
    // (find's oracle: the files with no link outside the entry).
    let own: u64 = std::process::Command::new("find")
        .arg(&plain_entry)
        .args(["-type", "f", "-links", "1", "-printf", "%s\\n"])
        .output()
        .unwrap()
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| std::str::from_utf8(l).unwrap().parse::<u64>().unwrap())
        .sum();
    assert!(own > 0);
    assert_eq!(row["size"].as_u64().unwrap(), own);
    let text = env.run(&["nodes", "list"]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("complete"));
}

/// Runs `nodes fetch` until it pauses at `point`, then SIGKILLs it.
fn kill_at(env: &Sandbox, id: &str, point: &str) {
    Paused::start(env.cmd(&["nodes", "fetch", id, "--jobs", "1"]), point).kill();
}

#[test]
fn sigkill_at_every_point_then_rerun_succeeds() {
    let env = sandbox();
    let f = fixture(env.root());
    lock_fixture(&env, &f, "v");
    for point in [
        "mirror-before-publish",
        "fetch-before-receive",
        "fetch-after-receive",
        "checkout-after-clone",
        "checkout-before-marker",
        "checkout-before-publish",
    ] {
        // Fresh caches each time, so every point is on the path.
        let _ = std::fs::remove_dir_all(env.cache().join("git"));
        let _ = std::fs::remove_dir_all(env.cache().join("custom_nodes"));
        kill_at(&env, "v", point);
        // An interrupted entry is never taken for a whole one.
        for r in [&f.plain, &f.with_sub] {
            let e = entry(&env, &r.file_url(), &r.head());
            assert!(
                !e.exists() || e.join(".git/comfyver-complete").is_file(),
                "{point}: half entry visible at {}",
                e.display()
            );
        }
        let out = env.run(&["nodes", "fetch", "v"]);
        assert!(out.status.success(), "{point}: {}", stderr(&out));
        assert_whole(&env, &f);
    }
}

#[test]
fn stale_git_lock_files_from_a_killed_fetch_do_not_block() {
    let env = sandbox();
    let f = fixture(env.root());
    lock_fixture(&env, &f, "v");
    kill_at(&env, "v", "fetch-before-receive");
    // What a process killed inside gix's ref update would leave behind.
    for entry in std::fs::read_dir(env.cache().join("git"))
        .unwrap()
        .flatten()
    {
        std::fs::create_dir_all(entry.path().join("refs/pins")).unwrap();
        std::fs::write(entry.path().join("packed-refs.lock"), "").unwrap();
        std::fs::write(
            entry
                .path()
                .join(format!("refs/pins/{}.lock", f.plain.head())),
            "",
        )
        .unwrap();
    }
    let out = env.run(&["nodes", "fetch", "v"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_whole(&env, &f);
}

#[test]
fn two_processes_at_once_fetch_each_repository_once() {
    let env = sandbox();
    let f = fixture(env.root());
    let daemon = GitDaemon::start(env.root());
    let url = |r: &Repo| daemon.url(r.bare().file_name().unwrap().to_str().unwrap());
    write_lock(
        &env,
        "v",
        (&url(&f.core), &f.core.head()),
        &[
            ("plain", &url(&f.plain), &f.plain.head()),
            ("with_sub", &url(&f.with_sub), &f.with_sub.head()),
        ],
    );
    let spawn = || {
        env.cmd(&["nodes", "fetch", "v"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    assert!(a.status.success(), "{}", stderr(&a));
    assert!(b.status.success(), "{}", stderr(&b));
    let all = format!("{}{}", stderr(&a), stderr(&b));
    let fetches: Vec<&str> = all.lines().filter(|l| l.starts_with("fetching ")).collect();
    // core, plain, with_sub and its submodule (by file://): one fetch each.
    assert_eq!(fetches.len(), 4, "{all}");
    for r in [&f.plain, &f.with_sub] {
        let e = entry(&env, &url(r), &r.head());
        assert_eq!(git(&e, &["rev-parse", "HEAD"]), r.head());
    }
}

#[test]
fn offline_lists_every_missing_commit() {
    let env = sandbox();
    let f = fixture(env.root());
    let mut daemon = GitDaemon::start(env.root());
    let url = |r: &Repo| daemon.url(r.bare().file_name().unwrap().to_str().unwrap());
    let (core_url, plain_url, sub_url) = (url(&f.core), url(&f.plain), url(&f.with_sub));
    write_lock(
        &env,
        "v",
        (&core_url, &f.core.head()),
        &[("plain", &plain_url, &f.plain.head())],
    );
    assert!(env.run(&["nodes", "fetch", "v"]).status.success());
    write_lock(
        &env,
        "v",
        (&core_url, &f.core.head()),
        &[
            ("plain", &plain_url, &f.plain.head()),
            ("with_sub", &sub_url, &f.with_sub.head()),
        ],
    );
    daemon.stop();
    let out = env.run(&["--offline", "nodes", "fetch", "v"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("{sub_url} @ {}", f.with_sub.head())),
        "{err}"
    );
    assert!(err.contains("1 commit(s)"), "{err}");
    assert!(!err.contains(&f.plain.head()), "{err}");
}

#[test]
fn two_lock_blind_workers_fill_the_same_caches_and_both_succeed() {
    // As on a network volume whose flock does not cross hosts: neither
    // worker sees the other's locks (COMFYVER_TEST_NO_LOCKS, test only).
    for round in 0..3 {
        let env = sandbox();
        let f = fixture(env.root());
        lock_fixture(&env, &f, "v");
        let spawn = || {
            env.cmd(&["nodes", "fetch", "v"])
                .env(comfyver_fs::TEST_NO_LOCKS_ENV, "1")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        };
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(a.status.success(), "round {round}: {}", stderr(&a));
        assert!(b.status.success(), "round {round}: {}", stderr(&b));
        assert_whole(&env, &f);
        for mirror in std::fs::read_dir(env.cache().join("git"))
            .unwrap()
            .flatten()
        {
            git(&mirror.path(), &["fsck", "--no-progress"]);
        }
        // A third, locking worker finds everything whole: nothing to do.
        let out = env.run(&["nodes", "fetch", "v"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(!stderr(&out).contains("fetching "), "{}", stderr(&out));
    }
}

#[test]
fn a_local_git_child_that_stalls_is_killed_at_the_git_timeout() {
    let env = sandbox();
    let f = fixture(env.root());
    lock_fixture(&env, &f, "v");
    // A `git` that records its pid and hangs, first on PATH.
    let bin = env.root().join("stall-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let pidfile = env.root().join("stalled-git.pid");
    let script = bin.join("git");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho $$ > {}\nexec sleep 300\n",
            pidfile.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    let t0 = std::time::Instant::now();
    let out = env
        .cmd(&["nodes", "fetch", "v", "--jobs", "1"])
        .env("PATH", path)
        .env("COMFYVER_GIT_TIMEOUT", "1")
        .output()
        .unwrap();
    assert!(
        t0.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("COMFYVER_GIT_TIMEOUT"),
        "{}",
        stderr(&out)
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let alive = std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
        && !std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()))
            .unwrap_or_default()
            .contains(") Z");
    assert!(!alive, "the stalled git child {pid} outlived the timeout");
}

/// An `ssh` that runs the remote command here (as git's own tests fake
/// ssh): the one stand-in, for the ssh server this machine does not run.
/// It logs its arguments to `<dir>/ssh.log`; for a host named `stall` it
/// starts a `sleep` (its pid in `<dir>/stall.pid`) and waits for it instead.
fn fake_ssh(dir: &Path) -> PathBuf {
    let bin = dir.join("fake-ssh-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ssh = bin.join("ssh");
    let log = dir.join("ssh.log");
    let pid = dir.join("stall.pid");
    std::fs::write(
        &ssh,
        format!(
            r#"#!/bin/sh
echo "$*" >> '{log}'
while [ $# -gt 2 ]; do shift; done
host="$1"; cmd="$2"
case "$host" in
  *stall*) sleep 300 & echo $! > '{pid}'; wait; exit 1;;
esac
exec sh -c "git upload-pack ${{cmd#git-upload-pack }}"
"#,
            log = log.display(),
            pid = pid.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&ssh, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    ssh
}

#[test]
fn ssh_remotes_are_fetched_through_the_ssh_command() {
    let env = sandbox();
    let core = pack(env.root(), "ComfyUI");
    let a = pack(env.root(), "over_ssh_url");
    let b = pack(env.root(), "over_scp_form");
    let ssh = fake_ssh(env.root());
    let a_url = format!("ssh://git@forge.invalid{}", a.bare().display());
    let b_url = format!("git@forge.invalid:{}", b.bare().display());
    write_lock(
        &env,
        "v",
        (&core.file_url(), &core.head()),
        &[("a", &a_url, &a.head()), ("b", &b_url, &b.head())],
    );
    let out = env
        .cmd(&["nodes", "fetch", "v"])
        .env("GIT_SSH_COMMAND", &ssh)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for (url, r) in [(&a_url, &a), (&b_url, &b)] {
        let e = entry(&env, url, &r.head());
        assert_eq!(git(&e, &["rev-parse", "HEAD"]), r.head());
    }
    // Refs are listed through the same ssh: `main` resolves to its commit.
    let fetched = std::fs::read_to_string(env.root().join("ssh.log")).unwrap();
    env.write_spec(
        "s",
        &serde_json::json!({
            "schema_version": 2,
            "version_id": "s",
            "comfy": {"repo": core.file_url(), "ref": "main"},
            "custom_nodes": [{"repo": a_url, "ref": "main", "name": "a"}],
            "models": [],
        }),
    );
    let out = env
        .cmd(&["resolve", "s"])
        .env("GIT_SSH_COMMAND", &ssh)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let lock = std::fs::read_to_string(env.lock_path("s")).unwrap();
    assert!(lock.contains(&a.head()), "{lock}");
    let log = std::fs::read_to_string(env.root().join("ssh.log")).unwrap();
    let listed = &log[fetched.len()..];
    assert!(
        listed.contains("-o BatchMode=yes") && listed.contains("git-upload-pack '/"),
        "{listed}"
    );
    // OpenSSH never prompts, gives up connecting at the limit, and gets the
    // path quoted for the remote shell.
    assert!(log.contains("-o BatchMode=yes"), "{log}");
    assert!(log.contains("-o ConnectTimeout=120"), "{log}");
    assert!(
        log.contains(&format!(
            "git@forge.invalid git-upload-pack '{}'",
            b.bare().display()
        )),
        "{log}"
    );
}

#[test]
fn an_ssh_remote_that_never_answers_ends_in_a_timeout_and_its_ssh_dies() {
    let env = sandbox();
    let core = pack(env.root(), "ComfyUI");
    let ssh = fake_ssh(env.root());
    write_lock(
        &env,
        "v",
        (&core.file_url(), &core.head()),
        &[("a", "ssh://git@stall.invalid/org/a.git", &"a".repeat(40))],
    );
    let mut cmd = env.cmd(&["nodes", "fetch", "v"]);
    cmd.env("GIT_SSH_COMMAND", &ssh)
        .env("COMFYVER_GIT_TIMEOUT", "2");
    let out = comfyver_testkit::cli::output_within(cmd, std::time::Duration::from_secs(60))
        .unwrap_or_else(|o| panic!("still running after 60 s: {}", stderr(&o)));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("nothing received for 2 s"),
        "{}",
        stderr(&out)
    );
    let pid: u32 = std::fs::read_to_string(env.root().join("stall.pid"))
        .expect("the ssh ran")
        .trim()
        .parse()
        .unwrap();
    assert!(
        !comfyver_fs::child::process_alive(pid),
        "the ssh's child was left running"
    );
}
