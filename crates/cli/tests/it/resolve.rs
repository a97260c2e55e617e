//! `comfyver resolve` and the lock part of `comfyver show`, run as real
//! processes against bare repositories built at test time (file:// and git://).

use std::path::{Path, PathBuf};

use comfyver_testkit::cli::{Sandbox, fails, ok};
use comfyver_testkit::git::{GitDaemon, git, standard_repo};
use serde_json::{Value, json};

fn sandbox() -> Sandbox {
    Sandbox::new(Path::new(env!("CARGO_BIN_EXE_comfyver")))
}

fn write_spec(env: &Sandbox, id: &str, comfy: Value, nodes: Value) {
    env.write_spec(
        id,
        &json!({"schema_version": 2, "version_id": id, "comfy": comfy, "custom_nodes": nodes}),
    );
}

fn mtime(p: &Path) -> std::time::SystemTime {
    std::fs::metadata(p).unwrap().modified().unwrap()
}

fn tree(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    if !dir.exists() {
        return out;
    }
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.push((p.clone(), None));
                stack.push(p);
            } else {
                out.push((p.clone(), Some(std::fs::read(&p).unwrap())));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn resolve_over_git_daemon_then_unchanged_without_network() {
    let env = sandbox();
    let (_core, cc) = standard_repo(&env.remotes(), "core");
    let (_pack, pc) = standard_repo(&env.remotes(), "pack");
    let mut daemon = GitDaemon::start(&env.remotes());
    write_spec(
        &env,
        "v1",
        json!({"repo": daemon.url("core.git")}),
        json!([{"repo": daemon.url("pack.git"), "ref": "v2"}]),
    );
    let (stdout, stderr) = ok(&env.run(&["resolve", "v1"]));
    assert!(
        stdout.contains(&format!("comfy  HEAD -> {}", &cc[2][..12])),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("pack   v2 -> {}", &pc[1][..12])),
        "{stdout}"
    );
    assert!(stderr.contains("resolving comfy from git://"), "{stderr}");
    assert!(stderr.contains("lock written: "), "{stderr}");
    let lock = env.lock("v1");
    assert_eq!(lock["custom_nodes"][0]["commit"], pc[1].as_str());
    let bytes = std::fs::read(env.lock_path("v1")).unwrap();
    let before = mtime(&env.lock_path("v1"));

    daemon.stop();
    let (stdout2, stderr2) = ok(&env.run(&["resolve", "v1"]));
    assert_eq!(stdout2, stdout);
    assert!(stderr2.contains("lock unchanged"), "{stderr2}");
    assert!(!stderr2.contains("resolving"), "no network: {stderr2}");
    assert_eq!(std::fs::read(env.lock_path("v1")).unwrap(), bytes);
    assert_eq!(mtime(&env.lock_path("v1")), before);

    // -q hides progress and status lines.
    let (_, quiet) = ok(&env.run(&["-q", "resolve", "v1"]));
    assert!(quiet.is_empty(), "{quiet}");
}

