//! Fetch transports that cannot hang: `git://` over a TCP socket with read
//! and write timeouts; local repositories (`file://`, absolute paths)
//! through a `git upload-pack` child, and ssh remotes (`ssh://`, scp-like
//! `user@host:path`) through an `ssh` child running `git-upload-pack` on the
//! host, each child contained (own process group, killed with us, see
//! `comfyver_fs::child`) and killed by a watchdog when it sends nothing for
//! the limit. http(s) uses gix's reqwest transport with its client's connect,
//! request and per-read timeouts set to the same limit ([`http_options`]).

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gix::protocol::transport::Protocol;
use gix::protocol::transport::client::git::ConnectMode;
use gix::protocol::transport::client::git::blocking_io::Connection;

/// A transport comfyver provides for a fetch URL, boxed, and what must live
/// as long as it.
pub(crate) type BoundedTransport = (
    Box<dyn gix::protocol::transport::client::blocking_io::Transport + Send>,
    TransportGuard,
);

/// Keeps a bounded transport's child (and watchdog) alive; kills and reaps
/// the child on drop. Tells whether the limit was hit.
pub struct TransportGuard {
    stalled: Stalled,
    _child: Option<LocalChild>,
}

impl TransportGuard {
    /// Whether a read, write or connect ran into the limit.
    pub fn stalled(&self) -> bool {
        self.stalled.happened()
    }
}

/// The bounded transport for `url` (`git://`, local repositories and ssh,
/// see the module docs), or `Ok(None)` for URLs left to gix's own
/// transports (http(s)). A connect that times out is an error of kind `TimedOut`.
pub fn bounded_transport(url: &str, limit: Duration) -> std::io::Result<Option<BoundedTransport>> {
    let stalled = Stalled::default();
    let (cmd, path, stderr) = match route(url) {
        Route::Daemon { host, port, path } => {
            let conn = daemon(&host, port, &path, limit, &stalled)?;
            let guard = TransportGuard {
                stalled,
                _child: None,
            };
            return Ok(Some((Box::new(conn), guard)));
        }
        Route::Local(path) => {
            let mut cmd = Command::new("git");
            cmd.args(["upload-pack", "--strict", &path]);
            (cmd, path, Stdio::null())
        }
        // Its messages (a refused key, an unknown host) are the user's to
        // read, as git shows them.
        Route::Ssh { host, port, path } => (
            ssh_command(&host, port, &path, limit)?,
            path,
            Stdio::inherit(),
        ),
        Route::Gix => return Ok(None),
    };
    let (conn, child) = upload_pack(cmd, &path, stderr, limit, &stalled)?;
    let guard = TransportGuard {
        stalled,
        _child: Some(child),
    };
    Ok(Some((Box::new(conn), guard)))
}

/// Transport options for an http(s) `url` that bound every connect, request
/// and body read by `limit`, built on `repo`'s own options for it; `None`
/// for other schemes (or when gix has no options for the URL).
///
/// gix's reqwest backend ignores `http.lowSpeedLimit`/`http.lowSpeedTime`
/// and always connects with a 20 s limit and the client's default 30 s
/// timeout, so the limit is applied to the reqwest client itself. The
/// low-speed fields are set too, for a backend that reads them.
pub(crate) fn http_options(
    repo: &gix::Repository,
    url: &str,
    limit: Duration,
) -> Option<Box<dyn std::any::Any>> {
    use gix::protocol::transport::client::blocking_io::http;
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return None;
    }
    let mut opts = match repo.transport_options(url, None).ok().flatten() {
        Some(any) => *any.downcast::<http::Options>().ok()?,
        None => http::Options::default(),
    };
    opts.connect_timeout = Some(limit);
    opts.low_speed_limit_bytes_per_second = 1;
    opts.low_speed_time_seconds = limit.as_secs().max(1);
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(move |builder| {
            // Blocking reqwest: `timeout` bounds sending a request until its
            // response head arrives and then each read of the body.
            Ok(builder.connect_timeout(limit).timeout(limit))
        })),
        configure_request: None,
    };
    opts.backend = Some(Arc::new(std::sync::Mutex::new(backend)));
    Some(Box::new(opts))
}

/// Whether an error, or any error in its chain of causes, is a timeout: an
/// I/O error of a timeout kind, or a cause that says it timed out (how the
/// HTTP client reports its own limits).
pub(crate) fn chain_timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if c.downcast_ref::<std::io::Error>().is_some_and(is_timeout) {
            return true;
        }
        if c.to_string().contains("timed out") {
            return true;
        }
        cause = c.source();
    }
    false
}

/// Whether a read or write ran into the limit.
#[derive(Clone, Default)]
struct Stalled(Arc<AtomicBool>);

