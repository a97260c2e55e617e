//! What a job can touch: the [`Confinement`] of a version's ComfyUI, computed
//! in one place from its [`ComfyEnv`], and the hint added to a node's error
//! when the kernel refused it a path.

use std::path::{Path, PathBuf};

use comfyver_fs::Confinement;

use crate::error::NodeFailure;
use crate::process::ComfyEnv;

/// The folders one ComfyUI instance writes: the job's input, output, temp
/// and user folders, and its private `TMPDIR`.
#[derive(Debug, Clone)]
pub(crate) struct JobDirs {
    pub input: PathBuf,
    pub output: PathBuf,
    pub user: PathBuf,
    pub temp: PathBuf,
    pub tmpdir: PathBuf,
}

/// The paths of `env`'s ComfyUI (see `docs/run.md`, "What a job can touch"):
///
/// - read: the system paths, the home, its core checkout, every
///   `custom_nodes/` entry (links resolved to the node cache), the model
///   directories, the venv and the Python it was built from;
/// - read and write: `dirs`, the home's bytecode cache
///   (`PYTHONPYCACHEPREFIX`, `.comfyver/pycache`), and the per-home copies
///   of packs (real directories in `custom_nodes/`, not links: packs whose
///   install.py ran, or marked `writable` in the spec).
pub(crate) fn plan(env: &ComfyEnv, dirs: &JobDirs) -> Confinement {
    let mut c = Confinement::new();
    let home = env.base_dir.as_deref().unwrap_or(&env.core_dir);
    c.read(home).read(&env.core_dir);
    for (_, dir) in packs(env) {
        c.read(dir);
    }
    for copy in own_copies(env) {
        c.write(copy);
    }
    if let Some(yaml) = &env.extra_model_paths {
        c.read(yaml);
    }
    for models in &env.model_dirs {
        c.read(models);
    }
    c.python(&env.python);
    for dir in [
        &dirs.input,
        &dirs.output,
        &dirs.user,
        &dirs.temp,
        &dirs.tmpdir,
    ] {
        c.write(dir);
    }
    if let Some(prefix) = env.env.get("PYTHONPYCACHEPREFIX") {
        c.write(prefix);
    }
    c
}

/// The home's `custom_nodes/` entries with their resolved directories.
pub(crate) fn packs(env: &ComfyEnv) -> Vec<(String, PathBuf)> {
    let home = env.base_dir.as_deref().unwrap_or(&env.core_dir);
    std::fs::read_dir(home.join("custom_nodes"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let real = std::fs::canonicalize(e.path()).ok()?;
            real.is_dir()
                .then(|| (e.file_name().to_string_lossy().into_owned(), real))
        })
        .collect()
}

/// The real directories (not links) in the home's `custom_nodes/`: the
/// home's own copies of packs.
fn own_copies(env: &ComfyEnv) -> Vec<PathBuf> {
    let home = env.base_dir.as_deref().unwrap_or(&env.core_dir);
    std::fs::read_dir(home.join("custom_nodes"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .collect()
}

/// `path` with its directory resolved (links followed), for a file that
/// need not exist.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(real) = std::fs::canonicalize(path) {
        return real;
    }
    match (path.parent().map(std::fs::canonicalize), path.file_name()) {
        (Some(Ok(dir)), Some(name)) => dir.join(name),
        _ => path.to_path_buf(),
    }
}

