//! [`HandlerError`]: everything that can go wrong starting ComfyUI or running a job,
//! with messages that say what happened and what to do.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Value, json};

/// One validation error ComfyUI reported for one node input (`node_errors`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInputError {
    /// The node id in the workflow.
    pub node_id: String,
    /// The node's class (`class_type`).
    pub class_type: String,
    /// The input concerned, when ComfyUI names one.
    pub input: Option<String>,
    /// ComfyUI's error type (`value_smaller_than_min`, ...).
    pub kind: String,
    /// ComfyUI's message.
    pub message: String,
    /// ComfyUI's details string (often the input name or the received value).
    pub details: String,
}

impl std::fmt::Display for NodeInputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "node {} ({})", self.node_id, self.class_type)?;
        if let Some(input) = &self.input {
            write!(f, " input `{input}`")?;
        }
        write!(f, ": {}", self.message)?;
        if !self.details.is_empty() && Some(&self.details) != self.input.as_ref() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

/// A node that raised while executing (ComfyUI's `execution_error`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFailure {
    /// The node id.
    pub node_id: String,
    /// The node class.
    pub class_type: String,
    /// The Python exception type.
    pub exception_type: String,
    /// The exception message.
    pub message: String,
    /// The last traceback lines.
    pub traceback: Vec<String>,
    /// comfyver's hint, when the node was refused a path by the confinement.
    pub hint: Option<String>,
}

impl NodeFailure {
    /// The line worker-comfyui puts in `errors` for an execution error.
    pub fn summary(&self) -> String {
        format!(
            "Workflow execution error: Node Type: {}, Node ID: {}, Message: {}{}",
            self.class_type,
            self.node_id,
            self.message,
            self.hint
                .as_ref()
                .map_or(String::new(), |h| format!(" (comfyver: {h})"))
        )
    }

    /// The structured form (`execution_error` in the job JSON).
    pub fn to_json(&self) -> Value {
        json!({"node_id": self.node_id, "class_type": self.class_type,
               "exception_type": self.exception_type, "exception_message": self.message,
               "traceback": self.traceback, "hint": self.hint})
    }
}

impl From<NodeFailure> for HandlerError {
    fn from(f: NodeFailure) -> Self {
        HandlerError::Execution {
            node_id: f.node_id,
            class_type: f.class_type,
            exception_type: f.exception_type,
            message: f.message,
            traceback: f.traceback.into_boxed_slice(),
            hint: f.hint.map(Box::new),
        }
    }
}

/// A custom node pack of the spec that ComfyUI did not load, with its log lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedPack {
    /// The pack's directory name under `custom_nodes/`.
    pub name: String,
    /// The log lines about it: the traceback, `Cannot import ...` and `(IMPORT FAILED)`.
    pub log_lines: Vec<String>,
}

impl FailedPack {
    /// The exception line of its traceback (`ImportError: ...`), or the last log line.
    pub fn error_line(&self) -> String {
        self.log_lines
            .iter()
            .rev()
            .find(|l| {
                let l = l.trim_start();
                l.split_once(':').is_some_and(|(head, _)| {
                    !head.contains(' ') && (head.ends_with("Error") || head.ends_with("Exception"))
                })
            })
            .or(self.log_lines.last())
            .map(|l| l.trim().to_string())
            .unwrap_or_default()
    }

    /// `{"name", "error", "log"}`: the pack, its exception line and its log lines.
    pub fn to_json(&self) -> Value {
        json!({"name": self.name, "error": self.error_line(), "log": self.log_lines})
    }
}

