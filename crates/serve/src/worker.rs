//! The job function both front doors share: a job request parsed, its
//! version's ComfyUI made the active one of the warm pool (started when it is
//! not warm), the job run, the outcome shaped.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use comfyver_fs::child as sys;
use comfyver_handler::{HandlerError, Job, JobOptions, JobReporter, SessionControl};

use crate::metrics::Metrics;
use crate::pool::{Lookup, Pool, Starter, Warm};
use crate::{EnvProvider, ServeError, ServeLog, ServeOptions};

/// After the grace period's interrupt, how long ComfyUI gets before it is killed.
const KILL_AFTER: Duration = Duration::from_secs(10);
/// How often the stop watchdog looks.
const WATCH_EVERY: Duration = Duration::from_millis(100);
/// While a job is cancelled, how often its prompt is interrupted again.
const REINTERRUPT_EVERY: Duration = Duration::from_millis(500);

/// One job as a front door received it.
#[derive(Debug, Clone)]
pub(crate) struct JobRequest {
    /// The job id (RunPod's, or the local API's).
    pub(crate) id: String,
    /// `input.version_id`, when the job names one.
    pub(crate) version_id: Option<String>,
    /// The workflow and its images.
    pub(crate) job: Job,
    /// `input.refresh_worker`.
    pub(crate) refresh_worker: bool,
    /// The http(s) URL the final status is POSTed to (`webhook`, next to `input`).
    pub(crate) webhook: Option<String>,
}

impl JobRequest {
    /// Parses `{"input": {"workflow", "images", "version_id", "refresh_worker"}}`
    /// (`input` may be a JSON string, as worker-comfyui accepts).
    pub(crate) fn parse(id: String, body: &Value) -> Result<JobRequest, ServeError> {
        if !body.is_object() {
            return Err(ServeError::BadJob(
                "the body must be a JSON object {\"input\": {\"workflow\": ...}}".into(),
            ));
        }
        let job = Job::from_runpod(body).map_err(|e| ServeError::BadJob(e.to_string()))?;
        let parsed;
        let input = match body.get("input") {
            Some(Value::String(s)) => {
                parsed = serde_json::from_str::<Value>(s).unwrap_or_default();
                &parsed
            }
            Some(v) => v,
            None => &Value::Null,
        };
        let version_id = match input.get("version_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(v)) => {
                if let Some(reason) = comfyver_spec::names::version_id_reason(v) {
                    return Err(ServeError::BadJob(format!(
                        "`input.version_id` is not a version id: {reason}"
                    )));
                }
                Some(v.clone())
            }
            Some(_) => {
                return Err(ServeError::BadJob(
                    "`input.version_id` must be a string (a version id)".into(),
                ));
            }
        };
        let refresh_worker = match input.get("refresh_worker") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                return Err(ServeError::BadJob(
                    "`input.refresh_worker` must be true or false".into(),
                ));
            }
        };
        let webhook = match body.get("webhook") {
            None | Some(Value::Null) => None,
            Some(Value::String(url)) if is_http_url(url) => Some(url.clone()),
            Some(_) => {
                return Err(ServeError::BadJob(
                    "`webhook` must be an http:// or https:// URL".into(),
                ));
            }
        };
        Ok(JobRequest {
            id,
            version_id,
            job,
            refresh_worker,
            webhook,
        })
    }
}

/// Whether `url` is an http(s) URL with a host.
fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !url.contains(char::is_whitespace))
}

/// How a job ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// The job's output JSON.
    Completed(Value),
    /// The failed-job JSON `{"error", "kind", "details"}`.
    Failed(Value),
    /// Cancelled by a client.
    Cancelled,
}

impl Outcome {
    /// RunPod's status name.
    pub(crate) fn status(&self) -> &'static str {
        match self {
            Outcome::Completed(_) => "COMPLETED",
            Outcome::Failed(_) => "FAILED",
            Outcome::Cancelled => "CANCELLED",
        }
    }

    /// The result as the RunPod SDK posts a handler's return: `{"output": ...}`,
    /// or `{"error": "<message>", "output": {kind, details}}` (the SDK moves a
    /// returned `error` to the top level and keeps the rest as `output`).
    pub(crate) fn result_body(&self) -> Value {
        match self {
            Outcome::Completed(v) => json!({"output": v}),
            Outcome::Failed(e) => {
                let mut rest = e.clone();
                let error = rest
                    .as_object_mut()
                    .and_then(|m| m.remove("error"))
                    .unwrap_or_else(|| json!("the job failed"));
                json!({"error": error, "output": rest})
            }
            Outcome::Cancelled => json!({"error": "the job was cancelled"}),
        }
    }
}

