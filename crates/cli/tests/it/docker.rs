//! The deployment files: `docker/Dockerfile` passes hadolint, and
//! `docker/entrypoint.sh` (POSIX sh) passes shellcheck and starts the right
//! comfyver command. `docker build` itself cannot run here (no container engine); the
//! entrypoint runs directly, with a stand-in `comfyver` that records how it
//! was called.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// A linter from `scripts/install-test-deps.sh`; a missing one fails the test.
fn tool(name: &str) -> Command {
    let probe = Command::new(name).arg("--version").output();
    assert!(
        probe.is_ok_and(|o| o.status.success()),
        "`{name}` is not installed: run scripts/install-test-deps.sh"
    );
    Command::new(name)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn dockerfile_passes_hadolint_which_does_reject_a_bad_one() {
    let docker = repo_root().join("docker");
    let config = docker.join(".hadolint.yaml");
    let out = tool("hadolint")
        .arg("--no-color")
        .arg("--config")
        .arg(&config)
        .arg(docker.join("Dockerfile"))
        .output()
        .unwrap();
    assert!(out.status.success(), "hadolint:\n{}", text(&out));

    // The same configuration still fails on real mistakes.
    let bad = tempfile::tempdir().unwrap();
    let bad_file = bad.path().join("Dockerfile");
    std::fs::write(
        &bad_file,
        "FROM debian\nRUN cd /tmp && apt-get install git\n",
    )
    .unwrap();
    let out = tool("hadolint")
        .arg("--no-color")
        .arg("--config")
        .arg(&config)
        .arg(&bad_file)
        .output()
        .unwrap();
    assert!(!out.status.success(), "hadolint accepted a bad Dockerfile");
    assert!(text(&out).contains("DL3003"), "{}", text(&out));
}

#[test]
fn entrypoint_passes_shellcheck() {
    let out = tool("shellcheck")
        .arg(repo_root().join("docker/entrypoint.sh"))
        .output()
        .unwrap();
    assert!(out.status.success(), "shellcheck:\n{}", text(&out));
}

/// Runs the entrypoint with `env` (nothing else inherited but PATH) and a
/// stand-in comfyver; returns the argv it got and what it recorded (the
/// environment it saw, its pid and the pid of the shell that started the
/// entrypoint).
fn entrypoint(
    args: &[&str],
    env: &[(&str, &Path)],
    strs: &[(&str, &str)],
) -> (Vec<String>, String) {
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("record");
    let shell_record = dir.path().join("shell");
    let stub = dir.path().join("comfyver");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do echo \"arg=$a\"; done > '{0}'\n\
             echo \"COMFY_CACHE=${{COMFY_CACHE-<unset>}}\" >> '{0}'\n\
             echo \"COMFY_VERSIONS_DIR=${{COMFY_VERSIONS_DIR-<unset>}}\" >> '{0}'\n\
             echo \"pid=$$\" >> '{0}'\n",
            record.display()
        ),
    )
    .unwrap();
    let mut perms = std::fs::metadata(&stub).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&stub, perms).unwrap();
    // Started the way a container starts it (exec of the script, `#!/bin/sh`),
    // from a shell that records its pid first.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("echo \"shell=$$\" > \"$SHELL_RECORD\"; exec \"$0\" \"$@\"")
        .arg(repo_root().join("docker/entrypoint.sh"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("SHELL_RECORD", &shell_record)
        .env("COMFYVER_BIN", &stub);
    for (k, v) in env {
        cmd.env(k, v);
    }
    for (k, v) in strs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "entrypoint:\n{}", text(&out));
    let recorded = std::fs::read_to_string(&record).unwrap();
    let shell = std::fs::read_to_string(&shell_record).unwrap();
    let argv = recorded
        .lines()
        .filter_map(|l| l.strip_prefix("arg="))
        .map(String::from)
        .collect();
    (argv, format!("{recorded}{shell}"))
}

#[test]
fn entrypoint_starts_serve_in_worker_or_local_mode_with_volume_defaults() {
    let volume = tempfile::tempdir().unwrap();
    let v = volume.path();
    let cache = format!("COMFY_CACHE={}", v.join(".comfy-cache").display());
    let versions = format!("COMFY_VERSIONS_DIR={}", v.join("versions").display());

    // Local job API: no RunPod variables.
    let (argv, seen) = entrypoint(&[], &[("COMFYVER_VOLUME", v)], &[]);
    assert_eq!(argv, ["serve", "--listen", "0.0.0.0:8000"]);
    let (argv, _) = entrypoint(
        &[],
        &[("COMFYVER_VOLUME", v)],
        &[("COMFYVER_VERSION_ID", "sdxl-base")],
    );
    assert_eq!(argv, ["serve", "sdxl-base", "--listen", "0.0.0.0:8000"]);
    assert!(seen.contains(&cache) && seen.contains(&versions), "{seen}");

    // RunPod worker mode, default version from the environment, extra flags kept.
    let (argv, _) = entrypoint(
        &["-v"],
        &[("COMFYVER_VOLUME", v)],
        &[
            ("RUNPOD_WEBHOOK_GET_JOB", "http://127.0.0.1:9/job-take/$ID"),
            ("COMFYVER_VERSION_ID", "sdxl-base"),
        ],
    );
    assert_eq!(argv, ["serve", "sdxl-base", "-v"]);

    // Another listen address; the caller's own cache wins over the volume's.
    let (argv, seen) = entrypoint(
        &[],
        &[
            ("COMFYVER_VOLUME", v),
            ("COMFY_CACHE", Path::new("/elsewhere")),
        ],
        &[("COMFYVER_LISTEN", "127.0.0.1:8123")],
    );
    assert_eq!(argv, ["serve", "--listen", "127.0.0.1:8123"]);
    assert!(seen.contains("COMFY_CACHE=/elsewhere"), "{seen}");

    // A version as the first argument wins; a --listen of the caller's is not doubled.
    let (argv, _) = entrypoint(
        &["other", "--listen", "127.0.0.1:9"],
        &[("COMFYVER_VOLUME", v)],
        &[("COMFYVER_VERSION_ID", "sdxl-base")],
    );
    assert_eq!(argv, ["serve", "other", "--listen", "127.0.0.1:9"]);

    // A comfyver command of its own (pre-warming a volume from a pod).
    let (argv, seen) = entrypoint(
        &["comfyver", "realize", "sdxl-base"],
        &[("COMFYVER_VOLUME", v)],
        &[],
    );
    assert_eq!(argv, ["realize", "sdxl-base"]);
    assert!(seen.contains(&cache), "{seen}");

    // No volume mounted: comfyver's own defaults apply.
    let missing = v.join("not-mounted");
    let (_, seen) = entrypoint(&[], &[("COMFYVER_VOLUME", &missing)], &[]);
    assert!(
        seen.contains("COMFY_CACHE=<unset>") && seen.contains("COMFY_VERSIONS_DIR=<unset>"),
        "{seen}"
    );
}

#[test]
fn entrypoint_execs_so_signals_reach_comfyver() {
    let volume = tempfile::tempdir().unwrap();
    let (_, seen) = entrypoint(&[], &[("COMFYVER_VOLUME", volume.path())], &[]);
    let field = |name: &str| {
        seen.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}=")))
            .map(String::from)
            .unwrap_or_else(|| panic!("no {name} in {seen}"))
    };
    assert_eq!(
        field("pid"),
        field("shell"),
        "comfyver replaces the entrypoint's shell (exec), so tini's signals reach it"
    );
}
