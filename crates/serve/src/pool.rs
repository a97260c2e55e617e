//! The warm pool: the ComfyUIs of up to [`ServeOptions::warm`] versions kept
//! alive at once, so that a job for a warm version costs a job, not a start.
//!
//! - The version serving the current job is the *active* one. When the worker
//!   switches away from a version, that ComfyUI is asked to free its memory
//!   (`POST /free`), so an idle ComfyUI holds no model.
//! - Before a start, idle ComfyUIs are evicted, least recently used first,
//!   while N are alive or free memory (`MemAvailable`, and a GPU's free memory
//!   from `/system_stats`) is below [`ServeOptions::warm_min_free_mb`]. The
//!   job's own start always goes ahead: never more than N alive, never none
//!   for the active job.
//! - Look-ahead ([`look_ahead`], local API): while a job runs, the first
//!   queued job's version that is not warm is started in the background when
//!   a slot is free within the memory guard. At most one start at a time.
//! - A ComfyUI that exited while idle is dropped, and started again only when
//!   a job needs it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use comfyver_handler::{ComfyEnv, JobOptions, OutputSink, Session, StartOptions};

use crate::worker::Live;
use crate::{EnvProvider, ServeError, ServeLog, ServeOptions};

/// How often the look-ahead thread looks at the queue and the idle ComfyUIs.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// A warm ComfyUI: its session and the packs it failed to import.
#[derive(Debug)]
pub(crate) struct Warm {
    /// The running ComfyUI.
    pub(crate) session: Session,
    /// `failed_packs` of every job's result while it runs.
    pub(crate) failed_packs: Vec<Value>,
}

#[derive(Debug)]
enum Slot {
    /// Its ComfyUI is being started (and warmed up).
    Starting,
    /// Started and ready for jobs.
    Ready(Arc<Warm>),
}

#[derive(Debug)]
struct Entry {
    version: String,
    slot: Slot,
    last_used: Instant,
}

#[derive(Debug, Default)]
struct State {
    entries: Vec<Entry>,
    /// The version the current (or last) job ran on.
    active: Option<String>,
    /// A start is under way: at most one at a time.
    starting: bool,
    /// A job runs on the active ComfyUI (look-ahead may start another one).
    busy: bool,
    /// No start may begin any more.
    stopping: bool,
    /// Every ComfyUI is stopped: the look-ahead thread returns.
    done: bool,
    /// Versions whose look-ahead failed: left to their job, which reports why.
    lookahead_failed: BTreeSet<String>,
}

impl State {
    fn position(&self, version: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.version == version)
    }
}

/// What [`Pool::lookup`] found for a version.
pub(crate) enum Lookup {
    /// Warm and alive.
    Ready(Arc<Warm>),
    /// Its ComfyUI exited while idle; it is out of the pool now.
    Exited(Arc<Warm>),
    /// Not in the pool.
    Absent,
}

/// The warm ComfyUIs and what the job thread and the look-ahead thread agree
/// on (one start at a time, who is active, whether a job runs).
#[derive(Debug)]
pub(crate) struct Pool {
    state: Mutex<State>,
    changed: Condvar,
    capacity: usize,
    /// Set when the worker stops: a look-ahead start under way is given up.
    abandon: Arc<AtomicBool>,
}