/// comfyver's hint for a node that failed with "permission denied" in a
/// confined ComfyUI: which path was refused and why, naming the pack when it
/// wrote into its own (shared, read-only) checkout. `None` when the failure
/// is no refusal.
pub(crate) fn refused_hint(
    failure: &NodeFailure,
    confinement: &Confinement,
    packs: &[(String, PathBuf)],
) -> Option<String> {
    let text = format!(
        "{} {} {}",
        failure.exception_type,
        failure.message,
        failure.traceback.join("\n")
    );
    let refused = failure.exception_type == "PermissionError"
        || text.contains("Permission denied")
        || text.contains("[Errno 13]");
    if !refused {
        return None;
    }
    let node = format!("node {} ({})", failure.node_id, failure.class_type);
    let Some(path) =
        Confinement::quoted_path(&failure.message).or_else(|| Confinement::quoted_path(&text))
    else {
        return Some(format!(
            "{node} was refused a path: comfyver confines ComfyUI to its version's files \
             (read-only) and the job's input, output, temp and user folders; see \
             docs/run.md, \"What a job can touch\" (`--confine off` lifts it)"
        ));
    };
    let resolved = resolved(&path);
    if let Some((name, _)) = packs
        .iter()
        .find(|(_, dir)| resolved.starts_with(dir) || path.starts_with(dir))
    {
        return Some(format!(
            "{node} wrote into its pack's own directory ({}): node pack `{name}` is a shared \
             checkout, read-only to ComfyUI; a pack that writes into its directory needs a \
             per-home copy: set `\"writable\": true` on its entry in the spec's custom_nodes \
             (a pack whose install.py runs has one already); otherwise have the pack write under \
             ComfyUI's user or temp folder, or run with `--confine off`",
            path.display()
        ));
    }
    let what = if confinement.allows_read(&path) {
        "may be read but not written"
    } else {
        "is outside the job's area"
    };
    Some(format!(
        "{node}: {} {what}; comfyver confines ComfyUI to its version's files (read-only) and the \
         job's input, output, temp and user folders; see docs/run.md, \"What a job can touch\" \
         (`--confine off` lifts it)",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(message: &str) -> NodeFailure {
        NodeFailure {
            node_id: "7".into(),
            class_type: "ReadPath".into(),
            exception_type: "PermissionError".into(),
            message: message.into(),
            traceback: Vec::new(),
            hint: None,
        }
    }

    #[test]
    fn a_refused_path_gets_a_hint_naming_node_path_and_pack() {
        let dir = tempfile::tempdir().unwrap();
        let pack = std::fs::canonicalize(dir.path()).unwrap().join("pack");
        std::fs::create_dir(&pack).unwrap();
        let c = Confinement::new();
        let packs = vec![("the_pack".to_string(), pack.clone())];
        let outside = refused_hint(
            &failure("[Errno 13] Permission denied: '/secret/file'"),
            &c,
            &packs,
        )
        .unwrap();
        assert!(outside.contains("node 7 (ReadPath)"), "{outside}");
        assert!(outside.contains("/secret/file is outside the job's area"));
        let own = refused_hint(
            &failure(&format!(
                "[Errno 13] Permission denied: '{}'",
                pack.join("state.json").display()
            )),
            &c,
            &packs,
        )
        .unwrap();
        assert!(
            own.contains("`the_pack`") && own.contains("\"writable\": true"),
            "{own}"
        );
        let mut other = failure("division by zero");
        other.exception_type = "ZeroDivisionError".into();
        assert_eq!(refused_hint(&other, &c, &packs), None);
    }

    #[test]
    fn the_plan_reads_the_venv_base_python_and_writes_only_the_job_dirs() {
        let home = tempfile::tempdir().unwrap();
        let base = tempfile::tempdir().unwrap();
        let venv = home.path().join(".venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::create_dir_all(base.path().join("bin")).unwrap();
        std::fs::write(
            venv.join("pyvenv.cfg"),
            format!("home = {}\n", base.path().join("bin").display()),
        )
        .unwrap();
        let run = home.path().join(".comfyver/run");
        let dirs = JobDirs {
            input: run.join("input"),
            output: run.join("output"),
            user: run.join("user"),
            temp: run.join("temp/x"),
            tmpdir: run.join("temp/x-tmp"),
        };
        for d in [
            &dirs.input,
            &dirs.output,
            &dirs.user,
            &dirs.temp,
            &dirs.tmpdir,
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        let env = ComfyEnv {
            python: venv.join("bin/python"),
            core_dir: home.path().to_path_buf(),
            base_dir: None,
            extra_model_paths: None,
            env: Default::default(),
            logs_dir: home.path().join(".comfyver/logs"),
            data_dir: run.clone(),
            version_id: "v".into(),
            node_packs: Vec::new(),
            model_dirs: Vec::new(),
            node_index: None,
        };
        let nodes = home.path().join("custom_nodes");
        std::fs::create_dir_all(nodes.join("own_copy")).unwrap();
        std::fs::create_dir_all(base.path().join("shared")).unwrap();
        std::os::unix::fs::symlink(base.path().join("shared"), nodes.join("linked")).unwrap();
        let c = plan(&env, &dirs);
        assert!(c.allows_write(&nodes.join("own_copy/state.json")));
        assert!(c.allows_read(&nodes.join("linked/x.py")));
        assert!(!c.allows_write(&nodes.join("linked/state.json")));
        assert!(c.allows_read(&base.path().join("bin/python3")));
        assert!(c.allows_read(&venv.join("lib")));
        assert!(!c.allows_write(&venv.join("lib")));
        assert!(c.allows_write(&dirs.output.join("a.png")));
        assert!(!c.allows_write(&run.join("temp/other-instance")));
        assert!(!c.allows_write(&home.path().join(".comfyver/logs/x.log")));
    }
}
