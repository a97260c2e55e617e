//! One ComfyUI *session* of a realized comfyver version, and the jobs run on it.
//!
//! - [`Session`] starts the version's ComfyUI ([`ComfyEnv`], [`StartOptions`]:
//!   `main.py` with its own interpreter, on the GPU when one is found, see
//!   [`GpuChoice`]) on a free loopback port, proves the server that answers is
//!   its own child, logs to `comfyui-<timestamp>-<id>.log`, and stops it
//!   cleanly (SIGINT, SIGTERM, SIGKILL to its process group; also on drop). No
//!   child outlives comfyver: a SIGINT/SIGTERM handler stops live children,
//!   and `PR_SET_PDEATHSIG` covers SIGKILL. It owns its process and client
//!   state, so several sessions can be alive at once; a [`SessionControl`]
//!   interrupts or kills one from another thread, and
//!   [`Session::free_memory`] unloads its models.
//! - ComfyUI runs confined by Landlock ([`StartOptions::confine`],
//!   [`ConfineMode`](comfyver_fs::ConfineMode)): it reads its version's files (home, core, linked node
//!   checkouts, model store, venv, base Python, system paths) and writes only
//!   its input, output, temp and user folders and a private `TMPDIR`;
//!   [`Session::confined`] says whether it is, and a node refused a path
//!   fails with a hint naming the path (and the pack, for its own checkout).
//! - [`Session::node_report`] says which custom node packs failed to import
//!   ([`NodeReport`]), with their log lines (front-end-only packs and core's
//!   own files are no failures).
//! - [`Job`] is a workflow (API format; the UI format is refused with an
//!   explanation) plus input images, read from a workflow file, a
//!   worker-comfyui job JSON or `--image name=path`.
//! - [`Session::run_job`] uploads the images under per-job names (removed
//!   afterwards), gives every output a per-job filename prefix, queues the
//!   prompt (with the Comfy.org API key in `extra_data`), follows it under
//!   the id ComfyUI answers with over the WebSocket (with a `/history`
//!   fallback and a job timeout), and fetches every output into an
//!   [`OutputSink`], also when a node raised after others produced outputs;
//!   [`JobOutput::to_json`] gives the worker-comfyui compatible result, and
//!   [`failed_job_json`] the failed-job JSON of any error.
//! - [`JobModel`](job_models::JobModel)s: `input.models` entries and URLs in known loader inputs
//!   ([`MODEL_INPUTS`](job_models::MODEL_INPUTS)), fetched by the [`JobOptions::models`] provider
//!   before the prompt is queued (a failure is `kind: "model"`, naming the
//!   entry's JSON path and its redacted URL), loader inputs replaced by the
//!   stored names.
//! - [`NodeIndex`](node_index::NodeIndex): the version's node classes (inputs, types, pack), recorded
//!   from `/object_info` after the first start ([`ComfyEnv::node_index`],
//!   keyed by the home's stamp), so [`ComfyEnv::precheck`] refuses a workflow
//!   ComfyUI would refuse (unknown class, missing input, bad link or value)
//!   before ComfyUI starts.
//! - [`OutputHashes`] reduces a job's outputs to SHA-256 and pixel hashes
//!   (PNG metadata ignored) and compares them with a recorded set.
//! - [`CloudSink`] prepares the `gcs`/`s3` sinks (variables, credentials,
//!   permission pre-check) before ComfyUI starts and uploads each output as
//!   `<prefix>/<job id>/<file>`, returning `gcs_url`/`s3_url` entries.

mod client;
mod cloud_sink;
mod confine;
mod error;
mod hashes;
mod http;
mod job;
pub mod job_models;
mod logs;
pub mod node_index;
mod node_report;
mod outputs;
mod precheck;
mod process;
mod session;
mod sink;
mod sys;
mod uuid;
mod ws;

pub use client::{JobOptions, JobReporter};
pub use cloud_sink::CloudSink;
pub use error::{HandlerError, failed_job_json};
pub use hashes::OutputHashes;
pub use job::Job;
pub use node_report::NodeReport;
pub use outputs::OutputData;
pub use process::{ComfyEnv, GpuChoice, StartOptions};
pub use session::{Session, SessionControl};
pub use sink::{JobOutput, OutputSink};
pub use uuid::new_v4 as new_job_id;