/// Everything that can go wrong starting ComfyUI or running a job.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// A model the job brings could not be provided; the prompt did not run.
    #[error(
        "the job's model at `{path}` ({url}) could not be provided, so the prompt was not run; \
         fix the entry and submit the job again"
    )]
    Model {
        /// The entry's JSON path (`input.models[0]`, `input.workflow.4.inputs.lora_name`).
        path: String,
        /// Its URL, redacted.
        url: String,
        /// Why.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file or directory could not be created, read or written.
    #[error("{what} {}", .path.display())]
    Io {
        /// What was being done ("could not create", ...).
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The version's node index could not be written.
    #[error(
        "could not record the version's node index; until it is written, jobs are checked by ComfyUI alone"
    )]
    NodeIndex(#[source] comfyver_fs::FsError),
    /// An output hashes file (`--expect`) could not be used.
    #[error(
        "{path} is not a comfyver output hashes file ({message}); record one with `comfyver test <id> --workflow <wf> --record FILE`"
    )]
    BadHashFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Output hashes were asked for outputs that went to a bucket.
    #[error(
        "output {output} was uploaded to a bucket, so its bytes cannot be hashed here; record and compare hashes with `--output base64` or `--output dir:PATH`"
    )]
    HashOfUploaded {
        /// The output (`<node>/<key>/<n>`).
        output: String,
    },
    /// The interpreter could not be started.
    #[error(
        "could not start ComfyUI with {}; check that the version is realized (the venv exists)", .python.display()
    )]
    Spawn {
        /// The interpreter.
        python: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// ComfyUI exited before it was ready.
    #[error(
        "ComfyUI exited during startup ({status}); full log: {log}\nlast log lines:\n{}",
        tail.join("\n")
    )]
    StartCrashed {
        /// The exit status, as text.
        status: String,
        /// The log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: Vec<String>,
    },
    /// ComfyUI did not answer within the start timeout.
    #[error(
        "ComfyUI was not ready after {}s (raise the start timeout, e.g. COMFYVER_START_TIMEOUT); full log: {log}\nlast log lines:\n{}",
        after.as_secs(), tail.join("\n")
    )]
    StartTimeout {
        /// How long we waited.
        after: Duration,
        /// The log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: Vec<String>,
    },
    /// The start was given up before ComfyUI answered (`StartOptions::abandon`).
    #[error("the start of ComfyUI was given up before it answered (the worker is stopping)")]
    StartAbandoned,
    /// Another server (not our child) answers on the port we chose.
    #[error(
        "another server is answering on 127.0.0.1:{port} (not the ComfyUI comfyver started: {why}); \
         stop the stale process or let comfyver pick a free port"
    )]
    PortTaken {
        /// The port.
        port: u16,
        /// What gave the stranger away.
        why: String,
    },
    /// An HTTP request to ComfyUI failed at the transport level.
    #[error("HTTP communication with ComfyUI failed ({what})")]
    Http {
        /// The request ("POST /prompt", ...).
        what: String,
        /// The underlying error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// ComfyUI cut the connection while an upload was still being sent.
    #[error(
        "ComfyUI closed the connection while {bytes} bytes were being sent ({what}); it does so \
         to a body over its --max-upload-size (100 MB unless set): send a smaller image or \
         start ComfyUI with a larger --max-upload-size"
    )]
    UploadCut {
        /// The request.
        what: String,
        /// The size of the image being sent.
        bytes: usize,
        /// The underlying error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// ComfyUI answered with an unexpected status or body.
    #[error("ComfyUI answered {what} with HTTP {status}: {body}")]
    BadResponse {
        /// The request.
        what: String,
        /// The HTTP status.
        status: u16,
        /// The (truncated) body.
        body: String,
    },
    /// The WebSocket could not be opened.
    #[error("could not open ComfyUI's WebSocket: {0}")]
    WebSocket(String),
    /// A file given to the job could not be read or parsed.
    #[error("could not read {path}: {reason}")]
    InputFile {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// The workflow is in ComfyUI's UI ("save") format.
    #[error(
        "the workflow is in ComfyUI's UI format (it has top-level `nodes` and `links`); \
         comfyver runs the API format: in ComfyUI, use Workflow → Export (API) and pass that file"
    )]
    UiWorkflow,
    /// The workflow is not an API-format graph.
    #[error("the workflow is not in ComfyUI's API format: {0}")]
    NotApiFormat(String),
    /// The job input (`--input`) does not have the worker-comfyui shape.
    #[error("bad job input: {0}")]
    BadJobInput(String),
    /// An input image name is not a safe file name.
    #[error("input image name `{name}` is not allowed: {reason}")]
    BadImageName {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// ComfyUI refused the workflow (HTTP 400 with `node_errors`).
    #[error(
        "ComfyUI rejected the workflow: {message}{}",
        fmt_node_errors(node_errors)
    )]
    Validation {
        /// ComfyUI's top-level message.
        message: String,
        /// One entry per failing node input.
        node_errors: Vec<NodeInputError>,
    },
    /// The workflow uses a node class that this version does not have.
    #[error(
        "node class {class_type} is not available in version {version_id}; is its custom node in the spec? (used by node {node_id}){}{}",
        provided_by.as_ref().map(|p| format!("; {p} provides it")).unwrap_or_default(),
        fmt_failed_packs(failed_packs)
    )]
    MissingNode {
        /// The missing class.
        class_type: String,
        /// The node id using it.
        node_id: String,
        /// The version running.
        version_id: String,
        /// Packs of the spec that failed to import (the class may come from one).
        failed_packs: Vec<FailedPack>,
        /// Where the class is known to come from (`pack `X` (in version `v2`)`), a hint.
        provided_by: Option<String>,
    },
    /// ComfyUI could not be confined as asked (`--confine required` on a
    /// kernel without Landlock, or a ruleset that could not be built).
    #[error("ComfyUI was not started")]
    Confine(#[from] comfyver_fs::FsError),
    /// A node raised while executing.
    #[error(
        "node {node_id} ({class_type}) failed: {exception_type}: {message}{}{}",
        hint.as_ref().map_or(String::new(), |h| format!("\nhint: {h}")),
        fmt_traceback(traceback)
    )]
    Execution {
        /// The node id.
        node_id: String,
        /// The node class.
        class_type: String,
        /// The Python exception type.
        exception_type: String,
        /// The exception message.
        message: String,
        /// The last traceback lines (boxed, as the hint: it keeps every
        /// `Result<_, HandlerError>` small).
        traceback: Box<[String]>,
        /// comfyver's hint, when the node was refused a path by the confinement.
        hint: Option<Box<String>>,
    },
    /// The prompt was interrupted by someone else.
    #[error("the job was interrupted in ComfyUI (node {node_id})")]
    Interrupted {
        /// The node running when it was interrupted.
        node_id: String,
    },
    /// ComfyUI died while the job ran.
    #[error(
        "ComfyUI died while running the job ({status}); full log: {log}\nlast log lines:\n{}",
        tail.join("\n")
    )]
    ComfyDied {
        /// The exit status, as text.
        status: String,
        /// The log file.
        log: PathBuf,
        /// The last log lines.
        tail: Vec<String>,
    },
    /// The job did not finish in time; it was interrupted.
    #[error(
        "the job did not finish within {}s; it was interrupted (prompt {prompt_id}); raise the job timeout (--timeout / COMFYVER_JOB_TIMEOUT) if it needs longer",
        after.as_secs_f64()
    )]
    Timeout {
        /// The timeout.
        after: Duration,
        /// The interrupted prompt.
        prompt_id: String,
    },
    /// An input image could not be uploaded to ComfyUI.
    #[error("Failed to upload one or more input images: {}", errors.join("; "))]
    Upload {
        /// One line per failed image.
        errors: Vec<String>,
    },
    /// The job ran but nothing could be returned (worker-comfyui's "Job processing failed").
    #[error("Job processing failed: the job produced no output that could be returned: {}", errors.join("; "))]
    NoOutputs {
        /// What went wrong with each output.
        errors: Vec<String>,
    },
    /// ComfyUI reported an error without details.
    #[error("the job failed in ComfyUI: {0}")]
    Failed(String),
    /// A cloud output sink could not be set up, failed its pre-check, or an upload failed.
    #[error("the `{sink}` output sink failed")]
    Sink {
        /// `gcs` or `s3`.
        sink: &'static str,
        /// What went wrong.
        #[source]
        source: comfyver_cloud::CloudError,
    },
}

