//! A small real HTTP/1.1 file server on loopback with Range support, byte
//! counting and fault injection, for download tests.
//!
//! It is hand-rolled on [`std::net::TcpListener`] because several faults
//! (a dropped connection mid-body, a lying `Content-Length`) need raw control
//! of the socket. One thread per connection, one request per connection
//! (`Connection: close`).
//!
//! ```no_run
//! use comfyver_testkit::http::{Fault, HttpServer};
//! let server = HttpServer::start();
//! server.add_file("/m.bin", vec![7u8; 1000]);
//! server.fault("/m.bin", Fault::DropAfter { bytes: 300, times: 1 });
//! let url = server.url("/m.bin");
//! // ... download url ...
//! assert_eq!(server.bytes_sent("/m.bin"), 1000);
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The `Last-Modified` value of every served file.
pub const LAST_MODIFIED: &str = "Wed, 01 Jan 2025 00:00:00 GMT";

/// A fault injected on one path. Several faults on one path combine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection after sending `bytes` body bytes, for the next `times` requests.
    DropAfter {
        /// Body bytes sent before the connection is cut.
        bytes: u64,
        /// How many requests get cut.
        times: u32,
    },
    /// Answer `500` to the next `times` requests, then serve normally.
    ServerError {
        /// How many requests fail.
        times: u32,
    },
    /// Always answer with this status and a short text body (e.g. 404, 403).
    Status(u16),
    /// Answer `401` unless the request carries `Authorization: Bearer <token>`.
    RequireBearer(String),
    /// Claim this `Content-Length` while sending the real body, then close.
    WrongContentLength(u64),
    /// Ignore `Range` and `If-Range`: always `200` with the whole file.
    IgnoreRange,
    /// Send the body in chunks of `chunk` bytes with `delay` after each.
    Slow {
        /// Chunk size in bytes.
        chunk: usize,
        /// Pause after each chunk.
        delay: Duration,
    },
    /// Answer `302` with `Location` set to this path or absolute URL.
    Redirect(String),
    /// Send the file's bytes over and over without a `Content-Length`
    /// (a close-delimited body that never ends) until the client hangs up.
    Endless,
    /// Limit each connection to this many body bytes per second, as CDNs do
    /// (see [`HttpServer::limit_rate`] for a limit shared by all connections).
    Throttle {
        /// Bytes per second per connection.
        bytes_per_sec: u64,
    },
}

/// What the server saw and did for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLog {
    /// `GET` or `HEAD`.
    pub method: String,
    /// The request path (without query).
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// The `If-Range` header, if any.
    pub if_range: Option<String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `Accept-Encoding` header, if any.
    pub accept_encoding: Option<String>,
    /// The status sent.
    pub status: u16,
    /// Body bytes actually written to the socket.
    pub bytes_sent: u64,
    /// Whether the whole body promised was sent.
    pub complete: bool,
}

#[derive(Default)]
struct State {
    files: HashMap<String, Arc<Vec<u8>>>,
    faults: HashMap<String, Vec<Fault>>,
    log: Vec<RequestLog>,
    /// Connections accepted whose handler has not finished (and logged) yet.
    in_flight: usize,
}

/// Paces writes to a rate: each write reserves its bytes' time slot after
/// the previous one (a leaky bucket), shared by whoever holds the pacer.
#[derive(Debug)]
struct Pacer {
    bytes_per_sec: u64,
    next_free: std::time::Instant,
}

impl Pacer {
    fn new(bytes_per_sec: u64) -> Pacer {
        Pacer {
            bytes_per_sec: bytes_per_sec.max(1),
            next_free: std::time::Instant::now(),
        }
    }

