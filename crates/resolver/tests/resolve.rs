//! comfyver-resolver against real bare repositories built at test time,
//! served over file:// and over git:// by git's own daemon on loopback.
#![allow(clippy::unwrap_used, reason = "a panic is the failure report")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use comfyver_fs::CacheLayout;
use comfyver_resolver::{
    ChangeKind, EntryOutcome, LockWrite, NoReporter, Reporter, ResolveError, ResolveOptions,
    ResolveOutcome, Source, UpdatePolicy, read_lock, replace_lock, resolve, write_lock,
};
use comfyver_spec::{UrlRewrites, VersionSpec, lock::LockedPython};
use comfyver_testkit::git::{GitDaemon, Repo, git, git_command, standard_repo};
use serde_json::{Value, json};

/// A node (or the core) in a test spec: (name, url, ref).
type Node<'a> = (&'a str, &'a str, Option<&'a str>);

fn spec(id: &str, core: (&str, Option<&str>), nodes: &[Node]) -> VersionSpec {
    let mut comfy = json!({"repo": core.0});
    if let Some(r) = core.1 {
        comfy["ref"] = r.into();
    }
    let nodes: Vec<Value> = nodes
        .iter()
        .map(|(name, url, r)| {
            let mut n = json!({"repo": url, "name": name});
            if let Some(r) = r {
                n["ref"] = (*r).into();
            }
            n
        })
        .collect();
    let v = json!({"schema_version": 2, "version_id": id, "comfy": comfy, "custom_nodes": nodes});
    spec_from(v)
}

fn spec_from(v: Value) -> VersionSpec {
    comfyver_spec::parse_spec(&v.to_string(), Path::new("test.json"), None)
        .expect("valid test spec")
        .spec
}

struct Fixture {
    root: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            root: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
        }
    }
    fn layout(&self) -> CacheLayout {
        CacheLayout::new(self.cache.path())
    }
    fn root(&self) -> &Path {
        self.root.path()
    }
}

fn opts() -> ResolveOptions {
    ResolveOptions {
        timeout: Duration::from_secs(30),
        ..ResolveOptions::default()
    }
}

fn run(spec: &VersionSpec, layout: &CacheLayout, o: &ResolveOptions) -> ResolveOutcome {
    resolve(spec, layout, o, &NoReporter).unwrap_or_else(|e| panic!("resolve failed: {e}"))
}

fn commit_of<'a>(out: &'a ResolveOutcome, key: &str) -> &'a str {
    out.entries
        .iter()
        .find(|e| e.key == key)
        .and_then(|e| e.commit.as_deref())
        .unwrap_or_else(|| panic!("no commit for {key}: {:?}", out.entries))
}

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

/// Every path under `dir` (relative), with file contents: a snapshot of a tree.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

/// Counts how many entries were looked up (network or mirror).
#[derive(Default)]
struct Recorder {
    resolving: Mutex<Vec<String>>,
    resolved: Mutex<Vec<EntryOutcome>>,
}

impl Reporter for Recorder {
    fn resolving(&self, entry: &str, _repo: &str) {
        self.resolving.lock().unwrap().push(entry.to_string());
    }
    fn resolved(&self, entry: &EntryOutcome) {
        self.resolved.lock().unwrap().push(entry.clone());
    }
}

#[test]
fn branches_tags_annotated_tags_and_head_over_file_urls() {
    let f = Fixture::new();
    let (core, cc) = standard_repo(f.root(), "core");
    let (a, ac) = standard_repo(f.root(), "a");
    let (b, bc) = standard_repo(f.root(), "b");
    let (c, cc2) = standard_repo(f.root(), "c");
    let (d, dc) = standard_repo(f.root(), "d");
    let s = spec(
        "v1",
        (&core.file_url(), None),
        &[
            ("a", &a.file_url(), Some("main")),
            ("b", &b.file_url(), Some("light")),
            ("c", &c.file_url(), Some("v2")),
            ("d", &d.file_url(), Some("dev")),
        ],
    );
    let layout = f.layout();
    let out = run(&s, &layout, &opts());
    assert_eq!(commit_of(&out, "comfy"), cc[2], "HEAD is main's tip");
    assert_eq!(commit_of(&out, "a"), ac[2]);
    assert_eq!(commit_of(&out, "b"), bc[0], "lightweight tag");
    assert_eq!(
        commit_of(&out, "c"),
        cc2[1],
        "annotated tag peeled to its commit"
    );
    assert_eq!(commit_of(&out, "d"), dc[3]);
    assert!(out.written);
    assert!(out.changes.iter().all(|c| c.kind == ChangeKind::Added));
    assert_eq!(out.changes.len(), 5);
    let lock = read_lock(&layout, "v1").unwrap().unwrap();
    assert!(lock.matches(&s));
    assert_eq!(lock.custom_nodes[2].commit, cc2[1]);
    assert_eq!(lock.custom_nodes[2].git_ref.as_deref(), Some("v2"));
    assert_eq!(
        lock.comfy.repo,
        core.file_url(),
        "the lock keeps the spec URL"
    );
}

