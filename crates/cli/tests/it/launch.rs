//! `comfyver launch`: the version's ComfyUI in the foreground with its web
//! UI at the printed URL, its user folder in the home, and nothing left
//! running after Ctrl-C (SIGINT).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use comfyver_testkit::world::World;
use serde_json::Value;

/// A GET on `url` (`http://host:port/path`): the status line and the body.
fn get(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (host, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The first line comfyver prints on stdout, within `limit`.
fn first_line(child: &mut Child, limit: Duration) -> String {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    match rx.recv_timeout(limit) {
        Ok(line) if !line.is_empty() => line.trim().to_string(),
        _ => {
            let _ = child.kill();
            panic!("launch printed no URL within {limit:?}");
        }
    }
}

/// Processes running the stand-in's `main.py` out of `dir`.
fn comfy_processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(&needle) && cmd.contains("main.py") {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn launch_serves_the_web_ui_and_stops_on_sigint_with_no_child_left() {
    let w = World::new(&["hello_pack"]);
    let mut cmd = comfyver_testkit::cli::comfyver_command(
        Path::new(env!("CARGO_BIN_EXE_comfyver")),
        &w.root.join("cache"),
        &w.root.join("versions"),
    );
    cmd.args(["launch", "v1", "--cpu"])
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    // Read all along, so a full pipe never blocks comfyver.
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    // Realizing comes first (cold: uv installs from the local wheels).
    let url = first_line(&mut child, Duration::from_secs(300));
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let (status, body) = get(&url);
    assert!(status.contains(" 200"), "{status}");
    assert!(body.contains("<title>ComfyUI</title>"), "{body}");

    // ComfyUI keeps its user data (saved workflows) in the home, not per run.
    let (_, stats) = get(&format!("{url}system_stats"));
    let stats: Value = serde_json::from_str(&stats).unwrap();
    let argv: Vec<&str> = stats["system"]["argv"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let user = w.home("v1").join(".comfyver/run/user");
    let at = argv.iter().position(|a| *a == "--user-directory").unwrap();
    assert_eq!(Path::new(argv[at + 1]), user, "{argv:?}");
    assert!(
        !argv.contains(&"--disable-metadata"),
        "the web UI saves workflows into images: {argv:?}"
    );
    let saved = user.join("default/workflows/mine.json");
    std::fs::create_dir_all(saved.parent().unwrap()).unwrap();
    std::fs::write(&saved, "{}").unwrap();
    assert!(!comfy_processes_under(&w.root).is_empty());

    // Ctrl-C: SIGINT to comfyver alone (ComfyUI runs in its own process group).
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let t0 = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "launch did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = stderr_reader.join().unwrap();
    assert!(status.success(), "{status}:\n{stderr}");
    assert!(stderr.contains("ComfyUI stopped"), "{stderr}");
    assert_eq!(comfy_processes_under(&w.root), Vec::<String>::new());
    assert!(TcpStream::connect(url.trim_start_matches("http://").trim_end_matches('/')).is_err());
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), "{}");
}

/// The `tEXt` chunks of a PNG, by keyword.
fn png_texts(bytes: &[u8]) -> std::collections::BTreeMap<String, String> {
    let reader = png::Decoder::new(std::io::Cursor::new(bytes))
        .read_info()
        .unwrap();
    reader
        .info()
        .uncompressed_latin1_text
        .iter()
        .map(|t| (t.keyword.clone(), t.text.clone()))
        .collect()
}

/// The PNG of a `run` result's first image.
fn first_png(out: &std::process::Output) -> Vec<u8> {
    use base64::Engine;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "run failed:\n{stderr}");
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(result["images"][0]["data"].as_str().unwrap())
        .unwrap()
}

#[test]
fn keep_metadata_writes_the_jobs_ui_workflow_into_the_png() {
    let w = World::new(&[]);
    let ui = serde_json::json!({"last_node_id": 2, "nodes": [{"id": 1, "type": "EmptyImage"}], "links": []});
    let job = serde_json::json!({"input": {
        "workflow": comfyver_testkit::world::smoke_workflow(false),
        "ui_workflow": ui,
    }});
    let input = w.root.join("job.json");
    std::fs::write(&input, job.to_string()).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_comfyver"));
    let args = ["run", "v1", "--cpu", "--input", input.to_str().unwrap()];

    // By default outputs carry no metadata.
    let plain = first_png(&w.comfyver(bin, &args, None));
    assert_eq!(png_texts(&plain), Default::default());

    let mut kept_args = args.to_vec();
    kept_args.push("--keep-metadata");
    let kept = png_texts(&first_png(&w.comfyver(bin, &kept_args, None)));
    let workflow: Value = serde_json::from_str(&kept["workflow"]).unwrap();
    assert_eq!(workflow, ui);
    let prompt: Value = serde_json::from_str(&kept["prompt"]).unwrap();
    assert!(prompt.get("1").is_some(), "the API prompt too: {prompt}");

    // The variable does the same.
    let by_env = w.comfyver_env(bin, &args, None, &[("COMFYVER_KEEP_METADATA", "1")]);
    assert!(png_texts(&first_png(&by_env)).contains_key("workflow"));
}
