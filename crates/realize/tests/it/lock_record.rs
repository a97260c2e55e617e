//! A realize called as a library records the installed Python set in the
//! version's lock itself (compare-and-swap through the resolver), and keeps
//! a lock that was written while it ran.

use std::sync::Mutex;

use comfyver_fs::CacheLayout;
use comfyver_realize::{
    Home, LockRecord, NoReporter, RealizeReporter, RealizeRequest, realize, realize_for_use,
};
use comfyver_resolver::{ResolveOptions, read_lock, write_lock};
use comfyver_spec::ResolvedLock;
use comfyver_testkit::world::World;

/// The lock of `v1` in the world's cache, resolved now.
fn resolved(w: &World, layout: &CacheLayout) -> (comfyver_spec::Loaded, ResolvedLock) {
    let loaded = comfyver_spec::load_spec(&w.root.join("versions/v1.json")).unwrap();
    let outcome = comfyver_resolver::resolve(
        &loaded.spec,
        layout,
        &ResolveOptions::default(),
        &comfyver_resolver::NoReporter,
    )
    .unwrap();
    let lock = outcome.lock.unwrap();
    (loaded, lock)
}

fn request<'a>(
    w: &World,
    spec: &'a comfyver_spec::VersionSpec,
    lock: &'a ResolvedLock,
    layout: &'a CacheLayout,
    home: &str,
) -> RealizeRequest<'a> {
    RealizeRequest {
        spec,
        lock,
        layout,
        home: Home::new(w.root.join(home)),
        offline: false,
        skip_models: true,
        wheels_dir: Some(w.root.join("wheels")),
        jobs: 2,
        rewrites: comfyver_spec::UrlRewrites::default(),
        installer: None,
        repair: false,
        confine: comfyver_fs::ConfineMode::Auto,
    }
}

/// Writes `newer` as the version's lock when the Python step starts: a
/// `resolve` made while the realize runs.
struct ResolveMeanwhile<'a> {
    layout: &'a CacheLayout,
    newer: Mutex<Option<ResolvedLock>>,
}

impl RealizeReporter for ResolveMeanwhile<'_> {
    fn nodes(&self) -> &dyn comfyver_nodes::Reporter {
        &comfyver_nodes::NoReporter
    }
    fn models(&self) -> &dyn comfyver_models::Reporter {
        &comfyver_models::NoReporter
    }
    fn step(&self, name: &str, _detail: &str) {
        if name == "python"
            && let Some(newer) = self.newer.lock().unwrap().take()
        {
            write_lock(self.layout, &newer).unwrap();
        }
    }
}

#[test]
fn realize_records_the_python_set_in_the_lock_and_keeps_a_lock_written_meanwhile() {
    let w = World::new(&[]);
    let layout = CacheLayout::new(w.root.join("cache"));
    let (loaded, lock) = resolved(&w, &layout);
    assert_eq!(lock.python, None, "a fresh lock holds no Python set");

    // Realized: the set is in the lock, written by realize itself.
    let req = request(&w, &loaded.spec, &lock, &layout, "homes/a");
    let realized = realize(&req, &NoReporter).unwrap();
    assert!(!realized.warm);
    assert_eq!(realized.lock_record, LockRecord::Recorded);
    let stored = read_lock(&layout, "v1").unwrap().unwrap();
    assert!(stored.python.is_some());
    assert_eq!(stored.python, realized.python);

    // Warm from the lock as it is now: nothing to record.
    let warm_req = request(&w, &loaded.spec, &stored, &layout, "homes/a");
    let warm = realize(&warm_req, &NoReporter).unwrap();
    assert!(warm.warm);
    assert_eq!(warm.lock_record, LockRecord::AlreadyThere);
    assert_eq!(read_lock(&layout, "v1").unwrap().unwrap(), stored);

    // A realize (for use) from the old lock into another home, while a
    // resolve writes a newer lock: the newer lock is kept as written.
    let mut newer = lock.clone();
    newer.tool_version = "a newer resolve".into();
    let reporter = ResolveMeanwhile {
        layout: &layout,
        newer: Mutex::new(Some(newer.clone())),
    };
    let req = request(&w, &loaded.spec, &lock, &layout, "homes/b");
    let (realized, _in_use) = realize_for_use(&req, &reporter).unwrap();
    assert!(reporter.newer.lock().unwrap().is_none(), "the resolve ran");
    assert!(realized.python.is_some());
    assert_eq!(realized.lock_record, LockRecord::Superseded);
    assert_eq!(read_lock(&layout, "v1").unwrap().unwrap(), newer);
}
