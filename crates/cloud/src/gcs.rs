//! Google Cloud Storage over its JSON API: media uploads with
//! `ifGenerationMatch=0`, the `testIamPermissions` pre-check, V4 signed URLs
//! (GOOG4-RSA-SHA256) and OAuth2 service-account tokens (RS256 JWT bearer grant).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use base64::Engine;
use serde_json::Value;

use crate::clock::Stamp;
use crate::env::{self, Lookup};
use crate::error::CloudError;
use crate::http::{self, Payload, Reply, Request};
use crate::retry::RetryPolicy;
use crate::{Uploaded, enc_path, enc_query, sha256_hex};

/// The bucket outputs go to (required for the GCS sink).
pub use comfyver_env::GCS_BUCKET as GCS_BUCKET_ENV;
/// The object name prefix (default `comfyver`): objects are `<prefix>/<job id>/<file>`.
pub use comfyver_env::GCS_PREFIX as GCS_PREFIX_ENV;
/// `1`/`true`: return the public object URL instead of a signed one.
pub use comfyver_env::GCS_PUBLIC as GCS_PUBLIC_ENV;
/// Retries after the first attempt (default 5).
pub use comfyver_env::GCS_RETRIES as GCS_RETRIES_ENV;
/// The first retry's pause in seconds, doubled for each further one (default 0.5).
pub use comfyver_env::GCS_RETRY_BASE_SLEEP as GCS_RETRY_BASE_SLEEP_ENV;
/// How long a signed URL is valid, in seconds (default and maximum 604800, 7 days).
pub use comfyver_env::GCS_SIGNED_URL_TTL as GCS_SIGNED_URL_TTL_ENV;
/// The service-account key file (JSON) used for tokens and for signing URLs.
pub use comfyver_env::GOOGLE_APPLICATION_CREDENTIALS as GOOGLE_APPLICATION_CREDENTIALS_ENV;
/// `host:port` or `http://host:port` of a GCS emulator. As Google's own
/// clients do, requests then go there and carry no credentials.
pub use comfyver_env::STORAGE_EMULATOR_HOST as STORAGE_EMULATOR_HOST_ENV;

/// Google's storage endpoint, used unless `STORAGE_EMULATOR_HOST` is set.
const GOOGLE_STORAGE: &str = "https://storage.googleapis.com";
/// The OAuth scope for uploads.
const SCOPE: &str = "https://www.googleapis.com/auth/devstorage.read_write";
/// The longest validity of a V4 signed URL.
const MAX_TTL: u64 = 604_800;
/// The permission the pre-check asks for.
const CREATE: &str = "storage.objects.create";

/// Where and how to write to a GCS bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcsConfig {
    /// The bucket name.
    pub bucket: String,
    /// Object name prefix, without slashes at either end (may be empty).
    pub prefix: String,
    /// The service-account key file; required unless anonymous and public.
    pub credentials: Option<PathBuf>,
    /// `https://storage.googleapis.com`, or the emulator's base URL.
    pub api_base: String,
    /// Send no `Authorization` (emulator mode).
    pub anonymous: bool,
    /// Return public URLs instead of signed ones.
    pub public: bool,
    /// Validity of signed URLs.
    pub signed_url_ttl: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Payloads larger than this go up as a resumable upload in chunks of
    /// this size (a multiple of 256 KiB); a failed chunk is resumed from what
    /// GCS has persisted instead of starting over.
    pub chunk_size: u64,
}

/// The default resumable chunk: 8 MiB.
pub const DEFAULT_CHUNK: u64 = 32 * CHUNK_UNIT;
/// Resumable chunks are multiples of this.
const CHUNK_UNIT: u64 = 256 * 1024;

impl GcsConfig {
    /// Reads the `GCS_*`, `GOOGLE_APPLICATION_CREDENTIALS` and
    /// `STORAGE_EMULATOR_HOST` variables.
    pub fn from_env() -> Result<GcsConfig, CloudError> {
        GcsConfig::from_lookup(&env::process)
    }