impl Pool {
    /// A pool of at most `capacity` ComfyUIs (at least one).
    pub(crate) fn new(capacity: usize) -> Pool {
        Pool {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            capacity: capacity.max(1),
            abandon: Arc::new(AtomicBool::new(false)),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait<'a>(&self, s: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed
            .wait_timeout(s, LOOK_EVERY)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }

    /// The warm versions for `/health`, most recently used first:
    /// `[{"version_id", "state": "starting|ready|active", "pid"}]`.
    pub(crate) fn to_json(&self) -> Value {
        let s = self.lock();
        let mut entries: Vec<&Entry> = s.entries.iter().collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        let list: Vec<Value> = entries
            .iter()
            .map(|e| match &e.slot {
                Slot::Starting => {
                    json!({"version_id": e.version, "state": "starting", "pid": null})
                }
                Slot::Ready(w) => {
                    let state = if s.active.as_deref() == Some(e.version.as_str()) {
                        "active"
                    } else {
                        "ready"
                    };
                    json!({"version_id": e.version, "state": state, "pid": w.session.pid()})
                }
            })
            .collect();
        Value::Array(list)
    }

    /// Whether a job runs on the active ComfyUI now.
    pub(crate) fn set_busy(&self, busy: bool) {
        self.lock().busy = busy;
        self.changed.notify_all();
    }

    /// `version`'s warm ComfyUI; waits while it is starting (a look-ahead).
    pub(crate) fn lookup(&self, version: &str) -> Lookup {
        let mut s = self.lock();
        loop {
            let Some(i) = s.position(version) else {
                return Lookup::Absent;
            };
            match &s.entries[i].slot {
                Slot::Starting => s = self.wait(s),
                Slot::Ready(w) if w.session.exit_status().is_none() => {
                    return Lookup::Ready(Arc::clone(w));
                }
                Slot::Ready(_) => {
                    let entry = s.entries.remove(i);
                    if s.active.as_deref() == Some(version) {
                        s.active = None;
                    }
                    return match entry.slot {
                        Slot::Ready(w) => Lookup::Exited(w),
                        Slot::Starting => Lookup::Absent,
                    };
                }
            }
        }
    }

    /// Makes `version` the active one. Returns whether the active version
    /// changed, and the previous one's ComfyUI when it stays warm (idle now).
    pub(crate) fn activate(&self, version: &str) -> (bool, Option<(String, Arc<Warm>)>) {
        let mut s = self.lock();
        if let Some(i) = s.position(version) {
            s.entries[i].last_used = Instant::now();
        }
        let previous = s.active.replace(version.to_string());
        let switched = previous.as_deref().is_some_and(|p| p != version);
        let idle = previous.filter(|p| p != version).and_then(|p| {
            let i = s.position(&p)?;
            match &s.entries[i].slot {
                Slot::Ready(w) => Some((p, Arc::clone(w))),
                Slot::Starting => None,
            }
        });
        (switched, idle)
    }

    /// Claims the one start for a job of `version`: waits while another start
    /// is under way. The claim ends with [`Pool::finish_start`].
    pub(crate) fn claim_start(&self, version: &str) {
        let mut s = self.lock();
        while s.starting {
            s = self.wait(s);
        }
        s.starting = true;
        s.lookahead_failed.remove(version);
    }

    /// How many ComfyUIs are alive or starting, and the pool's capacity.
    pub(crate) fn occupancy(&self) -> (usize, usize) {
        (self.lock().entries.len(), self.capacity)
    }

    /// Takes the least recently used ready ComfyUI out of the pool.
    pub(crate) fn take_lru(&self) -> Option<(String, Arc<Warm>)> {
        let mut s = self.lock();
        let i = s
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e.slot, Slot::Ready(_)))
            .min_by_key(|(_, e)| e.last_used)
            .map(|(i, _)| i)?;
        let entry = s.entries.remove(i);
        if s.active.as_deref() == Some(entry.version.as_str()) {
            s.active = None;
        }
        match entry.slot {
            Slot::Ready(w) => Some((entry.version, w)),
            Slot::Starting => None,
        }
    }

    /// Takes `version`'s ComfyUI out of the pool (it is stopped by the caller).
    pub(crate) fn remove(&self, version: &str) -> Option<Arc<Warm>> {
        let mut s = self.lock();
        let i = s.position(version)?;
        let entry = s.entries.remove(i);
        if s.active.as_deref() == Some(version) {
            s.active = None;
        }
        match entry.slot {
            Slot::Ready(w) => Some(w),
            Slot::Starting => None,
        }
    }

    /// The most recently used ready ComfyUI (whose `/system_stats` tells a
    /// GPU's free memory).
    fn most_recent(&self) -> Option<Arc<Warm>> {
        let s = self.lock();
        s.entries
            .iter()
            .filter_map(|e| match &e.slot {
                Slot::Ready(w) => Some((e.last_used, w)),
                Slot::Starting => None,
            })
            .max_by_key(|(t, _)| *t)
            .map(|(_, w)| Arc::clone(w))
    }

    /// Records that `version` is starting (under the claimed start).
    pub(crate) fn insert_starting(&self, version: &str) {
        self.lock().entries.push(Entry {
            version: version.to_string(),
            slot: Slot::Starting,
            last_used: Instant::now(),
        });
        self.changed.notify_all();
    }

    /// Ends the claimed start of `version`: ready with `warm`, or out of the
    /// pool (`None`: the start failed).
    pub(crate) fn finish_start(&self, version: &str, warm: Option<Arc<Warm>>) {
        let mut s = self.lock();
        if let Some(i) = s.position(version) {
            match warm {
                Some(w) => s.entries[i].slot = Slot::Ready(w),
                None => {
                    s.entries.remove(i);
                }
            }
        }
        s.starting = false;
        drop(s);
        self.changed.notify_all();
    }

    /// The look-ahead's claim: `version` starts now if a job runs, no start is
    /// under way, a slot is free and it is neither warm nor failed before.
    fn claim_lookahead(&self, version: &str) -> bool {
        let mut s = self.lock();
        let free = s.busy
            && !s.starting
            && !s.stopping
            && s.entries.len() < self.capacity
            && s.position(version).is_none()
            && !s.lookahead_failed.contains(version);
        if free {
            s.starting = true;
            s.entries.push(Entry {
                version: version.to_string(),
                slot: Slot::Starting,
                last_used: Instant::now(),
            });
        }
        free
    }

    /// Whether the look-ahead could start `version` now (checked again by
    /// the claim).
    fn may_look_ahead(&self, version: &str) -> bool {
        let s = self.lock();
        s.busy
            && !s.starting
            && !s.stopping
            && s.entries.len() < self.capacity
            && s.position(version).is_none()
            && !s.lookahead_failed.contains(version)
    }

    /// The look-ahead of `version` failed: its job starts it, and reports why.
    fn lookahead_failed(&self, version: &str) {
        self.lock().lookahead_failed.insert(version.to_string());
    }

    /// Takes the idle ComfyUIs that exited out of the pool.
    fn take_exited_idle(&self) -> Vec<(String, Arc<Warm>)> {
        let mut s = self.lock();
        let busy_on = s.active.clone().filter(|_| s.busy);
        let mut gone = Vec::new();
        let mut i = 0;
        while i < s.entries.len() {
            let exited = match &s.entries[i].slot {
                Slot::Ready(w) => {
                    busy_on.as_deref() != Some(s.entries[i].version.as_str())
                        && w.session.exit_status().is_some()
                }
                Slot::Starting => false,
            };
            if exited {
                let entry = s.entries.remove(i);
                if s.active.as_deref() == Some(entry.version.as_str()) {
                    s.active = None;
                }
                if let Slot::Ready(w) = entry.slot {
                    gone.push((entry.version, w));
                }
            } else {
                i += 1;
            }
        }
        gone
    }

    /// Stops all starts (a look-ahead start under way is given up, a job's
    /// is waited for) and takes every ComfyUI out of the pool.
    pub(crate) fn drain(&self) -> Vec<(String, Arc<Warm>)> {
        let mut s = self.lock();
        s.stopping = true;
        self.abandon.store(true, Ordering::SeqCst);
        while s.starting {
            s = self.wait(s);
        }
        s.active = None;
        std::mem::take(&mut s.entries)
            .into_iter()
            .filter_map(|e| match e.slot {
                Slot::Ready(w) => Some((e.version, w)),
                Slot::Starting => None,
            })
            .collect()
    }

    /// Every ComfyUI is stopped: the look-ahead thread returns.
    pub(crate) fn finish(&self) {
        self.lock().done = true;
        self.changed.notify_all();
    }

    /// Waits one look-ahead tick; false once the pool is finished.
    fn tick(&self) -> bool {
        let s = self.wait(self.lock());
        !s.done
    }
}