#[test]
fn git_daemon_then_no_network_on_the_second_run() {
    let f = Fixture::new();
    let (_core, cc) = standard_repo(f.root(), "core");
    let (_a, ac) = standard_repo(f.root(), "a");
    let mut daemon = GitDaemon::start(f.root());
    let s = spec(
        "net",
        (&daemon.url("core.git"), Some("v2")),
        &[("a", &daemon.url("a.git"), Some("dev"))],
    );
    let layout = f.layout();
    let first = run(&s, &layout, &opts());
    assert_eq!(commit_of(&first, "comfy"), cc[1]);
    assert_eq!(commit_of(&first, "a"), ac[3]);
    let path = layout.lock_file("net");
    let bytes = std::fs::read(&path).unwrap();
    let before = mtime(&path);

    daemon.stop();
    std::thread::sleep(Duration::from_millis(20));
    let rec = Recorder::default();
    let second = resolve(&s, &layout, &opts(), &rec).expect("no network needed");
    assert!(!second.written);
    assert!(second.changes.is_empty());
    assert!(rec.resolving.lock().unwrap().is_empty(), "no lookups");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "byte-identical lock");
    assert_eq!(mtime(&path), before, "lock not rewritten");
    assert_eq!(second.lock.unwrap().comfy.commit, cc[1]);
}

#[test]
fn second_run_needs_no_remote_and_keeps_bytes_and_mtime() {
    let f = Fixture::new();
    let (core, _) = standard_repo(f.root(), "core");
    let (a, _) = standard_repo(f.root(), "a");
    let s = spec(
        "idem",
        (&core.file_url(), Some("main")),
        &[("a", &a.file_url(), None)],
    );
    let layout = f.layout();
    run(&s, &layout, &opts());
    let path = layout.lock_file("idem");
    let bytes = std::fs::read(&path).unwrap();
    let before = mtime(&path);
    std::fs::remove_dir_all(core.bare()).unwrap();
    std::fs::remove_dir_all(a.bare()).unwrap();
    let again = run(&s, &layout, &opts());
    assert!(!again.written);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    assert_eq!(mtime(&path), before);
}

#[test]
fn moved_branch_keeps_the_lock_until_update() {
    let f = Fixture::new();
    let (mut core, cc) = standard_repo(f.root(), "core");
    let (mut a, ac) = standard_repo(f.root(), "a");
    let (mut b, bc) = standard_repo(f.root(), "b");
    let s = spec(
        "upd",
        (&core.file_url(), Some("main")),
        &[
            ("a", &a.file_url(), Some("main")),
            ("b", &b.file_url(), Some("main")),
        ],
    );
    let layout = f.layout();
    run(&s, &layout, &opts());
    let core_new = core.commit("moved");
    let a_new = a.commit("moved");
    let b_new = b.commit("moved");
    core.push();
    a.push();
    b.push();

    let same = run(&s, &layout, &opts());
    assert!(!same.written);
    assert_eq!(commit_of(&same, "comfy"), cc[2]);

    let one = run(
        &s,
        &layout,
        &ResolveOptions {
            update: UpdatePolicy::Names(vec!["a".into()]),
            ..opts()
        },
    );
    assert!(one.written);
    assert_eq!(commit_of(&one, "a"), a_new);
    assert_eq!(commit_of(&one, "b"), bc[2], "b not updated");
    assert_eq!(commit_of(&one, "comfy"), cc[2], "core not updated");
    assert_eq!(one.changes.len(), 1);
    assert_eq!(one.changes[0].entry, "a");
    assert_eq!(one.changes[0].old_commit.as_deref(), Some(ac[2].as_str()));

    let core_only = run(
        &s,
        &layout,
        &ResolveOptions {
            update: UpdatePolicy::Names(vec!["comfy".into()]),
            ..opts()
        },
    );
    assert_eq!(commit_of(&core_only, "comfy"), core_new);
    assert_eq!(commit_of(&core_only, "b"), bc[2]);

    let all = run(
        &s,
        &layout,
        &ResolveOptions {
            update: UpdatePolicy::All,
            ..opts()
        },
    );
    assert_eq!(commit_of(&all, "b"), b_new);
    let lock = read_lock(&layout, "upd").unwrap().unwrap();
    assert_eq!(lock.custom_nodes[1].commit, b_new);
    assert_eq!(lock.comfy.commit, core_new);

    let err = resolve(
        &s,
        &layout,
        &ResolveOptions {
            update: UpdatePolicy::Names(vec!["comfyy".into()]),
            ..opts()
        },
        &NoReporter,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ResolveError::UnknownUpdateName { suggestion: Some(s), .. } if s == "comfy"),
        "{err}"
    );
}

