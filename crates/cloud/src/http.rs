//! One retried HTTP exchange on a blocking `ureq` agent.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::Duration;

use ureq::{Agent, SendBody};

use crate::error::CloudError;
use crate::retry::{RetryPolicy, retryable_status};

/// The most of an answer's body we read (error texts, JSON metadata).
const MAX_REPLY: u64 = 1 << 20;

/// What an upload sends: bytes already in memory (sent without a copy) or a
/// file streamed from disk (re-opened for every attempt, never held whole).
#[derive(Debug, Clone, Copy)]
pub enum Payload<'a> {
    /// Bytes in memory.
    Bytes(&'a [u8]),
    /// A file on disk.
    File(&'a Path),
}

impl Payload<'_> {
    /// The payload's size in bytes.
    pub(crate) fn len(&self) -> Result<u64, CloudError> {
        match self {
            Payload::Bytes(b) => Ok(b.len() as u64),
            Payload::File(p) => {
                std::fs::metadata(p)
                    .map(|m| m.len())
                    .map_err(|source| CloudError::ReadFile {
                        path: p.to_path_buf(),
                        source,
                    })
            }
        }
    }
}

/// One request to send: built afresh for every attempt (signatures carry the time).
pub(crate) struct Request {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(String, String)>,
}

/// A final answer.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: String,
    pub location: Option<String>,
    pub etag: Option<String>,
    pub attempts: u32,
}

/// An agent that reports every status as an answer (we classify them) and
/// never waits forever.
pub(crate) fn agent() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("comfyver/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_per_read(Some(Duration::from_secs(120)))
        .timeout_per_write(Some(Duration::from_secs(120)))
        .build()
        .new_agent()
}

/// Sends `build()`'s request with `payload` until it gets an answer that is
/// not worth retrying, or the policy's retries are used up. A retryable
/// status that persists is an error; other statuses are returned for the
/// caller to judge.
pub(crate) fn send(
    agent: &Agent,
    policy: &RetryPolicy,
    action: &'static str,
    target: &str,
    payload: Option<Payload<'_>>,
    build: &mut dyn FnMut() -> Result<Request, CloudError>,
) -> Result<Reply, CloudError> {
    let part = match payload {
        Some(p) => Some(Part {
            payload: p,
            start: 0,
            len: p.len()?,
        }),
        None => None,
    };
    send_part(agent, policy, action, target, part, build)
}

/// [`send`] for a byte range of a payload.
pub(crate) fn send_part(
    agent: &Agent,
    policy: &RetryPolicy,
    action: &'static str,
    target: &str,
    part: Option<Part<'_>>,
    build: &mut dyn FnMut() -> Result<Request, CloudError>,
) -> Result<Reply, CloudError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let req = build()?;
        match exchange(agent, &req, part) {
            Ok(a) if !retryable_status(a.status) => {
                return Ok(Reply {
                    status: a.status,
                    body: a.body,
                    location: a.location,
                    etag: a.etag,
                    attempts: attempt,
                });
            }
            Ok(Answer { status, body, .. }) => {
                if attempt > policy.retries {
                    return Err(CloudError::Status {
                        action,
                        target: target.to_string(),
                        status,
                        attempts: attempt,
                        message: service_message(&body),
                    });
                }
            }
            Err(Failure::Read(e)) => return Err(e),
            Err(Failure::Net(e)) => {
                if attempt > policy.retries {
                    return Err(CloudError::Transport {
                        action,
                        target: target.to_string(),
                        attempts: attempt,
                        source: Box::new(e),
                    });
                }
            }
        }
        std::thread::sleep(policy.delay(attempt));
    }
}

/// Why an exchange gave no answer.
pub(crate) enum Failure {
    /// The network or the server's connection (worth retrying).
    Net(ureq::Error),
    /// The local file (not worth retrying).
    Read(CloudError),
}

/// A byte range of a payload: what one request sends.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part<'a> {
    pub payload: Payload<'a>,
    pub start: u64,
    pub len: u64,
}

