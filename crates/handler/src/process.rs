//! The ComfyUI process of one version: started on a free loopback port, proven
//! to be our own child before it is used, stopped cleanly and never orphaned.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use comfyver_fs::{ConfineMode, ConfineStatus, Confinement, LandlockSupport};

use crate::confine::JobDirs;
use crate::error::{HandlerError, NodeFailure};
use crate::http::ComfyHttp;
use crate::job::Job;
use crate::logs::{LogCapture, timestamp};
use crate::node_index::{NodeIndex, NodeIndexFile};
use crate::sys;

/// Where and how a version's ComfyUI runs (filled in by the realize stage).
#[derive(Debug, Clone)]
pub struct ComfyEnv {
    /// The version's interpreter (`<venv>/bin/python`).
    pub python: PathBuf,
    /// The ComfyUI checkout (holds `main.py`; the working directory).
    pub core_dir: PathBuf,
    /// ComfyUI's `--base-directory` (its `models/` and `custom_nodes/`), when
    /// the checkout is shared between versions; `None`: the checkout itself.
    pub base_dir: Option<PathBuf>,
    /// The generated `extra_model_paths.yaml`, if any.
    pub extra_model_paths: Option<PathBuf>,
    /// Extra environment of the version (applied after PYTHONPATH/VIRTUAL_ENV are scrubbed).
    pub env: BTreeMap<String, String>,
    /// Where `comfyui-<timestamp>-<id>.log` files go.
    pub logs_dir: PathBuf,
    /// Per-version data: `input/`, `output/`, `user/` and `temp/<instance>/` are made under it.
    pub data_dir: PathBuf,
    /// The version id (for messages).
    pub version_id: String,
    /// The version's custom node pack directory names (under `custom_nodes/`),
    /// whose import failures [`Session::node_report`](crate::Session::node_report)
    /// reports; empty: every pack ComfyUI's log marks `(IMPORT FAILED)`.
    pub node_packs: Vec<String>,
    /// Directories ComfyUI reads models from besides the home (the shared
    /// model store): read-only when it runs confined.
    pub model_dirs: Vec<PathBuf>,
    /// The version's node index: recorded after the first start whose packs
    /// all loaded, read by [`ComfyEnv::precheck`]; `None`: no index (jobs are
    /// checked by ComfyUI alone).
    pub node_index: Option<NodeIndexFile>,
}

/// Whether ComfyUI gets the GPU.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum GpuChoice {
    /// The GPU when one is usable (an NVIDIA device node or driver, AMD's `kfd`), else `--cpu`.
    #[default]
    Auto,
    /// Always the GPU (no `--cpu`).
    Gpu,
    /// Always `--cpu`.
    Cpu,
    /// Like `Auto`, but the `nvidia<N>` device nodes are looked for in this
    /// directory instead of `/dev`, and the driver is not consulted (tests).
    ProbeDir(PathBuf),
}

/// The device a ComfyUI was started on, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceChoice {
    /// True when ComfyUI got no `--cpu`.
    pub gpu: bool,
    /// Why (`found /dev/nvidia0`, `asked for --cpu`, ...).
    pub reason: String,
}

impl std::fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let device = if self.gpu { "GPU" } else { "CPU (--cpu)" };
        write!(f, "ComfyUI runs on the {device}: {}", self.reason)
    }
}

impl GpuChoice {
    /// Decides the device, probing for a GPU when `Auto`.
    pub fn decide(&self) -> DeviceChoice {
        match self {
            GpuChoice::Gpu => DeviceChoice {
                gpu: true,
                reason: "asked for the GPU (--gpu)".into(),
            },
            GpuChoice::Cpu => DeviceChoice {
                gpu: false,
                reason: "asked for the CPU (--cpu)".into(),
            },
            GpuChoice::ProbeDir(dir) => probe_gpu(dir, None),
            GpuChoice::Auto => match std::env::var_os(comfyver_env::COMFYVER_GPU_PROBE_PATH) {
                Some(dir) => probe_gpu(Path::new(&dir), None),
                None => probe_gpu(
                    Path::new("/dev"),
                    Some(Path::new("/proc/driver/nvidia/gpus")),
                ),
            },
        }
    }
}