/// Stops a ComfyUI taken out of the pool and says how it ended (`None`:
/// another holder still had it; it stops when that one lets go).
pub(crate) fn stop_warm(warm: Arc<Warm>) -> Option<String> {
    Arc::try_unwrap(warm)
        .ok()
        .map(|w| w.session.stop().unwrap_or_else(|| "gone".into()))
}

/// Free memory below the guard's threshold.
struct Short {
    what: &'static str,
    free_mb: u64,
    min_mb: u64,
}

impl std::fmt::Display for Short {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "only {} MB of {} free, below --warm-min-free-mb {}",
            self.free_mb, self.what, self.min_mb
        )
    }
}

/// `MemAvailable` of `/proc/meminfo` (or the test hook's file), in MB.
fn mem_available_mb() -> Option<u64> {
    let path = std::env::var_os(comfyver_env::COMFYVER_MEMINFO_PATH)
        .unwrap_or_else(|| "/proc/meminfo".into());
    parse_mem_available(&std::fs::read_to_string(path).ok()?)
}

/// The `MemAvailable:  <n> kB` line of a meminfo text, in MB.
fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let kb: u64 = line.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb / 1024)
}

/// The least free memory of the GPUs a ComfyUI's `/system_stats` lists
/// (devices that are not the CPU), in MB.
fn gpu_free_mb(stats: &Value) -> Option<u64> {
    stats["devices"]
        .as_array()?
        .iter()
        .filter(|d| d["type"].as_str().is_some_and(|t| t != "cpu"))
        .filter_map(|d| d["vram_free"].as_u64())
        .min()
        .map(|bytes| bytes / (1024 * 1024))
}