#[test]
fn update_flags_and_spec_edits_change_only_what_they_should() {
    let env = sandbox();
    let (mut core, cc) = standard_repo(&env.remotes(), "core");
    let (mut a, _) = standard_repo(&env.remotes(), "a");
    let (mut b, bc) = standard_repo(&env.remotes(), "b");
    let (core_url, a_url, b_url) = (core.file_url(), a.file_url(), b.file_url());
    let spec = |a_ref: &str| {
        (
            json!({"repo": core_url, "ref": "main"}),
            json!([
                {"repo": a_url, "ref": a_ref},
                {"repo": b_url, "ref": "main"},
            ]),
        )
    };
    let (c, n) = spec("main");
    write_spec(&env, "u", c, n);
    ok(&env.run(&["resolve", "u"]));
    for r in [&mut core, &mut a, &mut b] {
        r.checkout("dev");
        r.commit("dev moved");
        r.checkout("main");
        r.commit("main moved");
        r.push();
    }
    let (_, stderr) = ok(&env.run(&["resolve", "u"]));
    assert!(stderr.contains("lock unchanged"), "{stderr}");
    assert_eq!(env.lock("u")["comfy"]["commit"], cc[2].as_str());

    // Editing one node re-resolves only that node.
    let (c, n) = spec("dev");
    write_spec(&env, "u", c, n);
    let (_, stderr) = ok(&env.run(&["resolve", "u"]));
    assert_eq!(stderr.matches("resolving").count(), 1, "{stderr}");
    let lock = env.lock("u");
    assert_eq!(
        lock["custom_nodes"][0]["commit"],
        git(a.work(), &["rev-parse", "dev"]).as_str()
    );
    assert_eq!(lock["custom_nodes"][1]["commit"], bc[2].as_str());
    assert_eq!(lock["comfy"]["commit"], cc[2].as_str());

    // --update NAME changes only that entry.
    ok(&env.run(&["resolve", "u", "--update", "b"]));
    let lock = env.lock("u");
    assert_eq!(lock["custom_nodes"][1]["commit"], b.head().as_str());
    assert_eq!(lock["comfy"]["commit"], cc[2].as_str());

    // --update alone changes everything.
    ok(&env.run(&["resolve", "u", "--update"]));
    assert_eq!(env.lock("u")["comfy"]["commit"], core.head().as_str());

    let (_, stderr) = fails(&env.run(&["resolve", "u", "--update", "bb"]));
    assert!(stderr.contains("did you mean `b`"), "{stderr}");
}