/// A usable GPU: a `nvidia<N>` device node in `dev`, AMD's ROCm compute
/// device `dev/kfd`, or a GPU the NVIDIA driver lists under `driver`
/// (containers sometimes get the device node late).
fn probe_gpu(dev: &Path, driver: Option<&Path>) -> DeviceChoice {
    let mut devices: Vec<String> = std::fs::read_dir(dev)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.strip_prefix("nvidia")
                .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    devices.sort();
    if let Some(first) = devices.first() {
        return DeviceChoice {
            gpu: true,
            reason: format!("found {}", dev.join(first).display()),
        };
    }
    // AMD GPUs under ROCm: the kernel fusion driver's compute device.
    let kfd = dev.join("kfd");
    if kfd.exists() {
        return DeviceChoice {
            gpu: true,
            reason: format!("found {} (AMD ROCm)", kfd.display()),
        };
    }
    if let Some(driver) = driver
        && std::fs::read_dir(driver).is_ok_and(|mut d| d.next().is_some())
    {
        return DeviceChoice {
            gpu: true,
            reason: format!("the NVIDIA driver lists a GPU in {}", driver.display()),
        };
    }
    DeviceChoice {
        gpu: false,
        reason: format!(
            "no GPU found (no {0}/nvidia<N> or {0}/kfd{1}); pass --gpu to force it",
            dev.display(),
            driver.map_or(String::new(), |d| format!(", nothing in {}", d.display()))
        ),
    }
}

impl ComfyEnv {
    /// Checks a job's workflow against the version's node index before
    /// ComfyUI starts: `Err` in ComfyUI's shape (`missing_node`,
    /// `validation`) for a workflow ComfyUI would refuse. Without an index
    /// for the home as realized now, everything passes.
    pub fn precheck(&self, job: &Job) -> Result<(), HandlerError> {
        match self.node_index.as_ref().and_then(NodeIndex::read) {
            Some(index) => crate::precheck::precheck(&index, &job.workflow, &self.version_id),
            None => Ok(()),
        }
    }

    /// Whether this ComfyUI defines the command-line flag `flag` (such as
    /// `--deterministic`, which older pins lack and would refuse): its
    /// `comfy/cli_args.py` declares it.
    pub fn accepts_flag(&self, flag: &str) -> bool {
        std::fs::read_to_string(self.core_dir.join("comfy").join("cli_args.py"))
            .is_ok_and(|text| text.contains(&format!("\"{flag}\"")))
    }
}

/// How to start ComfyUI.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// GPU or CPU (default: the GPU when one is found; else ComfyUI gets `--cpu`).
    pub gpu: GpuChoice,
    /// Extra command-line arguments appended to ComfyUI's.
    pub extra_args: Vec<String>,
    /// How long ComfyUI may take to answer (default 600 s).
    pub start_timeout: Duration,
    /// After SIGINT, how long ComfyUI gets to exit before SIGTERM, then SIGKILL (default 5 s).
    pub stop_grace: Duration,
    /// A fixed port instead of a free one (`launch --port`, tests; the
    /// identity check still applies).
    pub port: Option<u16>,
    /// Whether ComfyUI runs confined by Landlock (default `auto`).
    pub confine: ConfineMode,
    /// What the kernel offers; `None`: probe it (tests inject a kernel without Landlock).
    pub landlock: Option<LandlockSupport>,
    /// Where ComfyUI listens besides 127.0.0.1 (`launch --listen`: an
    /// address, `0.0.0.0` for every interface); `None`: loopback only.
    pub listen: Option<String>,
    /// Keep ComfyUI's metadata (the prompt and the job's `extra_pnginfo`)
    /// in outputs; otherwise ComfyUI gets `--disable-metadata`.
    pub keep_metadata: bool,
    /// Set by another thread, the start is given up: the child is stopped and
    /// the start fails with [`HandlerError::StartAbandoned`] (a worker that
    /// stops does not wait for a start nobody needs any more).
    pub abandon: Option<Arc<AtomicBool>>,
}

impl Default for StartOptions {
    fn default() -> Self {
        StartOptions {
            gpu: GpuChoice::Auto,
            extra_args: Vec::new(),
            start_timeout: Duration::from_secs(600),
            stop_grace: Duration::from_secs(5),
            port: None,
            confine: ConfineMode::Auto,
            landlock: None,
            listen: None,
            keep_metadata: false,
            abandon: None,
        }
    }
}