#[test]
fn editing_one_node_re_resolves_only_that_node() {
    let f = Fixture::new();
    let (mut core, cc) = standard_repo(f.root(), "core");
    let (mut a, ac) = standard_repo(f.root(), "a");
    let (mut b, bc) = standard_repo(f.root(), "b");
    let (core_url, a_url, b_url) = (core.file_url(), a.file_url(), b.file_url());
    let mk = |a_ref: &str| {
        spec(
            "edit",
            (&core_url, Some("main")),
            &[("a", &a_url, Some(a_ref)), ("b", &b_url, Some("main"))],
        )
    };
    let layout = f.layout();
    run(&mk("main"), &layout, &opts());
    for r in [&mut core, &mut a, &mut b] {
        r.checkout("dev");
        r.commit("dev moved");
        r.checkout("main");
        r.commit("main moved");
        r.push();
    }
    let a_dev = git(a.work(), &["rev-parse", "dev"]);
    let rec = Recorder::default();
    let out = resolve(&mk("dev"), &layout, &opts(), &rec).unwrap();
    assert_eq!(*rec.resolving.lock().unwrap(), ["custom_nodes[0] (a)"]);
    assert_eq!(commit_of(&out, "a"), a_dev);
    assert_eq!(commit_of(&out, "b"), bc[2], "b keeps its locked commit");
    assert_eq!(commit_of(&out, "comfy"), cc[2]);
    assert_ne!(a_dev, ac[3]);
    assert_eq!(out.changes.len(), 1);
    assert_eq!(out.changes[0].kind, ChangeKind::Changed);
    let sources: Vec<Source> = out.entries.iter().map(|e| e.source).collect();
    assert_eq!(sources, [Source::Locked, Source::Remote, Source::Locked]);
}

#[test]
fn removing_and_adding_nodes_shows_in_changes_and_python_is_kept_or_dropped() {
    let f = Fixture::new();
    let (core, _) = standard_repo(f.root(), "core");
    let (a, _) = standard_repo(f.root(), "a");
    let (mut b, _) = standard_repo(f.root(), "b");
    let layout = f.layout();
    let s1 = spec(
        "py",
        (&core.file_url(), Some("main")),
        &[("a", &a.file_url(), Some("main"))],
    );
    let first = run(&s1, &layout, &opts());
    let mut lock = first.lock.unwrap();
    lock.python = Some(LockedPython {
        inputs_digest: "blake3:00".into(),
        packages: vec!["x==1".into()],
        torch_backend: None,
    });
    write_lock(&layout, &lock).unwrap();

    // A change outside the repositories keeps the Python set.
    let mut v = serde_json::to_value(&s1).unwrap();
    v["description"] = "edited".into();
    let s2 = spec_from(v);
    let second = run(&s2, &layout, &opts());
    assert!(second.written && second.changes.is_empty());
    assert_eq!(second.lock.unwrap().python, lock.python);

    // Replacing a by b changes commits: the Python set is dropped.
    b.commit("b");
    b.push();
    let s3 = spec(
        "py",
        (&core.file_url(), Some("main")),
        &[("b", &b.file_url(), Some("main"))],
    );
    let third = run(&s3, &layout, &opts());
    let kinds: Vec<(String, ChangeKind)> = third
        .changes
        .iter()
        .map(|c| (c.entry.clone(), c.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("b".to_string(), ChangeKind::Added),
            ("a".to_string(), ChangeKind::Removed)
        ]
    );
    assert_eq!(third.lock.unwrap().python, None);
    assert_eq!(read_lock(&layout, "py").unwrap().unwrap().python, None);
}

