//! The HTTP side of ComfyUI's API over loopback (ureq with no proxy: ComfyUI
//! always listens on 127.0.0.1 here, and a proxy from the environment must not
//! see these requests).

use std::time::Duration;

use serde_json::Value;
use ureq::Agent;
use ureq::unversioned::multipart::{Form, Part};

use crate::error::HandlerError;

/// Largest body read from ComfyUI (outputs fetched through `/view`).
const MAX_BODY: u64 = 4 << 30;

/// A ComfyUI HTTP endpoint on loopback.
#[derive(Debug, Clone)]
pub(crate) struct ComfyHttp {
    base: String,
    agent: Agent,
}

/// Status and body of one answer.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
}

impl Answer {
    pub(crate) fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    pub(crate) fn text(&self) -> String {
        let s = String::from_utf8_lossy(&self.body);
        let mut s = s.trim().to_string();
        if s.len() > 2000 {
            let mut cut = 2000;
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            s.truncate(cut);
            s.push('…');
        }
        s
    }

    /// The JSON body of a 200 answer, or a [`HandlerError::BadResponse`].
    pub(crate) fn ok_json(self, what: &str) -> Result<Value, HandlerError> {
        match (self.status, self.json()) {
            (200, Some(v)) => Ok(v),
            _ => Err(HandlerError::BadResponse {
                what: what.to_string(),
                status: self.status,
                body: self.text(),
            }),
        }
    }
}

impl ComfyHttp {
    /// A client for `127.0.0.1:<port>`; every call gives up after `timeout`.
    pub(crate) fn new(port: u16, timeout: Duration) -> ComfyHttp {
        let agent: Agent = Agent::config_builder()
            .proxy(None)
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .timeout_global(Some(timeout))
            .build()
            .into();
        ComfyHttp {
            base: format!("http://127.0.0.1:{port}"),
            agent,
        }
    }

    fn finish(
        what: &str,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Answer, HandlerError> {
        let mut resp = r.map_err(|e| HandlerError::http(what, e))?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_BODY)
            .read_to_vec()
            .map_err(|e| HandlerError::http(what, e))?;
        Ok(Answer { status, body })
    }

    /// `GET <path>` with query pairs (percent-encoded).
    pub(crate) fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Answer, HandlerError> {
        let what = format!("GET {path}");
        let mut req = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        Self::finish(&what, req.call())
    }

    /// `POST <path>` with a JSON body.
    pub(crate) fn post_json(&self, path: &str, body: &Value) -> Result<Answer, HandlerError> {
        let what = format!("POST {path}");
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .send_json(body);
        Self::finish(&what, r)
    }

    /// `POST /upload/image` (multipart, `overwrite=true` as worker-comfyui sends it;
    /// callers give each job's files unique names): returns the name ComfyUI stored.
    pub(crate) fn upload_image(&self, name: &str, bytes: &[u8]) -> Result<String, HandlerError> {
        let what = "POST /upload/image";
        let mime = mime_of(name);
        let part = Part::bytes(bytes)
            .file_name(name)
            .mime_str(mime)
            .map_err(|e| HandlerError::http(what, e))?;
        let form = Form::new()
            .text("type", "input")
            .text("overwrite", "true")
            .part("image", part);
        let r = self
            .agent
            .post(format!("{}/upload/image", self.base))
            .send(form);
        let answer = match r {
            // ureq sends the whole body before it reads: a server that answers
            // early and closes leaves it a cut connection, not the answer.
            Err(ureq::Error::Io(e)) if is_cut(&e) => {
                return Err(HandlerError::UploadCut {
                    what: what.into(),
                    bytes: bytes.len(),
                    source: Box::new(ureq::Error::Io(e)),
                });
            }
            r => Self::finish(what, r)?,
        };
        let v = answer.ok_json(what)?;
        let stored = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if stored.is_empty() {
            return Err(HandlerError::BadResponse {
                what: what.into(),
                status: 200,
                body: v.to_string(),
            });
        }
        Ok(match v.get("subfolder").and_then(Value::as_str) {
            Some(sub) if !sub.is_empty() => format!("{sub}/{stored}"),
            _ => stored.to_string(),
        })
    }
}

/// Whether the peer closed or reset the connection under us.
fn is_cut(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        e.kind(),
        BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof
    )
}

fn mime_of(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        Some("gif") => "image/gif",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;

    use super::*;

    /// A server that reads only the request head, answers 413 and closes while
    /// the body is still coming (as a server with no lingering close does):
    /// the upload must still fail naming the size and the likely cause.
    #[test]
    fn an_upload_cut_off_mid_body_names_its_size_and_the_upload_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (sock, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(sock);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let mut sock = reader.into_inner();
            let body = "413: Request Entity Too Large";
            let head = format!(
                "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            sock.write_all(head.as_bytes()).unwrap();
            sock.write_all(body.as_bytes()).unwrap();
            // Dropped with most of the body unread: the kernel resets the connection.
        });
        let http = ComfyHttp::new(port, Duration::from_secs(20));
        let bytes = vec![7u8; 64 << 20];
        let err = http.upload_image("big.png", &bytes).expect_err("refused");
        server.join().unwrap();
        // Reading the answer while still sending would give the 413 itself;
        // a client that sends first and reads after gets a cut connection.
        if let HandlerError::BadResponse { status, .. } = err {
            assert_eq!(status, 413);
            return;
        }
        let msg = err.to_string();
        assert!(msg.contains("--max-upload-size"), "{msg}");
        assert!(msg.contains("67108864 bytes"), "{msg}");
    }
}
