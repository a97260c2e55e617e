//! The local job API, shaped like RunPod's endpoint API and its SDK's local
//! test server: `POST /run`, `POST /runsync[?wait=ms]`, `GET|POST /status/{id}`,
//! `POST /cancel/{id}`, `GET /health`, `GET /ready`, and `GET /metrics`
//! (Prometheus' text format).
//!
//! Jobs queue in order and run one at a time on the serving thread (it spawns
//! ComfyUI and outlives it). The HTTP side is hyper's HTTP/1 server on a
//! single-threaded tokio runtime of its own thread: every request is a task,
//! so a waiting `/runsync` or a slow client holds no thread and never delays
//! `/health`, `/ready`, `/status` or `/cancel`. The two sides share the job
//! table (a mutex held only for bookkeeping) and wake each other through a
//! condition variable (the job thread) and a watch channel (the requests).
//!
//! Limits: the request head must arrive within [`HEAD_TIMEOUT`] and fit in
//! [`MAX_HEAD`] bytes (else 431, hyper's answer), the URL in [`MAX_URL`]
//! (414); a body must arrive within [`BODY_TIMEOUT`], hold at most
//! [`MAX_BODY`] (413), and all bodies being read at once at most
//! [`MAX_BODIES_IN_FLIGHT`] (503). At most [`LocalApiOptions::max_queue`] jobs
//! wait; beyond, `/run` and `/runsync` answer 429 with `Retry-After` before
//! reading the body.
//!
//! A job whose `/run` body names a `webhook` has its final status POSTed there
//! once it ends ([`crate::webhook`]), from a thread of its own.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, mpsc};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::metrics;
use crate::pool::{self, Starter};
use crate::webhook::{self, Delivery, WebhookKey};
use crate::worker::{JobRequest, Live, Outcome, Worker};
use crate::{EnvProvider, ServeError, ServeLog, ServeOptions};
use comfyver_fs::child as sys;

/// Largest request body (RunPod's `/runsync` limit).
pub(crate) const MAX_BODY: usize = 20 << 20;
/// Largest request head (request line and headers); hyper answers 431 beyond.
const MAX_HEAD: usize = 64 << 10;
/// Longest URL (path and query); 414 beyond, the URL not echoed.
const MAX_URL: usize = 8 << 10;
/// Bytes of request bodies held at once while they are read; 503 beyond.
const MAX_BODIES_IN_FLIGHT: usize = 96 << 20;
/// How long a client may take to send the request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send the body.
const BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Open connections at most; more are closed at once.
const MAX_CONNECTIONS: usize = 512;
/// `Retry-After` of a 429 (seconds).
const RETRY_AFTER: &str = "5";
/// How often the accept loop looks at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// Finished jobs kept for `/status`.
const MAX_FINISHED: usize = 1000;
/// How long `/cancel` waits for a running job to end before answering `IN_PROGRESS`.
const CANCEL_WAIT: Duration = Duration::from_millis(500);
/// After the last job, how long waiting requests get to be answered.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

/// How the local job API listens and admits jobs.
#[derive(Debug, Clone)]
pub struct LocalApiOptions {
    /// `host:port` to listen on.
    pub listen: String,
    /// The key every endpoint but `/health` requires; `None`: open (only on a
    /// loopback address, unless [`LocalApiOptions::no_auth`]).
    pub api_key: Option<String>,
    /// Serve with no key even on a non-loopback address.
    pub no_auth: bool,
    /// Queued jobs at most (the running one not counted); beyond: 429.
    pub max_queue: usize,
    /// Serve `GET /metrics` without the key (`--metrics-public`).
    pub metrics_public: bool,
    /// The Standard Webhooks secret (`whsec_<base64>`) webhook deliveries are
    /// signed with; `None`: sent unsigned.
    pub webhook_secret: Option<String>,
}

impl LocalApiOptions {
    /// The default queue limit: eight jobs of the largest body (20 MB) keep the
    /// worker within a few hundred MB.
    pub const DEFAULT_MAX_QUEUE: usize = 8;

    /// Options to listen on `listen`, no key, the default queue limit.
    pub fn new(listen: impl Into<String>) -> LocalApiOptions {
        LocalApiOptions {
            listen: listen.into(),
            api_key: None,
            no_auth: false,
            max_queue: Self::DEFAULT_MAX_QUEUE,
            metrics_public: false,
            webhook_secret: None,
        }
    }
}