/// What other threads (ping, local API, look-ahead, stop watchdog) may know
/// and do about the warm ComfyUIs and the running job.
#[derive(Debug)]
pub(crate) struct Live {
    state: Mutex<LiveState>,
    starts: AtomicUsize,
    /// What the worker counts (`/metrics`).
    pub(crate) metrics: Metrics,
    /// The warm ComfyUIs.
    pub(crate) pool: Pool,
}

#[derive(Debug, Default)]
struct LiveState {
    /// The active ComfyUI's control and version.
    comfy: Option<(SessionControl, String)>,
    /// Whether the last ComfyUI started runs confined, and why.
    confined: Option<comfyver_fs::ConfineStatus>,
    /// The running job's id.
    job: Option<String>,
    /// ComfyUI's prompt id of the running job.
    prompt_id: Option<String>,
    /// A client cancelled the running job.
    cancelled: bool,
    /// A cancel for this job id came before the job began (it is about to).
    cancel_for: Option<String>,
    /// The stop watchdog interrupted the running job after this signal.
    stopped_by: Option<i32>,
    /// When the running job's prompt was last interrupted.
    interrupted_at: Option<Instant>,
    /// The running job's latest progress `{"node", "class_type", "step", "steps"}`.
    progress: Option<Value>,
    /// Why starts (with their warm-up) failed, by version, until one of that
    /// version succeeds.
    start_errors: BTreeMap<String, String>,
    /// The version whose start failed last.
    last_failed: Option<String>,
}