    /// Reserves `n` bytes; returns when they may be sent.
    fn reserve(&mut self, n: u64) -> std::time::Instant {
        let now = std::time::Instant::now();
        // Unused time does not accumulate into a burst of more than 50 ms.
        let start = self
            .next_free
            .max(now.checked_sub(Duration::from_millis(50)).unwrap_or(now));
        self.next_free = start + Duration::from_secs_f64(n as f64 / self.bytes_per_sec as f64);
        start
    }
}

fn wait_until(t: std::time::Instant) {
    let now = std::time::Instant::now();
    if t > now {
        std::thread::sleep(t - now);
    }
}

/// A running server; stopped when dropped.
pub struct HttpServer {
    addr: std::net::SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    total_rate: Arc<Mutex<Option<Pacer>>>,
}

impl HttpServer {
    /// Starts a server on a free loopback port.
    pub fn start() -> HttpServer {
        HttpServer::start_on(std::net::IpAddr::from([127, 0, 0, 1]))
    }

    /// Starts a server on a free port of `ip` (e.g. a non-loopback address
    /// of this machine, for tests of what is only allowed on loopback).
    pub fn start_on(ip: std::net::IpAddr) -> HttpServer {
        let listener = TcpListener::bind((ip, 0)).expect("bind a port");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let total_rate: Arc<Mutex<Option<Pacer>>> = Arc::new(Mutex::new(None));
        let (st, sp, tr) = (state.clone(), stop.clone(), total_rate.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let (st, tr) = (st.clone(), tr.clone());
                st.lock().unwrap_or_else(|e| e.into_inner()).in_flight += 1;
                std::thread::spawn(move || {
                    handle(conn, &st, &tr);
                    st.lock().unwrap_or_else(|e| e.into_inner()).in_flight -= 1;
                });
            }
        });
        HttpServer {
            addr,
            state,
            stop,
            total_rate,
        }
    }

    /// Limits all connections together to `bytes_per_sec` body bytes per
    /// second (a link-limited server); `None` removes the limit.
    pub fn limit_rate(&self, bytes_per_sec: Option<u64>) {
        *self.total_rate.lock().unwrap_or_else(|e| e.into_inner()) = bytes_per_sec.map(Pacer::new);
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url())
    }

    /// Serves `bytes` at `path` (replacing any earlier content, which changes the ETag).
    pub fn add_file(&self, path: &str, bytes: Vec<u8>) {
        self.lock().files.insert(path.to_string(), Arc::new(bytes));
    }

    /// Adds a fault on `path` (combined with earlier ones).
    pub fn fault(&self, path: &str, fault: Fault) {
        self.lock()
            .faults
            .entry(path.to_string())
            .or_default()
            .push(fault);
    }

    /// Removes every fault on `path`.
    pub fn clear_faults(&self, path: &str) {
        self.lock().faults.remove(path);
    }

    /// Every request seen so far, in order of completion. Waits (up to 10 s)
    /// for requests still being handled, so a client that has read its whole
    /// response always finds it logged.
    pub fn requests(&self) -> Vec<RequestLog> {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let st = self.lock();
            if st.in_flight == 0 || std::time::Instant::now() >= deadline {
                return st.log.clone();
            }
            drop(st);
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// The requests for `path`.
    pub fn requests_for(&self, path: &str) -> Vec<RequestLog> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// Body bytes sent for `path`, over all requests.
    pub fn bytes_sent(&self, path: &str) -> u64 {
        self.requests_for(path).iter().map(|r| r.bytes_sent).sum()
    }

    /// Body bytes sent for `path` by the requests finished so far (does not
    /// wait for requests in flight, unlike [`HttpServer::bytes_sent`]).
    pub fn bytes_sent_finished(&self, path: &str) -> u64 {
        self.lock()
            .log
            .iter()
            .filter(|r| r.path == path)
            .map(|r| r.bytes_sent)
            .sum()
    }

    /// How many `GET`s of `path` were answered with the whole file from byte 0 (status 200).
    pub fn full_gets(&self, path: &str) -> usize {
        self.requests_for(path)
            .iter()
            .filter(|r| r.method == "GET" && r.status == 200)
            .count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// A non-loopback IPv4 address of this machine (the one its default route
/// uses; found without sending a packet), for tests of what only loopback
/// may do. `None` when the machine has no such address.
pub fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    let ip = s.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

/// Deterministic pseudo-random bytes (xorshift), for test files that must
/// not compress or repeat.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Lowercase hex BLAKE3 of `bytes`.
pub fn blake3_hex(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The ETag of a body: a strong validator derived from its content.
pub fn etag_of(bytes: &[u8]) -> String {
    // FNV-1a: enough to tell test contents apart, no dependency.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes.iter().step_by(1.max(bytes.len() / 4096)) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("\"{h:016x}-{}\"", bytes.len())
}

struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    }
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(conn.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?;
    let path = target.split('?').next().unwrap_or("/").to_string();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            break;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(Request {
        method,
        path,
        headers,
    })
}

fn handle(mut conn: TcpStream, state: &Mutex<State>, total_rate: &Mutex<Option<Pacer>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let Some(req) = read_request(&conn) else {
        return;
    };
    let (file, faults) = {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        let file = st.files.get(&req.path).cloned();
        let faults = st.faults.get(&req.path).cloned().unwrap_or_default();
        // Consume counted faults now so concurrent requests see the updated count.
        if let Some(list) = st.faults.get_mut(&req.path) {
            let mut consumed_error = false;
            for f in list.iter_mut() {
                if let Fault::ServerError { times } = f
                    && *times > 0
                    && !consumed_error
                {
                    *times -= 1;
                    consumed_error = true;
                }
            }
        }
        (file, faults)
    };
    let mut log = RequestLog {
        method: req.method.clone(),
        path: req.path.clone(),
        range: req.header("Range"),
        if_range: req.header("If-Range"),
        authorization: req.header("Authorization"),
        accept_encoding: req.header("Accept-Encoding"),
        status: 0,
        bytes_sent: 0,
        complete: false,
    };
    respond(&mut conn, &req, file, &faults, state, total_rate, &mut log);
    let _ = conn.flush();
    let _ = conn.shutdown(Shutdown::Both);
    state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .log
        .push(log);
}

fn simple(conn: &mut TcpStream, status: u16, extra: &str, body: &str, log: &mut RequestLog) {
    log.status = status;
    let _ = write!(
        conn,
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\nConnection: close\r\n{extra}\r\n{body}",
        reason(status),
        body.len()
    );
    log.bytes_sent = body.len() as u64;
    log.complete = true;
}

fn respond(
    conn: &mut TcpStream,
    req: &Request,
    file: Option<Arc<Vec<u8>>>,
    faults: &[Fault],
    state: &Mutex<State>,
    total_rate: &Mutex<Option<Pacer>>,
    log: &mut RequestLog,
) {
    let mut drop_after = None;
    let mut endless = false;
    let mut per_conn = None;
    let mut ignore_range = false;
    let mut slow = None;
    let mut claimed_len = None;
    for f in faults {
        match f {
            Fault::ServerError { times } if *times > 0 => {
                return simple(conn, 500, "", "injected failure", log);
            }
            Fault::Status(code) => return simple(conn, *code, "", "injected status", log),
            Fault::RequireBearer(token)
                if req.header("Authorization").as_deref() != Some(&format!("Bearer {token}")) =>
            {
                return simple(conn, 401, "", "missing or wrong token", log);
            }
            Fault::Redirect(to) => {
                return simple(conn, 302, &format!("Location: {to}\r\n"), "", log);
            }
            Fault::DropAfter { bytes, times } if *times > 0 => drop_after = Some(*bytes),
            Fault::IgnoreRange => ignore_range = true,
            Fault::Slow { chunk, delay } => slow = Some((*chunk, *delay)),
            Fault::WrongContentLength(n) => claimed_len = Some(*n),
            Fault::Endless => endless = true,
            Fault::Throttle { bytes_per_sec } => per_conn = Some(Pacer::new(*bytes_per_sec)),
            _ => {}
        }
    }
    let Some(file) = file else {
        return simple(conn, 404, "", "not found", log);
    };
    if endless {
        return send_endless(conn, &file, log);
    }
    if drop_after.is_some() {
        // Count this use of the DropAfter fault.
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(list) = st.faults.get_mut(&req.path) {
            for f in list.iter_mut() {
                if let Fault::DropAfter { times, .. } = f
                    && *times > 0
                {
                    *times -= 1;
                    break;
                }
            }
        }
    }
    let len = file.len() as u64;
    let etag = etag_of(&file);
    let mut start = 0u64;
    let mut end = len; // exclusive
    let mut partial = false;
    if let Some(range) = req.header("Range").filter(|_| !ignore_range) {
        let validator_ok = match req.header("If-Range") {
            None => true,
            Some(v) => v == etag || v == LAST_MODIFIED,
        };
        if validator_ok && let Some((a, b)) = parse_range(&range) {
            if a >= len {
                return simple(
                    conn,
                    416,
                    &format!("Content-Range: bytes */{len}\r\n"),
                    "",
                    log,
                );
            }
            start = a;
            end = b.map(|b| (b + 1).min(len)).unwrap_or(len);
            partial = true;
        }
    }
    let status = if partial { 206 } else { 200 };
    log.status = status;
    let body_len = end - start;
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Length: {}\r\nETag: {etag}\r\nLast-Modified: {LAST_MODIFIED}\r\nAccept-Ranges: bytes\r\nContent-Type: {}\r\nConnection: close\r\n",
        reason(status),
        claimed_len.unwrap_or(body_len),
        content_type(&req.path)
    );
    if partial {
        head.push_str(&format!(
            "Content-Range: bytes {start}-{}/{len}\r\n",
            end - 1
        ));
    }
    head.push_str("\r\n");
    if conn.write_all(head.as_bytes()).is_err() || req.method == "HEAD" {
        log.complete = req.method == "HEAD";
        return;
    }
    let limit = drop_after.map(|d| d.min(body_len)).unwrap_or(body_len);
    let (chunk, delay) = slow.unwrap_or((64 * 1024, Duration::ZERO));
    let mut pos = start;
    while pos < start + limit {
        let n = (chunk as u64).min(start + limit - pos) as usize;
        let slice = &file[pos as usize..pos as usize + n];
        if let Some(p) = &mut per_conn {
            wait_until(p.reserve(n as u64));
        }
        let shared = total_rate
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
            .map(|p| p.reserve(n as u64));
        if let Some(t) = shared {
            wait_until(t);
        }
        if conn.write_all(slice).is_err() {
            return;
        }
        pos += n as u64;
        log.bytes_sent += n as u64;
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
    }
    log.complete = drop_after.is_none() && claimed_len.is_none_or(|c| c == body_len);
}

/// A `200` without `Content-Length`, repeating `file` until the client hangs up.
fn send_endless(conn: &mut TcpStream, file: &[u8], log: &mut RequestLog) {
    log.status = 200;
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nConnection: close\r\n\r\n";
    if conn.write_all(head.as_bytes()).is_err() || file.is_empty() {
        return;
    }
    let _ = conn.set_write_timeout(Some(Duration::from_secs(10)));
    while conn.write_all(file).is_ok() {
        log.bytes_sent += file.len() as u64;
    }
}

/// `text/html` for pages (a path ending in `/` or `.html`, as a package
/// index serves them), else `application/octet-stream`.
fn content_type(path: &str) -> &'static str {
    if path.ends_with('/') || path.ends_with(".html") {
        "text/html"
    } else {
        "application/octet-stream"
    }
}