struct Entry {
    status: &'static str,
    /// The version the job runs on (for the metrics).
    version: String,
    /// Where the final status goes.
    webhook: Option<String>,
    submitted: Instant,
    started: Option<Instant>,
    finished: Option<Instant>,
    request: Option<JobRequest>,
    outcome: Option<Outcome>,
}

impl Entry {
    fn terminal(&self) -> bool {
        self.outcome.is_some()
    }

    fn status_json(&self, id: &str, live: &Live) -> Value {
        let now = Instant::now();
        // A job cancelled in the queue stops waiting when it is cancelled.
        let waited_until = self.started.or(self.finished).unwrap_or(now);
        let delay = waited_until.duration_since(self.submitted);
        let mut v = json!({"id": id, "status": self.status, "delayTime": delay.as_millis() as u64});
        if let Some(s) = self.started {
            v["executionTime"] =
                json!(self.finished.unwrap_or(now).duration_since(s).as_millis() as u64);
        }
        match &self.outcome {
            Some(o) => {
                if let Value::Object(body) = o.result_body() {
                    for (k, val) in body {
                        v[k] = val;
                    }
                }
            }
            None => {
                if let Some((job, progress)) = live.progress()
                    && job == id
                {
                    v["output"] = json!({"progress": progress});
                }
            }
        }
        v
    }
}

#[derive(Default)]
struct Jobs {
    queue: VecDeque<String>,
    entries: HashMap<String, Entry>,
    finished: VecDeque<String>,
    running: Option<String>,
    completed: u64,
    failed: u64,
    cancelled: u64,
}

impl Jobs {
    /// Ends job `id`: its status, the counters and metrics, its webhook.
    fn finish(&mut self, shared: &Shared, id: &str, outcome: Outcome) {
        if let Some(e) = self.entries.get_mut(id) {
            e.status = outcome.status();
            let now = Instant::now();
            e.finished = Some(now);
            e.request = None;
            match &outcome {
                Outcome::Completed(_) => self.completed += 1,
                Outcome::Failed(_) => self.failed += 1,
                Outcome::Cancelled => self.cancelled += 1,
            }
            e.outcome = Some(outcome);
            shared.live.metrics.job_ended(
                e.status,
                &e.version,
                e.started.map(|s| now.duration_since(s)),
            );
            if let Some(url) = e.webhook.take() {
                let body = e.status_json(id, &shared.live).to_string();
                shared.send_webhook(Delivery {
                    url,
                    id: format!("msg_{id}"),
                    body,
                });
            }
        }
        self.finished.push_back(id.to_string());
        while self.finished.len() > MAX_FINISHED {
            if let Some(old) = self.finished.pop_front() {
                self.entries.remove(&old);
            }
        }
    }
}

