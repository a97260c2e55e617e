//! Running one job on a [`ComfyProcess`]: upload, queue, follow, fetch, sink.
//!
//! The WebSocket is opened before `POST /prompt` (same `client_id`), and the
//! job is done when `executing` arrives with `node: null` for our prompt id.
//! `/history/{id}` is polled slowly as a safety net, and quickly if the socket
//! drops. Between messages the loop checks that ComfyUI is still alive and that
//! the job timeout has not passed (then it sends `POST /interrupt`).

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use crate::cloud_sink::CloudSink;
use crate::error::{HandlerError, NodeFailure, NodeInputError};
use crate::job::{Job, check_api_format, class_of, prefix_outputs, substitute_input};
use crate::job_models::JobModelProvider;
use crate::outputs::fetch_outputs;
use crate::process::ComfyProcess;
use crate::sink::{JobOutput, JobTimings, OutputSink, write_to_dir};
use crate::ws::{ComfySocket, WsRead};

/// Progress of a running job, for the CLI's progress bar. Every method has an
/// empty default; `&()` reports nothing.
pub trait JobReporter {
    /// ComfyUI accepted the prompt.
    fn queued(&self, _prompt_id: &str) {}
    /// ComfyUI served these nodes from its cache.
    fn cached(&self, _node_ids: &[String]) {}
    /// A node started.
    fn node_started(&self, _node_id: &str, _class_type: &str) {}
    /// A node reported progress (`value` of `max` steps).
    fn progress(&self, _node_id: &str, _value: f64, _max: f64) {}
}

/// `()` ignores everything.
impl JobReporter for () {}

/// How to run a job.
#[derive(Debug, Clone)]
pub struct JobOptions {
    /// Overall limit from `POST /prompt` on; then the prompt is interrupted (default 3600 s).
    pub timeout: Duration,
    /// Where outputs go.
    pub sink: OutputSink,
    /// Also return `type: temp` outputs (PreviewImage & co.).
    pub include_temp: bool,
    /// Keep the job's files in ComfyUI's output directory (default: removed once fetched).
    pub keep_outputs: bool,
    /// How often `/history` is polled while the WebSocket is up (default 5 s).
    pub history_poll: Duration,
    /// The prepared bucket for the `gcs`/`s3` sinks ([`CloudSink::prepare`],
    /// before ComfyUI starts); when `None` it is prepared after the job.
    pub cloud: Option<CloudSink>,
    /// The job id in cloud object names (`<prefix>/<job id>/<file>`), e.g. a
    /// RunPod job id; default: the prompt id.
    pub job_id: Option<String>,
    /// Fetches the models a job brings; without one, such a job fails.
    pub models: Option<std::sync::Arc<dyn JobModelProvider>>,
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            timeout: Duration::from_secs(3600),
            sink: OutputSink::Base64,
            include_temp: false,
            keep_outputs: false,
            history_poll: Duration::from_secs(5),
            cloud: None,
            job_id: None,
            models: None,
        }
    }
}

/// Fetches the job's models before anything is queued and sets the loader
/// inputs that named a URL to the stored file's name.
fn provide_models(
    job: &Job,
    opts: &JobOptions,
    workflow: &mut Value,
) -> Result<Option<Box<dyn Send>>, HandlerError> {
    let wanted = job.model_requests();
    if wanted.is_empty() {
        return Ok(None);
    }
    let Some(provider) = &opts.models else {
        return Err(HandlerError::Model {
            path: wanted[0].json_path.clone(),
            url: wanted[0].redacted_url(),
            source: "this front end fetches no job models".into(),
        });
    };
    let provided = provider.provide(&wanted).map_err(|f| {
        let m = wanted.get(f.index).unwrap_or(&wanted[0]);
        HandlerError::Model {
            path: m.json_path.clone(),
            url: m.redacted_url(),
            source: f.reason,
        }
    })?;
    for (m, name) in wanted.iter().zip(&provided.names) {
        if let Some((node, input)) = &m.replaces
            && let Some(slot) = workflow
                .get_mut(node)
                .and_then(|n| n.get_mut("inputs"))
                .and_then(|i| i.get_mut(input))
        {
            *slot = Value::String(name.clone());
        }
    }
    Ok(Some(provided.guard))
}