#[test]
fn locked_fails_with_the_diff_and_passes_when_current() {
    let f = Fixture::new();
    let (core, _) = standard_repo(f.root(), "core");
    let (a, ac) = standard_repo(f.root(), "a");
    let layout = f.layout();
    let locked = ResolveOptions {
        locked: true,
        ..opts()
    };
    let s = spec(
        "lk",
        (&core.file_url(), Some("main")),
        &[("a", &a.file_url(), Some("main"))],
    );
    let err = resolve(&s, &layout, &locked, &NoReporter).unwrap_err();
    assert!(matches!(err, ResolveError::LockMissing { .. }), "{err}");
    assert!(!layout.root().join("resolved").exists());

    run(&s, &layout, &opts());
    let ok = resolve(&s, &layout, &locked, &NoReporter).unwrap();
    assert!(!ok.written);

    let edited = spec(
        "lk",
        (&core.file_url(), Some("main")),
        &[("a", &a.file_url(), Some("dev"))],
    );
    let before = std::fs::read(layout.lock_file("lk")).unwrap();
    let err = resolve(&edited, &layout, &locked, &NoReporter).unwrap_err();
    let text = err.to_string();
    match &err {
        ResolveError::LockWouldChange { changes, .. } => {
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0].entry, "a");
            assert_eq!(changes[0].old_commit.as_deref(), Some(ac[2].as_str()));
            assert_eq!(changes[0].new_commit, None);
        }
        other => panic!("{other}"),
    }
    assert!(
        text.contains("~ a  main") && text.contains("dev (would resolve)"),
        "{text}"
    );
    assert_eq!(std::fs::read(layout.lock_file("lk")).unwrap(), before);
}

#[test]
fn offline_lists_what_it_cannot_resolve_and_succeeds_from_the_lock() {
    let f = Fixture::new();
    let (core, cc) = standard_repo(f.root(), "core");
    let (a, _) = standard_repo(f.root(), "a");
    let (b, _) = standard_repo(f.root(), "b");
    let layout = f.layout();
    let offline = ResolveOptions {
        offline: true,
        ..opts()
    };
    let s = spec(
        "off",
        (&core.file_url(), Some("main")),
        &[
            ("a", &a.file_url(), Some("main")),
            ("b", &b.file_url(), None),
        ],
    );
    let err = resolve(&s, &layout, &offline, &NoReporter).unwrap_err();
    let text = err.to_string();
    match &err {
        ResolveError::OfflineUnresolved { entries, .. } => {
            let labels: Vec<&str> = entries.iter().map(|(l, _)| l.as_str()).collect();
            assert_eq!(
                labels,
                ["comfy", "custom_nodes[0] (a)", "custom_nodes[1] (b)"]
            );
        }
        other => panic!("{other}"),
    }
    assert!(text.contains("no local mirror"), "{text}");
    assert!(text.contains("HEAD cannot be known offline"), "{text}");

    // A full commit in the spec is fine offline.
    let mut v = serde_json::to_value(&s).unwrap();
    v["custom_nodes"] = json!([]);
    v["comfy"] = json!({"repo": core.file_url(), "commit": cc[0]});
    let pinned = spec_from(v);
    let out = resolve(&pinned, &layout, &offline, &NoReporter).unwrap();
    assert_eq!(commit_of(&out, "comfy"), cc[0]);
    assert_eq!(out.entries[0].source, Source::Pinned);

    // With a lock, offline needs nothing else.
    run(&s, &layout, &opts());
    std::fs::remove_dir_all(core.bare()).unwrap();
    let out = resolve(&s, &layout, &offline, &NoReporter).unwrap();
    assert_eq!(commit_of(&out, "comfy"), cc[2]);
    assert!(!out.written);
}

