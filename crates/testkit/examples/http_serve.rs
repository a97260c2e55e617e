//! Benchmark helper (used by `bench/models.sh` and `bench/realize-cold.sh`):
//! serves one file at `/model.bin`, or every file of a directory, with
//! testkit's HTTP server on loopback, optionally with a rate limit per
//! connection (as CDNs do) or for all connections together (a link-limited
//! network), and prints its URL. Runs until killed.
//!
//! `http_serve <file> [--per-connection BYTES_PER_SEC] [--total BYTES_PER_SEC] [--stats FILE]`
//! `http_serve --dir DIR [--per-connection BYTES_PER_SEC] [--total BYTES_PER_SEC]`
//!
//! With `--dir`, each file `DIR/a/b` is served at `/a/b`, and a directory's
//! `index.html` also at `/a/` (a PEP 503 simple index written as static
//! files works as is); the printed URL is the server's base URL.
//!
//! With `--stats FILE`, the body bytes sent by finished requests are written
//! to FILE every 50 ms (for the resume check: bytes sent again after a kill).

use std::path::Path;

use comfyver_testkit::http::{Fault, HttpServer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(first) = args.first() else {
        return Err(
            "usage: http_serve <file>|--dir DIR [--per-connection B/s] [--total B/s]".into(),
        );
    };
    let server = HttpServer::start();
    let (paths, mut rest) = if first == "--dir" {
        let dir = args.get(1).ok_or("--dir needs a directory")?;
        let mut paths = Vec::new();
        add_dir(&server, Path::new(dir), "", &mut paths)?;
        (paths, args[2..].iter())
    } else {
        server.add_file("/model.bin", std::fs::read(first)?);
        (vec!["/model.bin".to_string()], args[1..].iter())
    };
    let mut stats = None;
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or("a value is missing")?;
        if flag == "--stats" {
            stats = Some(std::path::PathBuf::from(value));
            continue;
        }
        let value: u64 = value.parse()?;
        match flag.as_str() {
            "--per-connection" => {
                for path in &paths {
                    server.fault(
                        path,
                        Fault::Throttle {
                            bytes_per_sec: value,
                        },
                    );
                }
            }
            "--total" => server.limit_rate(Some(value)),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    if first == "--dir" {
        println!("{}", server.base_url());
    } else {
        println!("{}", server.url("/model.bin"));
    }
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
        if let Some(f) = &stats {
            let tmp = f.with_extension("tmp");
            std::fs::write(
                &tmp,
                format!("{}\n", server.bytes_sent_finished("/model.bin")),
            )?;
            std::fs::rename(&tmp, f)?;
        }
    }
}

/// Adds every file under `dir` at `<prefix>/<name>`, and `index.html` also
/// at `<prefix>/`; records each path served.
fn add_dir(
    server: &HttpServer,
    dir: &Path,
    prefix: &str,
    paths: &mut Vec<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = format!("{prefix}/{name}");
        if entry.file_type()?.is_dir() {
            add_dir(server, &entry.path(), &path, paths)?;
            continue;
        }
        let bytes = std::fs::read(entry.path())?;
        if name == "index.html" {
            server.add_file(&format!("{prefix}/"), bytes.clone());
            paths.push(format!("{prefix}/"));
        }
        server.add_file(&path, bytes);
        paths.push(path);
    }
    Ok(())
}