impl Stalled {
    fn happened(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Which transport a fetch URL gets.
enum Route {
    /// `git://host[:port]/path`.
    Daemon {
        host: String,
        port: u16,
        path: String,
    },
    /// A local repository path.
    Local(String),
    /// `ssh://[user@]host[:port]/path` or scp-like `[user@]host:path`.
    Ssh {
        host: String,
        port: Option<u16>,
        path: String,
    },
    /// Anything else: gix's own transport.
    Gix,
}

fn route(url: &str) -> Route {
    if let Some(rest) = url.strip_prefix("git://") {
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                (h.to_string(), p.parse().unwrap_or(9418))
            }
            _ => (authority.to_string(), 9418),
        };
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        return Route::Daemon {
            host,
            port,
            path: if path.is_empty() {
                "/".into()
            } else {
                path.to_string()
            },
        };
    }
    if let Some(path) = url.strip_prefix("file://") {
        return Route::Local(path.to_string());
    }
    if url.starts_with('/') {
        return Route::Local(url.to_string());
    }
    for scheme in ["ssh://", "git+ssh://", "ssh+git://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.contains(']') || h.ends_with(']') => match p.parse() {
                    Ok(port) => (h, Some(port)),
                    Err(_) => (authority, None),
                },
                _ => (authority, None),
            };
            return Route::Ssh {
                host: host
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port,
                path: path.to_string(),
            };
        }
    }
    // scp-like: [user@]host:path, where no slash precedes the colon.
    if !url.contains("://")
        && let Some((host, path)) = url.split_once(':')
        && !host.is_empty()
        && !host.contains('/')
    {
        return Route::Ssh {
            host: host.to_string(),
            port: None,
            path: path.to_string(),
        };
    }
    Route::Gix
}

/// The `ssh` child that runs `git-upload-pack` for `path` on `host`, as git
/// starts it: `GIT_SSH_COMMAND` (through `sh`), else `GIT_SSH`, else `ssh`.
/// OpenSSH (a program named `ssh`) is also told never to prompt (a worker
/// has no terminal: a password prompt would wait for the watchdog) and to
/// give up connecting after `limit`; the protocol version goes in
/// `GIT_PROTOCOL`, sent where the server accepts it.
fn ssh_command(
    host: &str,
    port: Option<u16>,
    path: &str,
    limit: Duration,
) -> std::io::Result<Command> {
    let (mut cmd, program) = match std::env::var(comfyver_env::GIT_SSH_COMMAND) {
        Ok(line) if !line.trim().is_empty() => {
            let mut c = Command::new("sh");
            c.args(["-c", &format!("{line} \"$@\""), "git-ssh"]);
            let first = line.split_whitespace().next().unwrap_or("").to_string();
            (c, first)
        }
        _ => {
            let program = std::env::var(comfyver_env::GIT_SSH)
                .ok()
                .filter(|p| !p.trim().is_empty())
                .unwrap_or_else(|| "ssh".into());
            (Command::new(&program), program)
        }
    };
    let openssh = std::path::Path::new(&program)
        .file_name()
        .is_some_and(|n| n == "ssh");
    if openssh {
        cmd.args(["-o", "BatchMode=yes", "-o", "SendEnv=GIT_PROTOCOL"])
            .arg("-o")
            .arg(format!("ConnectTimeout={}", limit.as_secs().max(1)));
    }
    if let Some(port) = port {
        if !openssh {
            return Err(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                format!("a port in an ssh URL needs OpenSSH (`ssh`), not `{program}`"),
            ));
        }
        cmd.arg("-p").arg(port.to_string());
    }
    // `/~user/repo` is `~user/repo` (upload-pack expands it), as in git.
    let path = path
        .strip_prefix('/')
        .filter(|p| p.starts_with('~'))
        .unwrap_or(path);
    // The path, quoted for the remote shell as git quotes it.
    let quoted = format!("'{}'", path.replace('\'', "'\\''"));
    cmd.arg(host).arg(format!("git-upload-pack {quoted}"));
    Ok(cmd)
}

/// A TCP connection to a git daemon whose every read and write gives up
/// after `limit`.
fn daemon(
    host: &str,
    port: u16,
    path: &str,
    limit: Duration,
    stalled: &Stalled,
) -> std::io::Result<Connection<Watched<TcpStream>, TcpStream>> {
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::NotFound, "the host has no address")
    })?;
    let stream = TcpStream::connect_timeout(&addr, limit)?;
    stream.set_read_timeout(Some(limit))?;
    stream.set_write_timeout(Some(limit))?;
    // gix writes a request as one small write per packet line: with Nagle's
    // algorithm each one after the first waits for the server's delayed ACK
    // (40 ms on Linux), so every request round would cost that much more.
    stream.set_nodelay(true)?;
    let write = stream.try_clone()?;
    let read = Watched {
        inner: stream,
        stalled: stalled.clone(),
        progress: None,
    };
    Ok(Connection::new(
        read,
        write,
        Protocol::V2,
        path,
        Some((host.to_string(), Some(port))),
        ConnectMode::Daemon,
        false,
    ))
}

