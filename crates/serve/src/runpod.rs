//! RunPod worker mode: the calls the official `runpod` SDK (1.12) makes,
//! reimplemented (see `docs/run.md`, section `serve`).
//!
//! - job-take: `GET {RUNPOD_WEBHOOK_GET_JOB with $ID = worker id}&job_in_progress=0`,
//!   a long poll (90 s); 204/400 mean no job, 429 waits 5 s; the body is one
//!   job `{id, input}` or a list of them.
//! - job-done: `POST {RUNPOD_WEBHOOK_POST_OUTPUT with $ID = job id}&isStream=false`,
//!   JSON body sent as `application/x-www-form-urlencoded` (as the SDK does),
//!   `X-Request-ID: <job id>`, 3 attempts. Progress goes to the same URL as
//!   `{"status": "IN_PROGRESS", "output": ...}`.
//! - job-stop: `GET {job-take URL with /job-take/ → /job-stop/}`, a long poll on
//!   its own thread; `{"jobsToStop": [ids]}` interrupts the running job, whose
//!   result is then not posted (as the SDK cancels it).
//! - ping: `GET {RUNPOD_WEBHOOK_PING}?job_id=<running>&runpod_version=...` every
//!   `RUNPOD_PING_INTERVAL` ms, in whole seconds (`int(ms) // 1000`, at least 1).
//!
//! Every call carries the raw `RUNPOD_AI_API_KEY` as `Authorization` (no
//! `Bearer`) and has a timeout. `$RUNPOD_POD_ID` is the worker id everywhere.

use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ureq::Agent;

use crate::worker::{JobRequest, Live, Outcome, Worker};
use crate::{EnvProvider, ServeError, ServeLog, ServeOptions};
use comfyver_fs::child as sys;
use comfyver_handler::JobReporter;

// The worker's key, sent as the raw `Authorization` header.
use comfyver_env::RUNPOD_AI_API_KEY as RUNPOD_AI_API_KEY_ENV;
// The heartbeat interval in milliseconds (default 10000; used in whole seconds).
use comfyver_env::RUNPOD_PING_INTERVAL as RUNPOD_PING_INTERVAL_ENV;
// The worker id (a random one when unset, as the SDK does).
use comfyver_env::RUNPOD_POD_ID as RUNPOD_POD_ID_ENV;
// The job-take URL template; when it is set, `serve` is a RunPod worker.
use comfyver_env::RUNPOD_WEBHOOK_GET_JOB as RUNPOD_WEBHOOK_GET_JOB_ENV;
// The heartbeat URL template.
use comfyver_env::RUNPOD_WEBHOOK_PING as RUNPOD_WEBHOOK_PING_ENV;
// The job-done URL template (`$ID` becomes the job id).
use comfyver_env::RUNPOD_WEBHOOK_POST_OUTPUT as RUNPOD_WEBHOOK_POST_OUTPUT_ENV;

/// The SDK release whose protocol this speaks, sent as `runpod_version` on pings.
const PROTOCOL_VERSION: &str = "1.12.0";
/// The job-take long poll's limit (the SDK's).
const TAKE_TIMEOUT: Duration = Duration::from_secs(90);
/// Limit of one job-done post (results may be tens of MB).
const DONE_TIMEOUT: Duration = Duration::from_secs(120);
/// Limit of one progress post.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(10);
/// At most one progress post per this interval (newer updates replace older ones).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// Job-done attempts (the SDK's FibonacciRetry(attempts=3)).
const DONE_ATTEMPTS: u32 = 3;
/// The wait after a 429 from job-take (the SDK's).
const TOO_MANY_WAIT: Duration = Duration::from_secs(5);
/// The longest wait after a failed job-take.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often a waiting loop looks at the stop flag.
const STOP_TICK: Duration = Duration::from_millis(100);

/// The RunPod worker's endpoints and identity, from the injected environment.
#[derive(Clone)]
pub struct RunpodConfig {
    job_take: String,
    job_done: String,
    ping: Option<String>,
    ping_every: Duration,
    api_key: Option<String>,
    worker_id: String,
}

impl std::fmt::Debug for RunpodConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunpodConfig")
            .field("worker_id", &self.worker_id)
            .field("ping_every", &self.ping_every)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish_non_exhaustive()
    }
}

