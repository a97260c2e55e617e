//! The local job API, shaped like RunPod's endpoint API and its SDK's local
//! test server: `POST /run`, `POST /runsync[?wait=ms]`, `GET|POST /status/{id}`,
//! `POST /cancel/{id}`, `GET /health`. Jobs queue in order and run one at a
//! time on the serving thread; request threads only queue, wait and answer.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tiny_http::{Header, Method, Request, Response, Server};

use crate::worker::{JobRequest, Live, Outcome, Worker};
use crate::{EnvProvider, ServeError, ServeLog, ServeOptions};
use comfyver_fs::child as sys;

/// Largest request body (RunPod's `/runsync` limit).
const MAX_BODY: u64 = 20 << 20;
/// Threads answering requests (a `/runsync` holds one while it waits).
const REQUEST_THREADS: usize = 8;
/// How often waiting loops look at the stop flag.
const TICK: Duration = Duration::from_millis(100);
/// Finished jobs kept for `/status`.
const MAX_FINISHED: usize = 1000;
/// How long `/cancel` waits for a running job to end.
const CANCEL_WAIT: Duration = Duration::from_secs(15);
/// After the last job, how long waiting requests get to be answered.
const ANSWER_WAIT: Duration = Duration::from_secs(3);

struct Entry {
    status: &'static str,
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