struct Shared {
    jobs: Mutex<Jobs>,
    /// Wakes the job thread (a job was queued).
    work: Condvar,
    /// Wakes waiting requests (a job changed state); the value counts changes.
    changed: tokio::sync::watch::Sender<u64>,
    live: Arc<Live>,
    /// The key's SHA-256, when a key is required.
    key_digest: Option<[u8; 32]>,
    max_queue: usize,
    metrics_public: bool,
    /// Webhook deliveries go to the delivery thread; `None` once stopping.
    webhooks: Mutex<Option<mpsc::Sender<Delivery>>>,
    /// The serve options' version allow-list check.
    opts: ServeOptions,
    /// The default version's first ComfyUI start is done (or failed).
    warmed: AtomicBool,
    /// Body bytes being read right now.
    body_bytes: AtomicUsize,
    in_flight: AtomicUsize,
    shutdown: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hands a delivery to the delivery thread.
    fn send_webhook(&self, d: Delivery) {
        let tx = self.webhooks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tx) = tx.as_ref() {
            let _ = tx.send(d);
        }
    }

    /// Tells the job thread and every waiting request that jobs changed.
    fn notify(&self) {
        self.work.notify_all();
        self.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Whether `req` carries the key (`Authorization: Bearer <key>` or the raw
    /// key), compared in constant time over the digests.
    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(want) = &self.key_digest else {
            return true;
        };
        let Some(given) = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes)
        else {
            return false;
        };
        let given = given
            .strip_prefix(b"Bearer ")
            .or_else(|| given.strip_prefix(b"bearer "))
            .unwrap_or(given);
        let got: [u8; 32] = Sha256::digest(given).into();
        got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Serves the local job API until a stop signal. The address is bound first
/// (a bad one fails at once), then requests are answered while the default
/// version's ComfyUI starts (`/ready` says when it is warm); jobs run once it is.
pub fn serve_local(
    api: &LocalApiOptions,
    provider: &dyn EnvProvider,
    opts: &ServeOptions,
    log: &dyn ServeLog,
) -> Result<(), ServeError> {
    if api.api_key.is_none() && !api.no_auth && !loopback_only(&api.listen) {
        return Err(ServeError::Unprotected {
            addr: api.listen.clone(),
        });
    }
    let listen_error = |source: Box<dyn std::error::Error + Send + Sync>| ServeError::Listen {
        addr: api.listen.clone(),
        source,
    };
    let webhook_key = api
        .webhook_secret
        .as_deref()
        .map(WebhookKey::parse)
        .transpose()?;
    let listener = std::net::TcpListener::bind(&api.listen).map_err(|e| listen_error(e.into()))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| listen_error(e.into()))?;
    let local = listener.local_addr().map_err(|e| listen_error(e.into()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| listen_error(e.into()))?;

    let mut worker = Worker::new(provider, opts, log);
    let shared = Arc::new(Shared {
        jobs: Mutex::new(Jobs::default()),
        work: Condvar::new(),
        changed: tokio::sync::watch::Sender::new(0),
        live: worker.live(),
        key_digest: api
            .api_key
            .as_ref()
            .map(|k| Sha256::digest(k.as_bytes()).into()),
        max_queue: api.max_queue,
        metrics_public: api.metrics_public,
        webhooks: Mutex::new(None),
        opts: opts.clone(),
        warmed: AtomicBool::new(false),
        body_bytes: AtomicUsize::new(0),
        in_flight: AtomicUsize::new(0),
        shutdown: AtomicBool::new(false),
    });
    let http = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("comfyver-api".into())
            .spawn(move || {
                runtime.block_on(accept(listener, shared));
                runtime.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| listen_error(e.into()))?
    };
    let auth = if api.api_key.is_some() {
        "key required"
    } else {
        "no key"
    };
    log.event(&format!(
        "local job API listening on http://{local} ({auth}, at most {} queued jobs)",
        api.max_queue
    ));

    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::channel::<Delivery>();
        *shared.webhooks.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
        let shared_ref = &shared;
        let key = webhook_key.as_ref();
        // Each delivery on a thread of its own: a slow receiver holds back
        // neither the jobs nor the other deliveries.
        scope.spawn(move || {
            for d in rx {
                scope.spawn(move || {
                    let ok = webhook::deliver(&d, key);
                    shared_ref.live.metrics.webhook(ok.is_ok());
                    if let Err(why) = ok {
                        log.event(&format!(
                            "warning: the webhook of job {} could not be delivered to {}: {why}",
                            d.id.trim_start_matches("msg_"),
                            d.url
                        ));
                    }
                });
            }
        });
        // Look-ahead: while a job runs, a queued job's version starts beside it.
        let starter = Starter {
            provider,
            opts,
            log,
            live: &shared_ref.live,
        };
        let queued = || queued_versions(shared_ref);
        scope.spawn(move || pool::look_ahead(starter, &queued));
        worker.warm_up();
        shared.warmed.store(true, Ordering::SeqCst);
        shared.notify();
        while let Some((id, req)) = next_job(&shared) {
            let outcome = worker.run(&req, &());
            let mut jobs = shared.lock();
            jobs.running = None;
            jobs.finish(&shared, &id, outcome);
            drop(jobs);
            shared.notify();
        }

        // Stopping: every queued job fails explicitly, nothing is dropped.
        let signal = sys::stop_requested().unwrap_or(libc::SIGTERM);
        log.event(&format!("stopping (signal {signal})"));
        {
            let mut jobs = shared.lock();
            let queued: Vec<String> = jobs.queue.drain(..).collect();
            for id in queued {
                jobs.finish(
                    &shared,
                    &id,
                    Outcome::Failed(ServeError::NotRun { signal }.to_job_json()),
                );
            }
        }
        shared.notify();
        worker.stop_all();
        let until = Instant::now() + ANSWER_WAIT;
        while shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        shared.shutdown.store(true, Ordering::SeqCst);
        let _ = http.join();
        // The last deliveries are awaited (the scope ends with them).
        shared
            .webhooks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    });
    Ok(())
}