fn fmt_node_errors(errors: &[NodeInputError]) -> String {
    errors.iter().map(|e| format!("\n  - {e}")).collect()
}

fn fmt_failed_packs(packs: &[FailedPack]) -> String {
    packs
        .iter()
        .map(|p| {
            format!(
                "\nnode pack `{}` of this version failed to import, so its classes are missing; its log lines:\n{}",
                p.name,
                p.log_lines.join("\n")
            )
        })
        .collect()
}

fn fmt_traceback(tb: &[String]) -> String {
    if tb.is_empty() {
        String::new()
    } else {
        format!("\ntraceback (last lines):\n{}", tb.join("\n"))
    }
}

impl HandlerError {
    pub(crate) fn http(what: impl Into<String>, source: ureq::Error) -> HandlerError {
        HandlerError::Http {
            what: what.into(),
            source: Box::new(source),
        }
    }

    pub(crate) fn io(what: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        HandlerError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The causes, which the message does not repeat, outermost first.
    pub(crate) fn causes(&self) -> impl Iterator<Item = String> {
        std::iter::successors(std::error::Error::source(self), |e| e.source())
            .map(|e| e.to_string())
    }

    /// A short machine-readable name of the variant (`validation`, `timeout`, ...).
    pub fn kind(&self) -> &'static str {
        match self {
            HandlerError::Io { .. } | HandlerError::NodeIndex(_) => "io",
            HandlerError::BadHashFile { .. } | HandlerError::HashOfUploaded { .. } => {
                "bad_hash_file"
            }
            HandlerError::Spawn { .. } => "spawn",
            HandlerError::StartCrashed { .. } => "start_crashed",
            HandlerError::StartTimeout { .. } => "start_timeout",
            HandlerError::StartAbandoned => "start_abandoned",
            HandlerError::PortTaken { .. } => "port_taken",
            HandlerError::Http { .. }
            | HandlerError::UploadCut { .. }
            | HandlerError::BadResponse { .. } => "http",
            HandlerError::WebSocket(_) => "websocket",
            HandlerError::InputFile { .. } | HandlerError::BadJobInput(_) => "bad_input",
            HandlerError::UiWorkflow => "ui_workflow",
            HandlerError::NotApiFormat(_) => "not_api_format",
            HandlerError::BadImageName { .. } => "bad_image_name",
            HandlerError::Validation { .. } => "validation",
            HandlerError::MissingNode { .. } => "missing_node",
            HandlerError::Execution { .. } => "execution",
            HandlerError::Interrupted { .. } => "interrupted",
            HandlerError::ComfyDied { .. } => "comfyui_died",
            HandlerError::Timeout { .. } => "timeout",
            HandlerError::NoOutputs { .. } => "no_outputs",
            HandlerError::Upload { .. } => "upload",
            HandlerError::Failed(_) => "failed",
            HandlerError::Sink { .. } => "sink",
            HandlerError::Model { .. } => "model",
            HandlerError::Confine(_) => "confine",
        }
    }