impl RunpodConfig {
    /// `None` unless `RUNPOD_WEBHOOK_GET_JOB` is set; then the configuration,
    /// or what is missing or malformed.
    pub fn from_env() -> Option<Result<RunpodConfig, ServeError>> {
        Self::from_lookup(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    fn from_lookup(
        get: impl Fn(&str) -> Option<String>,
    ) -> Option<Result<RunpodConfig, ServeError>> {
        let take = get(RUNPOD_WEBHOOK_GET_JOB_ENV)?;
        Some(Self::build(take, get))
    }

    fn build(
        take: String,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<RunpodConfig, ServeError> {
        let worker_id = get(RUNPOD_POD_ID_ENV).unwrap_or_else(comfyver_handler::new_job_id);
        let done = get(RUNPOD_WEBHOOK_POST_OUTPUT_ENV).ok_or_else(|| {
            ServeError::RunpodConfig(format!(
                "{RUNPOD_WEBHOOK_GET_JOB_ENV} is set but {RUNPOD_WEBHOOK_POST_OUTPUT_ENV} is not; \
                 results could not be posted (unset {RUNPOD_WEBHOOK_GET_JOB_ENV} to use --listen)"
            ))
        })?;
        let ping_ms = match get(RUNPOD_PING_INTERVAL_ENV) {
            None => 10_000,
            Some(v) => v.trim().parse::<u64>().map_err(|_| {
                ServeError::RunpodConfig(format!(
                    "{RUNPOD_PING_INTERVAL_ENV}=`{v}` is not a whole number of milliseconds"
                ))
            })?,
        };
        for (name, url) in [
            (RUNPOD_WEBHOOK_GET_JOB_ENV, Some(&take)),
            (RUNPOD_WEBHOOK_POST_OUTPUT_ENV, Some(&done)),
            (
                RUNPOD_WEBHOOK_PING_ENV,
                get(RUNPOD_WEBHOOK_PING_ENV).as_ref(),
            ),
        ] {
            if let Some(url) = url
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(ServeError::RunpodConfig(format!(
                    "{name} must be an http:// or https:// URL template"
                )));
            }
        }
        let api_key = get(RUNPOD_AI_API_KEY_ENV);
        // The SDK starts its heartbeat only with a key, a pod id and a ping URL.
        let ping = get(RUNPOD_WEBHOOK_PING_ENV)
            .filter(|_| api_key.is_some() && get(RUNPOD_POD_ID_ENV).is_some())
            .map(|p| p.replace("$RUNPOD_POD_ID", &worker_id));
        Ok(RunpodConfig {
            job_take: take.replace("$ID", &worker_id),
            job_done: done.replace("$RUNPOD_POD_ID", &worker_id),
            ping,
            ping_every: Duration::from_secs((ping_ms / 1000).max(1)),
            api_key,
            worker_id,
        })
    }

    /// The worker id (`RUNPOD_POD_ID`, or a random one).
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }
}

/// `url` with `pairs` appended after `?` or `&`, values percent-encoded.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut out = url.to_string();
    for (k, v) in pairs {
        if !out.contains('?') {
            out.push('?');
        } else if !out.ends_with('?') && !out.ends_with('&') {
            out.push('&');
        }
        out.push_str(k);
        out.push('=');
        for b in v.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

/// What one job-take gave.
enum Take {
    Jobs(Vec<Value>),
    Nothing,
    Wait(Duration, String),
}

#[derive(Clone)]
struct Client {
    agent: Agent,
    cfg: Arc<RunpodConfig>,
}

impl Client {
    fn new(cfg: &RunpodConfig) -> Client {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .user_agent(concat!("comfyver/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            cfg: Arc::new(cfg.clone()),
        }
    }

    fn auth(&self) -> &str {
        self.cfg.api_key.as_deref().unwrap_or("")
    }

    /// One job-stop long poll: the ids RunPod wants stopped.
    fn stop_signals(&self) -> Result<Vec<String>, Duration> {
        let url = self.cfg.job_take.replacen("/job-take/", "/job-stop/", 1);
        let r = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(TAKE_TIMEOUT))
            .build()
            .header("Authorization", self.auth())
            .header("Content-Type", "application/json")
            .call();
        let mut resp = r.map_err(|_| Duration::from_secs(1))?;
        match resp.status().as_u16() {
            200 => {
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .unwrap_or_default();
                let v: Value = serde_json::from_slice(&body).unwrap_or_default();
                Ok(v["jobsToStop"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|id| id.as_str().map(String::from))
                    .collect())
            }
            204 => Ok(Vec::new()),
            429 => Err(TOO_MANY_WAIT),
            _ => Err(Duration::from_secs(1)),
        }
    }

    fn take(&self) -> Take {
        let url = with_query(&self.cfg.job_take, &[("job_in_progress", "0")]);
        let r = self
            .agent
            .get(&url)
            .config()
            .timeout_global(Some(TAKE_TIMEOUT))
            .build()
            .header("Authorization", self.auth())
            .header("Content-Type", "application/json")
            .call();
        let mut resp = match r {
            Ok(r) => r,
            Err(e) => return Take::Wait(Duration::from_secs(1), format!("job-take failed: {e}")),
        };
        match resp.status().as_u16() {
            204 | 400 => Take::Nothing,
            429 => Take::Wait(
                TOO_MANY_WAIT,
                "job-take answered 429 (too many requests)".into(),
            ),
            200..=299 => {
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_vec()
                    .unwrap_or_default();
                match serde_json::from_slice::<Value>(&body) {
                    Ok(Value::Array(jobs)) => Take::Jobs(jobs),
                    Ok(job @ Value::Object(_)) => Take::Jobs(vec![job]),
                    _ => Take::Nothing,
                }
            }
            s => Take::Wait(
                Duration::from_secs(1),
                format!("job-take answered HTTP {s}"),
            ),
        }
    }

    /// One POST to the job-done URL of `job_id`; Err says whether to retry.
    fn post_done_once(
        &self,
        job_id: &str,
        body: &str,
        timeout: Duration,
    ) -> Result<(), (bool, String)> {
        let url = with_query(
            &self.cfg.job_done.replace("$ID", job_id),
            &[("isStream", "false")],
        );
        let r = self
            .agent
            .post(&url)
            .config()
            .timeout_global(Some(timeout))
            .build()
            .header("Authorization", self.auth())
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("charset", "utf-8")
            .header("X-Request-ID", job_id)
            .send(body);
        match r {
            Ok(resp) => match resp.status().as_u16() {
                200..=299 => Ok(()),
                s @ (429 | 500..=599) => Err((true, format!("HTTP {s}"))),
                s => Err((false, format!("HTTP {s}"))),
            },
            Err(e) => Err((true, e.to_string())),
        }
    }

    /// Posts a job's result, with retries (1 s, 2 s apart).
    fn post_done(&self, job_id: &str, body: &Value, log: &dyn ServeLog) {
        let text = body.to_string();
        for attempt in 1..=DONE_ATTEMPTS {
            match self.post_done_once(job_id, &text, DONE_TIMEOUT) {
                Ok(()) => return,
                Err((retry, why)) => {
                    log.event(&format!(
                        "job {job_id}: posting the result failed (attempt {attempt}/{DONE_ATTEMPTS}): {why}"
                    ));
                    if !retry {
                        return;
                    }
                    if attempt < DONE_ATTEMPTS {
                        std::thread::sleep(Duration::from_secs(u64::from(attempt)));
                    }
                }
            }
        }
    }

    fn ping(&self, url: &str, job: Option<String>) {
        let mut pairs = Vec::new();
        if let Some(j) = &job {
            pairs.push(("job_id", j.as_str()));
        }
        pairs.push(("runpod_version", PROTOCOL_VERSION));
        let _ = self
            .agent
            .get(&with_query(url, &pairs))
            .config()
            .timeout_global(Some(self.cfg.ping_every * 2))
            .build()
            .header("Authorization", self.auth())
            .call();
    }
}

/// Progress updates for one job, posted from their own thread, coalesced to
/// at most one per [`PROGRESS_EVERY`], never after the job's result.
struct Progress {
    tx: Mutex<Option<mpsc::Sender<Value>>>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    fn start(client: &Client, job_id: &str) -> Progress {
        let (tx, rx) = mpsc::channel::<Value>();
        let client = client.clone();
        let job_id = job_id.to_string();
        let thread = std::thread::Builder::new()
            .name("comfyver-progress".into())
            .spawn(move || {
                let mut pending = match rx.recv() {
                    Ok(v) => Some(v),
                    Err(_) => return,
                };
                while let Some(update) = pending.take() {
                    let body = json!({"status": "IN_PROGRESS", "output": update}).to_string();
                    let _ = client.post_done_once(&job_id, &body, PROGRESS_TIMEOUT);
                    // Keep only the newest update until the next post is due;
                    // stop at once when the job ends.
                    let due = Instant::now() + PROGRESS_EVERY;
                    loop {
                        let wait = due.saturating_duration_since(Instant::now());
                        match rx.recv_timeout(wait) {
                            Ok(v) => pending = Some(v),
                            Err(RecvTimeoutError::Timeout) if pending.is_some() => break,
                            Err(RecvTimeoutError::Timeout) => match rx.recv() {
                                Ok(v) => {
                                    pending = Some(v);
                                    break;
                                }
                                Err(_) => return,
                            },
                            Err(RecvTimeoutError::Disconnected) => return,
                        }
                    }
                }
            })
            .ok();
        Progress {
            tx: Mutex::new(Some(tx)),
            thread,
        }
    }

    /// Stops posting; returns once no progress post is in flight.
    fn finish(mut self) {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl JobReporter for Progress {
    fn progress(&self, node_id: &str, value: f64, max: f64) {
        let percent = if max > 0.0 {
            (value / max * 100.0).round()
        } else {
            0.0
        };
        let update = json!({"node_id": node_id, "value": value, "max": max, "percent": percent});
        if let Some(tx) = self.tx.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let _ = tx.send(update);
        }
    }
}

/// Runs the RunPod worker until a stop signal (or a refreshed worker): starts
/// the default version's ComfyUI, then takes jobs one at a time.
pub fn serve_runpod(
    config: &RunpodConfig,
    provider: &dyn EnvProvider,
    opts: &ServeOptions,
    log: &dyn ServeLog,
) -> Result<(), ServeError> {
    let mut worker = Worker::new(provider, opts, log);
    worker.warm_up();
    let client = Client::new(config);
    if let Some(url) = config.ping.clone() {
        spawn_ping(client.clone(), url, worker.live(), config.ping_every);
    }
    spawn_stop_monitor(client.clone(), worker.live());
    log.event(&format!("RunPod worker {} taking jobs", config.worker_id));
    let mut backoff = Duration::ZERO;
    'serving: while sys::stop_requested().is_none() {
        let jobs = match take_until_stopped(&client, opts.grace) {
            None => break,
            Some(Take::Jobs(jobs)) => jobs,
            Some(Take::Nothing) => {
                backoff = Duration::ZERO;
                continue;
            }
            Some(Take::Wait(wait, why)) => {
                log.event(&why);
                backoff = (backoff + Duration::from_secs(1))
                    .min(MAX_BACKOFF)
                    .max(wait);
                sleep_unless_stopped(backoff);
                continue;
            }
        };
        backoff = Duration::ZERO;
        for raw in jobs {
            if handle_job(&client, &mut worker, &raw, opts, log) {
                log.event("refresh_worker: the worker stops after this job");
                break 'serving;
            }
        }
    }
    if let Some(sig) = sys::stop_requested() {
        log.event(&format!("stopping (signal {sig})"));
    }
    worker.stop_all();
    Ok(())
}

/// A job-take on its own thread, so a stop signal is seen while it is held;
/// after a stop, its answer is still awaited for the grace period (a job the
/// server hands out then is run, not dropped). `None`: stopped.
fn take_until_stopped(client: &Client, grace: Duration) -> Option<Take> {
    let (tx, rx) = mpsc::channel();
    let c = client.clone();
    std::thread::spawn(move || {
        let _ = tx.send(c.take());
    });
    let mut stopped_at: Option<Instant> = None;
    loop {
        match rx.recv_timeout(STOP_TICK) {
            Ok(take) => return Some(take),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {
                if sys::stop_requested().is_some() {
                    let at = *stopped_at.get_or_insert_with(Instant::now);
                    if at.elapsed() >= grace {
                        return None;
                    }
                }
            }
        }
    }
}

fn sleep_unless_stopped(d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && sys::stop_requested().is_none() {
        std::thread::sleep(STOP_TICK);
    }
}

/// Runs one taken job and posts its result; true when the worker must stop
/// afterwards (`refresh_worker`).
fn handle_job(
    client: &Client,
    worker: &mut Worker<'_>,
    raw: &Value,
    opts: &ServeOptions,
    log: &dyn ServeLog,
) -> bool {
    let Some(id) = raw
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        log.event("job-take gave a job without an `id`; it cannot be answered and is skipped");
        return false;
    };
    let (outcome, refresh) = match JobRequest::parse(id.to_string(), raw) {
        Err(e) => {
            log.event(&format!("job {id}: {e}"));
            (Outcome::Failed(e.to_job_json()), opts.refresh_worker)
        }
        Ok(req) => {
            let progress = Progress::start(client, id);
            let outcome = worker.run(&req, &progress);
            progress.finish();
            (outcome, req.refresh_worker || opts.refresh_worker)
        }
    };
    if matches!(outcome, Outcome::Cancelled) {
        // RunPod asked to stop it (job-stop): like the SDK, no result is posted.
        log.event(&format!(
            "job {id}: stopped as RunPod asked; no result posted"
        ));
        return refresh;
    }
    let mut body = outcome.result_body();
    if refresh {
        body["stopPod"] = json!(true);
    }
    client.post_done(id, &body, log);
    refresh
}

/// Long-polls job-stop and interrupts the running job when RunPod names it.
fn spawn_stop_monitor(client: Client, live: Arc<Live>) {
    let _ = std::thread::Builder::new()
        .name("comfyver-job-stop".into())
        .spawn(move || {
            while sys::stop_requested().is_none() {
                match client.stop_signals() {
                    Ok(ids) => {
                        for id in ids {
                            live.cancel(&id);
                        }
                    }
                    Err(wait) => sleep_unless_stopped(wait),
                }
            }
        });
}

fn spawn_ping(client: Client, url: String, live: Arc<Live>, every: Duration) {
    let _ = std::thread::Builder::new()
        .name("comfyver-ping".into())
        .spawn(move || {
            loop {
                let started = Instant::now();
                client.ping(&url, live.current_job());
                std::thread::sleep(every.saturating_sub(started.elapsed()));
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn cfg(vars: &[(&str, &str)]) -> Option<Result<RunpodConfig, ServeError>> {
        let m: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        RunpodConfig::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn templates_are_substituted_like_the_sdk() {
        let c = cfg(&[
            (RUNPOD_WEBHOOK_GET_JOB_ENV, "http://h/job-take/$ID?gpu=x"),
            (
                RUNPOD_WEBHOOK_POST_OUTPUT_ENV,
                "http://h/job-done/$RUNPOD_POD_ID/$ID?gpu=x",
            ),
            (RUNPOD_WEBHOOK_PING_ENV, "http://h/ping/$RUNPOD_POD_ID"),
            (RUNPOD_PING_INTERVAL_ENV, "2500"),
            (RUNPOD_POD_ID_ENV, "w1"),
            (RUNPOD_AI_API_KEY_ENV, "k"),
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.job_take, "http://h/job-take/w1?gpu=x");
        assert_eq!(c.job_done, "http://h/job-done/w1/$ID?gpu=x");
        assert_eq!(c.ping.as_deref(), Some("http://h/ping/w1"));
        assert_eq!(c.ping_every, Duration::from_secs(2));
        assert!(!format!("{c:?}").contains("\"k\""));
    }

    #[test]
    fn missing_or_bad_settings_are_named() {
        assert!(cfg(&[]).is_none());
        let e = cfg(&[(RUNPOD_WEBHOOK_GET_JOB_ENV, "http://h/t/$ID")])
            .unwrap()
            .unwrap_err();
        assert!(
            e.to_string().contains(RUNPOD_WEBHOOK_POST_OUTPUT_ENV),
            "{e}"
        );
        let e = cfg(&[
            (RUNPOD_WEBHOOK_GET_JOB_ENV, "http://h/t/$ID"),
            (RUNPOD_WEBHOOK_POST_OUTPUT_ENV, "http://h/d/$ID"),
            (RUNPOD_PING_INTERVAL_ENV, "10s"),
        ])
        .unwrap()
        .unwrap_err();
        assert!(e.to_string().contains("10s"), "{e}");
        // Without a key and pod id there is no heartbeat (as in the SDK), and
        // a sub-second interval still pings once a second.
        let c = cfg(&[
            (RUNPOD_WEBHOOK_GET_JOB_ENV, "http://h/t/$ID"),
            (RUNPOD_WEBHOOK_POST_OUTPUT_ENV, "http://h/d/$ID"),
            (RUNPOD_WEBHOOK_PING_ENV, "http://h/p"),
            (RUNPOD_PING_INTERVAL_ENV, "500"),
        ])
        .unwrap()
        .unwrap();
        assert!(c.ping.is_none());
        assert_eq!(c.ping_every, Duration::from_secs(1));
    }

    #[test]
    fn query_pairs_are_appended() {
        assert_eq!(with_query("http://h/a", &[("k", "v")]), "http://h/a?k=v");
        assert_eq!(with_query("http://h/a?", &[("k", "v")]), "http://h/a?k=v");
        assert_eq!(
            with_query("http://h/a?g=x", &[("k", "a b"), ("j", "1")]),
            "http://h/a?g=x&k=a%20b&j=1"
        );
    }
}
