//! A complete version to realize and run, built from real parts: a core
//! repository holding the stand-in ComfyUI (tagged `v1`), node-pack
//! repositories, a wheel directory, a model on a loopback HTTP server (which
//! also answers as an empty package index), and a spec in a versions
//! directory.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};

use crate::comfy::{fake_core_dir, node_pack_dir};
use crate::git::Repo;
use crate::http::HttpServer;
use crate::wheels;

/// The world of one test or benchmark; everything lives in a temp dir.
pub struct World {
    _tmp: tempfile::TempDir,
    /// The temp dir's path.
    pub root: PathBuf,
    /// The model server (drop it to make downloads impossible).
    pub server: Option<HttpServer>,
    /// The core repository.
    pub core: Repo,
    /// The node-pack repositories, by pack name.
    pub packs: Vec<(String, Repo)>,
}

impl World {
    /// A world whose version `v1` uses the given node-pack fixtures (e.g.
    /// `hello_pack`) and one model, `checkpoints/tiny.safetensors`.
    pub fn new(packs: &[&str]) -> World {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().to_path_buf();
        let remotes = root.join("remotes");
        let mut core = Repo::new(&remotes, "ComfyUI");
        core.copy_tree(&fake_core_dir());
        core.commit("stand-in core");
        core.tag("v1");
        core.push();
        let packs = packs
            .iter()
            .map(|name| {
                let mut repo = Repo::new(&remotes, name);
                repo.copy_tree(&node_pack_dir(name));
                repo.commit(name);
                repo.push();
                (name.to_string(), repo)
            })
            .collect();
        wheels::standard_wheels(&root.join("wheels"));
        let server = HttpServer::start();
        server.add_file("/m/tiny.safetensors", b"not really a model".to_vec());
        let world = World {
            _tmp: tmp,
            root,
            server: Some(server),
            core,
            packs,
        };
        world.write_spec("v1", &world.spec("v1"));
        world
    }

    /// The spec of a version using every pack and the model. Its package
    /// index is the loopback server, which knows no package (404), so
    /// nothing reaches the internet: packages come from `--wheels-dir`.
    pub fn spec(&self, id: &str) -> Value {
        let server = self.server.as_ref().expect("the server is running");
        json!({
            "schema_version": 2,
            "version_id": id,
            "comfy": {"repo": self.core.file_url(), "ref": "v1"},
            "custom_nodes": self.packs.iter().map(|(_, r)| json!({"repo": r.file_url()})).collect::<Vec<_>>(),
            "models": [{"source": server.url("/m/tiny.safetensors"), "target_subdir": "checkpoints"}],
            "python": {"index_url": server.url("/simple")}
        })
    }

    /// Writes `versions/<id>.json`.
    pub fn write_spec(&self, id: &str, spec: &Value) {
        let dir = self.root.join("versions");
        std::fs::create_dir_all(&dir).expect("versions dir");
        std::fs::write(
            dir.join(format!("{id}.json")),
            serde_json::to_vec_pretty(spec).expect("json"),
        )
        .expect("spec written");
    }

    /// Writes a workflow file and returns its path.
    pub fn workflow(&self, name: &str, wf: &Value) -> PathBuf {
        let p = self.root.join(format!("{name}.json"));
        std::fs::write(&p, serde_json::to_vec(wf).expect("json")).expect("workflow written");
        p
    }

    /// The default home of version `id`.
    pub fn home(&self, id: &str) -> PathBuf {
        self.root.join(format!("cache/versions/comfy-{id}"))
    }

    /// Runs `bin` with this world's cache, versions and wheels, and `PATH`
    /// replaced by `path_env` when given.
    pub fn comfyver(&self, bin: &Path, args: &[&str], path_env: Option<&Path>) -> Output {
        self.comfyver_env(bin, args, path_env, &[])
    }

    /// [`World::comfyver`] with these extra environment variables.
    pub fn comfyver_env(
        &self,
        bin: &Path,
        args: &[&str],
        path_env: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Output {
        let mut c = crate::cli::comfyver_command(
            bin,
            &self.root.join("cache"),
            &self.root.join("versions"),
        );
        c.args(args)
            .env("COMFYVER_WHEELS_DIR", self.root.join("wheels"));
        if let Some(p) = path_env {
            c.env("PATH", p);
        }
        c.envs(env.iter().copied());
        c.output().expect("comfyver runs")
    }

    /// Makes every remote unreachable: the model server stops and the git
    /// repositories are deleted.
    pub fn cut_remotes(&mut self) {
        drop(self.server.take());
        let _ = std::fs::remove_dir_all(self.root.join("remotes"));
    }
}

/// A workflow: EmptyImage 64×32 of `0x336699` → SaveImage, a model listing of
/// `checkpoints`, and (when the pack is present) HelloText.
pub fn smoke_workflow(with_hello: bool) -> Value {
    let mut wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 32, "batch_size": 1, "color": 0x336699}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "smoke"}},
        "3": {"class_type": "FakeModelList", "inputs": {"folder": "checkpoints"}}
    });
    if with_hello {
        wf["4"] = json!({"class_type": "HelloText", "inputs": {}});
    }
    wf
}