#[test]
fn offline_resolves_new_refs_from_an_existing_mirror() {
    let f = Fixture::new();
    let (core, cc) = standard_repo(f.root(), "core");
    let layout = f.layout();
    let url = comfyver_spec::RepoUrl::parse(&core.file_url()).unwrap();
    let mirror = comfyver_git::Mirror::open(&layout, &url, &UrlRewrites::default()).unwrap();
    mirror.fetch_all().unwrap();
    std::fs::remove_dir_all(core.bare()).unwrap();
    let offline = ResolveOptions {
        offline: true,
        ..opts()
    };
    for (r, want) in [("v2", &cc[1]), ("dev", &cc[3]), (&cc[4][..10], &cc[4])] {
        let s = spec("mir", (&core.file_url(), Some(r)), &[]);
        let out = resolve(&s, &layout, &offline, &NoReporter).unwrap();
        assert_eq!(commit_of(&out, "comfy"), want, "{r}");
        assert_eq!(out.entries[0].source, Source::Mirror);
    }
    let s = spec("mir", (&core.file_url(), Some("mian")), &[]);
    let err = resolve(&s, &layout, &offline, &NoReporter).unwrap_err();
    assert!(err.to_string().contains("`main`"), "{err}");
}

#[test]
fn dry_run_writes_nothing_and_shows_the_plan() {
    let f = Fixture::new();
    let (mut core, cc) = standard_repo(f.root(), "core");
    let (a, ac) = standard_repo(f.root(), "a");
    let fresh = f.cache.path().join("fresh");
    let layout = CacheLayout::new(&fresh);
    let dry = ResolveOptions {
        dry_run: true,
        ..opts()
    };
    // `a` asks for a commit prefix that is not a tip: it needs the mirror.
    let s = spec(
        "dry",
        (&core.file_url(), Some("main")),
        &[("a", &a.file_url(), Some(&ac[4][..8]))],
    );
    let out = resolve(&s, &layout, &dry, &NoReporter).unwrap();
    assert!(!fresh.exists(), "a dry run creates no directory");
    assert!(!out.written);
    assert_eq!(commit_of(&out, "comfy"), cc[2]);
    assert_eq!(out.entries[1].source, Source::Pending);
    assert_eq!(out.entries[1].commit, None);
    assert!(out.lock.is_none());
    assert_eq!(out.changes.len(), 2);

    // With an existing lock, a dry run of an edited spec leaves the tree as it was.
    let layout = f.layout();
    let base = spec("dry", (&core.file_url(), Some("main")), &[]);
    run(&base, &layout, &opts());
    core.commit("moved");
    core.push();
    let snapshot = tree(layout.root());
    let mut v = serde_json::to_value(&base).unwrap();
    v["comfy"]["ref"] = "dev".into();
    let out = resolve(&spec_from(v), &layout, &dry, &NoReporter).unwrap();
    assert_eq!(tree(layout.root()), snapshot);
    assert_eq!(out.changes.len(), 1);
    assert_eq!(out.changes[0].new_commit.as_deref(), Some(cc[3].as_str()));
    assert!(out.lock.is_some() && !out.written);
}

#[test]
fn short_hex_refs_expand_to_tips_or_through_the_mirror() {
    let f = Fixture::new();
    let (core, cc) = standard_repo(f.root(), "core");
    let layout = f.layout();
    // A prefix of an advertised tip needs no mirror.
    let s = spec("hex", (&core.file_url(), Some(&cc[2][..7])), &[]);
    let out = run(&s, &layout, &opts());
    assert_eq!(commit_of(&out, "comfy"), cc[2]);
    assert!(!layout.git_dir().exists(), "no mirror for a tip prefix");
    // A prefix of an older commit is expanded through the mirror.
    let s = spec("hex", (&core.file_url(), Some(&cc[4][..9])), &[]);
    let out = run(&s, &layout, &opts());
    assert_eq!(commit_of(&out, "comfy"), cc[4]);
    assert!(layout.git_dir().exists());
    // A hex string that is no commit at all is an unknown ref.
    let s = spec("hex", (&core.file_url(), Some("0000000")), &[]);
    let err = resolve(&s, &layout, &opts(), &NoReporter).unwrap_err();
    assert!(matches!(err, ResolveError::UnknownRef { .. }), "{err}");
}