impl StartOptions {
    /// ComfyUI's `--listen` value: 127.0.0.1 (where readiness is probed)
    /// and the address asked for, if any.
    fn listen_arg(&self) -> String {
        match self.listen.as_deref().map(str::trim) {
            None | Some("" | "127.0.0.1") => "127.0.0.1".to_string(),
            Some(all @ ("0.0.0.0" | "::")) => all.to_string(),
            Some(addr) => format!("127.0.0.1,{addr}"),
        }
    }
}

/// How long the steps of [`ComfyProcess::start`] took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StartTimings {
    /// From the `start` call to the child being spawned (comfyver's own overhead).
    pub to_spawn: Duration,
    /// From the `start` call to ComfyUI answering as our child.
    pub to_ready: Duration,
}

/// A running ComfyUI, our child. Stopped (and reaped) on drop.
/// Variables of comfyver's own environment ComfyUI is started without: API
/// keys, the webhook secret and cloud credentials.
const SECRET_VARS: &[&str] = &[
    comfyver_env::RUNPOD_AI_API_KEY,
    comfyver_env::COMFYVER_API_KEY,
    comfyver_env::COMFYVER_WEBHOOK_SECRET,
    comfyver_env::BUCKET_ACCESS_KEY_ID,
    comfyver_env::BUCKET_SECRET_ACCESS_KEY,
    comfyver_env::GOOGLE_APPLICATION_CREDENTIALS,
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

#[derive(Debug)]
pub(crate) struct ComfyProcess {
    child: Mutex<Child>,
    exited: Mutex<Option<ExitStatus>>,
    pid: u32,
    port: u16,
    version_id: String,
    log: Mutex<LogCapture>,
    log_path: PathBuf,
    pub(crate) http: ComfyHttp,
    core_dir: PathBuf,
    data_dir: PathBuf,
    instance_dir: PathBuf,
    stop_grace: Duration,
    timings: StartTimings,
    device: DeviceChoice,
    confinement: Confinement,
    confined: ConfineStatus,
    packs_dirs: Vec<(String, PathBuf)>,
    object_info: Mutex<Option<Arc<Value>>>,
}

/// Attempts at a fresh free port when a stranger answers on the chosen one.
const PORT_ATTEMPTS: usize = 3;
/// How often readiness is probed.
const PROBE_EVERY: Duration = Duration::from_millis(50);

impl ComfyProcess {
    /// Starts ComfyUI for `env` and waits until it answers as our own child.
    ///
    /// Fails fast (with the last log lines) if ComfyUI exits during startup, and
    /// after `opts.start_timeout` if it never answers. When another server answers
    /// on the chosen port (a ComfyUI left over by a crash), a new free port is
    /// tried, unless `opts.port` fixes it: then [`HandlerError::PortTaken`].
    ///
    /// Call it from a thread that lives as long as the process is needed: the
    /// child gets `PR_SET_PDEATHSIG(SIGKILL)`, which fires when the spawning
    /// thread exits.
    pub(crate) fn start(env: &ComfyEnv, opts: &StartOptions) -> Result<ComfyProcess, HandlerError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::start_once(env, opts) {
                Err(HandlerError::PortTaken { .. })
                    if opts.port.is_none() && attempt < PORT_ATTEMPTS => {}
                other => return other,
            }
        }
    }

    fn start_once(env: &ComfyEnv, opts: &StartOptions) -> Result<ComfyProcess, HandlerError> {
        let t0 = Instant::now();
        let main_py = env.core_dir.join("main.py");
        if !main_py.is_file() {
            return Err(HandlerError::io(
                "ComfyUI's main.py is missing (is the version realized?):",
                &main_py,
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let token = crate::uuid::new_v4();
        let short = &token[..8];
        let input = env.data_dir.join("input");
        let output = env.data_dir.join("output");
        let user = env.data_dir.join("user");
        let instance_dir = env.data_dir.join("temp").join(&token);
        // The private TMPDIR: beside the temp folder, which ComfyUI empties at start.
        let tmpdir = env.data_dir.join("temp").join(format!("{token}-tmp"));
        for dir in [
            &input,
            &output,
            &user,
            &instance_dir,
            &tmpdir,
            &env.logs_dir,
        ] {
            std::fs::create_dir_all(dir)
                .map_err(|e| HandlerError::io("could not create directory", dir, e))?;
        }
        let log_path = env
            .logs_dir
            .join(format!("comfyui-{}-{short}.log", timestamp()));
        let mut log = LogCapture::create(log_path.clone())
            .map_err(|e| HandlerError::io("could not create log file", &log_path, e))?;
        let port = match opts.port {
            Some(p) => p,
            None => free_port().map_err(|e| {
                HandlerError::io("could not find a free port on", Path::new("127.0.0.1"), e)
            })?,
        };

        let mut cmd = Command::new(&env.python);
        cmd.arg("main.py")
            .args(["--listen", &opts.listen_arg(), "--port", &port.to_string()]);
        if let Some(base) = &env.base_dir {
            cmd.arg("--base-directory").arg(base);
        }
        if let Some(yaml) = &env.extra_model_paths {
            cmd.arg("--extra-model-paths-config").arg(yaml);
        }
        cmd.arg("--output-directory")
            .arg(&output)
            .arg("--input-directory")
            .arg(&input)
            .arg("--temp-directory")
            .arg(&instance_dir)
            .arg("--user-directory")
            .arg(&user)
            .arg("--disable-auto-launch");
        if !opts.keep_metadata {
            cmd.arg("--disable-metadata");
        }
        let device = opts.gpu.decide();
        if !device.gpu {
            cmd.arg("--cpu");
        }
        cmd.args(&opts.extra_args)
            .current_dir(&env.core_dir)
            .env_remove("PYTHONPATH")
            .env_remove("VIRTUAL_ENV");
        // The worker's secrets never reach ComfyUI or its custom nodes (a
        // version's own `env` may still set what it needs).
        for secret in SECRET_VARS {
            cmd.env_remove(secret);
        }
        cmd.env("PYTHONUNBUFFERED", "1")
            .envs(&env.env)
            .env("TMPDIR", &tmpdir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        sys::prepare_child(&mut cmd);
        let dirs = JobDirs {
            input,
            output,
            user,
            temp: instance_dir.clone(),
            tmpdir: tmpdir.clone(),
        };
        let confinement = crate::confine::plan(env, &dirs);
        let support = opts.landlock.clone().unwrap_or_else(LandlockSupport::probe);
        let confined = confinement
            .apply(&mut cmd, opts.confine, &support)
            .inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&instance_dir);
                let _ = std::fs::remove_dir_all(&tmpdir);
            })?;
        let mut child = cmd.spawn().map_err(|source| HandlerError::Spawn {
            python: env.python.clone(),
            source,
        })?;
        let to_spawn = t0.elapsed();
        let pid = child.id();
        sys::register(pid);
        if let Some(out) = child.stdout.take() {
            log.follow(out);
        }
        if let Some(err) = child.stderr.take() {
            log.follow(err);
        }
        let mut process = ComfyProcess {
            child: Mutex::new(child),
            exited: Mutex::new(None),
            pid,
            port,
            version_id: env.version_id.clone(),
            log: Mutex::new(log),
            log_path,
            http: ComfyHttp::new(port, Duration::from_secs(600)),
            core_dir: env.core_dir.clone(),
            data_dir: env.data_dir.clone(),
            instance_dir: instance_dir.clone(),
            stop_grace: opts.stop_grace,
            timings: StartTimings {
                to_spawn,
                to_ready: Duration::ZERO,
            },
            device,
            confinement,
            confined,
            packs_dirs: crate::confine::packs(env),
            object_info: Mutex::new(None),
        };
        // Dropping `process` on any error below stops the child.
        process.wait_ready(t0, opts, &instance_dir)?;
        process.timings.to_ready = t0.elapsed();
        Ok(process)
    }

    fn wait_ready(
        &self,
        t0: Instant,
        opts: &StartOptions,
        marker: &Path,
    ) -> Result<(), HandlerError> {
        let timeout = opts.start_timeout;
        let probe = ComfyHttp::new(self.port, Duration::from_secs(2));
        let marker = marker.to_string_lossy().into_owned();
        let mut stranger: Option<String> = None;
        loop {
            if opts
                .abandon
                .as_ref()
                .is_some_and(|a| a.load(Ordering::SeqCst))
            {
                return Err(HandlerError::StartAbandoned);
            }
            if let Some(status) = self.exit_status() {
                self.drain_log();
                if let Some(why) = stranger {
                    return Err(HandlerError::PortTaken {
                        port: self.port,
                        why,
                    });
                }
                return Err(HandlerError::StartCrashed {
                    status,
                    log: self.log_path.clone(),
                    tail: self.log_tail(),
                });
            }
            if let Ok(answer) = probe.get("/system_stats", &[]) {
                match identity(answer.json(), &marker) {
                    Ok(()) => return Ok(()),
                    Err(why) => stranger = Some(why),
                }
            }
            if t0.elapsed() >= timeout {
                if let Some(why) = stranger {
                    return Err(HandlerError::PortTaken {
                        port: self.port,
                        why,
                    });
                }
                return Err(HandlerError::StartTimeout {
                    after: timeout,
                    log: self.log_path.clone(),
                    tail: self.log_tail(),
                });
            }
            std::thread::sleep(PROBE_EVERY);
        }
    }

    /// The port ComfyUI listens on (127.0.0.1).
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The child's process id (also its process group id).
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    /// The version this ComfyUI runs.
    pub(crate) fn version_id(&self) -> &str {
        &self.version_id
    }

    /// The log file of this run.
    pub(crate) fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The ComfyUI checkout it runs from.
    pub(crate) fn core_dir(&self) -> &Path {
        &self.core_dir
    }

    /// The per-version data directory (`input/`, `output/`, `user/`, `temp/`).
    pub(crate) fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Whether ComfyUI runs confined, and why.
    pub(crate) fn confined(&self) -> &ConfineStatus {
        &self.confined
    }

    /// comfyver's hint for a node refused a path by the confinement.
    pub(crate) fn refused_hint(&self, failure: &NodeFailure) -> Option<String> {
        if !self.confined.confined {
            return None;
        }
        crate::confine::refused_hint(failure, &self.confinement, &self.packs_dirs)
    }

    /// The device ComfyUI was started on, and why (for the log).
    pub(crate) fn device(&self) -> &DeviceChoice {
        &self.device
    }

    /// How long starting took.
    pub(crate) fn timings(&self) -> StartTimings {
        self.timings
    }

    /// The last lines ComfyUI printed (at most 50).
    pub(crate) fn log_tail(&self) -> Vec<String> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).tail()
    }

    fn drain_log(&self) {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).drain();
    }

    /// The whole log so far.
    pub(crate) fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .read_all()
    }

    /// `Some(description)` once the child has exited (it is reaped then).
    pub(crate) fn exit_status(&self) -> Option<String> {
        let mut exited = self.exited.lock().unwrap_or_else(|e| e.into_inner());
        if exited.is_none() {
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(Some(status)) = child.try_wait() {
                *exited = Some(status);
                sys::unregister(self.pid);
            }
        }
        exited.map(|s| s.to_string())
    }

    /// The [`HandlerError::ComfyDied`] for a child that has exited, with its log.
    pub(crate) fn died(&self, status: String) -> HandlerError {
        self.drain_log();
        HandlerError::ComfyDied {
            status,
            log: self.log_path.clone(),
            tail: self.log_tail(),
        }
    }

    /// `/object_info`, fetched once per process.
    pub(crate) fn object_info(&self) -> Result<Arc<Value>, HandlerError> {
        let mut cache = self.object_info.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(v) = cache.as_ref() {
            return Ok(Arc::clone(v));
        }
        let v = Arc::new(
            self.http
                .get("/object_info", &[])?
                .ok_json("GET /object_info")?,
        );
        *cache = Some(Arc::clone(&v));
        Ok(v)
    }

    /// Stops ComfyUI: SIGINT to its process group, SIGTERM after the grace
    /// period, SIGKILL two seconds later; then reaps it. Returns how it ended.
    pub(crate) fn stop(mut self) -> Option<String> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Option<String> {
        let grace = self.stop_grace;
        let steps = [
            (libc::SIGINT, grace),
            (libc::SIGTERM, Duration::from_secs(2)),
            (libc::SIGKILL, Duration::from_secs(5)),
        ];
        let mut status = self.exit_status();
        for (sig, wait) in steps {
            if status.is_some() {
                break;
            }
            sys::signal_group(self.pid, sig);
            let deadline = Instant::now() + wait;
            while status.is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
                status = self.exit_status();
            }
        }
        if status.is_none() {
            // Still not gone after SIGKILL: block until the kernel has reaped it.
            let mut child = self.child.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(s) = child.wait() {
                status = Some(s.to_string());
            }
        }
        // Whatever ComfyUI spawned into its group goes with it.
        sys::signal_group(self.pid, libc::SIGKILL);
        sys::unregister(self.pid);
        self.drain_log();
        let _ = std::fs::remove_dir_all(&self.instance_dir);
        let mut tmpdir = self.instance_dir.clone().into_os_string();
        tmpdir.push("-tmp");
        let _ = std::fs::remove_dir_all(tmpdir);
        status
    }
}