    pub(crate) fn from_lookup(get: Lookup<'_>) -> Result<GcsConfig, CloudError> {
        let bucket = env::required(
            get,
            GCS_BUCKET_ENV,
            "set it to the name of the bucket outputs go to",
        )?;
        let emulator = get(STORAGE_EMULATOR_HOST_ENV).filter(|v| !v.trim().is_empty());
        let api_base = match &emulator {
            Some(h) if h.contains("://") => h.trim().trim_end_matches('/').to_string(),
            Some(h) => format!("http://{}", h.trim().trim_end_matches('/')),
            None => GOOGLE_STORAGE.to_string(),
        };
        let public = env::flag(get, GCS_PUBLIC_ENV)?;
        let ttl = env::number(
            get,
            GCS_SIGNED_URL_TTL_ENV,
            MAX_TTL as f64,
            "a number of seconds from 1 to 604800",
        )?;
        if !(1.0..=MAX_TTL as f64).contains(&ttl) {
            return Err(CloudError::BadEnv {
                var: GCS_SIGNED_URL_TTL_ENV,
                value: ttl.to_string(),
                expected: "a number of seconds from 1 to 604800 (V4 signed URLs last at most 7 days)",
            });
        }
        let credentials = get(GOOGLE_APPLICATION_CREDENTIALS_ENV)
            .filter(|v| !v.trim().is_empty())
            .map(PathBuf::from);
        let anonymous = emulator.is_some();
        if credentials.is_none() && !(anonymous && public) {
            return Err(CloudError::MissingEnv {
                var: GOOGLE_APPLICATION_CREDENTIALS_ENV,
                hint: "set it to a service-account key file (JSON); it is needed for access tokens and signed URLs",
            });
        }
        Ok(GcsConfig {
            bucket: env::bucket_name(GCS_BUCKET_ENV, &bucket)?,
            prefix: env::prefix(get, GCS_PREFIX_ENV)?,
            credentials,
            api_base,
            anonymous,
            public,
            signed_url_ttl: Duration::from_secs(ttl as u64),
            retry: env::retry(get, GCS_RETRIES_ENV, GCS_RETRY_BASE_SLEEP_ENV)?,
            chunk_size: DEFAULT_CHUNK,
        })
    }
}