/// Whether every address `listen` names is a loopback one.
fn loopback_only(listen: &str) -> bool {
    match listen.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        // Unresolvable: binding fails anyway, with its own error.
        Err(_) => true,
    }
}

/// The versions of the queued jobs, in order (the default one for a job that
/// names none).
fn queued_versions(shared: &Shared) -> Vec<String> {
    let jobs = shared.lock();
    jobs.queue
        .iter()
        .filter_map(|id| jobs.entries.get(id)?.request.as_ref())
        .map(|r| {
            r.version_id
                .clone()
                .unwrap_or_else(|| shared.opts.default_version.clone())
        })
        .collect()
}

/// The next queued job, marked running; `None` once a stop was asked for.
fn next_job(shared: &Shared) -> Option<(String, JobRequest)> {
    let mut jobs = shared.lock();
    loop {
        if sys::stop_requested().is_some() {
            return None;
        }
        while let Some(id) = jobs.queue.pop_front() {
            let Some(entry) = jobs.entries.get_mut(&id) else {
                continue;
            };
            let Some(req) = entry.request.take() else {
                continue;
            };
            entry.status = "IN_PROGRESS";
            entry.started = Some(Instant::now());
            jobs.running = Some(id.clone());
            shared.live.metrics.job_started(entry_wait(&jobs, &id));
            drop(jobs);
            shared.notify();
            return Some((id, req));
        }
        jobs = shared
            .work
            .wait_timeout(jobs, TICK)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

/// How long job `id` waited in the queue before it started.
fn entry_wait(jobs: &Jobs, id: &str) -> Duration {
    jobs.entries
        .get(id)
        .and_then(|e| Some(e.started?.duration_since(e.submitted)))
        .unwrap_or_default()
}

/// Accepts connections until shutdown; each is served by its own task.
async fn accept(listener: std::net::TcpListener, shared: Arc<Shared>) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    let connections = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    while !shared.shutdown.load(Ordering::SeqCst) {
        let Ok(accepted) = tokio::time::timeout(TICK, listener.accept()).await else {
            continue;
        };
        let Ok((stream, _)) = accepted else {
            // Out of descriptors and the like: let it pass.
            tokio::time::sleep(TICK).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&connections).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(answer(req, &shared).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            drop(permit);
        });
    }
}

type Answer = Response<Full<Bytes>>;

fn respond(status: u16, body: &Value) -> Answer {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: u16, message: &str) -> Answer {
    respond(status, &json!({"error": message}))
}

/// Counts a request in flight while it is answered (shutdown waits for them).
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn answer(req: Request<Incoming>, shared: &Shared) -> Answer {
    shared.in_flight.fetch_add(1, Ordering::SeqCst);
    let _in_flight = InFlight(&shared.in_flight);
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URL {
        return error(414, &format!("the URL is longer than {} KB", MAX_URL >> 10));
    }
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or_default().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    let known = matches!(
        segments.as_slice(),
        ["run" | "runsync" | "health" | "ready" | "metrics"] | ["status" | "cancel", _]
    );
    if !known {
        return error(
            404,
            "no such endpoint: use /run, /runsync, /status/{id}, /cancel/{id}, /health, /ready, /metrics",
        );
    }
    let open = segments == ["health"] || (segments == ["metrics"] && shared.metrics_public);
    if !open && !shared.authorized(&req) {
        let mut resp = error(
            401,
            "this worker requires its API key: send `Authorization: Bearer <key>`",
        );
        resp.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    }
    match (&method, segments.as_slice()) {
        (&Method::POST, ["run"]) => submit(req, shared, false, &query).await,
        (&Method::POST, ["runsync"]) => submit(req, shared, true, &query).await,
        (&Method::GET | &Method::POST, ["status", id]) => {
            let jobs = shared.lock();
            match jobs.entries.get(*id) {
                Some(e) => respond(200, &e.status_json(id, &shared.live)),
                None => error(404, &format!("no job with id `{id}`")),
            }
        }
        (&Method::POST, ["cancel", id]) => cancel(shared, id).await,
        (&Method::GET, ["health"]) => respond(200, &health_json(shared)),
        (&Method::GET, ["metrics"]) => {
            let (queued, running) = {
                let jobs = shared.lock();
                (jobs.queue.len(), jobs.running.is_some())
            };
            let mut resp = Response::new(Full::new(Bytes::from(
                shared.live.metrics.render(queued, running),
            )));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(metrics::CONTENT_TYPE),
            );
            resp
        }
        (&Method::GET, ["ready"]) => match not_ready(shared) {
            None => respond(200, &json!({"ready": true})),
            Some(reason) => respond(503, &json!({"ready": false, "reason": reason})),
        },
        _ => error(405, &format!("{method} is not allowed on {path}")),
    }
}