/// What starting a version's ComfyUI needs; shared by the job thread and the
/// look-ahead thread.
#[derive(Clone, Copy)]
pub(crate) struct Starter<'a> {
    pub(crate) provider: &'a dyn EnvProvider,
    pub(crate) opts: &'a ServeOptions,
    pub(crate) log: &'a dyn ServeLog,
    pub(crate) live: &'a Live,
}

impl Starter<'_> {
    /// Free memory below `--warm-min-free-mb`, if it is: RAM first, then the
    /// GPU the most recently used ComfyUI reports.
    fn memory_short(&self) -> Option<Short> {
        let min_mb = self.opts.warm_min_free_mb;
        if min_mb == 0 {
            return None;
        }
        if let Some(free_mb) = mem_available_mb()
            && free_mb < min_mb
        {
            return Some(Short {
                what: "RAM (MemAvailable)",
                free_mb,
                min_mb,
            });
        }
        let stats = self.live.pool.most_recent()?.session.system_stats().ok()?;
        let free_mb = gpu_free_mb(&stats)?;
        (free_mb < min_mb).then_some(Short {
            what: "GPU memory",
            free_mb,
            min_mb,
        })
    }

    /// Before `version` starts (the start claimed): evicts idle ComfyUIs,
    /// least recently used first, while the pool is full or memory short.
    pub(crate) fn make_room(&self, version: &str) {
        loop {
            let (alive, capacity) = self.live.pool.occupancy();
            let reason = if alive >= capacity {
                format!("{alive} ComfyUI(s) warm, the most --warm {capacity} allows")
            } else if alive > 0
                && let Some(short) = self.memory_short()
            {
                short.to_string()
            } else {
                return;
            };
            let Some((victim, warm)) = self.live.pool.take_lru() else {
                self.log.event(&format!(
                    "warning: {reason}, and no idle ComfyUI is left to evict; starting ComfyUI of version {version} anyway"
                ));
                return;
            };
            self.retire(
                &victim,
                warm,
                &format!("evicted for version {version}: {reason}"),
            );
            self.live.metrics.evicted();
        }
    }

    /// Stops a ComfyUI taken out of the pool, says why in the log and lets
    /// the provider release its home.
    pub(crate) fn retire(&self, version: &str, warm: Arc<Warm>, why: &str) {
        let pid = warm.session.pid();
        self.live.forget_comfy(version);
        let status = stop_warm(warm).unwrap_or_else(|| "still in use".into());
        self.provider.release(version);
        self.log.event(&format!(
            "stopped ComfyUI of version {version} (pid {pid}, {why}): {status}"
        ));
    }

    /// Drops the idle ComfyUIs that exited from the pool.
    fn drop_exited_idle(&self) {
        for (version, warm) in self.live.pool.take_exited_idle() {
            let status = warm.session.exit_status().unwrap_or_default();
            self.retire(
                &version,
                warm,
                &format!("it exited while idle ({status}); started again when a job needs it"),
            );
        }
    }

    /// Starts `version`'s ComfyUI from `env` with `start` and runs the
    /// warm-up workflow on it (the start claimed). `why` says who asked, for
    /// the log.
    pub(crate) fn start(
        &self,
        version: &str,
        env: &ComfyEnv,
        start: &StartOptions,
        why: &str,
    ) -> Result<Warm, ServeError> {
        let opts = self.opts;
        let log = self.log;
        log.event(&format!("starting ComfyUI of version {version} ({why})"));
        self.live.count_start();
        let session = Session::start(env, start).map_err(|source| {
            let e = ServeError::Start {
                version_id: version.to_string(),
                source: Box::new(source),
            };
            self.live.start_failed(version, &e);
            e
        })?;
        self.live
            .metrics
            .comfy_started(version, session.timings().to_ready);
        log.event(&format!(
            "ComfyUI of version {version} ready in {:.1?} (pid {}, port {})",
            session.timings().to_ready,
            session.pid(),
            session.port()
        ));
        if let Some(warmup) = &opts.warmup {
            let t0 = Instant::now();
            let job_opts = JobOptions {
                job_id: Some("warmup".into()),
                sink: OutputSink::Base64,
                cloud: None,
                keep_outputs: false,
                ..opts.job.clone()
            };
            if let Err(source) = session.run_job(warmup, &job_opts, &()) {
                let e = ServeError::Warmup {
                    version_id: version.to_string(),
                    source: Box::new(source),
                };
                log.event(&format!("warning: {}", crate::worker::error_line(&e)));
                self.live.start_failed(version, &e);
                session.stop();
                return Err(e);
            }
            log.event(&format!(
                "warm-up of version {version} done in {:.1?}",
                t0.elapsed()
            ));
        }
        self.live.start_succeeded(version);
        let failed_packs: Vec<Value> = match session.node_report() {
            Ok(report) => report.failed.iter().map(|p| p.to_json()).collect(),
            Err(e) => {
                log.event(&format!(
                    "warning: could not check the custom node packs of version {version}: {}",
                    e.to_job_json()["error"].as_str().unwrap_or_default()
                ));
                Vec::new()
            }
        };
        for pack in &failed_packs {
            log.event(&format!(
                "warning: custom node pack `{}` of version {version} failed to import",
                pack["name"].as_str().unwrap_or_default()
            ));
        }
        log.event(&format!("ComfyUI runs {}", session.confined()));
        Ok(Warm {
            session,
            failed_packs,
        })
    }
}