impl Drop for ComfyProcess {
    fn drop(&mut self) {
        self.stop_inner();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

/// Checks that `/system_stats` comes from the process we started: its
/// `system.argv` must hold our unique temp directory.
fn identity(stats: Option<Value>, marker: &str) -> Result<(), String> {
    let Some(stats) = stats else {
        return Err("its /system_stats is not JSON".into());
    };
    let Some(argv) = stats.pointer("/system/argv").and_then(Value::as_array) else {
        return Err("its /system_stats has no system.argv".into());
    };
    if argv.iter().any(|a| a.as_str() == Some(marker)) {
        Ok(())
    } else {
        let shown: Vec<&str> = argv.iter().filter_map(Value::as_str).collect();
        Err(format!(
            "its command line does not hold our instance marker: {}",
            shown.join(" ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{ComfyEnv, GpuChoice, identity, probe_gpu};
    use serde_json::json;

    #[test]
    fn gpu_is_found_by_device_node_or_driver() {
        let dev = tempfile::tempdir().unwrap();
        let driver = tempfile::tempdir().unwrap();
        std::fs::write(dev.path().join("nvidiactl"), "").unwrap();
        std::fs::write(dev.path().join("null"), "").unwrap();
        let none = probe_gpu(dev.path(), Some(driver.path()));
        assert!(!none.gpu, "nvidiactl alone is no GPU: {none}");
        assert!(none.reason.contains("no GPU found"), "{none}");
        std::fs::create_dir(driver.path().join("0000:01:00.0")).unwrap();
        assert!(probe_gpu(dev.path(), Some(driver.path())).gpu);
        std::fs::write(dev.path().join("nvidia0"), "").unwrap();
        let found = probe_gpu(dev.path(), None);
        assert!(found.gpu && found.reason.contains("nvidia0"), "{found}");
        let amd = tempfile::tempdir().unwrap();
        assert!(!probe_gpu(amd.path(), None).gpu);
        std::fs::write(amd.path().join("kfd"), "").unwrap();
        assert!(probe_gpu(amd.path(), None).reason.contains("AMD ROCm"));
        assert!(GpuChoice::Gpu.decide().gpu);
        assert!(!GpuChoice::Cpu.decide().gpu);
    }

    #[test]
    fn accepts_flag_reads_the_cores_own_argument_list() {
        let env = |core_dir: std::path::PathBuf| ComfyEnv {
            python: "python3".into(),
            core_dir,
            base_dir: None,
            extra_model_paths: None,
            env: Default::default(),
            logs_dir: "logs".into(),
            data_dir: "data".into(),
            version_id: "v".into(),
            node_packs: Vec::new(),
            model_dirs: Vec::new(),
            node_index: None,
        };
        let fake = env(comfyver_testkit::comfy::fake_core_dir());
        assert!(fake.accepts_flag("--deterministic"));
        assert!(fake.accepts_flag("--disable-metadata"));
        assert!(!fake.accepts_flag("--no-such-flag"));
        assert!(!fake.accepts_flag("--determ"), "a prefix is not the flag");
        assert!(!env("/nonexistent".into()).accepts_flag("--deterministic"));
    }

    #[test]
    fn identity_needs_our_marker_in_argv() {
        let ours = json!({"system": {"argv": ["main.py", "--temp-directory", "/d/temp/abc"]}});
        assert!(identity(Some(ours), "/d/temp/abc").is_ok());
        let other = json!({"system": {"argv": ["main.py", "--temp-directory", "/d/temp/xyz"]}});
        assert_eq!(
            identity(Some(other), "/d/temp/abc"),
            Err("its command line does not hold our instance marker: \
                 main.py --temp-directory /d/temp/xyz"
                .into())
        );
        assert_eq!(
            identity(Some(json!({"system": {}})), "/d/temp/abc"),
            Err("its /system_stats has no system.argv".into())
        );
        assert_eq!(
            identity(None, "/d/temp/abc"),
            Err("its /system_stats is not JSON".into())
        );
    }
}