/// One answer, before it is judged.
#[derive(Debug)]
pub(crate) struct Answer {
    pub status: u16,
    pub body: String,
    /// The `Location` header (a resumable upload's session URI).
    pub location: Option<String>,
    /// The `Range` header (what a resumable upload has persisted).
    pub range: Option<String>,
    /// The `ETag` header (an S3 part's id).
    pub etag: Option<String>,
}

/// One request, no retry.
pub(crate) fn exchange(
    agent: &Agent,
    req: &Request,
    part: Option<Part<'_>>,
) -> Result<Answer, Failure> {
    let mut builder = ureq::http::Request::builder()
        .method(req.method)
        .uri(&req.url);
    for (k, v) in &req.headers {
        builder = builder.header(k, v);
    }
    let net = |e: ureq::http::Error| Failure::Net(e.into());
    let result = match part {
        None => agent.run(builder.body(()).map_err(net)?),
        Some(Part {
            payload: Payload::Bytes(b),
            start,
            len,
        }) => {
            let slice = &b[start as usize..(start + len) as usize];
            agent.run(builder.body(slice).map_err(net)?)
        }
        Some(Part {
            payload: Payload::File(path),
            start,
            len,
        }) => {
            let read_err = |source| {
                Failure::Read(CloudError::ReadFile {
                    path: path.to_path_buf(),
                    source,
                })
            };
            let mut file = std::fs::File::open(path).map_err(read_err)?;
            file.seek(SeekFrom::Start(start)).map_err(read_err)?;
            let mut reader = file.take(len);
            let r = builder
                .header("content-length", len.to_string())
                .body(SendBody::from_reader(&mut reader))
                .map_err(net)?;
            agent.run(r)
        }
    };
    let mut resp = result.map_err(Failure::Net)?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (location, range, etag) = (header("location"), header("range"), header("etag"));
    let status = resp.status().as_u16();
    let mut body = String::new();
    resp.body_mut()
        .as_reader()
        .take(MAX_REPLY)
        .read_to_string(&mut body)
        .map_err(|e| Failure::Net(e.into()))?;
    Ok(Answer {
        status,
        body,
        location,
        range,
        etag,
    })
}

/// The service's own short explanation from a GCS JSON error
/// (`{"error": {"message"}}`) or an S3 XML error (`<Code>`, `<Message>`),
/// never the whole body (S3 echoes the access key id and the string to sign).
pub(crate) fn service_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(body) {
        if let Some(m) = v.pointer("/error/message").and_then(|m| m.as_str()) {
            return clip(m);
        }
        // OAuth: {"error": "invalid_grant", "error_description": "..."}.
        if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
            let desc = v.get("error_description").and_then(|d| d.as_str());
            return clip(&desc.map_or(e.to_string(), |d| format!("{e}: {d}")));
        }
    }
    let tag = |name: &str| {
        let open = format!("<{name}>");
        let start = body.find(&open)? + open.len();
        let end = body[start..].find(&format!("</{name}>"))? + start;
        Some(body[start..end].to_string())
    };
    match (tag("Code"), tag("Message")) {
        (Some(c), Some(m)) => clip(&format!("{c}: {m}")),
        (Some(c), None) => clip(&c),
        _ if body.trim().is_empty() => "(no explanation in the answer)".to_string(),
        _ => "(the answer was not a storage error document)".to_string(),
    }
}

fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_messages_keep_only_code_and_message() {
        let s3 = "<Error><Code>SignatureDoesNotMatch</Code><Message>bad sig</Message><AWSAccessKeyId>AKIDSECRET</AWSAccessKeyId><StringToSign>x</StringToSign></Error>";
        let m = service_message(s3);
        assert_eq!(m, "SignatureDoesNotMatch: bad sig");
        assert!(!m.contains("AKIDSECRET"));
        let gcs = r#"{"error": {"code": 403, "message": "no access"}}"#;
        assert_eq!(service_message(gcs), "no access");
        let oauth = r#"{"error": "invalid_grant", "error_description": "Invalid JWT Signature."}"#;
        assert_eq!(
            service_message(oauth),
            "invalid_grant: Invalid JWT Signature."
        );
        assert_eq!(service_message(""), "(no explanation in the answer)");
        assert!(!service_message("token=abc").contains("abc"));
    }
}