#[test]
fn locked_fails_with_the_diff() {
    let env = sandbox();
    let (core, _) = standard_repo(&env.remotes(), "core");
    write_spec(
        &env,
        "l",
        json!({"repo": core.file_url(), "ref": "main"}),
        json!([]),
    );
    let (_, stderr) = fails(&env.run(&["resolve", "l", "--locked"]));
    assert!(stderr.contains("has no lock"), "{stderr}");
    assert!(!env.cache().exists(), "nothing written");

    ok(&env.run(&["resolve", "l"]));
    ok(&env.run(&["resolve", "l", "--locked"]));
    let before = std::fs::read(env.lock_path("l")).unwrap();
    write_spec(
        &env,
        "l",
        json!({"repo": core.file_url(), "ref": "v2"}),
        json!([]),
    );
    let (_, stderr) = fails(&env.run(&["resolve", "l", "--locked"]));
    assert!(stderr.contains("would change"), "{stderr}");
    assert!(
        stderr.contains("~ comfy  main") && stderr.contains("v2 (would resolve)"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(env.lock_path("l")).unwrap(), before);
}

#[test]
fn offline_names_what_it_cannot_resolve_and_works_from_the_lock() {
    let env = sandbox();
    let (core, cc) = standard_repo(&env.remotes(), "core");
    let (pack, _) = standard_repo(&env.remotes(), "pack");
    write_spec(
        &env,
        "o",
        json!({"repo": core.file_url(), "ref": "main"}),
        json!([{"repo": pack.file_url(), "ref": "dev", "name": "pack"}]),
    );
    let (_, stderr) = fails(&env.run(&["--offline", "resolve", "o"]));
    assert!(stderr.contains("could not resolve 2 entries"), "{stderr}");
    assert!(stderr.contains("- comfy:"), "{stderr}");
    assert!(stderr.contains("- custom_nodes[0] (pack):"), "{stderr}");

    ok(&env.run(&["resolve", "o"]));
    std::fs::remove_dir_all(core.bare()).unwrap();
    let (stdout, _) = ok(&env.run(&["--offline", "resolve", "o"]));
    assert!(stdout.contains(&cc[2][..12]), "{stdout}");
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let env = sandbox();
    let (core, cc) = standard_repo(&env.remotes(), "core");
    let (pack, pc) = standard_repo(&env.remotes(), "pack");
    let cred_url = pack.file_url();
    write_spec(
        &env,
        "d",
        json!({"repo": core.file_url(), "ref": "light"}),
        json!([{"repo": cred_url, "ref": &pc[4][..8], "name": "pack"}]),
    );
    let (stdout, stderr) = ok(&env.run(&["resolve", "d", "--dry-run"]));
    assert!(
        !env.cache().exists(),
        "dry run created {:?}",
        tree(env.cache())
    );
    assert!(
        stdout.contains(&format!(
            "comfy  {}  light -> {}",
            core.file_url(),
            &cc[0][..12]
        )),
        "{stdout}"
    );
    assert!(stdout.contains("(would resolve)"), "{stdout}");
    assert!(stdout.contains("+ comfy  light ->"), "{stdout}");
    assert!(stderr.contains("nothing written"), "{stderr}");

    // With a lock in place the cache tree stays byte-for-byte the same.
    write_spec(
        &env,
        "d",
        json!({"repo": core.file_url(), "ref": "light"}),
        json!([]),
    );
    ok(&env.run(&["resolve", "d"]));
    let snapshot = tree(env.cache());
    write_spec(
        &env,
        "d",
        json!({"repo": core.file_url(), "ref": "dev"}),
        json!([]),
    );
    let (stdout, _) = ok(&env.run(&["resolve", "d", "--dry-run"]));
    assert!(
        stdout.contains(&format!("~ comfy  light {}", &cc[0][..12])),
        "{stdout}"
    );
    assert_eq!(tree(env.cache()), snapshot);
}

#[test]
fn unknown_ref_and_unreachable_repo_exit_1_with_clear_messages() {
    let env = sandbox();
    let (core, _) = standard_repo(&env.remotes(), "core");
    write_spec(
        &env,
        "bad",
        json!({"repo": core.file_url(), "ref": "mian"}),
        json!([]),
    );
    let (_, stderr) = fails(&env.run(&["resolve", "bad"]));
    assert!(
        stderr.contains("comfy: `mian` is not a branch or tag"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `main`"), "{stderr}");

    let port = comfyver_testkit::git::free_port();
    write_spec(
        &env,
        "down",
        json!({"repo": format!("https://bot:ghp_SECRET123@127.0.0.1:{port}/o/r.git")}),
        json!([]),
    );
    let (stdout, stderr) = fails(&env.run(&["resolve", "down"]));
    assert!(
        !stderr.contains("SECRET") && !stdout.contains("SECRET"),
        "{stderr}"
    );
    assert!(stderr.contains("bot:***@127.0.0.1"), "{stderr}");
    assert!(
        stderr.contains("comfy: could not list the refs"),
        "{stderr}"
    );
}

#[test]
fn url_rewrite_reaches_the_fixture_and_the_lock_keeps_the_spec_url() {
    let env = sandbox();
    let (_core, cc) = standard_repo(&env.remotes(), "core");
    let spec_url = "https://git.example.invalid/org/core.git";
    write_spec(
        &env,
        "rw",
        json!({"repo": spec_url, "ref": "v2"}),
        json!([]),
    );
    let out = env
        .cmd(&["resolve", "rw"])
        .env(
            "COMFYVER_URL_REWRITES",
            format!(
                "https://git.example.invalid/org/=file://{}/",
                env.remotes().display()
            ),
        )
        .output()
        .unwrap();
    let (stdout, _) = ok(&out);
    assert!(stdout.contains(&cc[1][..12]), "{stdout}");
    assert_eq!(env.lock("rw")["comfy"]["repo"], spec_url);
}

#[test]
fn two_processes_resolving_one_id_both_succeed() {
    let env = sandbox();
    let (core, cc) = standard_repo(&env.remotes(), "core");
    let (pack, _) = standard_repo(&env.remotes(), "pack");
    write_spec(
        &env,
        "par",
        json!({"repo": core.file_url()}),
        json!([{"repo": pack.file_url(), "ref": "dev"}]),
    );
    let children: Vec<_> = (0..2)
        .map(|_| {
            env.cmd(&["resolve", "par"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut written = 0;
    for c in children {
        let (_, stderr) = ok(&c.wait_with_output().unwrap());
        written += stderr.matches("lock written").count();
    }
    assert_eq!(written, 1, "the second process finds the first one's lock");
    let lock = env.lock("par");
    assert_eq!(lock["comfy"]["commit"], cc[2].as_str());
}

#[test]
fn json_output_and_show() {
    let env = sandbox();
    let (core, cc) = standard_repo(&env.remotes(), "core");
    write_spec(
        &env,
        "j",
        json!({"repo": core.file_url(), "ref": "main"}),
        json!([]),
    );
    let (stdout, _) = ok(&env.run(&["show", "j"]));
    assert!(stdout.contains("not resolved yet"), "{stdout}");

    let (stdout, _) = ok(&env.run(&["--json", "resolve", "j"]));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    let r = &v["versions"][0];
    assert_eq!(r["written"], true);
    assert_eq!(r["entries"][0]["commit"], cc[2].as_str());
    assert_eq!(r["entries"][0]["source"], "remote");
    assert_eq!(r["changes"][0]["kind"], "added");

    let (stdout, _) = ok(&env.run(&["show", "j"]));
    assert!(stdout.contains("locked    comfy"), "{stdout}");
    assert!(stdout.contains(&cc[2]), "{stdout}");
    assert!(stdout.contains("(current)"), "{stdout}");
    let (stdout, _) = ok(&env.run(&["--json", "show", "j"]));
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["lock"]["comfy"]["commit"], cc[2].as_str());
    assert_eq!(v["lock_current"], true);
}

#[test]
fn all_resolves_every_version() {
    let env = sandbox();
    let (core, _) = standard_repo(&env.remotes(), "core");
    write_spec(
        &env,
        "a1",
        json!({"repo": core.file_url(), "ref": "main"}),
        json!([]),
    );
    write_spec(
        &env,
        "a2",
        json!({"repo": core.file_url(), "ref": "dev"}),
        json!([]),
    );
    let (stdout, _) = ok(&env.run(&["resolve", "--all", "--jobs", "2"]));
    assert!(stdout.contains("a1:") && stdout.contains("a2:"), "{stdout}");
    assert!(env.lock_path("a1").exists() && env.lock_path("a2").exists());
}

/// Every file under `dir` (bytes, recursively, links not followed) that contains `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            out.extend(files_containing(&path, needle));
        } else if meta.is_file()
            && std::fs::read(&path)
                .is_ok_and(|b| b.windows(needle.len()).any(|w| w == needle.as_bytes()))
        {
            out.push(path);
        }
    }
    out
}

#[test]
fn no_secret_reaches_the_lock_the_cache_stdout_or_stderr() {
    let env = sandbox();
    let (_core, cc) = standard_repo(&env.remotes(), "core");
    let (_pack, pc) = standard_repo(&env.remotes(), "pack");
    let server = comfyver_testkit::http::HttpServer::start();
    let model = comfyver_testkit::http::pseudo_random(4096, 7);
    server.add_file("/m/model.bin", model.clone());
    let password = "S3cretPassw0rd";
    let token = "TokSecret987654";
    // Fetches reach the fixtures through a rewrite (and the `.git` fallback).
    let host = format!("https://bot:{password}@git.example.invalid/org/");
    let spec = json!({
        "schema_version": 2,
        "version_id": "sec",
        "comfy": {"repo": format!("{host}core"), "ref": "main"},
        "custom_nodes": [{"repo": format!("{host}pack"), "ref": "dev"}],
        "models": [{
            "source": format!("{}?download=1&token={token}", server.url("/m/model.bin")),
            "target_subdir": "checkpoints",
            "blake3": comfyver_testkit::http::blake3_hex(&model),
        }],
    });
    std::fs::write(env.versions().join("sec.json"), spec.to_string()).unwrap();
    let rewrite = format!("{host}=file://{}/", env.remotes().display());
    let mut outputs = String::new();
    for args in [
        &["resolve", "sec"][..],
        &["--json", "show", "sec"],
        &["show", "sec"],
        &["nodes", "fetch", "sec"],
        &["models", "fetch", "sec"],
        &["--json", "resolve", "sec"],
    ] {
        let out = env
            .cmd(args)
            .env("COMFYVER_URL_REWRITES", &rewrite)
            .output()
            .unwrap();
        let (stdout, stderr) = ok(&out);
        outputs.push_str(&stdout);
        outputs.push_str(&stderr);
    }
    let lock = env.lock("sec");
    assert_eq!(lock["comfy"]["commit"], cc[2].as_str());
    assert_eq!(lock["custom_nodes"][0]["commit"], pc[3].as_str());
    assert_eq!(
        lock["comfy"]["repo"],
        "https://bot:***@git.example.invalid/org/core"
    );
    assert!(
        lock["models"][0]["source"]
            .as_str()
            .unwrap()
            .ends_with("token=***"),
        "{lock}"
    );
    assert!(
        std::fs::read(env.cache().join("models/checkpoints/model.bin")).unwrap() == model,
        "the model was fetched with its token"
    );
    for secret in [password, token] {
        assert!(!outputs.contains(secret), "{secret} printed:\n{outputs}");
        let leaked = files_containing(env.cache(), secret);
        assert!(leaked.is_empty(), "{secret} stored in {leaked:?}");
    }
    assert!(outputs.contains("bot:***@"), "{outputs}");
}

/// A reader of comfyver's output that goes away must not stop the work or
/// turn into an internal error: with stderr into a pipe whose reader has
/// closed, `resolve` still writes its lock and exits 0; with stdout on a full
/// disk (`/dev/full`), it writes the lock and exits 1 saying so.
#[test]
fn lost_output_readers_do_not_stop_the_work() {
    use std::process::Stdio;
    let env = sandbox();
    let (core, _) = standard_repo(&env.remotes(), "core");
    write_spec(&env, "v1", json!({"repo": core.file_url()}), json!([]));

    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let status = env
        .cmd(&["resolve", "v1"])
        .stdout(Stdio::null())
        .stderr(writer)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "stderr without a reader");
    assert!(env.lock_path("v1").is_file());

    std::fs::remove_file(env.lock_path("v1")).unwrap();
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let out = env.cmd(&["resolve", "v1"]).stdout(full).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout on a full disk: {stderr}"
    );
    assert!(stderr.contains("could not write to stdout"), "{stderr}");
    assert!(!stderr.contains("internal error"), "{stderr}");
    assert!(env.lock_path("v1").is_file());
}

#[test]
fn a_scratch_repository_left_by_a_killed_resolve_is_removed_by_the_next() {
    let env = sandbox();
    let (_core, _) = standard_repo(&env.remotes(), "core");
    let url = format!("file://{}", env.remotes().join("core.git").display());
    write_spec(&env, "v1", json!({"repo": url}), json!([]));
    let tmp = env.root().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let scratch = || -> Vec<String> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("comfyver-ls-remote"))
            .collect()
    };
    let mut cmd = env.cmd(&["resolve", "v1"]);
    cmd.env("TMPDIR", &tmp);
    comfyver_testkit::cli::Paused::start(cmd, "ls-remote-scratch").kill();
    assert_eq!(scratch().len(), 1, "the killed run's scratch repository");

    let mut cmd = env.cmd(&["resolve", "v1"]);
    cmd.env("TMPDIR", &tmp);
    ok(&cmd.output().unwrap());
    assert_eq!(scratch(), Vec::<String>::new());
}

#[test]
fn a_git_timeout_of_zero_or_garbage_is_refused_naming_the_variable() {
    let env = sandbox();
    let (core, _) = standard_repo(&env.remotes(), "core");
    write_spec(
        &env,
        "t",
        json!({"repo": core.file_url(), "ref": "main"}),
        json!([]),
    );
    for value in ["0", "soon", "-3"] {
        let out = env
            .cmd(&["resolve", "t"])
            .env("COMFYVER_GIT_TIMEOUT", value)
            .output()
            .unwrap();
        let (_, stderr) = fails(&out);
        assert!(
            stderr.contains(&format!("COMFYVER_GIT_TIMEOUT=`{value}` is not valid")),
            "{stderr}"
        );
        assert!(
            stderr.contains("positive whole number of seconds"),
            "{stderr}"
        );
        assert!(!env.lock_path("t").exists(), "nothing was resolved");
    }
    let out = env
        .cmd(&["resolve", "t"])
        .env("COMFYVER_GIT_TIMEOUT", " 30 ")
        .output()
        .unwrap();
    ok(&out);
}