/// The `/health` JSON: RunPod's job counters, the running ComfyUI, stopping.
fn health_json(shared: &Shared) -> Value {
    let jobs = shared.lock();
    let running = usize::from(jobs.running.is_some());
    let mut health = json!({
        "jobs": {"completed": jobs.completed, "failed": jobs.failed, "cancelled": jobs.cancelled,
                 "inProgress": running, "inQueue": jobs.queue.len(), "retried": 0},
        "workers": {"idle": 1 - running, "running": running},
        "comfyui": {"version_id": shared.live.version(), "starts": shared.live.starts(),
                    "warm": shared.live.pool.to_json(), "warm_max": shared.opts.warm},
        "stopping": sys::stop_requested().is_some(),
    });
    if let Some((confined, reason)) = shared.live.confined() {
        health["comfyui"]["confined"] = json!(confined);
        health["comfyui"]["confined_reason"] = json!(reason);
    }
    health
}

/// Why the worker should not be sent jobs now (`/ready`), or `None`.
fn not_ready(shared: &Shared) -> Option<String> {
    if sys::stop_requested().is_some() {
        return Some("the worker is stopping".into());
    }
    if !shared.warmed.load(Ordering::SeqCst) {
        return Some("ComfyUI is starting".into());
    }
    if let Some(why) = shared.live.start_error(&shared.opts.default_version) {
        return Some(why);
    }
    if shared.live.version().is_none() {
        return Some("no ComfyUI is running (starting, or its start failed: see the log)".into());
    }
    let queued = shared.lock().queue.len();
    (queued >= shared.max_queue).then(|| format!("the queue is full ({queued} jobs waiting)"))
}

/// 429 with `Retry-After` when the queue is full.
fn queue_full(jobs: &Jobs, max_queue: usize) -> Option<Answer> {
    if jobs.queue.len() < max_queue {
        return None;
    }
    let mut resp = error(
        429,
        &format!(
            "the queue is full ({} jobs waiting); retry later",
            jobs.queue.len()
        ),
    );
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER));
    Some(resp)
}

/// Releases a body's bytes from [`Shared::body_bytes`] when it is done.
struct BodyBytes<'a> {
    counter: &'a AtomicUsize,
    held: usize,
}

impl BodyBytes<'_> {
    /// Takes `n` more bytes; `false` when all bodies together would pass the cap.
    fn take(&mut self, n: usize) -> bool {
        let before = self.counter.fetch_add(n, Ordering::SeqCst);
        self.held += n;
        before + n <= MAX_BODIES_IN_FLIGHT
    }
}

impl Drop for BodyBytes<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(self.held, Ordering::SeqCst);
    }
}