/// A service-account key: who we are and how we sign. `Debug` shows only the email.
pub(crate) struct ServiceAccount {
    pub email: String,
    token_uri: String,
    key: RsaKeyPair,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

impl ServiceAccount {
    /// Reads and checks a key file: JSON, `type: service_account`, an email,
    /// a token URI and an RSA private key that can sign.
    pub(crate) fn load(path: &Path) -> Result<ServiceAccount, CloudError> {
        let text = std::fs::read_to_string(path).map_err(|source| CloudError::KeyFileRead {
            path: path.to_path_buf(),
            source,
        })?;
        let bad = |problem: String| CloudError::KeyFileInvalid {
            path: path.to_path_buf(),
            problem,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| {
            bad(format!(
                "it is not JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let field = |name: &str| {
            v.get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        match field("type") {
            Some("service_account") => {}
            Some(other) => {
                return Err(bad(format!(
                    "its `type` is `{other}`, not `service_account`"
                )));
            }
            None => {
                return Err(bad(
                    "it has no `type` (a service-account key has `\"type\": \"service_account\"`)"
                        .into(),
                ));
            }
        }
        let email = field("client_email")
            .ok_or_else(|| bad("it has no `client_email`".into()))?
            .to_string();
        let token_uri = field("token_uri")
            .ok_or_else(|| bad("it has no `token_uri`".into()))?
            .to_string();
        let pem = field("private_key").ok_or_else(|| bad("it has no `private_key`".into()))?;
        let der = pem_body(pem, "PRIVATE KEY").ok_or_else(|| {
            bad("its `private_key` is not a PEM block `-----BEGIN PRIVATE KEY-----`".into())
        })?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|_| bad("its `private_key` is not a usable PKCS#8 RSA key".into()))?;
        Ok(ServiceAccount {
            email,
            token_uri,
            key,
        })
    }

    /// RSA-SHA256 (PKCS#1 v1.5) of `msg`.
    pub(crate) fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, CloudError> {
        let mut sig = vec![0u8; self.key.public_modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
            .map_err(|_| CloudError::Sign)?;
        Ok(sig)
    }

    /// A signed JWT for the bearer grant (RFC 7523), valid for an hour.
    fn assertion(&self, now: u64) -> Result<String, CloudError> {
        let b64 = |v: &Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string().as_bytes())
        };
        let header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": self.email, "scope": SCOPE, "aud": self.token_uri,
            "iat": now, "exp": now + 3600,
        });
        let signing_input = format!("{}.{}", b64(&header), b64(&claims));
        let sig = self.sign(signing_input.as_bytes())?;
        Ok(format!(
            "{signing_input}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig)
        ))
    }
}

/// The base64 body of a PEM block with this label.
fn pem_body(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = pem[start..].find(&end)? + start;
    let b64: String = pem[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// A GCS bucket we write outputs to. `Debug` shows no token or key.
pub struct GcsBucket {
    cfg: GcsConfig,
    account: Option<ServiceAccount>,
    agent: ureq::Agent,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for GcsBucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcsBucket")
            .field("cfg", &self.cfg)
            .field("account", &self.account)
            .finish_non_exhaustive()
    }
}

impl GcsBucket {
    /// Checks the configuration and loads the key (no network).
    pub fn new(cfg: GcsConfig) -> Result<GcsBucket, CloudError> {
        let account = cfg
            .credentials
            .as_deref()
            .map(ServiceAccount::load)
            .transpose()?;
        if account.is_none() && !(cfg.anonymous && cfg.public) {
            return Err(CloudError::MissingEnv {
                var: GOOGLE_APPLICATION_CREDENTIALS_ENV,
                hint: "set it to a service-account key file (JSON); it is needed for access tokens and signed URLs",
            });
        }
        Ok(GcsBucket {
            cfg,
            account,
            agent: http::agent(),
            token: Mutex::new(None),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &GcsConfig {
        &self.cfg
    }

    /// Fails unless the credentials may create objects in the bucket
    /// (`testIamPermissions` for `storage.objects.create`).
    pub fn check(&self) -> Result<(), CloudError> {
        let target = format!("gs://{}", self.cfg.bucket);
        let url = format!(
            "{}/storage/v1/b/{}/iam/testPermissions?permissions={CREATE}",
            self.cfg.api_base,
            enc_query(&self.cfg.bucket)
        );
        let reply = http::send(
            &self.agent,
            &self.cfg.retry,
            "check write access to",
            &target,
            None,
            &mut || self.request("GET", url.clone(), Vec::new()),
        )?;
        let v = ok_json(reply, "check write access to", &target)?;
        let granted = v
            .get("permissions")
            .and_then(Value::as_array)
            .is_some_and(|p| p.iter().any(|x| x.as_str() == Some(CREATE)));
        if granted {
            Ok(())
        } else {
            Err(CloudError::Denied {
                bucket: target,
                permission: CREATE,
            })
        }
    }

    /// Uploads `payload` as object `name` (never replacing an existing one) and
    /// returns its URL (public or signed) and `gs://` URI.
    pub fn upload(
        &self,
        name: &str,
        payload: Payload<'_>,
        content_type: &str,
    ) -> Result<Uploaded, CloudError> {
        let uri = format!("gs://{}/{name}", self.cfg.bucket);
        let len = payload.len()?;
        let v = if len > self.chunk() {
            self.upload_resumable(name, &uri, payload, len, content_type)?
        } else {
            self.upload_media(name, &uri, payload, content_type)?
        };
        let size = v
            .get("size")
            .and_then(Value::as_str)
            .and_then(|s| s.parse::<u64>().ok());
        if size != Some(len) {
            return Err(CloudError::Status {
                action: "upload",
                target: uri,
                status: 200,
                attempts: 1,
                message: format!("the stored object has size {size:?}, expected {len}"),
            });
        }
        let url = if self.cfg.public {
            self.public_url(name)
        } else {
            self.signed_url(name, &Stamp::now())?
        };
        Ok(Uploaded { url, uri })
    }

    /// The chunk size, rounded down to a multiple of 256 KiB (at least one unit).
    fn chunk(&self) -> u64 {
        (self.cfg.chunk_size / CHUNK_UNIT).max(1) * CHUNK_UNIT
    }

    /// One request: `uploadType=media`.
    fn upload_media(
        &self,
        name: &str,
        uri: &str,
        payload: Payload<'_>,
        content_type: &str,
    ) -> Result<Value, CloudError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=media&name={}&ifGenerationMatch=0",
            self.cfg.api_base,
            enc_query(&self.cfg.bucket),
            enc_query(name)
        );
        let headers = vec![("content-type".to_string(), content_type.to_string())];
        let reply = http::send(
            &self.agent,
            &self.cfg.retry,
            "upload",
            uri,
            Some(payload),
            &mut || self.request("POST", url.clone(), headers.clone()),
        )?;
        if reply.status == 412 {
            return Err(CloudError::Exists {
                target: uri.to_string(),
            });
        }
        ok_json(reply, "upload", uri)
    }

    /// A resumable upload: a session, then chunks with `Content-Range`. After a
    /// failed chunk the session is asked what it has (`bytes */len` → `308`
    /// with `Range`) and the upload goes on from there; the retry budget is
    /// per chunk.
    fn upload_resumable(
        &self,
        name: &str,
        uri: &str,
        payload: Payload<'_>,
        len: u64,
        content_type: &str,
    ) -> Result<Value, CloudError> {
        let url = format!(
            "{}/upload/storage/v1/b/{}/o?uploadType=resumable&name={}&ifGenerationMatch=0",
            self.cfg.api_base,
            enc_query(&self.cfg.bucket),
            enc_query(name)
        );
        let meta = serde_json::json!({"contentType": content_type}).to_string();
        let headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            (
                "x-upload-content-type".to_string(),
                content_type.to_string(),
            ),
            ("x-upload-content-length".to_string(), len.to_string()),
        ];
        let reply = http::send(
            &self.agent,
            &self.cfg.retry,
            "start an upload of",
            uri,
            Some(Payload::Bytes(meta.as_bytes())),
            &mut || self.request("POST", url.clone(), headers.clone()),
        )?;
        if reply.status == 412 {
            return Err(CloudError::Exists {
                target: uri.to_string(),
            });
        }
        let attempts = reply.attempts;
        let session = match (reply.status, reply.location) {
            (200..=299, Some(l)) => l,
            (status, _) => {
                let message = if (200..300).contains(&status) {
                    "the answer has no session `Location`".to_string()
                } else {
                    http::service_message(&reply.body)
                };
                return Err(CloudError::Status {
                    action: "start an upload of",
                    target: uri.to_string(),
                    status,
                    attempts,
                    message,
                });
            }
        };
        let chunk = self.chunk();
        let mut offset = 0;
        let mut failures = 0;
        loop {
            let end = (offset + chunk).min(len);
            let range = format!("bytes {offset}-{}/{len}", end - 1);
            let req = self.request(
                "PUT",
                session.clone(),
                vec![("content-range".into(), range)],
            )?;
            let part = http::Part {
                payload,
                start: offset,
                len: end - offset,
            };
            let failed = match http::exchange(&self.agent, &req, Some(part)) {
                Ok(a) => match judge_chunk(a, uri, failures + 1)? {
                    Chunk::Done(v) => return Ok(v),
                    Chunk::Have(n) => {
                        if n > offset {
                            failures = 0;
                        }
                        offset = n;
                        None
                    }
                    Chunk::Retry(e) => Some(e),
                },
                Err(http::Failure::Read(e)) => return Err(e),
                Err(http::Failure::Net(e)) => Some(CloudError::Transport {
                    action: "upload",
                    target: uri.to_string(),
                    attempts: failures + 1,
                    source: Box::new(e),
                }),
            };
            let Some(mut error) = failed else { continue };
            // Ask the session what it has, until it answers or the budget is spent.
            loop {
                failures += 1;
                if failures > self.cfg.retry.retries {
                    return Err(error);
                }
                std::thread::sleep(self.cfg.retry.delay(failures));
                let req = self.request(
                    "PUT",
                    session.clone(),
                    vec![("content-range".into(), format!("bytes */{len}"))],
                )?;
                let part = http::Part {
                    payload: Payload::Bytes(&[]),
                    start: 0,
                    len: 0,
                };
                match http::exchange(&self.agent, &req, Some(part)) {
                    Ok(a) => match judge_chunk(a, uri, failures + 1)? {
                        Chunk::Done(v) => return Ok(v),
                        Chunk::Have(n) => {
                            offset = n;
                            break;
                        }
                        Chunk::Retry(e) => error = e,
                    },
                    Err(http::Failure::Read(e)) => return Err(e),
                    Err(http::Failure::Net(e)) => {
                        error = CloudError::Transport {
                            action: "upload",
                            target: uri.to_string(),
                            attempts: failures + 1,
                            source: Box::new(e),
                        }
                    }
                }
            }
        }
    }

    /// `<base>/<bucket>/<name>`.
    pub fn public_url(&self, name: &str) -> String {
        format!(
            "{}/{}/{}",
            self.cfg.api_base,
            enc_path(&self.cfg.bucket),
            enc_path(name)
        )
    }

    /// A V4 signed GET URL for `name`, signed at `at`.
    pub(crate) fn signed_url(&self, name: &str, at: &Stamp) -> Result<String, CloudError> {
        let account = self.account.as_ref().ok_or(CloudError::MissingEnv {
            var: GOOGLE_APPLICATION_CREDENTIALS_ENV,
            hint: "signed URLs need a service-account key; set it, or set GCS_PUBLIC=1",
        })?;
        let host = self
            .cfg
            .api_base
            .split_once("://")
            .map_or(self.cfg.api_base.as_str(), |(_, h)| h);
        let path = format!("/{}/{}", enc_path(&self.cfg.bucket), enc_path(name));
        let scope = format!("{}/auto/storage/goog4_request", at.date);
        let mut query = [
            ("X-Goog-Algorithm", "GOOG4-RSA-SHA256".to_string()),
            ("X-Goog-Credential", format!("{}/{scope}", account.email)),
            ("X-Goog-Date", at.full.clone()),
            (
                "X-Goog-Expires",
                self.cfg.signed_url_ttl.as_secs().to_string(),
            ),
            ("X-Goog-SignedHeaders", "host".to_string()),
        ]
        .map(|(k, v)| format!("{}={}", enc_query(k), enc_query(&v)));
        query.sort();
        let query = query.join("&");
        let canonical = format!("GET\n{path}\n{query}\nhost:{host}\n\nhost\nUNSIGNED-PAYLOAD");
        let to_sign = format!(
            "GOOG4-RSA-SHA256\n{}\n{scope}\n{}",
            at.full,
            sha256_hex(canonical.as_bytes())
        );
        let sig = hex::encode(account.sign(to_sign.as_bytes())?);
        Ok(format!(
            "{}{path}?{query}&X-Goog-Signature={sig}",
            self.cfg.api_base
        ))
    }

    /// A request with the bearer token, unless anonymous.
    fn request(
        &self,
        method: &'static str,
        url: String,
        mut headers: Vec<(String, String)>,
    ) -> Result<Request, CloudError> {
        if !self.cfg.anonymous {
            headers.push(("authorization".into(), format!("Bearer {}", self.token()?)));
        }
        Ok(Request {
            method,
            url,
            headers,
        })
    }

    /// A cached access token, renewed a minute before it expires.
    fn token(&self) -> Result<String, CloudError> {
        let mut cached = self.token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((t, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        let account = self.account.as_ref().ok_or(CloudError::MissingEnv {
            var: GOOGLE_APPLICATION_CREDENTIALS_ENV,
            hint: "set it to a service-account key file (JSON)",
        })?;
        let assertion = account.assertion(Stamp::now().unix)?;
        let body = format!(
            "grant_type={}&assertion={assertion}",
            enc_query("urn:ietf:params:oauth:grant-type:jwt-bearer")
        );
        let target = format!("the token endpoint for {}", account.email);
        let form = vec![(
            "content-type".to_string(),
            "application/x-www-form-urlencoded".to_string(),
        )];
        let reply = http::send(
            &self.agent,
            &self.cfg.retry,
            "get an access token from",
            &target,
            Some(Payload::Bytes(body.as_bytes())),
            &mut || {
                Ok(Request {
                    method: "POST",
                    url: account.token_uri.clone(),
                    headers: form.clone(),
                })
            },
        )?;
        let v = ok_json(reply, "get an access token from", &target)?;
        let token = v
            .get("access_token")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| CloudError::Token {
                problem: "no `access_token` in the answer".into(),
            })?
            .to_string();
        let ttl = v.get("expires_in").and_then(Value::as_u64).unwrap_or(3600);
        let until = Instant::now() + Duration::from_secs(ttl.saturating_sub(60));
        *cached = Some((token.clone(), until));
        Ok(token)
    }
}

/// Where a resumable upload stands.
enum Chunk {
    /// Finished: the object's metadata.
    Done(Value),
    /// This many bytes are persisted; send from there.
    Have(u64),
    /// A failure worth another try.
    Retry(CloudError),
}

/// What a chunk or status answer of a resumable session means.
fn judge_chunk(a: http::Answer, uri: &str, attempts: u32) -> Result<Chunk, CloudError> {
    let status_err = |a: &http::Answer| CloudError::Status {
        action: "upload",
        target: uri.to_string(),
        status: a.status,
        attempts,
        message: http::service_message(&a.body),
    };
    match a.status {
        200 | 201 => {
            let reply = Reply {
                status: a.status,
                body: a.body,
                location: None,
                etag: None,
                attempts,
            };
            ok_json(reply, "upload", uri).map(Chunk::Done)
        }
        // `Range: bytes=0-N`: N+1 bytes persisted; no Range: none.
        308 => Ok(Chunk::Have(
            a.range
                .as_deref()
                .and_then(|r| r.rsplit('-').next())
                .and_then(|n| n.trim().parse::<u64>().ok())
                .map_or(0, |n| n + 1),
        )),
        412 => Err(CloudError::Exists {
            target: uri.to_string(),
        }),
        s if crate::retry::retryable_status(s) => Ok(Chunk::Retry(status_err(&a))),
        _ => Err(status_err(&a)),
    }
}

/// The JSON of a 2xx answer, or the error the status means.
fn ok_json(reply: Reply, action: &'static str, target: &str) -> Result<Value, CloudError> {
    if !(200..300).contains(&reply.status) {
        let message = match reply.status {
            401 => "the credentials were refused; check GOOGLE_APPLICATION_CREDENTIALS".to_string(),
            404 => format!(
                "not found; check that the bucket exists ({})",
                http::service_message(&reply.body)
            ),
            _ => http::service_message(&reply.body),
        };
        return Err(CloudError::Status {
            action,
            target: target.to_string(),
            status: reply.status,
            attempts: reply.attempts,
            message,
        });
    }
    serde_json::from_str(&reply.body).map_err(|_| CloudError::Status {
        action,
        target: target.to_string(),
        status: reply.status,
        attempts: reply.attempts,
        message: "the answer was not JSON".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::env::fixed as lookup;

    #[test]
    fn the_emulator_host_is_honoured_as_googles_clients_do() {
        for (host, base) in [
            ("127.0.0.1:9023", "http://127.0.0.1:9023"),
            ("http://127.0.0.1:9023/", "http://127.0.0.1:9023"),
        ] {
            let get = lookup(&[
                (GCS_BUCKET_ENV, "out"),
                (STORAGE_EMULATOR_HOST_ENV, host),
                (GCS_PUBLIC_ENV, "true"),
            ]);
            let c = GcsConfig::from_lookup(&get).unwrap();
            assert_eq!((c.api_base.as_str(), c.anonymous), (base, true));
            assert_eq!(c.credentials, None);
        }
        let get = lookup(&[
            (GCS_BUCKET_ENV, "out"),
            (GOOGLE_APPLICATION_CREDENTIALS_ENV, "/k.json"),
            (GCS_PREFIX_ENV, "/a/b/"),
            (GCS_RETRIES_ENV, "2"),
            (GCS_RETRY_BASE_SLEEP_ENV, "0.25"),
            (GCS_SIGNED_URL_TTL_ENV, "600"),
        ]);
        let c = GcsConfig::from_lookup(&get).unwrap();
        assert_eq!(c.api_base, GOOGLE_STORAGE);
        assert!(!c.anonymous && !c.public);
        assert_eq!(c.prefix, "a/b");
        assert_eq!(c.retry.retries, 2);
        assert_eq!(c.retry.base_sleep, Duration::from_millis(250));
        assert_eq!(c.signed_url_ttl, Duration::from_secs(600));
    }

    #[test]
    fn bad_values_name_the_variable() {
        let base = [
            (GCS_BUCKET_ENV, "out"),
            (GOOGLE_APPLICATION_CREDENTIALS_ENV, "/k.json"),
        ];
        let cases: [(&str, &str); 6] = [
            (GCS_PUBLIC_ENV, "maybe"),
            (GCS_SIGNED_URL_TTL_ENV, "700000"),
            (GCS_RETRIES_ENV, "-1"),
            (GCS_RETRY_BASE_SLEEP_ENV, "soon"),
            (GCS_PREFIX_ENV, "a/../b"),
            (GCS_BUCKET_ENV, "Bad_Bucket!"),
        ];
        for (var, value) in cases {
            let mut vars = base.to_vec();
            vars.retain(|(k, _)| *k != var);
            vars.push((var, value));
            let err = GcsConfig::from_lookup(&lookup(&vars)).unwrap_err();
            assert!(err.to_string().contains(var), "{var}: {err}");
        }
        let err = GcsConfig::from_lookup(&lookup(&[(GCS_BUCKET_ENV, "out")])).unwrap_err();
        assert!(
            err.to_string()
                .contains("GOOGLE_APPLICATION_CREDENTIALS is not set"),
            "{err}"
        );
        let err = GcsConfig::from_lookup(&lookup(&[])).unwrap_err();
        assert!(err.to_string().contains("GCS_BUCKET is not set"), "{err}");
    }
}
