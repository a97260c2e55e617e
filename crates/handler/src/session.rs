//! [`Session`]: one version's ComfyUI from its start to its stop, and the jobs
//! run on it in between.
//!
//! A session owns its ComfyUI process and everything a client of that process
//! keeps (the version's packs, the cached `/object_info`); nothing is global,
//! so several sessions (of several versions) can be alive at once. Other
//! threads reach a running session through a [`SessionControl`] (interrupt,
//! kill), which holds no borrow of it.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::client::{JobOptions, JobReporter};
use crate::error::HandlerError;
use crate::http::ComfyHttp;
use crate::job::Job;
use crate::node_index::{NodeIndex, NodeIndexFile};
use crate::node_report::NodeReport;
use crate::process::{ComfyEnv, ComfyProcess, DeviceChoice, StartOptions, StartTimings};
use crate::sink::JobOutput;
use crate::sys;
use comfyver_fs::ConfineStatus;

/// How long an interrupt or a free request may take (another thread waits on it).
const CONTROL_TIMEOUT: Duration = Duration::from_secs(5);

/// A running ComfyUI of one version: start it, see which node packs failed
/// to import, run jobs, interrupt, free its memory, stop it. Stopped (and
/// reaped) on drop.
///
/// Start it from a thread that lives as long as the session is needed: the
/// child gets `PR_SET_PDEATHSIG(SIGKILL)`, which fires when the spawning
/// thread exits.
#[derive(Debug)]
pub struct Session {
    process: ComfyProcess,
    packs: Vec<String>,
}

impl Session {
    /// Starts ComfyUI for `env` and waits until it answers as our own child.
    ///
    /// Fails fast (with the last log lines) if ComfyUI exits during startup,
    /// and after `opts.start_timeout` if it never answers. When another server
    /// answers on the chosen port (a ComfyUI left over by a crash), a new free
    /// port is tried, unless `opts.port` fixes it: then
    /// [`HandlerError::PortTaken`].
    ///
    /// The first start of a home whose packs all load records the version's
    /// node index ([`ComfyEnv::node_index`]); a failure to write it is not
    /// the start's (jobs are then checked by ComfyUI alone).
    pub fn start(env: &ComfyEnv, opts: &StartOptions) -> Result<Session, HandlerError> {
        let session = Session {
            process: ComfyProcess::start(env, opts)?,
            packs: env.node_packs.clone(),
        };
        if let Some(file) = &env.node_index
            && NodeIndex::read(file).is_none()
        {
            let _ = session.record_index(file);
        }
        Ok(session)
    }

    /// Writes the node index from `/object_info`, unless a pack of the
    /// version failed to import (its classes would be missing from it).
    fn record_index(&self, file: &NodeIndexFile) -> Result<(), HandlerError> {
        if !self.node_report()?.failed.is_empty() {
            return Ok(());
        }
        let info = self.process.object_info()?;
        let core_custom = self.process.core_dir().join("custom_nodes");
        NodeIndex::from_object_info(&info, &file.key, &core_custom).write(&file.path)
    }

    /// Which of the version's node packs ([`ComfyEnv::node_packs`]) loaded and
    /// which failed to import, with their log lines.
    pub fn node_report(&self) -> Result<NodeReport, HandlerError> {
        crate::node_report::report(&self.process, &self.packs)
    }

    /// Runs `job` and returns its outputs, or a readable error: uploads the
    /// images under per-job names (removed afterwards), gives every output a
    /// per-job filename prefix, queues the prompt, follows it (WebSocket, with
    /// a `/history` fallback and the job timeout) and fetches every output
    /// into the job's [`OutputSink`](crate::OutputSink).
    pub fn run_job(
        &self,
        job: &Job,
        opts: &JobOptions,
        reporter: &dyn JobReporter,
    ) -> Result<JobOutput, HandlerError> {
        crate::client::run_job(&self.process, &self.packs, job, opts, reporter)
    }

    /// A handle other threads use to interrupt or kill this ComfyUI.
    pub fn control(&self) -> SessionControl {
        SessionControl {
            http: ComfyHttp::new(self.process.port(), CONTROL_TIMEOUT),
            pid: self.process.pid(),
        }
    }

    /// Asks ComfyUI to unload its models and free the memory it caches
    /// (`POST /free`); it does so once the running prompt, if any, is done.
    pub fn free_memory(&self) -> Result<(), HandlerError> {
        let answer = ComfyHttp::new(self.process.port(), CONTROL_TIMEOUT).post_json(
            "/free",
            &json!({"unload_models": true, "free_memory": true}),
        )?;
        if answer.status == 200 {
            Ok(())
        } else {
            Err(HandlerError::BadResponse {
                what: "POST /free".into(),
                status: answer.status,
                body: answer.text(),
            })
        }
    }

    /// ComfyUI's `GET /system_stats` (its devices' free memory, ...).
    pub fn system_stats(&self) -> Result<serde_json::Value, HandlerError> {
        ComfyHttp::new(self.process.port(), CONTROL_TIMEOUT)
            .get("/system_stats", &[])?
            .ok_json("GET /system_stats")
    }

    /// The version this ComfyUI runs.
    pub fn version_id(&self) -> &str {
        self.process.version_id()
    }

    /// The port ComfyUI listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.process.port()
    }

    /// The child's process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The log file of this run.
    pub fn log_path(&self) -> &Path {
        self.process.log_path()
    }

    /// The last lines ComfyUI printed (at most 50).
    pub fn log_tail(&self) -> Vec<String> {
        self.process.log_tail()
    }

    /// The per-version data directory (`input/`, `output/`, `user/`, `temp/`).
    pub fn data_dir(&self) -> &Path {
        self.process.data_dir()
    }

    /// The device ComfyUI was started on, and why.
    pub fn device(&self) -> &DeviceChoice {
        self.process.device()
    }

    /// Whether ComfyUI runs confined by Landlock, and why (or why not).
    pub fn confined(&self) -> &ConfineStatus {
        self.process.confined()
    }

    /// How long starting took.
    pub fn timings(&self) -> StartTimings {
        self.process.timings()
    }

    /// `Some(description)` once ComfyUI has exited (it is reaped then).
    pub fn exit_status(&self) -> Option<String> {
        self.process.exit_status()
    }

    /// Stops ComfyUI: SIGINT to its process group, SIGTERM after the start
    /// options' `stop_grace`, SIGKILL two seconds later; then reaps it.
    /// Returns how it ended.
    pub fn stop(self) -> Option<String> {
        self.process.stop()
    }
}

/// Interrupts or kills a [`Session`]'s ComfyUI from another thread (a cancel
/// request, a stop watchdog). Useless, and harmless to the next session,
/// once that session has stopped: keep it no longer than the session.
#[derive(Debug, Clone)]
pub struct SessionControl {
    http: ComfyHttp,
    pid: u32,
}

impl SessionControl {
    /// `POST /interrupt`: the prompt `prompt_id` when it runs, else whatever
    /// runs. The prompt stays in ComfyUI's queue (a job waiting for a prompt
    /// that never runs would wait for its history until its timeout). Best
    /// effort: an unreachable ComfyUI is not an error here.
    pub fn interrupt(&self, prompt_id: Option<&str>) {
        let body = match prompt_id {
            Some(id) => json!({"prompt_id": id}),
            None => json!({}),
        };
        let _ = self.http.post_json("/interrupt", &body);
    }

    /// Kills ComfyUI's whole process group (SIGKILL) at once.
    pub fn kill(&self) {
        sys::signal_group(self.pid, libc::SIGKILL);
    }
}