    fn status_json(&self, id: &str) -> Value {
        let now = Instant::now();
        let delay = self.started.unwrap_or(now).duration_since(self.submitted);
        let mut v = json!({"id": id, "status": self.status, "delayTime": delay.as_millis() as u64});
        if let Some(s) = self.started {
            v["executionTime"] =
                json!(self.finished.unwrap_or(now).duration_since(s).as_millis() as u64);
        }
        if let Some(o) = &self.outcome
            && let Value::Object(body) = o.result_body()
        {
            for (k, val) in body {
                v[k] = val;
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
}

impl Jobs {
    fn finish(&mut self, id: &str, outcome: Outcome) {
        if let Some(e) = self.entries.get_mut(id) {
            e.status = outcome.status();
            e.finished = Some(Instant::now());
            e.request = None;
            match &outcome {
                Outcome::Completed(_) => self.completed += 1,
                _ => self.failed += 1,
            }
            e.outcome = Some(outcome);
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
    changed: Condvar,
    live: Arc<Live>,
    in_flight: AtomicUsize,
    shutdown: AtomicBool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Jobs> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves the local job API on `addr` until a stop signal. The address is
/// bound first (a bad one fails at once); requests are answered once the
/// default version's ComfyUI is ready.
pub fn serve_local(
    addr: &str,
    provider: &dyn EnvProvider,
    opts: &ServeOptions,
    log: &dyn ServeLog,
) -> Result<(), ServeError> {
    let server = Arc::new(Server::http(addr).map_err(|source| ServeError::Listen {
        addr: addr.to_string(),
        source,
    })?);
    let mut worker = Worker::new(provider, opts, log);
    worker.warm_up();
    let shared = Arc::new(Shared {
        jobs: Mutex::new(Jobs::default()),
        changed: Condvar::new(),
        live: worker.live(),
        in_flight: AtomicUsize::new(0),
        shutdown: AtomicBool::new(false),
    });
    let threads: Vec<_> = (0..REQUEST_THREADS)
        .filter_map(|i| {
            let server = Arc::clone(&server);
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("comfyver-api-{i}"))
                .spawn(move || answer_requests(&server, &shared))
                .ok()
        })
        .collect();
    match server.server_addr() {
        tiny_http::ListenAddr::IP(a) => {
            log.event(&format!("local job API listening on http://{a}"));
        }
        _ => log.event(&format!("local job API listening on {addr}")),
    }

    while let Some((id, req)) = next_job(&shared) {
        let outcome = worker.run(&req, &());
        let mut jobs = shared.lock();
        jobs.running = None;
        jobs.finish(&id, outcome);
        shared.changed.notify_all();
    }

    // Stopping: every queued job fails explicitly, nothing is dropped.
    let signal = sys::stop_requested().unwrap_or(libc::SIGTERM);
    log.event(&format!("stopping (signal {signal})"));
    {
        let mut jobs = shared.lock();
        let queued: Vec<String> = jobs.queue.drain(..).collect();
        for id in queued {
            jobs.finish(
                &id,
                Outcome::Failed(ServeError::NotRun { signal }.to_job_json()),
            );
        }
        shared.changed.notify_all();
    }
    worker.stop_current();
    let until = Instant::now() + ANSWER_WAIT;
    while shared.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    shared.shutdown.store(true, Ordering::SeqCst);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
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
            shared.changed.notify_all();
            return Some((id, req));
        }
        jobs = shared
            .changed
            .wait_timeout(jobs, TICK)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
}

fn answer_requests(server: &Server, shared: &Shared) {
    while !shared.shutdown.load(Ordering::SeqCst) {
        match server.recv_timeout(TICK) {
            Ok(Some(req)) => {
                shared.in_flight.fetch_add(1, Ordering::SeqCst);
                answer(req, shared);
                shared.in_flight.fetch_sub(1, Ordering::SeqCst);
            }
            Ok(None) => {}
            Err(_) => std::thread::sleep(TICK),
        }
    }
}

fn respond(req: Request, status: u16, body: &Value) {
    let header = Header::from_bytes("Content-Type", "application/json").ok();
    let mut resp = Response::from_string(body.to_string()).with_status_code(status);
    if let Some(h) = header {
        resp = resp.with_header(h);
    }
    let _ = req.respond(resp);
}

fn error(req: Request, status: u16, message: &str) {
    respond(req, status, &json!({"error": message}));
}

fn answer(mut req: Request, shared: &Shared) {
    let url = req.url().to_string();
    let (path, query) = url.split_once('?').unwrap_or((&url, ""));
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    match (&method, segments.as_slice()) {
        (Method::Post, ["run"]) => submit(req, shared, false, query),
        (Method::Post, ["runsync"]) => submit(req, shared, true, query),
        (Method::Get | Method::Post, ["status", id]) => {
            let id = id.to_string();
            let jobs = shared.lock();
            match jobs.entries.get(&id) {
                Some(e) => {
                    let v = e.status_json(&id);
                    drop(jobs);
                    respond(req, 200, &v);
                }
                None => {
                    drop(jobs);
                    error(req, 404, &format!("no job with id `{id}`"));
                }
            }
        }
        (Method::Post, ["cancel", id]) => {
            let id = id.to_string();
            cancel(req, shared, &id);
        }
        (Method::Get, ["health"]) => {
            let jobs = shared.lock();
            let running = usize::from(jobs.running.is_some());
            let v = json!({
                "jobs": {"completed": jobs.completed, "failed": jobs.failed,
                         "inProgress": running, "inQueue": jobs.queue.len(), "retried": 0},
                "workers": {"idle": 1 - running, "running": running},
                "comfyui": {"version_id": shared.live.version(), "starts": shared.live.starts()},
                "stopping": sys::stop_requested().is_some(),
            });
            let mut v = v;
            if let Some((confined, reason)) = shared.live.confined() {
                v["comfyui"]["confined"] = json!(confined);
                v["comfyui"]["confined_reason"] = json!(reason);
            }
            drop(jobs);
            respond(req, 200, &v);
        }
        (_, ["run" | "runsync" | "cancel" | "health", ..] | ["status", _]) => {
            error(req, 405, &format!("{method} is not allowed on {path}"));
        }
        _ => {
            // Read and drop the body so the client sees the answer.
            let _ = std::io::copy(&mut req.as_reader().take(MAX_BODY), &mut std::io::sink());
            error(
                req,
                404,
                &format!(
                    "no such endpoint {path}: use /run, /runsync, /status/{{id}}, /cancel/{{id}}, /health"
                ),
            );
        }
    }
}

fn submit(mut req: Request, shared: &Shared, sync: bool, query: &str) {
    if sys::stop_requested().is_some() {
        return error(req, 503, "the worker is stopping and takes no new jobs");
    }
    let mut body = Vec::new();
    if let Err(e) = req.as_reader().take(MAX_BODY + 1).read_to_end(&mut body) {
        return error(req, 400, &format!("could not read the request body: {e}"));
    }
    if body.len() as u64 > MAX_BODY {
        return error(
            req,
            413,
            &format!("the request body is larger than {} MB", MAX_BODY >> 20),
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => return error(req, 400, &format!("the request body is not JSON: {e}")),
    };
    let id = if sync {
        format!("sync-{}", comfyver_handler::new_job_id())
    } else {
        comfyver_handler::new_job_id()
    };
    let request = match JobRequest::parse(id.clone(), &value) {
        Ok(r) => r,
        Err(e) => return error(req, 400, &e.to_string()),
    };
    let wait = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|w| w.parse::<u64>().ok())
        .map(Duration::from_millis);
    let mut jobs = shared.lock();
    jobs.entries.insert(
        id.clone(),
        Entry {
            status: "IN_QUEUE",
            submitted: Instant::now(),
            started: None,
            finished: None,
            request: Some(request),
            outcome: None,
        },
    );
    jobs.queue.push_back(id.clone());
    shared.changed.notify_all();
    if !sync {
        drop(jobs);
        return respond(req, 200, &json!({"id": id, "status": "IN_QUEUE"}));
    }
    // `/runsync` waits for the end (or `?wait=` ms), then answers the status.
    let until = wait.map(|w| Instant::now() + w);
    loop {
        let done = jobs.entries.get(&id).is_none_or(Entry::terminal);
        if done || until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        jobs = shared
            .changed
            .wait_timeout(jobs, TICK)
            .unwrap_or_else(|e| e.into_inner())
            .0;
    }
    let v = jobs
        .entries
        .get(&id)
        .map(|e| e.status_json(&id))
        .unwrap_or_else(|| json!({"id": id, "status": "FAILED", "error": "the job was forgotten"}));
    drop(jobs);
    respond(req, 200, &v);
}

fn cancel(req: Request, shared: &Shared, id: &str) {
    let mut jobs = shared.lock();
    let Some(entry) = jobs.entries.get(id) else {
        drop(jobs);
        return error(req, 404, &format!("no job with id `{id}`"));
    };
    if entry.status == "IN_QUEUE" {
        jobs.queue.retain(|q| q != id);
        jobs.finish(id, Outcome::Cancelled);
        shared.changed.notify_all();
    } else if !entry.terminal() {
        drop(jobs);
        shared.live.cancel(id);
        jobs = shared.lock();
        let until = Instant::now() + CANCEL_WAIT;
        while jobs.entries.get(id).is_some_and(|e| !e.terminal()) && Instant::now() < until {
            jobs = shared
                .changed
                .wait_timeout(jobs, TICK)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
    let v = jobs
        .entries
        .get(id)
        .map(|e| e.status_json(id))
        .unwrap_or_else(|| json!({"id": id}));
    drop(jobs);
    respond(req, 200, &v);
}