#[test]
fn ambiguous_short_hex_lists_the_candidates() {
    let f = Fixture::new();
    let mut r = Repo::new(f.root(), "many");
    r.write(&[("x", "x")]);
    r.commit("base");
    // Commits until two non-tip commits share their first 4 hex digits.
    let mut marks = String::new();
    let n = 1500;
    for i in 1..=n {
        marks.push_str(&format!(
            "commit refs/heads/main\ncommitter T <t@example.invalid> {} +0000\ndata <<EOF\nc{i}\nEOF\n",
            1_700_000_000 + i
        ));
        if i == 1 {
            marks.push_str("from refs/heads/main^0\n");
        }
    }
    let mut child = git_command(r.work())
        .args(["fast-import", "--quiet"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(marks.as_bytes())
        .unwrap();
    assert!(child.wait().unwrap().success());
    git(r.work(), &["reset", "-q", "--hard", "main"]);
    r.push();
    let all = git(r.work(), &["rev-list", "main"]);
    let tip = r.head();
    let mut by_prefix: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in all.lines().filter(|c| *c != tip) {
        by_prefix.entry(&c[..4]).or_default().push(c);
    }
    let (prefix, commits) = by_prefix
        .iter()
        .find(|(_, v)| v.len() > 1)
        .expect("1500 commits give a shared 4-hex prefix");
    let s = spec("amb", (&r.file_url(), Some(prefix)), &[]);
    let err = resolve(&s, &f.layout(), &opts(), &NoReporter).unwrap_err();
    match &err {
        ResolveError::AmbiguousPrefix { candidates, .. } => {
            for c in commits {
                assert!(candidates.iter().any(|x| x == c), "{c} in {candidates:?}");
            }
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains(commits[0]), "{err}");
}

#[test]
fn unknown_and_ambiguous_refs_name_the_entry_and_close_names() {
    let f = Fixture::new();
    let (core, _) = standard_repo(f.root(), "core");
    let (mut a, _) = standard_repo(f.root(), "a");
    let (b, _) = standard_repo(f.root(), "b");
    let layout = f.layout();
    let s = spec("bad", (&core.file_url(), Some("mian")), &[]);
    let err = resolve(&s, &layout, &opts(), &NoReporter).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("comfy: `mian`"), "{text}");
    assert!(text.contains("did you mean `main`"), "{text}");
    assert!(!layout.lock_file("bad").exists());

    // Every failing entry is reported.
    let s = spec(
        "bad",
        (&core.file_url(), Some("main")),
        &[
            ("a", &a.file_url(), Some("devv")),
            ("b", &b.file_url(), Some("nope")),
        ],
    );
    let err = resolve(&s, &layout, &opts(), &NoReporter).unwrap_err();
    assert!(matches!(err, ResolveError::Several(_)), "{err}");
    let each: Vec<String> = err.flatten().iter().map(|e| e.to_string()).collect();
    assert_eq!(each.len(), 2, "{each:?}");
    assert!(each[0].starts_with("custom_nodes[0] (a): `devv`") && each[0].contains("`dev`"));
    assert!(
        each[1].starts_with("custom_nodes[1] (b): `nope`"),
        "{each:?}"
    );

    // A branch and a tag with one name: ambiguous unless spelled out.
    a.checkout("dev");
    a.tag("same");
    a.checkout("main");
    a.branch("same");
    a.commit("on branch same");
    a.checkout("main");
    a.push();
    let s = spec("amb", (&a.file_url(), Some("same")), &[]);
    let err = resolve(&s, &layout, &opts(), &NoReporter).unwrap_err();
    assert!(matches!(err, ResolveError::AmbiguousRef { .. }), "{err}");
    assert!(err.to_string().contains("refs/heads/same"));
    let s = spec("amb", (&a.file_url(), Some("refs/tags/same")), &[]);
    let out = run(&s, &layout, &opts());
    assert_eq!(
        commit_of(&out, "comfy"),
        git(a.work(), &["rev-parse", "dev"])
    );
}

#[test]
fn unreachable_repo_redacts_credentials() {
    let f = Fixture::new();
    let port = comfyver_testkit::git::free_port();
    let url = format!("https://user:s3cr3t-token@127.0.0.1:{port}/org/pack.git");
    let s = spec("down", (&url, Some("main")), &[]);
    let err = resolve(&s, &f.layout(), &opts(), &NoReporter).unwrap_err();
    let mut text = err.to_string();
    let mut cause = std::error::Error::source(&err);
    while let Some(c) = cause {
        text.push_str(&format!(" | {c}"));
        cause = c.source();
    }
    assert!(matches!(err, ResolveError::Unreachable { .. }), "{text}");
    assert!(!text.contains("s3cr3t"), "{text}");
    assert!(text.contains("user:***@127.0.0.1"), "{text}");
    assert!(text.starts_with("comfy:"), "{text}");
}

#[test]
fn a_silent_server_times_out() {
    let f = Fixture::new();
    // Accepts connections (through the backlog) and never answers.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = spec(
        "slow",
        (&format!("git://127.0.0.1:{port}/x.git"), Some("main")),
        &[],
    );
    let o = ResolveOptions {
        timeout: Duration::from_secs(1),
        ..opts()
    };
    let err = resolve(&s, &f.layout(), &o, &NoReporter).unwrap_err();
    assert!(matches!(err, ResolveError::Timeout { .. }), "{err}");
    drop(listener);
}

#[test]
fn url_rewrites_apply_before_network_and_the_lock_keeps_the_spec_url() {
    let f = Fixture::new();
    let (_core, cc) = standard_repo(f.root(), "core");
    let spec_url = "https://git.example.invalid/org/core.git";
    let s = spec("rw", (spec_url, Some("v2")), &[]);
    let o = ResolveOptions {
        rewrites: UrlRewrites::parse_list(
            &format!(
                "https://git.example.invalid/org/=file://{}/",
                f.root().display()
            ),
            "test",
        )
        .unwrap(),
        ..opts()
    };
    let layout = f.layout();
    let out = run(&s, &layout, &o);
    assert_eq!(commit_of(&out, "comfy"), cc[1]);
    assert_eq!(
        read_lock(&layout, "rw").unwrap().unwrap().comfy.repo,
        spec_url
    );
}

#[test]
fn a_rewrite_to_a_directory_of_bare_mirrors_finds_name_dot_git() {
    let f = Fixture::new();
    // `<root>/core.git` is a bare repository; the spec names it without `.git`.
    let (_core, cc) = standard_repo(f.root(), "core");
    let spec_url = "https://git.example.invalid/org/core";
    let s = spec("rwgit", (spec_url, Some("v2")), &[]);
    let o = ResolveOptions {
        rewrites: UrlRewrites::parse_list(
            &format!("https://git.example.invalid/org/={}/", f.root().display()),
            "test",
        )
        .unwrap(),
        ..opts()
    };
    let out = run(&s, &f.layout(), &o);
    assert_eq!(commit_of(&out, "comfy"), cc[1]);
}

#[test]
fn writing_back_the_lock_is_a_compare_and_swap_so_locks_only_move_forward() {
    let f = Fixture::new();
    let (mut core, cc) = standard_repo(f.root(), "core");
    let layout = f.layout();
    let s = spec("cas", (&core.file_url(), Some("main")), &[]);
    // A realize starts from this lock...
    let started_from = run(&s, &layout, &opts()).lock.unwrap();
    assert_eq!(started_from.comfy.commit, cc[2]);
    // ...meanwhile `resolve --update` moves it forward...
    let newer_commit = core.commit("four");
    core.push();
    let update = ResolveOptions {
        update: UpdatePolicy::All,
        ..opts()
    };
    let newer = run(&s, &layout, &update).lock.unwrap();
    assert_eq!(newer.comfy.commit, newer_commit);
    // ...then the realize writes back what it started from, with its Python set.
    let mut with_python = started_from.clone();
    with_python.python = Some(LockedPython {
        inputs_digest: "blake3:00".into(),
        packages: vec!["x==1".into()],
        torch_backend: None,
    });
    let outcome = replace_lock(&layout, &started_from, &with_python).unwrap();
    assert_eq!(outcome, LockWrite::Superseded);
    assert_eq!(
        read_lock(&layout, "cas").unwrap().unwrap(),
        newer,
        "the newer lock stays"
    );

    // From the current lock the swap goes through, and repeating it is a no-op.
    let mut newer_with_python = newer.clone();
    newer_with_python.python = with_python.python.clone();
    assert_eq!(
        replace_lock(&layout, &newer, &newer_with_python).unwrap(),
        LockWrite::Written
    );
    assert_eq!(
        replace_lock(&layout, &newer, &newer_with_python).unwrap(),
        LockWrite::Unchanged
    );
    assert_eq!(
        read_lock(&layout, "cas").unwrap().unwrap(),
        newer_with_python
    );
}

#[test]
fn concurrent_resolves_of_one_id_both_succeed() {
    let f = Fixture::new();
    let (core, cc) = standard_repo(f.root(), "core");
    let (a, _) = standard_repo(f.root(), "a");
    let s = spec(
        "par",
        (&core.file_url(), Some("main")),
        &[("a", &a.file_url(), Some("dev"))],
    );
    let layout = f.layout();
    let writes: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| run(&s, &layout, &opts()).written))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(writes.iter().filter(|w| **w).count(), 1, "{writes:?}");
    let lock = read_lock(&layout, "par").unwrap().unwrap();
    assert_eq!(lock.comfy.commit, cc[2]);
}