impl Live {
    /// Shared state of a worker keeping up to `warm` ComfyUIs alive.
    pub(crate) fn new(warm: usize) -> Live {
        Live {
            state: Mutex::default(),
            starts: AtomicUsize::new(0),
            metrics: Metrics::default(),
            pool: Pool::new(warm),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The running job's id.
    pub(crate) fn current_job(&self) -> Option<String> {
        self.lock().job.clone()
    }

    /// The active version (its ComfyUI ran the current or the last job).
    pub(crate) fn version(&self) -> Option<String> {
        self.lock().comfy.as_ref().map(|c| c.1.clone())
    }

    /// Whether the last ComfyUI started runs confined, and why (`/health`).
    pub(crate) fn confined(&self) -> Option<(bool, String)> {
        self.lock()
            .confined
            .as_ref()
            .map(|c| (c.confined, c.reason.clone()))
    }

    /// Why the worker cannot serve `default` (`/ready`): its last start or
    /// warm-up failed, and none has succeeded since; or no ComfyUI is active
    /// and the last start failed. A failed start of another version leaves a
    /// worker whose ComfyUIs are warm ready.
    pub(crate) fn start_error(&self, default: &str) -> Option<String> {
        let s = self.lock();
        if let Some(why) = s.start_errors.get(default) {
            return Some(why.clone());
        }
        if s.comfy.is_some() {
            return None;
        }
        s.start_errors.get(s.last_failed.as_deref()?).cloned()
    }

    /// How many times a ComfyUI was started.
    pub(crate) fn starts(&self) -> usize {
        self.starts.load(Ordering::SeqCst)
    }

    /// A ComfyUI start begins.
    pub(crate) fn count_start(&self) {
        self.starts.fetch_add(1, Ordering::SeqCst);
    }

    /// A start (or its warm-up) of `version` failed.
    pub(crate) fn start_failed(&self, version: &str, e: &ServeError) {
        let mut s = self.lock();
        s.start_errors.insert(version.to_string(), error_line(e));
        s.last_failed = Some(version.to_string());
    }

    /// A start of `version` and its warm-up succeeded.
    pub(crate) fn start_succeeded(&self, version: &str) {
        self.lock().start_errors.remove(version);
    }

    /// `warm`'s ComfyUI of `version` is the active one now.
    fn set_active(&self, version: &str, warm: &Warm) {
        let mut s = self.lock();
        s.comfy = Some((warm.session.control(), version.to_string()));
        s.confined = Some(warm.session.confined().clone());
    }

    /// `version`'s ComfyUI stops: it can no longer be interrupted or killed.
    pub(crate) fn forget_comfy(&self, version: &str) {
        let mut s = self.lock();
        if s.comfy.as_ref().is_some_and(|c| c.1 == version) {
            s.comfy = None;
        }
    }

    /// The running job's id and latest progress, if it reported any.
    pub(crate) fn progress(&self) -> Option<(String, Value)> {
        let s = self.lock();
        Some((s.job.clone()?, s.progress.clone()?))
    }

    /// Cancels job `id`: the running one is interrupted; one about to begin
    /// is marked so that it does not run (or is interrupted once it does).
    pub(crate) fn cancel(&self, id: &str) {
        let mut s = self.lock();
        if s.job.as_deref() != Some(id) {
            s.cancel_for = Some(id.to_string());
            return;
        }
        s.cancelled = true;
        s.interrupted_at = Some(Instant::now());
        let target = interrupt_target(&s);
        drop(s);
        interrupt(target);
    }

    fn begin_job(&self, id: &str) {
        let mut s = self.lock();
        s.job = Some(id.to_string());
        s.prompt_id = None;
        s.cancelled = s.cancel_for.take().as_deref() == Some(id);
        s.stopped_by = None;
        s.interrupted_at = None;
        s.progress = None;
    }

    /// While the job is cancelled or stopped, interrupts its prompt again on
    /// its events (an interrupt sent before the prompt started is lost), at
    /// most every [`REINTERRUPT_EVERY`].
    fn reinterrupt(&self) {
        let mut s = self.lock();
        let wanted = s.cancelled || s.stopped_by.is_some();
        if !wanted
            || s.interrupted_at
                .is_some_and(|t| t.elapsed() < REINTERRUPT_EVERY)
        {
            return;
        }
        s.interrupted_at = Some(Instant::now());
        let target = interrupt_target(&s);
        drop(s);
        interrupt(target);
    }

    /// Ends the running job: (cancelled, stopped by signal).
    fn end_job(&self) -> (bool, Option<i32>) {
        let mut s = self.lock();
        s.job = None;
        s.prompt_id = None;
        s.progress = None;
        (std::mem::take(&mut s.cancelled), s.stopped_by.take())
    }
}

/// An error and its causes on one line (the failed-job JSON's `error`).
pub(crate) fn error_line(e: &ServeError) -> String {
    e.to_job_json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// The running ComfyUI's control and the running prompt, for [`interrupt`].
fn interrupt_target(s: &LiveState) -> Option<(SessionControl, Option<String>)> {
    s.comfy.as_ref().map(|c| (c.0.clone(), s.prompt_id.clone()))
}

/// Interrupts the running prompt (called without the lock: each call may take
/// its 5 s timeout).
fn interrupt(target: Option<(SessionControl, Option<String>)>) {
    if let Some((control, prompt_id)) = target {
        control.interrupt(prompt_id.as_deref());
    }
}

/// Passes events on and remembers the prompt id (so a cancel can interrupt it).
struct Tracking<'a> {
    inner: &'a dyn JobReporter,
    live: &'a Live,
}

impl JobReporter for Tracking<'_> {
    fn queued(&self, prompt_id: &str) {
        self.live.lock().prompt_id = Some(prompt_id.to_string());
        self.inner.queued(prompt_id);
    }
    fn cached(&self, node_ids: &[String]) {
        self.live.reinterrupt();
        self.inner.cached(node_ids);
    }
    fn node_started(&self, node_id: &str, class_type: &str) {
        self.live.reinterrupt();
        self.live.lock().progress = Some(json!({"node": node_id, "class_type": class_type}));
        self.inner.node_started(node_id, class_type);
    }
    fn progress(&self, node_id: &str, value: f64, max: f64) {
        self.live.reinterrupt();
        {
            let mut s = self.live.lock();
            let class_type = s
                .progress
                .as_ref()
                .filter(|p| p["node"] == node_id)
                .and_then(|p| p.get("class_type").cloned());
            let mut p = json!({"node": node_id, "step": value, "steps": max});
            if let Some(c) = class_type {
                p["class_type"] = c;
            }
            s.progress = Some(p);
        }
        self.inner.progress(node_id, value, max);
    }
}

/// The warm worker. Lives on the thread that runs the jobs (it spawns the
/// ComfyUIs its jobs need; look-ahead starts come from the look-ahead thread).
pub(crate) struct Worker<'a> {
    provider: &'a dyn EnvProvider,
    opts: &'a ServeOptions,
    log: &'a dyn ServeLog,
    live: Arc<Live>,
}

