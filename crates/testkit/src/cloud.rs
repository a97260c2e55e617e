//! Cloud storage emulators and a fault proxy, for the output sink tests.
//!
//! - [`GcsEmulator`]: `gcp-storage-emulator` (PyPI), in memory, on a free
//!   loopback port, with one bucket.
//! - [`MotoS3`]: `moto_server` (PyPI `moto[server]`), on a free loopback port.
//! - [`FaultProxy`]: an HTTP/1.1 proxy in front of either that answers the
//!   next requests with a status or drops their connection, and logs every
//!   request head it saw.
//! - [`service_account_key`]: a throwaway service-account key file made with
//!   `openssl` at test time (never a real key).
//!
//! Both emulators are required: a missing one is a test failure that says
//! how to install it (`scripts/install-test-deps.sh`), never a silent skip.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::comfy::free_port;

fn spawn(program: &str, args: &[&str], log: &Path, package: &str) -> Child {
    let out = std::fs::File::create(log).expect("emulator log");
    let err = out.try_clone().expect("emulator log");
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "could not start `{program}` ({e}): install it with `pip install {package}` \
                 (scripts/install-test-deps.sh does)"
            )
        })
}

fn wait_ready(child: &mut Child, port: u16, path: &str, log: &Path, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok((status, _)) = get(&format!("http://127.0.0.1:{port}{path}"))
            && status < 500
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not start in 60 s");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `gcp-storage-emulator`, in memory, killed on drop.
#[derive(Debug)]
pub struct GcsEmulator {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl GcsEmulator {
    /// Starts it with `bucket` created, and waits until it answers.
    pub fn start(bucket: &str) -> GcsEmulator {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("gcs.log");
        let port = free_port();
        let mut child = spawn(
            "gcp-storage-emulator",
            &[
                "start",
                "--host=127.0.0.1",
                &format!("--port={port}"),
                "--in-memory",
                &format!("--default-bucket={bucket}"),
            ],
            &log,
            "gcp-storage-emulator",
        );
        wait_ready(&mut child, port, "/", &log, "gcp-storage-emulator");
        GcsEmulator {
            child,
            port,
            _dir: dir,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An object's metadata JSON, if it exists.
    pub fn metadata(&self, bucket: &str, name: &str) -> Option<serde_json::Value> {
        let (status, body) = get(&format!(
            "{}/storage/v1/b/{bucket}/o/{}",
            self.base(),
            escape(name)
        ))
        .expect("emulator answers");
        (status == 200).then(|| serde_json::from_slice(&body).expect("metadata JSON"))
    }

    /// An object's bytes, if it exists.
    pub fn object(&self, bucket: &str, name: &str) -> Option<Vec<u8>> {
        let (status, body) = get(&format!(
            "{}/storage/v1/b/{bucket}/o/{}?alt=media",
            self.base(),
            escape(name)
        ))
        .expect("emulator answers");
        (status == 200).then_some(body)
    }
}

impl Drop for GcsEmulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server` (S3 and friends), killed on drop.
#[derive(Debug)]
pub struct MotoS3 {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl MotoS3 {
    /// Starts it and creates `bucket` (moto accepts unsigned requests by default).
    pub fn start(bucket: &str) -> MotoS3 {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("moto.log");
        let port = free_port();
        let mut child = spawn(
            "moto_server",
            &["-H", "127.0.0.1", "-p", &port.to_string()],
            &log,
            "'moto[server]'",
        );
        wait_ready(&mut child, port, "/", &log, "moto_server");
        let (status, body) = request(
            port,
            &format!("PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
        .expect("moto answers");
        assert_eq!(
            status,
            200,
            "create bucket: {}",
            String::from_utf8_lossy(&body)
        );
        MotoS3 {
            child,
            port,
            _dir: dir,
        }
    }

    /// Starts it with request authentication on (signatures and access keys
    /// are checked), creates an IAM user allowed `s3:*` and `bucket`, and
    /// returns the user's access key id and secret. Setup goes through boto3
    /// (installed with moto).
    pub fn start_with_auth(bucket: &str) -> (MotoS3, String, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("moto.log");
        let port = free_port();
        let out = std::fs::File::create(&log).expect("emulator log");
        let err = out.try_clone().expect("emulator log");
        let mut child = Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start `moto_server` ({e}): install it with `pip install 'moto[server]'` (scripts/install-test-deps.sh does)")
            });
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("moto_server exited ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start in 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let setup = format!(
            r#"
import boto3, json
ep = "http://127.0.0.1:{port}"
iam = boto3.client("iam", endpoint_url=ep, aws_access_key_id="setup", aws_secret_access_key="setup", region_name="us-east-1")
iam.create_user(UserName="sinks")
iam.put_user_policy(UserName="sinks", PolicyName="all", PolicyDocument=json.dumps({{"Version": "2012-10-17", "Statement": [{{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}}]}}))
k = iam.create_access_key(UserName="sinks")["AccessKey"]
boto3.client("s3", endpoint_url=ep, aws_access_key_id=k["AccessKeyId"], aws_secret_access_key=k["SecretAccessKey"], region_name="us-east-1").create_bucket(Bucket="{bucket}")
print(k["AccessKeyId"], k["SecretAccessKey"])
"#
        );
        let out = Command::new("python3")
            .args(["-c", &setup])
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "moto setup failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let mut words = text.split_whitespace();
        let (ak, sk) = (
            words.next().unwrap().to_string(),
            words.next().unwrap().to_string(),
        );
        (
            MotoS3 {
                child,
                port,
                _dir: dir,
            },
            ak,
            sk,
        )
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// An object's bytes and content type, if it exists (unauthenticated mode only).
    /// (Unauthenticated mode: moto refuses anonymous object reads but checks no signature.)
    pub fn object(&self, bucket: &str, key: &str) -> Option<(Vec<u8>, String)> {
        let path = key.split('/').map(escape).collect::<Vec<_>>().join("/");
        let port = self.port;
        let (status, raw) = request(
            port,
            &format!(
                "GET /{bucket}/{path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
                 Authorization: AWS4-HMAC-SHA256 Credential=TEST/20260101/us-east-1/s3/aws4_request, \
                 SignedHeaders=host, Signature=00\r\nConnection: close\r\n\r\n"
            ),
        )
        .expect("moto answers");
        let (head, body) = split_answer(&raw).expect("an HTTP answer");
        let ct = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-type")
                    .then(|| v.trim().to_string())
            })
            .unwrap_or_default();
        (status == 200).then_some((body, ct))
    }
}

impl Drop for MotoS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyFault {
    /// Answer with this status (and a small JSON/XML-free body) instead of forwarding.
    Status(u16),
    /// Close the connection right after reading the request head.
    Drop,
    /// Forward normally (to place faults later in the queue).
    Pass,
}

/// An HTTP/1.1 proxy on loopback in front of `127.0.0.1:<upstream>`. Each
/// request is forwarded on its own upstream connection unless a queued fault
/// takes it. Bodies are buffered: meant for small test objects.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    faults: Arc<Mutex<VecDeque<ProxyFault>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    /// Starts it.
    pub fn start(upstream: u16) -> FaultProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
        let port = listener.local_addr().expect("proxy addr").port();
        let faults = Arc::new(Mutex::new(VecDeque::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (f, h) = (faults.clone(), heads.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (f, h) = (f.clone(), h.clone());
                std::thread::spawn(move || serve(conn, upstream, &f, &h));
            }
        });
        FaultProxy {
            port,
            faults,
            heads,
        }
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Applies `fault` to the next `times` requests (after those already queued).
    pub fn push(&self, fault: ProxyFault, times: usize) {
        let mut q = self.faults.lock().unwrap();
        q.extend(std::iter::repeat_n(fault, times));
    }

    /// Every request head seen so far (request line and headers).
    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }

    /// Faults not yet used.
    pub fn pending(&self) -> usize {
        self.faults.lock().unwrap().len()
    }
}

fn serve(
    conn: TcpStream,
    upstream: u16,
    faults: &Mutex<VecDeque<ProxyFault>>,
    heads: &Mutex<Vec<String>>,
) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(conn.try_clone().expect("clone socket"));
    let mut conn = conn;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let end = line == "\r\n";
            head.push_str(&line);
            if end {
                break;
            }
        }
        heads.lock().unwrap().push(head.clone());
        let fault = faults.lock().unwrap().pop_front();
        if fault == Some(ProxyFault::Drop) {
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
        let len: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Some(ProxyFault::Status(code)) = fault {
            let text =
                format!("{{\"error\": {{\"code\": {code}, \"message\": \"injected {code}\"}}}}");
            let _ = write!(
                conn,
                "HTTP/1.1 {code} Injected\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            );
            continue;
        }
        let mut forwarded = String::new();
        for line in head.split("\r\n").filter(|l| !l.is_empty()) {
            if !line.to_ascii_lowercase().starts_with("connection:") {
                forwarded.push_str(line);
                forwarded.push_str("\r\n");
            }
        }
        if !head.to_ascii_lowercase().contains("\ncontent-length:") {
            // Without a length, a server may read the body until the connection closes.
            forwarded.push_str("Content-Length: 0\r\n");
        }
        forwarded.push_str("Connection: close\r\n\r\n");
        let Ok(mut up) = TcpStream::connect(("127.0.0.1", upstream)) else {
            return;
        };
        if up.write_all(forwarded.as_bytes()).is_err() || up.write_all(&body).is_err() {
            return;
        }
        let mut answer = Vec::new();
        if up.read_to_end(&mut answer).is_err() || conn.write_all(&answer).is_err() {
            return;
        }
        // The upstream answer may lack a length (it closed instead): then we close too.
        let answer_head =
            String::from_utf8_lossy(&answer[..answer.len().min(4096)]).to_ascii_lowercase();
        if !answer_head.contains("content-length:") {
            let _ = conn.shutdown(Shutdown::Both);
            return;
        }
    }
}

/// A throwaway service-account key file (RSA 2048, PKCS#8) in `dir`, with
/// `token_uri` set as given. Returns its path and the private key's PEM.
pub fn service_account_key(dir: &Path, email: &str, token_uri: &str) -> (PathBuf, String) {
    let pem_path = dir.join("sa-key.pem");
    let st = Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pem_path)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(st.success(), "openssl genpkey failed");
    let pem = std::fs::read_to_string(&pem_path).expect("key pem");
    let key = serde_json::json!({
        "type": "service_account", "project_id": "comfyver-test",
        "private_key_id": "0123456789abcdef", "private_key": pem,
        "client_email": email, "client_id": "1", "token_uri": token_uri,
    });
    let path = dir.join("sa-key.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&key).unwrap()).expect("key file");
    (path, pem)
}

/// Percent-escapes everything but unreserved characters.
fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A plain `GET` of an `http://127.0.0.1:<port>/...` URL: status and body.
pub fn get(url: &str) -> std::io::Result<(u16, Vec<u8>)> {
    get_with_head(url).map(|(s, _, b)| (s, b))
}

fn get_with_head(url: &str) -> std::io::Result<(u16, String, Vec<u8>)> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| std::io::Error::other("only http:// URLs"))?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let port: u16 = authority
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(80);
    let path = if path.is_empty() { "/" } else { path };
    let (status, raw) = request(
        port,
        &format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"),
    )?;
    let (head, body) = split_answer(&raw)?;
    Ok((status, head, body))
}

/// An answer's head and (de-chunked) body.
fn split_answer(raw: &[u8]) -> std::io::Result<(String, Vec<u8>)> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((head, body))
}

/// Sends a raw request to 127.0.0.1:port; returns the status and the whole raw answer.
fn request(port: u16, head: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    s.write_all(head.as_bytes())?;
    // Read to the end of the body as `Content-Length` gives it: some servers
    // keep the connection open despite `Connection: close`.
    let mut raw = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|v| v.trim().parse::<usize>().ok())
            });
            if len.is_some_and(|len| raw.len() >= end + 4 + len) {
                break;
            }
        }
    }
    let status = String::from_utf8_lossy(&raw[..raw.len().min(64)])
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status line"))?;
    Ok((status, raw))
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(nl) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(
            String::from_utf8_lossy(&data[..nl])
                .split(';')
                .next()
                .unwrap_or("0")
                .trim(),
            16,
        )
        .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = nl + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}

/// The python of the venv holding the official runpod SDK (with boto3 and
/// botocore), installed by `scripts/install-test-deps.sh`:
/// `COMFYVER_TEST_RUNPOD_VENV`, else `~/.cache/comfyver-test/runpod-sdk`.
/// Panics, naming the script, when the SDK is not there.
pub fn runpod_sdk_python() -> PathBuf {
    let venv = std::env::var_os("COMFYVER_TEST_RUNPOD_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/comfyver-test/runpod-sdk")
        });
    let py = venv.join("bin/python");
    let ok = std::process::Command::new(&py)
        .args(["-c", "import runpod, boto3"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "the official runpod SDK is not installed in {}: run scripts/install-test-deps.sh",
        venv.display()
    );
    py
}