    /// The failed-job JSON of this error ([`failed_job_json`] with its [`kind`](Self::kind)).
    pub fn to_job_json(&self) -> Value {
        failed_job_json(self.kind(), self)
    }

    /// The `details` lines of a variant that has its own (the structured form
    /// goes into `out`: `node_errors`, `missing_node`, `execution_error`);
    /// `None`: the causes are the details.
    fn job_details(&self, out: &mut Value) -> Option<Vec<String>> {
        Some(match self {
            HandlerError::Validation { node_errors, .. } => {
                out["node_errors"] = node_errors
                    .iter()
                    .map(|e| {
                        json!({"node_id": e.node_id, "class_type": e.class_type, "input": e.input,
                               "type": e.kind, "message": e.message, "details": e.details})
                    })
                    .collect();
                node_errors.iter().map(ToString::to_string).collect()
            }
            HandlerError::MissingNode {
                class_type,
                node_id,
                failed_packs,
                provided_by,
                ..
            } => {
                out["missing_node"] = json!({"node_id": node_id, "class_type": class_type,
                    "failed_packs": failed_packs.iter().map(FailedPack::to_json).collect::<Vec<_>>()});
                if let Some(p) = provided_by {
                    out["missing_node"]["provided_by"] = json!(p);
                }
                let mut lines = vec![format!("node {node_id}: class {class_type} is missing")];
                lines.extend(failed_packs.iter().map(|p| {
                    format!(
                        "node pack `{}` failed to import: {}",
                        p.name,
                        p.error_line()
                    )
                }));
                lines
            }
            HandlerError::Execution {
                node_id,
                class_type,
                exception_type,
                message,
                traceback,
                hint,
            } => {
                let failure = NodeFailure {
                    node_id: node_id.clone(),
                    class_type: class_type.clone(),
                    exception_type: exception_type.clone(),
                    message: message.clone(),
                    traceback: traceback.to_vec(),
                    hint: hint.as_deref().cloned(),
                };
                out["execution_error"] = failure.to_json();
                vec![failure.summary()]
            }
            HandlerError::StartCrashed { tail, .. }
            | HandlerError::StartTimeout { tail, .. }
            | HandlerError::ComfyDied { tail, .. } => tail.clone(),
            HandlerError::NoOutputs { errors } | HandlerError::Upload { errors } => errors.clone(),
            HandlerError::Model { path, url, source } => {
                out["model_error"] =
                    json!({"path": path, "url": url, "reason": source.to_string()});
                vec![format!("{path} ({url}): {source}")]
            }
            _ => return None,
        })
    }
}