/// `cmd` (a `git upload-pack` for `path`, local or through ssh) contained,
/// its standard error to `stderr`, with the watchdog that kills it when it
/// sends nothing for `limit`. Keep the returned [`LocalChild`] until the
/// fetch is over; dropping it kills and reaps it.
fn upload_pack(
    mut cmd: Command,
    path: &str,
    stderr: Stdio,
    limit: Duration,
    stalled: &Stalled,
) -> std::io::Result<(
    Connection<Watched<ChildStdout>, std::process::ChildStdin>,
    LocalChild,
)> {
    cmd.env("GIT_PROTOCOL", "version=2")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .env_remove("GIT_INDEX_FILE")
        .env_remove("GIT_OBJECT_DIRECTORY")
        .env_remove("GIT_ALTERNATE_OBJECT_DIRECTORIES")
        .env_remove("GIT_NAMESPACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr);
    comfyver_fs::child::contain(&mut cmd);
    let mut child = cmd.spawn()?;
    let registered = comfyver_fs::child::Registered::new(child.id());
    let stdout = child.stdout.take().expect("stdout is piped");
    let stdin = child.stdin.take().expect("stdin is piped");
    let progress = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let watchdog = {
        let (progress, done, stalled) = (progress.clone(), done.clone(), stalled.clone());
        let pid = child.id();
        let start = Instant::now();
        std::thread::Builder::new()
            .name("comfyver-fetch-watchdog".into())
            .spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    let last = Duration::from_millis(progress.load(Ordering::SeqCst));
                    if start.elapsed().saturating_sub(last) > limit {
                        stalled.set();
                        comfyver_fs::child::kill_group(pid);
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
            })?
    };
    let read = Watched {
        inner: stdout,
        stalled: stalled.clone(),
        progress: Some((progress, Instant::now())),
    };
    let conn = Connection::new(
        read,
        stdin,
        Protocol::V2,
        path,
        None::<(String, Option<u16>)>,
        ConnectMode::Process,
        false,
    );
    Ok((
        conn,
        LocalChild {
            child,
            done,
            watchdog: Some(watchdog),
            _registered: registered,
        },
    ))
}

/// The `git upload-pack` (or `ssh`) child of a fetch and its watchdog.
struct LocalChild {
    child: Child,
    done: Arc<AtomicBool>,
    watchdog: Option<std::thread::JoinHandle<()>>,
    _registered: comfyver_fs::child::Registered,
}

impl Drop for LocalChild {
    fn drop(&mut self) {
        self.done.store(true, Ordering::SeqCst);
        if let Some(w) = self.watchdog.take() {
            let _ = w.join();
        }
        // Not yet reaped: the group id is still ours to signal.
        comfyver_fs::child::kill_group(self.child.id());
        let _ = self.child.wait();
    }
}

/// A reader that records progress and notes when a read timed out.
struct Watched<R> {
    inner: R,
    stalled: Stalled,
    progress: Option<(Arc<AtomicU64>, Instant)>,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                if let Some((progress, start)) = &self.progress {
                    let ms = u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX);
                    progress.store(ms, Ordering::SeqCst);
                }
                Ok(n)
            }
            Err(e) => {
                if is_timeout(&e) {
                    self.stalled.set();
                }
                Err(e)
            }
        }
    }
}

/// Whether an I/O error is a timeout (a read/write/connect limit).
pub(crate) fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert!(matches!(
            route("git://127.0.0.1:9000/o/r.git"),
            Route::Daemon { ref host, port: 9000, ref path } if host == "127.0.0.1" && path == "/o/r.git"
        ));
        assert!(matches!(
            route("git://h/r"),
            Route::Daemon { port: 9418, .. }
        ));
        assert!(matches!(route("file:///srv/r.git"), Route::Local(ref p) if p == "/srv/r.git"));
        assert!(matches!(route("/srv/r"), Route::Local(_)));
        assert!(matches!(route("https://h/r"), Route::Gix));
        assert!(matches!(
            route("ssh://git@h:2222/o/r.git"),
            Route::Ssh { ref host, port: Some(2222), ref path } if host == "git@h" && path == "/o/r.git"
        ));
        assert!(matches!(
            route("ssh://h/r"),
            Route::Ssh { port: None, ref path, .. } if path == "/r"
        ));
        assert!(matches!(
            route("git@h:o/r.git"),
            Route::Ssh { ref host, port: None, ref path } if host == "git@h" && path == "o/r.git"
        ));
    }
}