#[test]
fn jobs_one_resolves_everything_too() {
    let f = Fixture::new();
    let (core, cc) = standard_repo(f.root(), "core");
    let repos: Vec<(Repo, Vec<String>)> = (0..5)
        .map(|i| standard_repo(f.root(), &format!("n{i}")))
        .collect();
    let urls: Vec<String> = repos.iter().map(|(r, _)| r.file_url()).collect();
    let names: Vec<String> = (0..5).map(|i| format!("n{i}")).collect();
    let nodes: Vec<Node> = names
        .iter()
        .zip(&urls)
        .map(|(n, u)| (n.as_str(), u.as_str(), Some("light")))
        .collect();
    let s = spec("jobs", (&core.file_url(), None), &nodes);
    let rec = Recorder::default();
    let o = ResolveOptions { jobs: 1, ..opts() };
    let out = resolve(&s, &f.layout(), &o, &rec).unwrap();
    assert_eq!(commit_of(&out, "comfy"), cc[2]);
    for (i, (_, c)) in repos.iter().enumerate() {
        assert_eq!(commit_of(&out, &format!("n{i}")), c[0]);
    }
    assert_eq!(rec.resolved.lock().unwrap().len(), 6);
}

#[test]
fn a_server_asking_for_credentials_is_reported_as_authentication() {
    use std::io::{Read as _, Write as _};
    let f = Fixture::new();
    // A real HTTP server on loopback that answers every request with 401,
    // like a hosting service does for a private repository.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut buf = [0u8; 4096];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            );
        }
    });
    let s = spec(
        "auth",
        (&format!("http://127.0.0.1:{port}/org/private.git"), None),
        &[],
    );
    let err = resolve(&s, &f.layout(), &opts(), &NoReporter).unwrap_err();
    assert!(matches!(err, ResolveError::AuthRequired { .. }), "{err:?}");
    assert!(err.to_string().contains("credential helper"), "{err}");
}