/// Reads the body within [`BODY_TIMEOUT`] and the caps, or the error answer.
async fn read_body(req: Request<Incoming>, shared: &Shared) -> Result<Vec<u8>, Answer> {
    let too_large = || {
        error(
            413,
            &format!("the request body is larger than {} MB", MAX_BODY >> 20),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY) {
        return Err(too_large());
    }
    let mut held = BodyBytes {
        counter: &shared.body_bytes,
        held: 0,
    };
    let mut body = req.into_body();
    let mut buf = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| error(400, &format!("could not read the request body: {e}")))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if buf.len() + data.len() > MAX_BODY {
                return Err(too_large());
            }
            if !held.take(data.len()) {
                return Err(error(
                    503,
                    "the worker is reading too many request bodies at once; retry",
                ));
            }
            buf.extend_from_slice(&data);
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(resp)) => Err(resp),
        Err(_) => Err(error(
            408,
            &format!(
                "the request body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )),
    }
}

async fn submit(req: Request<Incoming>, shared: &Shared, sync: bool, query: &str) -> Answer {
    if sys::stop_requested().is_some() {
        return error(503, "the worker is stopping and takes no new jobs");
    }
    // Full: answered before the body is read (it is not held at all).
    let full = queue_full(&shared.lock(), shared.max_queue);
    if let Some(resp) = full {
        return resp;
    }
    let body = match read_body(req, shared).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(400, &format!("the request body is not JSON: {e}")),
    };
    drop(body);
    let id = if sync {
        format!("sync-{}", comfyver_handler::new_job_id())
    } else {
        comfyver_handler::new_job_id()
    };
    let request = match JobRequest::parse(id.clone(), &value) {
        Ok(r) => r,
        Err(e) => return error(400, &e.to_string()),
    };
    drop(value);
    if let Some(v) = &request.version_id
        && let Err(e) = shared.opts.allows(v)
    {
        return error(400, &e.to_string());
    }
    let wait = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|w| w.parse::<u64>().ok())
        .map(Duration::from_millis);
    let mut changes = shared.changed.subscribe();
    {
        let mut jobs = shared.lock();
        if let Some(resp) = queue_full(&jobs, shared.max_queue) {
            return resp;
        }
        let version = request
            .version_id
            .clone()
            .unwrap_or_else(|| shared.opts.default_version.clone());
        let webhook = request.webhook.clone();
        jobs.entries.insert(
            id.clone(),
            Entry {
                status: "IN_QUEUE",
                version,
                webhook,
                submitted: Instant::now(),
                started: None,
                finished: None,
                request: Some(request),
                outcome: None,
            },
        );
        jobs.queue.push_back(id.clone());
    }
    shared.notify();
    if !sync {
        return respond(200, &json!({"id": id, "status": "IN_QUEUE"}));
    }
    // `/runsync` waits for the end (or `?wait=` ms), then answers the status.
    let until = wait.map(|w| tokio::time::Instant::now() + w);
    let done = |shared: &Shared| shared.lock().entries.get(&id).is_none_or(Entry::terminal);
    while !done(shared) {
        match until {
            Some(u) => {
                if tokio::time::timeout_at(u, changes.changed()).await.is_err() {
                    break;
                }
            }
            None => {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        }
    }
    let v = shared
        .lock()
        .entries
        .get(&id)
        .map(|e| e.status_json(&id, &shared.live))
        .unwrap_or_else(|| json!({"id": id, "status": "FAILED", "error": "the job was forgotten"}));
    respond(200, &v)
}

/// Cancels a job and answers at once: a queued job is `CANCELLED`; a running
/// one is interrupted on a blocking thread and answered `CANCELLED` if it ends
/// within [`CANCEL_WAIT`], else `IN_PROGRESS` with the interrupt under way.
async fn cancel(shared: &Shared, id: &str) -> Answer {
    let mut changes = shared.changed.subscribe();
    // Some(true): running, to interrupt; Some(false): done here; None: unknown.
    let running = {
        let mut jobs = shared.lock();
        match jobs.entries.get(id) {
            None => None,
            Some(e) if e.status == "IN_QUEUE" => {
                jobs.queue.retain(|q| q != id);
                jobs.finish(shared, id, Outcome::Cancelled);
                Some(false)
            }
            Some(e) => Some(!e.terminal()),
        }
    };
    match running {
        None => return error(404, &format!("no job with id `{id}`")),
        Some(false) => {}
        Some(true) => {
            let live = Arc::clone(&shared.live);
            let job = id.to_string();
            // The interrupt may take its own timeout: never on the runtime.
            drop(tokio::task::spawn_blocking(move || live.cancel(&job)));
            let until = tokio::time::Instant::now() + CANCEL_WAIT;
            loop {
                let ended = shared.lock().entries.get(id).is_none_or(Entry::terminal);
                if ended
                    || tokio::time::timeout_at(until, changes.changed())
                        .await
                        .is_err()
                {
                    break;
                }
            }
        }
    }
    shared.notify();
    let jobs = shared.lock();
    let mut v = jobs
        .entries
        .get(id)
        .map(|e| e.status_json(id, &shared.live))
        .unwrap_or_else(|| json!({"id": id}));
    if v["status"] == "IN_PROGRESS" {
        v["cancel"] = json!("interrupting");
    }
    respond(200, &v)
}