/// How long one WebSocket read waits before the loop looks at the child and the clock.
const TICK: Duration = Duration::from_millis(100);
/// History poll interval once the WebSocket is gone.
const FAST_POLL: Duration = Duration::from_millis(100);
/// After a transport error, how long to wait for the child's exit to show.
const DEATH_WAIT: Duration = Duration::from_secs(2);
/// How long to wait for ComfyUI to acknowledge an interrupt.
const INTERRUPT_WAIT: Duration = Duration::from_secs(10);

/// Runs `job` on `comfy` and returns its outputs, or a readable error;
/// `packs` are the version's node pack directory names, to explain a missing
/// node class ([`crate::Session::run_job`]).
pub(crate) fn run_job(
    comfy: &ComfyProcess,
    packs: &[String],
    job: &Job,
    opts: &JobOptions,
    reporter: &dyn JobReporter,
) -> Result<JobOutput, HandlerError> {
    run_job_inner(comfy, packs, job, opts, reporter).map_err(|e| match e {
        // A transport error is usually ComfyUI dying: say so, with its log.
        HandlerError::Http { .. }
        | HandlerError::BadResponse { .. }
        | HandlerError::WebSocket(_) => {
            let until = Instant::now() + DEATH_WAIT;
            loop {
                if let Some(status) = comfy.exit_status() {
                    break comfy.died(status);
                }
                if Instant::now() >= until {
                    break e;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        other => other,
    })
}

fn run_job_inner(
    comfy: &ComfyProcess,
    packs: &[String],
    job: &Job,
    opts: &JobOptions,
    reporter: &dyn JobReporter,
) -> Result<JobOutput, HandlerError> {
    let t0 = Instant::now();
    check_api_format(&job.workflow)?;
    if let Some(status) = comfy.exit_status() {
        return Err(comfy.died(status));
    }
    // Our id for the job: the prompt id we ask for, and the name of the job's
    // output folder and input files. ComfyUI before v0.3.45 ignores a
    // client-chosen prompt id, so the prompt is followed under the id
    // `POST /prompt` answers with.
    let job_id = crate::uuid::new_v4();
    let client_id = crate::uuid::new_v4();
    let job_prefix = format!("comfyver/{job_id}");
    let mut workflow = job.workflow.clone();
    // Held until the job ends: its models stay in use.
    let _models = provide_models(job, opts, &mut workflow)?;
    prefix_outputs(&mut workflow, &job_prefix);
    // The job's output folder goes when the job ends, however it ends (a
    // failed job leaves no folder behind), unless outputs are kept.
    let _output_dir = JobOutputDir((!opts.keep_outputs).then(|| {
        let mut ours = PathBuf::from(comfy.data_dir()).join("output");
        ours.extend(job_prefix.split('/'));
        ours
    }));

    // Input images get names of their own for this job (so concurrent jobs on
    // one input directory never see each other's files) and are removed when
    // the job ends, however it ends.
    let mut inputs = JobInputs {
        dir: comfy.data_dir().join("input"),
        files: Vec::new(),
    };
    let mut upload_errors = Vec::new();
    for image in &job.images {
        let unique = format!("cv-{job_id}-{}", image.name);
        match comfy.http.upload_image(&unique, &image.bytes) {
            Ok(stored) => {
                inputs.files.push(stored.clone());
                substitute_input(&mut workflow, &image.name, &stored);
            }
            Err(e) => {
                let mut line = format!("Error uploading {}: {e}", image.name);
                for cause in e.causes() {
                    line.push_str(": ");
                    line.push_str(&cause);
                }
                upload_errors.push(line);
            }
        }
    }
    // As worker-comfyui: one failed upload fails the job, naming every failure.
    if !upload_errors.is_empty() {
        if let Some(status) = comfy.exit_status() {
            return Err(comfy.died(status));
        }
        return Err(HandlerError::Upload {
            errors: upload_errors,
        });
    }
    let upload_ms = ms(t0.elapsed());

    // A socket that cannot be opened is not fatal: the history poll still works.
    let mut socket = ComfySocket::connect(comfy.port(), &client_id, TICK).ok();
    let posted_at = epoch_ms();
    let mut body = json!({"prompt": workflow, "client_id": client_id, "prompt_id": job_id});
    let api_key = job
        .comfy_org_api_key
        .clone()
        .or_else(|| std::env::var(comfyver_env::COMFY_ORG_API_KEY).ok())
        .filter(|k| !k.is_empty());
    if let Some(key) = api_key {
        body["extra_data"]["api_key_comfy_org"] = json!(key);
    }
    if let Some(graph) = &job.ui_workflow {
        body["extra_data"]["extra_pnginfo"] = json!({"workflow": graph});
    }
    let answer = comfy.http.post_json("/prompt", &body)?;
    if answer.status != 200 {
        if let Some(s) = socket.take() {
            s.close();
        }
        return Err(rejected(comfy, &workflow, answer, packs));
    }
    let mut errors = Vec::new();
    let accepted = answer.json();
    let prompt_id = accepted
        .as_ref()
        .and_then(|v| v.get("prompt_id"))
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .map_or_else(|| job_id.clone(), String::from);
    if let Some(v) = &accepted {
        let skipped = node_errors(&workflow, v.get("node_errors"));
        errors.extend(
            skipped
                .iter()
                .map(|e| format!("output skipped by validation: {e}")),
        );
    }
    reporter.queued(&prompt_id);

    let entry = follow(comfy, &workflow, &prompt_id, &mut socket, opts, reporter)?;
    if let Some(s) = socket.take() {
        s.close();
    }
    let fetch_started = Instant::now();
    // A node that raised does not lose what other nodes produced (as
    // worker-comfyui): the outputs are fetched and the error is reported with
    // them; only a job with nothing to return fails.
    let mut execution_error = check_status(&workflow, &entry)?;
    if let Some(failure) = &mut execution_error {
        failure.hint = comfy.refused_hint(failure);
    }
    let (start_ts, end_ts) = exec_timestamps(&entry);
    let (mut items, fetch_errors) = fetch_outputs(
        &comfy.http,
        entry.get("outputs").unwrap_or(&Value::Null),
        opts.include_temp,
    );
    if let Some(failure) = &execution_error {
        if items.is_empty() {
            return Err(failure.clone().into());
        }
        errors.push(failure.summary());
    }
    errors.extend(fetch_errors);
    if items.is_empty() && !errors.is_empty() {
        return Err(HandlerError::NoOutputs { errors });
    }
    drop(inputs);
    let job_id = opts.job_id.as_deref().unwrap_or(&prompt_id);
    match (&opts.sink, &opts.cloud) {
        (OutputSink::Dir(dir), _) => write_to_dir(dir, &job_prefix, &mut items)?,
        (OutputSink::Gcs | OutputSink::S3, Some(cloud)) => {
            cloud.upload(job_id, &job_prefix, &mut items)?
        }
        (OutputSink::Gcs | OutputSink::S3, None) => {
            if let Some(cloud) = CloudSink::prepare(&opts.sink)? {
                cloud.upload(job_id, &job_prefix, &mut items)?;
            }
        }
        (OutputSink::Base64, _) => {}
    }
    let timings = JobTimings {
        upload_ms,
        queue_ms: start_ts.map(|s| s.saturating_sub(posted_at)).unwrap_or(0),
        exec_ms: match (start_ts, end_ts) {
            (Some(s), Some(e)) => e.saturating_sub(s),
            _ => 0,
        },
        fetch_ms: ms(fetch_started.elapsed()),
        total_ms: ms(t0.elapsed()),
    };
    Ok(JobOutput {
        prompt_id,
        version_id: comfy.version_id().to_string(),
        items,
        errors,
        execution_error,
        timings,
    })
}

/// One job's output folder in ComfyUI's output directory; removed on drop.
struct JobOutputDir(Option<PathBuf>);

impl Drop for JobOutputDir {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The input files one job uploaded; removed from ComfyUI's input directory on drop.
struct JobInputs {
    dir: PathBuf,
    /// Names as ComfyUI stored them (`name` or `subfolder/name`).
    files: Vec<String>,
}

impl Drop for JobInputs {
    fn drop(&mut self) {
        for f in &self.files {
            let parts: Vec<&str> = f.split('/').collect();
            if parts
                .iter()
                .any(|p| p.is_empty() || *p == "." || *p == "..")
            {
                continue;
            }
            let mut path = self.dir.clone();
            path.extend(parts);
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Waits until the prompt is done; returns its `/history` entry.
fn follow(
    comfy: &ComfyProcess,
    workflow: &Value,
    prompt_id: &str,
    socket: &mut Option<ComfySocket>,
    opts: &JobOptions,
    reporter: &dyn JobReporter,
) -> Result<Value, HandlerError> {
    let deadline = Instant::now() + opts.timeout;
    let mut last_poll = Instant::now();
    loop {
        if let Some(status) = comfy.exit_status() {
            return Err(comfy.died(status));
        }
        if Instant::now() >= deadline {
            return Err(interrupt(comfy, prompt_id, opts.timeout));
        }
        let poll_every = match socket.as_mut() {
            Some(ws) => {
                match ws.read() {
                    WsRead::Event(ev) => {
                        if handle_event(&ev, workflow, prompt_id, reporter) {
                            return wait_history(comfy, prompt_id);
                        }
                    }
                    WsRead::Idle => {}
                    WsRead::Closed => *socket = None,
                }
                opts.history_poll
            }
            None => {
                std::thread::sleep(FAST_POLL);
                FAST_POLL
            }
        };
        if last_poll.elapsed() >= poll_every {
            last_poll = Instant::now();
            if let Some(entry) = history(comfy, prompt_id)? {
                return Ok(entry);
            }
        }
    }
}

/// Reports one WebSocket event; true when it says our prompt is done.
fn handle_event(ev: &Value, workflow: &Value, prompt_id: &str, reporter: &dyn JobReporter) -> bool {
    let data = ev.get("data").unwrap_or(&Value::Null);
    if data.get("prompt_id").and_then(Value::as_str) != Some(prompt_id) {
        return false;
    }
    let node = data.get("node").and_then(Value::as_str);
    match ev.get("type").and_then(Value::as_str) {
        Some("executing") => match node {
            None => return true,
            Some(id) => reporter.node_started(id, &class_of(workflow, id)),
        },
        Some("progress") => {
            let value = data.get("value").and_then(Value::as_f64).unwrap_or(0.0);
            let max = data.get("max").and_then(Value::as_f64).unwrap_or(0.0);
            reporter.progress(node.unwrap_or(""), value, max);
        }
        Some("execution_cached") => {
            let nodes: Vec<String> = data
                .get("nodes")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(|n| n.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            reporter.cached(&nodes);
        }
        _ => {}
    }
    false
}

/// `/history/{id}`'s entry, or None while the prompt is queued or running.
fn history(comfy: &ComfyProcess, prompt_id: &str) -> Result<Option<Value>, HandlerError> {
    let v = comfy
        .http
        .get(&format!("/history/{prompt_id}"), &[])?
        .ok_json("GET /history")?;
    Ok(v.get(prompt_id).cloned())
}

/// The history entry right after `executing: null` (written before that message;
/// retried briefly all the same).
fn wait_history(comfy: &ComfyProcess, prompt_id: &str) -> Result<Value, HandlerError> {
    for _ in 0..50 {
        if let Some(entry) = history(comfy, prompt_id)? {
            return Ok(entry);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(HandlerError::Failed(format!(
        "ComfyUI said prompt {prompt_id} finished but /history has no entry for it"
    )))
}

/// Interrupts our prompt (and removes it from the queue if it has not started),
/// waits briefly for ComfyUI to acknowledge, and returns the timeout error.
fn interrupt(comfy: &ComfyProcess, prompt_id: &str, after: Duration) -> HandlerError {
    let _ = comfy
        .http
        .post_json("/interrupt", &json!({"prompt_id": prompt_id}));
    let _ = comfy
        .http
        .post_json("/queue", &json!({"delete": [prompt_id]}));
    let until = Instant::now() + INTERRUPT_WAIT;
    while Instant::now() < until && comfy.exit_status().is_none() {
        if let Ok(Some(_)) = history(comfy, prompt_id) {
            break;
        }
        std::thread::sleep(FAST_POLL);
    }
    HandlerError::Timeout {
        after,
        prompt_id: prompt_id.to_string(),
    }
}

/// The error for a prompt ComfyUI did not accept.
fn rejected(
    comfy: &ComfyProcess,
    workflow: &Value,
    answer: crate::http::Answer,
    packs: &[String],
) -> HandlerError {
    let Some(body) = answer.json().filter(|_| answer.status == 400) else {
        return HandlerError::BadResponse {
            what: "POST /prompt".into(),
            status: answer.status,
            body: answer.text(),
        };
    };
    let error = body.get("error").unwrap_or(&Value::Null);
    let message = error
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("invalid prompt")
        .to_string();
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("");
    if kind == "missing_node_type"
        || (kind == "invalid_prompt" && message.contains("does not exist"))
    {
        let class_type = error
            .pointer("/extra_info/class_type")
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| {
                message
                    .strip_prefix("Cannot execute because node ")
                    .and_then(|m| m.strip_suffix(" does not exist."))
                    .map(String::from)
            })
            .unwrap_or_else(|| "?".into());
        let node_id = error
            .pointer("/extra_info/node_id")
            .and_then(Value::as_str)
            .map(String::from)
            .or_else(|| {
                workflow.as_object().and_then(|m| {
                    m.iter()
                        .find(|(_, n)| {
                            n.get("class_type").and_then(Value::as_str) == Some(&class_type)
                        })
                        .map(|(id, _)| id.clone())
                })
            })
            .unwrap_or_else(|| "?".into());
        return HandlerError::MissingNode {
            class_type,
            node_id,
            version_id: comfy.version_id().to_string(),
            failed_packs: crate::node_report::report(comfy, packs)
                .map(|r| r.failed)
                .unwrap_or_default(),
            provided_by: None,
        };
    }
    HandlerError::Validation {
        message,
        node_errors: node_errors(workflow, body.get("node_errors")),
    }
}

/// `node_errors` as a flat list, in node order.
fn node_errors(workflow: &Value, errors: Option<&Value>) -> Vec<NodeInputError> {
    let mut out = Vec::new();
    let Some(map) = errors.and_then(Value::as_object) else {
        return out;
    };
    for (node_id, entry) in map {
        let class_type = entry
            .get("class_type")
            .and_then(Value::as_str)
            .map(String::from)
            .unwrap_or_else(|| class_of(workflow, node_id));
        for e in entry
            .get("errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            out.push(NodeInputError {
                node_id: node_id.clone(),
                class_type: class_type.clone(),
                input: e
                    .pointer("/extra_info/input_name")
                    .and_then(Value::as_str)
                    .map(String::from),
                kind: s("type"),
                message: s("message"),
                details: s("details"),
            });
        }
    }
    out
}

/// Reads an `error` history status: a node that raised is returned (the job
/// may still have outputs); an interrupt or an unexplained failure is an error.
fn check_status(workflow: &Value, entry: &Value) -> Result<Option<NodeFailure>, HandlerError> {
    let status = entry.pointer("/status/status_str").and_then(Value::as_str);
    if status != Some("error") {
        return Ok(None);
    }
    let messages = entry
        .pointer("/status/messages")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for m in messages.iter().rev() {
        let (Some(kind), Some(data)) = (m.get(0).and_then(Value::as_str), m.get(1)) else {
            continue;
        };
        let s = |k: &str| {
            data.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        match kind {
            "execution_error" => {
                let node_id = s("node_id");
                let class_type = data
                    .get("node_type")
                    .and_then(Value::as_str)
                    .map(String::from)
                    .unwrap_or_else(|| class_of(workflow, &node_id));
                let tb: Vec<String> = data
                    .get("traceback")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .flat_map(|l| l.lines())
                            .map(String::from)
                            .collect()
                    })
                    .unwrap_or_default();
                let last = tb[tb.len().saturating_sub(8)..].to_vec();
                return Ok(Some(NodeFailure {
                    node_id,
                    class_type,
                    exception_type: s("exception_type"),
                    message: s("exception_message").trim_end().to_string(),
                    traceback: last,
                    hint: None,
                }));
            }
            "execution_interrupted" => {
                return Err(HandlerError::Interrupted {
                    node_id: s("node_id"),
                });
            }
            _ => {}
        }
    }
    Err(HandlerError::Failed(
        "ComfyUI marked the prompt as failed without an error message; see its log".into(),
    ))
}

/// ComfyUI's execution_start and end timestamps (ms since the epoch).
fn exec_timestamps(entry: &Value) -> (Option<u64>, Option<u64>) {
    let mut start = None;
    let mut end = None;
    for m in entry
        .pointer("/status/messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let ts = m
            .get(1)
            .and_then(|d| d.get("timestamp"))
            .and_then(Value::as_u64);
        match m.get(0).and_then(Value::as_str) {
            Some("execution_start") => start = ts,
            Some("execution_success" | "execution_error" | "execution_interrupted") => end = ts,
            _ => {}
        }
    }
    (start, end)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}