/// `result` with `failed_packs: [{"name", "error", "log"}]` when the running
/// ComfyUI failed to import some of its packs (as `run` reports them).
fn with_packs(mut result: Value, failed: &[Value]) -> Value {
    if !failed.is_empty() && result.is_object() {
        result["failed_packs"] = json!(failed);
    }
    result
}

/// Why [`Worker::ensure`] has no ComfyUI for a job.
enum NotReady {
    /// The version could not be prepared or its ComfyUI not started.
    Serve(ServeError),
    /// The job's workflow failed the pre-check against the node index.
    Refused(Box<HandlerError>),
}

impl From<ServeError> for NotReady {
    fn from(e: ServeError) -> Self {
        NotReady::Serve(e)
    }
}

impl NotReady {
    fn to_job_json(&self) -> Value {
        match self {
            NotReady::Serve(e) => e.to_job_json(),
            NotReady::Refused(e) => e.to_job_json(),
        }
    }
}

impl<'a> Worker<'a> {
    /// A worker with no ComfyUI yet, and the stop watchdog running.
    pub(crate) fn new(
        provider: &'a dyn EnvProvider,
        opts: &'a ServeOptions,
        log: &'a dyn ServeLog,
    ) -> Worker<'a> {
        sys::enable_graceful_stop();
        let live = Arc::new(Live::new(opts.warm));
        spawn_watchdog(Arc::clone(&live), opts.grace);
        Worker {
            provider,
            opts,
            log,
            live,
        }
    }

    /// The state other threads share.
    pub(crate) fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live)
    }

    fn starter(&self) -> Starter<'_> {
        Starter {
            provider: self.provider,
            opts: self.opts,
            log: self.log,
            live: &self.live,
        }
    }

    /// Starts the default version's ComfyUI and runs the warm-up workflow on
    /// it (before any job is taken). A failure is logged; each job for that
    /// version then tries again and reports the error.
    pub(crate) fn warm_up(&mut self) {
        let version = self.opts.default_version.clone();
        if let Err(e) = self.ensure(&version, None)
            && !matches!(e, NotReady::Serve(ServeError::Warmup { .. }))
        {
            self.log.event(&format!(
                "warning: {}",
                e.to_job_json()["error"].as_str().unwrap_or_default()
            ));
        }
    }

    /// Makes `version`'s ComfyUI the active one: warm, or started. Before a
    /// start, `job` is checked against the version's node index (a workflow
    /// the version cannot run is refused before any ComfyUI is evicted or
    /// started), and idle ComfyUIs are evicted as the pool's limits ask.
    fn ensure(&mut self, version: &str, job: Option<&Job>) -> Result<Arc<Warm>, NotReady> {
        let starter = self.starter();
        match self.live.pool.lookup(version) {
            Lookup::Ready(warm) => return Ok(self.activate(version, warm)),
            Lookup::Exited(warm) => {
                let status = warm.session.exit_status().unwrap_or_default();
                starter.retire(
                    version,
                    warm,
                    &format!("it exited while idle ({status}); started again for this job"),
                );
            }
            Lookup::Absent => {}
        }
        // Prepared first: if the version cannot be prepared, the warm
        // ComfyUIs stay as they are.
        let env = self
            .provider
            .env_for(version)
            .map_err(|source| ServeError::Version {
                version_id: version.to_string(),
                source,
            })?;
        if let Some(job) = job {
            env.precheck(job)
                .map_err(|e| NotReady::Refused(Box::new(e)))?;
        }
        let pool = &self.live.pool;
        pool.claim_start(version);
        starter.make_room(version);
        pool.insert_starting(version);
        match starter.start(version, &env, &self.opts.start, "a job needs it") {
            Ok(warm) => {
                let warm = Arc::new(warm);
                pool.finish_start(version, Some(Arc::clone(&warm)));
                Ok(self.activate(version, warm))
            }
            Err(e) => {
                pool.finish_start(version, None);
                self.provider.release(version);
                Err(e.into())
            }
        }
    }

    /// Makes `warm` (of `version`) the active ComfyUI; the one switched away
    /// from, if it stays warm, is asked to free its memory.
    fn activate(&self, version: &str, warm: Arc<Warm>) -> Arc<Warm> {
        let (switched, idle) = self.live.pool.activate(version);
        if switched {
            self.live.metrics.switched();
        }
        if let Some((previous, idle)) = idle {
            match idle.session.free_memory() {
                Ok(()) => self.log.event(&format!(
                    "freed the memory of ComfyUI of version {previous} (pid {}, idle now: the job runs on version {version})",
                    idle.session.pid()
                )),
                Err(e) => self.log.event(&format!(
                    "warning: could not free the memory of ComfyUI of version {previous}: {}",
                    e.to_job_json()["error"].as_str().unwrap_or_default()
                )),
            }
        }
        self.live.set_active(version, &warm);
        warm
    }

    /// Stops `version`'s ComfyUI, if it is warm.
    fn stop_version(&self, version: &str, why: &str) {
        if let Some(warm) = self.live.pool.remove(version) {
            self.starter().retire(version, warm, why);
        }
    }

    /// Stops every ComfyUI of the pool (at once, each with its grace period)
    /// after a start under way, and ends the look-ahead thread.
    pub(crate) fn stop_all(&mut self) {
        let all = self.live.pool.drain();
        let starter = self.starter();
        std::thread::scope(|scope| {
            for (version, warm) in all {
                scope.spawn(move || starter.retire(&version, warm, "the worker stops"));
            }
        });
        self.live.pool.finish();
    }

    /// Runs one job on its version's ComfyUI.
    pub(crate) fn run(&mut self, req: &JobRequest, reporter: &dyn JobReporter) -> Outcome {
        let t0 = Instant::now();
        let version = req
            .version_id
            .clone()
            .unwrap_or_else(|| self.opts.default_version.clone());
        self.log
            .event(&format!("job {}: version {version}", req.id));
        self.live.begin_job(&req.id);
        let live = Arc::clone(&self.live);
        let opts = self.opts;
        let mut failed_packs = Vec::new();
        let outcome = match self
            .opts
            .allows(&version)
            .map_err(NotReady::from)
            .and_then(|()| self.ensure(&version, Some(&req.job)))
        {
            Err(e) => Outcome::Failed(e.to_job_json()),
            // Cancelled while its version was being prepared: it does not run.
            Ok(_) if live.lock().cancelled => {
                live.end_job();
                Outcome::Cancelled
            }
            Ok(warm) => {
                failed_packs.clone_from(&warm.failed_packs);
                let tracking = Tracking {
                    inner: reporter,
                    live: &live,
                };
                // Cloud objects are named by this job's id (RunPod's), not the prompt's.
                let job_opts = JobOptions {
                    job_id: Some(req.id.clone()),
                    ..opts.job.clone()
                };
                live.pool.set_busy(true);
                let result = warm.session.run_job(&req.job, &job_opts, &tracking);
                live.pool.set_busy(false);
                let (cancelled, stopped_by) = live.end_job();
                let dead = warm.session.exit_status();
                drop(warm);
                if let Some(status) = dead {
                    self.stop_version(&version, &format!("it exited during the job ({status})"));
                }
                match result {
                    Ok(out) => Outcome::Completed(out.to_json()),
                    Err(_) if cancelled => Outcome::Cancelled,
                    Err(e) => match stopped_by {
                        Some(signal) => Outcome::Failed(
                            ServeError::Stopped {
                                signal,
                                grace: opts.grace,
                                source: Box::new(e),
                            }
                            .to_job_json(),
                        ),
                        None => Outcome::Failed(e.to_job_json()),
                    },
                }
            }
        };
        self.live.end_job();
        let outcome = match outcome {
            Outcome::Completed(v) => Outcome::Completed(with_packs(v, &failed_packs)),
            Outcome::Failed(v) => Outcome::Failed(with_packs(v, &failed_packs)),
            other => other,
        };
        if req.refresh_worker || self.opts.refresh_worker {
            self.stop_version(&version, "refresh_worker: a fresh ComfyUI for the next job");
        }
        self.log.event(&format!(
            "job {}: {} in {:.1?}",
            req.id,
            outcome.status(),
            t0.elapsed()
        ));
        outcome
    }
}

