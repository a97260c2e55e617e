//! A throwaway ComfyUI "home" for tests: a temp copy of the stand-in ComfyUI
//! (`fixtures/fake-comfyui`, Python standard library only) with
//! `custom_nodes/<name>` symlinks to the node-pack fixtures
//! (`fixtures/node-packs`) and an `extra_model_paths.yaml`; plus
//! [`FakeComfy`], a bare server started by hand (e.g. a stale server that
//! squats on a port).
//!
//! ```no_run
//! use comfyver_testkit::comfy::ComfyHome;
//! let home = ComfyHome::new(&["hello_pack", "broken_pack"]);
//! // start `python3 main.py` in home.core_dir with
//! // --extra-model-paths-config home.extra_model_paths ...
//! ```

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The stand-in ComfyUI core in the source tree.
pub fn fake_core_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/fake-comfyui")
}

/// A node-pack fixture (`hello_pack`, `broken_pack`, `gitrev_pack`).
pub fn node_pack_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/node-packs")
        .join(name)
}

/// The interpreter tests run the stand-in with: `python3` from PATH.
pub fn python() -> PathBuf {
    PathBuf::from("python3")
}

/// A temp ComfyUI home. Everything is removed on drop.
#[derive(Debug)]
pub struct ComfyHome {
    dir: tempfile::TempDir,
    /// The copied core (run `main.py` here).
    pub core_dir: PathBuf,
    /// `extra_model_paths.yaml` pointing at [`ComfyHome::models_dir`].
    pub extra_model_paths: PathBuf,
    /// `models/` with `checkpoints/` and `loras/` folders.
    pub models_dir: PathBuf,
    /// A per-version data dir (input/output/user/temp go under it).
    pub data_dir: PathBuf,
    /// Where logs go.
    pub logs_dir: PathBuf,
}

impl ComfyHome {
    /// Copies the stand-in core and links the named node-pack fixtures into
    /// its `custom_nodes/`.
    pub fn new(packs: &[&str]) -> ComfyHome {
        let dir = tempfile::tempdir().expect("temp dir");
        let core_dir = dir.path().join("ComfyUI");
        copy_tree(&fake_core_dir(), &core_dir);
        let custom = core_dir.join("custom_nodes");
        std::fs::create_dir_all(&custom).expect("custom_nodes");
        for pack in packs {
            let src = node_pack_dir(pack);
            assert!(src.is_dir(), "no node-pack fixture {pack}");
            std::os::unix::fs::symlink(&src, custom.join(pack)).expect("symlink pack");
        }
        let models_dir = dir.path().join("models");
        for sub in ["checkpoints", "loras"] {
            std::fs::create_dir_all(models_dir.join(sub)).expect("models dir");
        }
        let extra_model_paths = dir.path().join("extra_model_paths.yaml");
        let yaml = format!(
            "comfyver:\n  base_path: {}\n  checkpoints: checkpoints\n  loras: loras\n",
            serde_json::to_string(&models_dir.to_string_lossy()).expect("json string")
        );
        std::fs::write(&extra_model_paths, yaml).expect("write yaml");
        let data_dir = dir.path().join("data");
        let logs_dir = dir.path().join("logs");
        ComfyHome {
            dir,
            core_dir,
            extra_model_paths,
            models_dir,
            data_dir,
            logs_dir,
        }
    }

    /// The home's root.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

fn copy_tree(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).expect("create dir");
    for entry in std::fs::read_dir(src).expect("read dir") {
        let entry = entry.expect("dir entry");
        let name = entry.file_name();
        if name == "__pycache__" {
            continue;
        }
        let from = entry.path();
        let to = dst.join(&name);
        if entry.file_type().expect("file type").is_dir() {
            copy_tree(&from, &to);
        } else if from.extension().is_none_or(|e| e != "pyc") {
            std::fs::copy(&from, &to).expect("copy file");
        }
    }
}

/// A stand-in ComfyUI started by hand on a fixed port (not through the
/// handler), killed on drop.
#[derive(Debug)]
pub struct FakeComfy {
    child: Child,
    port: u16,
    /// Its combined stdout/stderr log.
    pub log: PathBuf,
}

impl FakeComfy {
    /// Starts `python3 main.py --listen 127.0.0.1 --port <port>` in the home's
    /// core, with its own data dirs under `<home>/<label>`, and waits until
    /// the port accepts connections.
    pub fn start(home: &ComfyHome, label: &str, port: u16) -> FakeComfy {
        let root = home.path().join(label);
        let user = root.join("user");
        std::fs::create_dir_all(&user).expect("user dir");
        let log = root.join("comfyui.log");
        let out = std::fs::File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(python())
            .arg("main.py")
            .args([
                "--listen",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--cpu",
            ])
            .arg("--output-directory")
            .arg(root.join("output"))
            .arg("--input-directory")
            .arg(root.join("input"))
            .arg("--temp-directory")
            .arg(root.join("temp"))
            .arg("--user-directory")
            .arg(&user)
            .current_dir(&home.core_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("start the stand-in ComfyUI");
        let mut fake = FakeComfy { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = fake.child.try_wait() {
                panic!(
                    "stand-in ComfyUI exited ({status}): {}",
                    std::fs::read_to_string(&fake.log).unwrap_or_default()
                );
            }
            assert!(Instant::now() < deadline, "stand-in ComfyUI did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        fake
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FakeComfy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}