/// The failed-job JSON of any error, the one shape every front end returns
/// (`run`, `test`, the worker, RunPod mode):
///
/// - `error`: worker-comfyui's one string, the message followed by each cause
///   (`message: cause: cause`);
/// - `kind`: a machine-readable name (`validation`, `timeout`, `setup`, ...);
/// - `causes`: the causes as a list, outermost first;
/// - `details`: worker-comfyui's list of strings: the lines of the first
///   [`HandlerError`] in the chain that has its own (validation errors, the
///   missing node and its failed packs, the node that raised, ComfyUI's last
///   log lines, failed uploads or outputs), else the causes;
/// - that error's structured form, where it has one: `node_errors`,
///   `missing_node` (with `failed_packs`) or `execution_error`.
pub fn failed_job_json(kind: &str, error: &(dyn std::error::Error + 'static)) -> Value {
    let causes: Vec<String> = std::iter::successors(error.source(), |e| e.source())
        .map(ToString::to_string)
        .collect();
    let mut message = error.to_string();
    for cause in &causes {
        message.push_str(": ");
        message.push_str(cause);
    }
    let mut out = json!({"error": message, "kind": kind});
    let details = std::iter::successors(Some(error), |e| e.source())
        .filter_map(|e| {
            e.downcast_ref::<HandlerError>()
                .or_else(|| e.downcast_ref::<Box<HandlerError>>().map(|b| &**b))
        })
        .find_map(|h| h.job_details(&mut out))
        .unwrap_or_else(|| causes.clone());
    out["details"] = json!(details);
    out["causes"] = json!(causes);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error of another crate that wraps a handler error (as `serve` and
    /// the CLI's context do).
    #[derive(Debug, thiserror::Error)]
    #[error("the job of version `v1` failed")]
    struct Outer(#[source] Box<HandlerError>);

    #[test]
    fn any_error_renders_with_its_causes_as_a_list_and_the_handler_details() {
        let inner = HandlerError::Validation {
            message: "Prompt outputs failed validation".into(),
            node_errors: vec![NodeInputError {
                node_id: "1".into(),
                class_type: "EmptyImage".into(),
                input: Some("width".into()),
                kind: "value_smaller_than_min".into(),
                message: "Value 0 smaller than min of 1".into(),
                details: "width".into(),
            }],
        };
        let inner_text = inner.to_string();
        let j = failed_job_json("setup", &Outer(Box::new(inner)));
        assert_eq!(j["kind"], "setup");
        assert_eq!(j["causes"], json!([inner_text]));
        assert_eq!(
            j["error"],
            format!("the job of version `v1` failed: {inner_text}")
        );
        assert_eq!(j["node_errors"][0]["input"], "width");
        assert_eq!(
            j["details"],
            json!(["node 1 (EmptyImage) input `width`: Value 0 smaller than min of 1"])
        );
    }

    #[test]
    fn without_details_of_its_own_the_causes_are_the_details() {
        let e = HandlerError::io(
            "could not create directory",
            std::path::Path::new("/x"),
            std::io::ErrorKind::PermissionDenied.into(),
        );
        let j = e.to_job_json();
        assert_eq!(j["kind"], "io");
        assert_eq!(j["causes"], j["details"]);
        assert_eq!(j["causes"].as_array().map(Vec::len), Some(1));
        assert!(
            j["error"]
                .as_str()
                .is_some_and(|m| m.starts_with("could not create directory /x: ")),
            "{j}"
        );
    }
}