impl Drop for Worker<'_> {
    fn drop(&mut self) {
        self.stop_all();
    }
}

/// Once a stop signal has come: after the grace period, interrupts the running
/// job; [`KILL_AFTER`] later, kills ComfyUI if the job still runs.
fn spawn_watchdog(live: Arc<Live>, grace: Duration) {
    let _ = std::thread::Builder::new()
        .name("comfyver-serve-stop".into())
        .spawn(move || {
            let mut since: Option<Instant> = None;
            loop {
                std::thread::sleep(WATCH_EVERY);
                let Some(signal) = sys::stop_requested() else {
                    continue;
                };
                let since = *since.get_or_insert_with(Instant::now);
                let mut s = live.lock();
                if s.job.is_none() || since.elapsed() < grace {
                    continue;
                }
                if s.stopped_by.is_none() {
                    s.stopped_by = Some(signal);
                    s.interrupted_at = Some(Instant::now());
                    let target = interrupt_target(&s);
                    drop(s);
                    interrupt(target);
                } else if since.elapsed() >= grace + KILL_AFTER
                    && let Some((control, _)) = &s.comfy
                {
                    control.kill();
                }
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wf() -> Value {
        json!({"1": {"class_type": "EmptyImage", "inputs": {}}})
    }

    #[test]
    fn requests_parse_with_version_and_refresh() {
        let r = JobRequest::parse(
            "j".into(),
            &json!({"input": {"workflow": wf(), "version_id": "v2", "refresh_worker": true}}),
        )
        .unwrap();
        assert_eq!(r.version_id.as_deref(), Some("v2"));
        assert!(r.refresh_worker);
        let s = json!({"input": json!({"workflow": wf(), "version_id": "v3"}).to_string()});
        assert_eq!(
            JobRequest::parse("j".into(), &s)
                .unwrap()
                .version_id
                .as_deref(),
            Some("v3")
        );
    }

    #[test]
    fn bad_requests_say_why() {
        let cases = [
            (json!([1]), "JSON object"),
            (json!({"input": {}}), "workflow"),
            (
                json!({"input": {"workflow": wf(), "version_id": "../x"}}),
                "version_id",
            ),
            (
                json!({"input": {"workflow": wf(), "version_id": 3}}),
                "string",
            ),
            (
                json!({"input": {"workflow": wf(), "refresh_worker": "yes"}}),
                "refresh_worker",
            ),
        ];
        for (body, needle) in cases {
            let e = JobRequest::parse("j".into(), &body).unwrap_err();
            assert!(e.to_string().contains(needle), "{body}: {e}");
        }
    }

    #[test]
    fn a_cancel_just_before_the_job_begins_is_kept() {
        let live = Live::new(1);
        live.cancel("j1");
        live.begin_job("j2");
        assert!(!live.lock().cancelled, "a cancel for another job");
        live.end_job();
        live.cancel("j3");
        live.begin_job("j3");
        assert!(live.lock().cancelled);
        assert_eq!(live.end_job(), (true, None));
        assert_eq!(live.current_job(), None);
    }

    #[test]
    fn failed_outcome_moves_error_to_the_top() {
        let o = Outcome::Failed(json!({"error": "boom", "kind": "execution", "details": []}));
        let b = o.result_body();
        assert_eq!(b["error"], "boom");
        assert_eq!(b["output"], json!({"kind": "execution", "details": []}));
        assert_eq!(
            Outcome::Completed(json!({"images": []})).result_body(),
            json!({"output": {"images": []}})
        );
    }
}
