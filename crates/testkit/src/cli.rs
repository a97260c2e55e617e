//! Running the `comfyver` binary hermetically: the test's own cache and
//! versions directories, and none of the caller's comfyver settings.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Variables comfyver does not read itself but that change what its
/// children (uv, pip, Python) do, so a test must not inherit them either.
pub const CHILD_ENV: &[&str] = &["VIRTUAL_ENV", "PYTHONPATH", "UV_INDEX_URL", "PIP_INDEX_URL"];

/// `bin --cache-dir <cache> --versions-dir <versions>` with every variable
/// of comfyver's registry (`comfyver_env::ALL`) and [`CHILD_ENV`] removed, no stdin, no colors and no git prompts; add the arguments.
pub fn comfyver_command(bin: &Path, cache: &Path, versions: &Path) -> Command {
    let mut c = Command::new(bin);
    c.arg("--cache-dir")
        .arg(cache)
        .arg("--versions-dir")
        .arg(versions)
        .stdin(Stdio::null())
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("NO_COLOR", "1");
    for var in comfyver_env::ALL
        .iter()
        .map(|v| v.name)
        .chain(CHILD_ENV.iter().copied())
    {
        c.env_remove(var);
    }
    c
}

/// Removes from `cmd`'s environment every variable of comfyver's registry
/// (`comfyver_env::ALL`) and [`CHILD_ENV`].
pub fn scrub(cmd: &mut Command) {
    for var in comfyver_env::ALL
        .iter()
        .map(|v| v.name)
        .chain(CHILD_ENV.iter().copied())
    {
        cmd.env_remove(var);
    }
}

/// One CLI test's world: a temp root holding `cache/`, `versions/` (created)
/// and `remotes/`, and the `comfyver` binary run in it hermetically.
pub struct Sandbox {
    bin: PathBuf,
    root: tempfile::TempDir,
    cache: PathBuf,
    versions: PathBuf,
}

impl Sandbox {
    /// A fresh temp root for `bin` (the `comfyver` binary under test) with an
    /// empty `versions/` directory; `cache/` is left for comfyver to create.
    pub fn new(bin: &Path) -> Sandbox {
        let root = tempfile::tempdir().expect("temp dir");
        let cache = root.path().join("cache");
        let versions = root.path().join("versions");
        std::fs::create_dir_all(&versions).expect("versions dir");
        Sandbox {
            bin: bin.to_path_buf(),
            root,
            cache,
            versions,
        }
    }

    /// This sandbox reading its versions from `dir` (a committed versions
    /// directory, say) instead of its own empty one.
    pub fn with_versions(mut self, dir: &Path) -> Sandbox {
        self.versions = dir.to_path_buf();
        self
    }

    /// The temp root.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The cache directory (`<root>/cache`), passed as `--cache-dir`.
    pub fn cache(&self) -> &Path {
        &self.cache
    }

    /// The versions directory (`<root>/versions`), passed as `--versions-dir`.
    pub fn versions(&self) -> &Path {
        &self.versions
    }

    /// `<root>/remotes`, created, for the test's git repositories.
    pub fn remotes(&self) -> PathBuf {
        let p = self.root().join("remotes");
        std::fs::create_dir_all(&p).expect("remotes dir");
        p
    }

    /// [`comfyver_command`] for this sandbox with `args`, and git's own
    /// system and global configuration ignored.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = comfyver_command(&self.bin, &self.cache, &self.versions);
        c.args(args)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        c
    }

    /// Runs [`Sandbox::cmd`] to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("comfyver runs")
    }

    /// Writes `spec` as `versions/<id>.json`.
    pub fn write_spec(&self, id: &str, spec: &serde_json::Value) {
        std::fs::write(self.spec_path(id), spec.to_string()).expect("spec written");
    }

    /// `versions/<id>.json`.
    pub fn spec_path(&self, id: &str) -> PathBuf {
        self.versions.join(format!("{id}.json"))
    }

    /// Where comfyver writes the lock of version `id`.
    pub fn lock_path(&self, id: &str) -> PathBuf {
        lock_path(&self.cache, id)
    }

    /// The lock of version `id`, parsed; panics when it is missing.
    pub fn lock(&self, id: &str) -> serde_json::Value {
        read_json(&self.lock_path(id))
    }
}

/// Where comfyver writes the lock of version `id` under `cache`.
pub fn lock_path(cache: &Path, id: &str) -> PathBuf {
    cache.join("resolved").join(format!("{id}.lock.json"))
}

/// A JSON file, parsed; panics naming the file when it is missing or bad.
pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Asserts that comfyver succeeded; returns (stdout, stderr).
#[track_caller]
pub fn ok(out: &Output) -> (String, String) {
    let (stdout, stderr) = texts(out);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status.code()
    );
    (stdout, stderr)
}

/// Asserts that comfyver exited with 1 (a user error); returns (stdout, stderr).
#[track_caller]
pub fn fails(out: &Output) -> (String, String) {
    let (stdout, stderr) = texts(out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    (stdout, stderr)
}

/// Runs `cmd` to its end within `limit`, its stdout and stderr read on
/// threads (so a chatty run never blocks on a full pipe). `Err` holds what it
/// wrote when it was still running at the limit and was killed.
pub fn output_within(mut cmd: Command, limit: std::time::Duration) -> Result<Output, Output> {
    use std::io::Read;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let until = std::time::Instant::now() + limit;
    let mut status = child.try_wait().expect("waiting for it");
    while status.is_none() && std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
        status = child.try_wait().expect("waiting for it");
    }
    let finished = status.is_some();
    if !finished {
        let _ = child.kill();
    }
    let output = Output {
        status: child.wait().expect("its status"),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    };
    if finished { Ok(output) } else { Err(output) }
}

fn texts(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A comfyver run held at a test pause point (`COMFYVER_TEST_PAUSE_AT`).
/// [`Paused::start`] returns once the run printed that it paused there (and
/// panics with its stderr when it ends first); its stderr is read on a
/// thread to its end, so the run never blocks writing it. [`Paused::kill`]
/// SIGKILLs it; dropping it does too.
pub struct Paused {
    child: std::process::Child,
    reader: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl Paused {
    /// Spawns `cmd` with `COMFYVER_TEST_PAUSE_AT=point` (stdout discarded)
    /// and waits, at most 5 minutes, until it pauses there.
    pub fn start(mut cmd: Command, point: &str) -> Paused {
        use std::io::{BufRead, BufReader};
        let mut child = cmd
            .env("COMFYVER_TEST_PAUSE_AT", point)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn comfyver");
        let stderr = child.stderr.take().expect("piped stderr");
        let (paused, at_point) = std::sync::mpsc::channel();
        let wanted = format!("paused at {point}");
        let reader = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains(&wanted) {
                    let _ = paused.send(());
                }
                seen.push(line);
            }
            seen
        });
        let run = Paused {
            child,
            reader: Some(reader),
        };
        if at_point
            .recv_timeout(std::time::Duration::from_secs(300))
            .is_err()
        {
            let seen = run.kill();
            panic!("never paused at {point}:\n{}", seen.join("\n"));
        }
        run
    }

    /// SIGKILLs the run, waits for it, and returns the lines of its stderr.
    pub fn kill(mut self) -> Vec<String> {
        self.stop()
    }

    fn stop(&mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.reader
            .take()
            .map(|r| r.join().unwrap_or_default())
            .unwrap_or_default()
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        self.stop();
    }
}
