//! Benchmark helper (used by `bench/models.sh`): serves one file at
//! `/model.bin` with testkit's HTTP server on loopback, optionally with a
//! rate limit per connection (as CDNs do) or for all connections together
//! (a link-limited network), and prints its URL. Runs until killed.
//!
//! `http_serve <file> [--per-connection BYTES_PER_SEC] [--total BYTES_PER_SEC] [--stats FILE]`
//!
//! With `--stats FILE`, the body bytes sent by finished requests are written
//! to FILE every 50 ms (for the resume check: bytes sent again after a kill).

use comfyver_testkit::http::{Fault, HttpServer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(file) = args.first() else {
        return Err("usage: http_serve <file> [--per-connection B/s] [--total B/s]".into());
    };
    let server = HttpServer::start();
    server.add_file("/model.bin", std::fs::read(file)?);
    let mut rest = args[1..].iter();
    let mut stats = None;
    while let Some(flag) = rest.next() {
        let value = rest.next().ok_or("a value is missing")?;
        if flag == "--stats" {
            stats = Some(std::path::PathBuf::from(value));
            continue;
        }
        let value: u64 = value.parse()?;
        match flag.as_str() {
            "--per-connection" => server.fault(
                "/model.bin",
                Fault::Throttle {
                    bytes_per_sec: value,
                },
            ),
            "--total" => server.limit_rate(Some(value)),
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    println!("{}", server.url("/model.bin"));
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
