//! gc against a realize that starts using an entry between gc's plan and its
//! apply: each node entry is removed only after the references are read
//! again under that entry's lock, so what a lock written in between uses is
//! kept, and nothing goes when the references cannot be read any more.

use std::path::PathBuf;

use comfyver_fs::CacheLayout;
use comfyver_realize::{References, gc_apply, gc_plan};
use comfyver_spec::{RepoUrl, ResolvedLock, lock::LOCK_VERSION, lock::LockedRepo};

const CORE: &str = "https://git.example.invalid/org/ComfyUI";
const A: &str = "https://git.example.invalid/org/pack-a";
const B: &str = "https://git.example.invalid/org/pack-b";
const COMMIT_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const COMMIT_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn repo(name: Option<&str>, url: &str, commit: &str) -> LockedRepo {
    LockedRepo {
        name: name.map(str::to_string),
        repo: url.to_string(),
        git_ref: None,
        requested_commit: None,
        commit: commit.to_string(),
    }
}

/// A lock of version `id` whose one node is `url` at `commit`.
fn lock(id: &str, url: &str, commit: &str) -> ResolvedLock {
    ResolvedLock {
        lock_version: LOCK_VERSION,
        version_id: id.into(),
        spec_digest: "blake3:00".into(),
        tool_version: "0".into(),
        comfy: repo(None, CORE, COMMIT_A),
        custom_nodes: vec![repo(Some("pack"), url, commit)],
        models: vec![],
        python: None,
    }
}

/// A complete checkout of `url` at `commit` in the node cache.
fn checkout(layout: &CacheLayout, url: &str, commit: &str) -> PathBuf {
    let slug = RepoUrl::parse(url).unwrap().slug();
    let dir = layout.node_checkout(&slug, commit);
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/comfyver-complete"), format!("{commit}\n")).unwrap();
    std::fs::write(dir.join("__init__.py"), "NODE_CLASS_MAPPINGS = {}\n").unwrap();
    dir
}

#[test]
fn an_entry_a_lock_uses_after_the_plan_is_kept_and_the_unused_one_goes() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let a = checkout(&layout, A, COMMIT_A);
    let b = checkout(&layout, B, COMMIT_B);

    // gc plans while nothing references either entry...
    let plan = gc_plan(&layout, &References::default()).unwrap();
    let planned: Vec<&PathBuf> = plan.nodes.unused.iter().map(|u| &u.path).collect();
    assert!(
        planned.contains(&&a) && planned.contains(&&b),
        "{planned:?}"
    );

    // ...then a realize resolves a version that uses `a` before gc deletes.
    let late = || {
        Some(References {
            locks: vec![lock("late", A, COMMIT_A)],
            spec_models: vec![],
        })
    };
    let freed = gc_apply(&layout, &plan, &late).unwrap();
    assert!(
        a.join("__init__.py").is_file(),
        "gc deleted an entry in use"
    );
    assert!(!b.exists(), "the entry nobody uses is removed");
    assert!(freed > 0);
}

#[test]
fn nothing_goes_when_the_references_cannot_be_read_at_apply_time() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let a = checkout(&layout, A, COMMIT_A);
    let plan = gc_plan(&layout, &References::default()).unwrap();
    assert_eq!(plan.nodes.unused.len(), 1);
    let unreadable = || None;
    assert_eq!(gc_apply(&layout, &plan, &unreadable).unwrap(), 0);
    assert!(a.join("__init__.py").is_file());
}

/// A complete shared core checkout of `CORE` at `commit` in `<cache>/core`.
fn shared_core(layout: &CacheLayout, commit: &str) -> PathBuf {
    let url = RepoUrl::parse(CORE).unwrap();
    let dir = comfyver_nodes::shared_core::core_cache_dir(layout)
        .join(comfyver_nodes::entry_name(&url, commit));
    std::fs::create_dir_all(dir.join(".git")).unwrap();
    std::fs::write(dir.join(".git/comfyver-complete"), format!("{commit}\n")).unwrap();
    std::fs::write(dir.join("main.py"), "print('core')\n").unwrap();
    dir
}

#[test]
fn a_shared_core_is_kept_while_a_lock_names_its_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = CacheLayout::new(tmp.path().join("cache"));
    let core_a = shared_core(&layout, COMMIT_A);
    let core_b = shared_core(&layout, COMMIT_B);
    checkout(&layout, A, COMMIT_A);
    let on_a = lock("v1", A, COMMIT_A);
    let mut on_b = lock("v2", A, COMMIT_A);
    on_b.comfy.commit = COMMIT_B.into();

    // Only core A is named: core B is listed as an unused shared core.
    let refs = References {
        locks: vec![on_a.clone()],
        ..References::default()
    };
    let plan = gc_plan(&layout, &refs).unwrap();
    let listed: Vec<(&str, &PathBuf)> = plan
        .nodes
        .unused
        .iter()
        .map(|u| (u.kind.as_str(), &u.path))
        .collect();
    assert_eq!(listed, vec![("core", &core_b)], "{listed:?}");

    // A lock naming core B appears before the apply: it is kept.
    let both = References {
        locks: vec![on_a.clone(), on_b],
        ..References::default()
    };
    assert_eq!(gc_apply(&layout, &plan, &|| Some(both.clone())).unwrap(), 0);
    assert!(core_b.join("main.py").is_file());

    // Nothing names it any more: it goes, core A stays.
    assert!(gc_apply(&layout, &plan, &|| Some(refs.clone())).unwrap() > 0);
    assert!(!core_b.exists());
    assert!(core_a.join("main.py").is_file());
}