/// The look-ahead thread of the local API, until the pool is finished: drops
/// idle ComfyUIs that exited, and while a job runs starts the first queued
/// job's version that is not warm, when a slot is free within the memory
/// guard. `queued` gives the versions of the queued jobs, in order.
pub(crate) fn look_ahead(starter: Starter<'_>, queued: &dyn Fn() -> Vec<String>) {
    let pool = &starter.live.pool;
    let start = StartOptions {
        abandon: Some(Arc::clone(&pool.abandon)),
        ..starter.opts.start.clone()
    };
    while pool.tick() {
        starter.drop_exited_idle();
        let Some(version) = queued()
            .into_iter()
            .find(|v| starter.opts.allows(v).is_ok() && pool.may_look_ahead(v))
        else {
            continue;
        };
        if starter.memory_short().is_some() || !pool.claim_lookahead(&version) {
            continue;
        }
        let started = starter
            .provider
            .env_for(&version)
            .map_err(|source| ServeError::Version {
                version_id: version.clone(),
                source,
            })
            .and_then(|env| {
                starter.start(&version, &env, &start, "look-ahead: a queued job needs it")
            });
        match started {
            Ok(warm) => pool.finish_start(&version, Some(Arc::new(warm))),
            Err(_) if pool.abandon.load(Ordering::SeqCst) => {
                starter.log.event(&format!(
                    "look-ahead start of version {version} given up: the worker stops"
                ));
                pool.finish_start(&version, None);
            }
            Err(e) => {
                starter.log.event(&format!(
                    "warning: look-ahead start of version {version} failed; its job will try again: {}",
                    crate::worker::error_line(&e)
                ));
                pool.lookahead_failed(&version);
                pool.finish_start(&version, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mem_available_is_read_in_mb() {
        let text =
            "MemTotal:       16303528 kB\nMemFree:         1000 kB\nMemAvailable:    2097152 kB\n";
        assert_eq!(parse_mem_available(text), Some(2048));
        assert_eq!(parse_mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: lots\n"), None);
    }

    #[test]
    fn gpu_free_memory_ignores_the_cpu_and_takes_the_least() {
        let cpu = json!({"devices": [{"type": "cpu", "vram_free": 0}]});
        assert_eq!(gpu_free_mb(&cpu), None);
        let gpus = json!({"devices": [
            {"type": "cuda", "vram_free": 8u64 << 30},
            {"type": "cuda", "vram_free": 3u64 << 30},
        ]});
        assert_eq!(gpu_free_mb(&gpus), Some(3072));
        assert_eq!(gpu_free_mb(&json!({})), None);
    }

    #[test]
    fn an_empty_pool_lists_nothing_and_claims_one_start_at_a_time() {
        let pool = Pool::new(2);
        assert_eq!(pool.to_json(), json!([]));
        pool.claim_start("v1");
        pool.insert_starting("v1");
        assert_eq!(pool.to_json()[0]["state"], "starting");
        pool.set_busy(true);
        assert!(!pool.may_look_ahead("v2"), "a start is under way");
        pool.finish_start("v1", None);
        assert_eq!(pool.occupancy(), (0, 2), "a failed start leaves no entry");
        assert!(pool.may_look_ahead("v2"));
        assert!(pool.claim_lookahead("v2"));
        assert!(!pool.claim_lookahead("v3"), "never two starts at once");
        pool.lookahead_failed("v2");
        pool.finish_start("v2", None);
        assert!(
            !pool.may_look_ahead("v2"),
            "a failed look-ahead is left to its job"
        );
        pool.set_busy(false);
        assert!(!pool.may_look_ahead("v3"), "no job runs");
    }
}