/// `bytes=a-` or `bytes=a-b`.
fn parse_range(v: &str) -> Option<(u64, Option<u64>)> {
    let spec = v.trim().strip_prefix("bytes=")?;
    let (a, b) = spec.split_once('-')?;
    let a = a.trim().parse().ok()?;
    let b = b.trim();
    let b = if b.is_empty() {
        None
    } else {
        Some(b.parse().ok()?)
    };
    Some((a, b))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(server: &HttpServer, path: &str, extra: &str) -> String {
        let mut c = TcpStream::connect(server.addr).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").unwrap();
        let mut s = String::new();
        c.read_to_string(&mut s).unwrap();
        s
    }

    #[test]
    fn serves_ranges_and_counts_bytes() {
        let server = HttpServer::start();
        server.add_file("/a", b"0123456789".to_vec());
        let full = get(&server, "/a", "");
        assert!(full.starts_with("HTTP/1.1 200"), "{full}");
        assert!(full.ends_with("0123456789"));
        let part = get(&server, "/a", "Range: bytes=4-\r\n");
        assert!(part.contains("Content-Range: bytes 4-9/10"), "{part}");
        assert!(part.ends_with("456789"));
        let stale = get(&server, "/a", "Range: bytes=4-\r\nIf-Range: \"old\"\r\n");
        assert!(stale.starts_with("HTTP/1.1 200"), "{stale}");
        assert_eq!(server.bytes_sent("/a"), 10 + 6 + 10);
        server.fault("/a", Fault::DropAfter { bytes: 3, times: 1 });
        assert!(get(&server, "/a", "").ends_with("\r\n\r\n012"));
        assert!(get(&server, "/a", "").ends_with("0123456789"));
        assert!(get(&server, "/missing", "").starts_with("HTTP/1.1 404"));
    }

    #[test]
    fn pages_are_html_and_files_octet_streams() {
        let server = HttpServer::start();
        server.add_file("/simple/pkg/", b"<a href=x>x</a>".to_vec());
        server.add_file("/files/pkg.whl", b"PK".to_vec());
        let page = get(&server, "/simple/pkg/", "");
        assert!(page.contains("Content-Type: text/html\r\n"), "{page}");
        let file = get(&server, "/files/pkg.whl", "");
        assert!(
            file.contains("Content-Type: application/octet-stream\r\n"),
            "{file}"
        );
    }

    #[test]
    fn throttles_per_connection_and_in_total_and_streams_without_end() {
        let server = HttpServer::start();
        server.add_file("/t", vec![1u8; 200_000]);
        server.fault(
            "/t",
            Fault::Throttle {
                bytes_per_sec: 1_000_000,
            },
        );
        let t = std::time::Instant::now();
        assert!(get(&server, "/t", "").ends_with(&"\u{1}".repeat(1000)));
        // 200 kB at 1 MB/s cannot arrive in much less than 0.2 s.
        assert!(
            t.elapsed() >= Duration::from_millis(140),
            "{:?}",
            t.elapsed()
        );
        server.clear_faults("/t");
        server.limit_rate(Some(2_000_000));
        let t = std::time::Instant::now();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| get(&server, "/t", ""));
            }
        });
        // 400 kB shared at 2 MB/s: at least about 0.2 s.
        assert!(
            t.elapsed() >= Duration::from_millis(140),
            "{:?}",
            t.elapsed()
        );
        server.limit_rate(None);
        server.fault("/t", Fault::Endless);
        let mut c = TcpStream::connect(server.addr).unwrap();
        write!(c, "GET /t HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = vec![0u8; 1_000_000];
        c.read_exact(&mut buf).unwrap();
        drop(c);
        // The log is in the order requests ended, which on a loaded machine
        // need not be the order they were made: take the endless one's entry.
        let log = server.requests_for("/t");
        let most = log.iter().map(|r| r.bytes_sent).max().unwrap();
        assert!(most >= 1_000_000 - 200_000, "{log:?}");
    }
}