#[test]
fn requires_comfyui_mismatch_fails_the_resolve_naming_the_pack() {
    let fx = Fixture::new();
    let mut core = Repo::new(fx.root(), "ComfyUI");
    core.write(&[("comfyui_version.py", "__version__ = \"0.3.10\"\n")]);
    core.commit("core 0.3.10");
    core.push();
    let mut picky = Repo::new(fx.root(), "picky-pack");
    picky.write(&[(
        "pyproject.toml",
        "[project]\nname = \"picky\"\n\n[tool.comfy]\nrequires-comfyui = \">=0.3.40, <0.4\"\n",
    )]);
    picky.commit("needs a newer core");
    picky.push();
    let mut easy = Repo::new(fx.root(), "easy-pack");
    easy.write(&[(
        "pyproject.toml",
        "[project]\nname = \"easy\"\n[tool.comfy]\nrequires-comfyui = \">=0.3.0\"\n",
    )]);
    easy.commit("any 0.3");
    easy.push();
    let (core_url, picky_url, easy_url) = (core.file_url(), picky.file_url(), easy.file_url());
    let layout = fx.layout();

    let both = spec(
        "v",
        (&core_url, None),
        &[("picky", &picky_url, None), ("easy", &easy_url, None)],
    );
    let err = resolve(&both, &layout, &opts(), &NoReporter).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ResolveError::RequiresComfyui { .. }),
        "{err:?}"
    );
    assert!(
        text.contains("custom node `picky` requires ComfyUI >=0.3.40, <0.4, the core is 0.3.10"),
        "{text}"
    );
    assert!(!text.contains("`easy`"), "{text}");
    assert!(text.contains("options.allow_comfyui_mismatch"), "{text}");
    assert!(
        read_lock(&layout, "v").unwrap().is_none(),
        "no lock is written"
    );

    // The pack that fits resolves; the option turns the mismatch into a warning.
    let fits = spec("v", (&core_url, None), &[("easy", &easy_url, None)]);
    assert!(run(&fits, &layout, &opts()).warnings.is_empty());
    let mut allowed = serde_json::to_value(&both).unwrap();
    allowed["options"] = json!({"allow_comfyui_mismatch": true});
    let out = run(&spec_from(allowed), &layout, &opts());
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("`picky`"), "{:?}", out.warnings);
    assert!(out.written);
}
