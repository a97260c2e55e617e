//! S3-compatible buckets with AWS Signature Version 4: streamed `PUT` with
//! `If-None-Match: *` (multipart above the part size), a `HEAD` bucket
//! pre-check and presigned `GET` URLs.

use std::time::Duration;

use aws_lc_rs::hmac;

use crate::clock::Stamp;
use crate::env::{self, Lookup};
use crate::error::CloudError;
use crate::http::{self, Payload, Request};
use crate::retry::RetryPolicy;
use crate::{Uploaded, enc_path, enc_query, sha256_hex};

/// The access key id.
pub use comfyver_env::BUCKET_ACCESS_KEY_ID as BUCKET_ACCESS_KEY_ID_ENV;
/// The S3 endpoint, as worker-comfyui names it: `https://<bucket>.s3.<region>.amazonaws.com`
/// (the bucket is the first host label) or, with `BUCKET_NAME`, any endpoint (path-style).
pub use comfyver_env::BUCKET_ENDPOINT_URL as BUCKET_ENDPOINT_URL_ENV;
/// The bucket, addressed path-style under `BUCKET_ENDPOINT_URL` (optional).
pub use comfyver_env::BUCKET_NAME as BUCKET_NAME_ENV;
/// The object name prefix (default `comfyver`).
pub use comfyver_env::BUCKET_PREFIX as BUCKET_PREFIX_ENV;
/// The signing region (default: from `.s3.<region>.` in the endpoint, else `us-east-1`).
pub use comfyver_env::BUCKET_REGION as BUCKET_REGION_ENV;
/// Retries after the first attempt (default 5).
pub use comfyver_env::BUCKET_RETRIES as BUCKET_RETRIES_ENV;
/// The first retry's pause in seconds, doubled for each further one (default 0.5).
pub use comfyver_env::BUCKET_RETRY_BASE_SLEEP as BUCKET_RETRY_BASE_SLEEP_ENV;
/// The secret access key.
pub use comfyver_env::BUCKET_SECRET_ACCESS_KEY as BUCKET_SECRET_ACCESS_KEY_ENV;
/// How long a presigned URL is valid, in seconds (default and maximum 604800).
pub use comfyver_env::BUCKET_SIGNED_URL_TTL as BUCKET_SIGNED_URL_TTL_ENV;

const MAX_TTL: u64 = 604_800;
const UNSIGNED: &str = "UNSIGNED-PAYLOAD";

/// Where and how to write to an S3-compatible bucket.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    /// `scheme://host[:port]`, no trailing slash.
    pub endpoint: String,
    /// The bucket name.
    pub bucket: String,
    /// Whether the bucket is a path component (`endpoint/bucket/key`) rather
    /// than part of the endpoint's host.
    pub path_style: bool,
    /// The signing region.
    pub region: String,
    /// The access key id.
    pub access_key: String,
    /// The secret access key.
    pub secret_key: String,
    /// Object name prefix, without slashes at either end (may be empty).
    pub prefix: String,
    /// Whether the upload's month (`MM-YY`, UTC) follows the prefix as one
    /// more folder: runpod's `rp_upload` default bucket name, which becomes a
    /// folder when the bucket is the endpoint's path.
    pub month_folder: bool,
    /// Validity of presigned URLs.
    pub signed_url_ttl: Duration,
    /// Retries.
    pub retry: RetryPolicy,
    /// Payloads larger than this go up as a multipart upload in parts of this
    /// size (at least 5 MiB, S3's minimum); a failed part is retried alone.
    pub part_size: u64,
}

/// The default multipart part: 16 MiB.
pub const DEFAULT_PART: u64 = 16 << 20;
/// S3's smallest part (except the last).
const MIN_PART: u64 = 5 << 20;

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("path_style", &self.path_style)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("month_folder", &self.month_folder)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// Reads the `BUCKET_*` variables.
    pub fn from_env() -> Result<S3Config, CloudError> {
        S3Config::from_lookup(&env::process)
    }

    pub(crate) fn from_lookup(get: Lookup<'_>) -> Result<S3Config, CloudError> {
        let raw = env::required(
            get,
            BUCKET_ENDPOINT_URL_ENV,
            "set it to the bucket's endpoint, e.g. https://<bucket>.s3.<region>.amazonaws.com",
        )?;
        let bad_endpoint = || CloudError::BadEnv {
            var: BUCKET_ENDPOINT_URL_ENV,
            value: strip_userinfo(&raw),
            expected: "an http:// or https:// URL without credentials or query, its path (if any) the bucket and folders below it",
        };
        let (scheme, rest) = raw.split_once("://").ok_or_else(bad_endpoint)?;
        let rest = rest.trim_end_matches('/');
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !matches!(scheme, "http" | "https") || host.is_empty() || rest.contains(['@', '?', '#'])
        {
            return Err(bad_endpoint());
        }
        // A path names the bucket (its first segment) and folders inside it, as
        // botocore reads such an endpoint: `<endpoint>/<bucket>/<key>` path-style.
        let mut segments = path.split('/').filter(|_| !path.is_empty());
        let path_bucket = segments
            .next()
            .map(|b| env::bucket_name(BUCKET_ENDPOINT_URL_ENV, b))
            .transpose()?;
        let folders: Vec<&str> = segments.collect();
        if folders.iter().any(|f| !env::safe_part(f)) {
            return Err(bad_endpoint());
        }
        let access_key = env::required(
            get,
            BUCKET_ACCESS_KEY_ID_ENV,
            "set it to the access key id of the bucket's credentials",
        )?;
        let secret_key = env::required(
            get,
            BUCKET_SECRET_ACCESS_KEY_ENV,
            "set it to the secret access key of the bucket's credentials",
        )?;
        let named = get(BUCKET_NAME_ENV)
            .map(|b| b.trim().to_string())
            .filter(|b| !b.is_empty());
        let explicit_prefix = get(BUCKET_PREFIX_ENV).is_some();
        let prefix = env::prefix(get, BUCKET_PREFIX_ENV)?;
        let (bucket, path_style, prefix, month_folder) = match (path_bucket, named) {
            // runpod's `rp_upload` through botocore: the bucket it is given
            // (`BUCKET_NAME`, else the month) becomes the first folder of the key.
            (Some(bucket), named) => {
                let mut parts: Vec<String> = folders.iter().map(|f| f.to_string()).collect();
                if let Some(n) = &named {
                    parts.push(env::bucket_name(BUCKET_NAME_ENV, n)?);
                }
                if explicit_prefix && !prefix.is_empty() {
                    parts.push(prefix);
                }
                let month_folder = named.is_none() && !explicit_prefix;
                (bucket, true, parts.join("/"), month_folder)
            }
            (None, Some(b)) => (env::bucket_name(BUCKET_NAME_ENV, &b)?, true, prefix, false),
            (None, None) => {
                let first = host.split('.').next().unwrap_or_default();
                if !host.contains('.') || first.parse::<u8>().is_ok() {
                    return Err(CloudError::MissingEnv {
                        var: BUCKET_NAME_ENV,
                        hint: "the endpoint's host does not start with a bucket name; set BUCKET_NAME to the bucket, or give it as the endpoint's path (http://host:9000/<bucket>)",
                    });
                }
                (
                    env::bucket_name(BUCKET_ENDPOINT_URL_ENV, first)?,
                    false,
                    prefix,
                    false,
                )
            }
        };
        let region = get(BUCKET_REGION_ENV)
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .or_else(|| region_of(host))
            .unwrap_or_else(|| "us-east-1".to_string());
        let ttl = env::number(
            get,
            BUCKET_SIGNED_URL_TTL_ENV,
            MAX_TTL as f64,
            "a number of seconds from 1 to 604800",
        )?;
        if !(1.0..=MAX_TTL as f64).contains(&ttl) {
            return Err(CloudError::BadEnv {
                var: BUCKET_SIGNED_URL_TTL_ENV,
                value: ttl.to_string(),
                expected: "a number of seconds from 1 to 604800 (presigned URLs last at most 7 days)",
            });
        }
        Ok(S3Config {
            endpoint: format!("{scheme}://{host}"),
            bucket,
            path_style,
            region,
            access_key,
            secret_key,
            prefix,
            month_folder,
            signed_url_ttl: Duration::from_secs(ttl as u64),
            retry: env::retry(get, BUCKET_RETRIES_ENV, BUCKET_RETRY_BASE_SLEEP_ENV)?,
            part_size: DEFAULT_PART,
        })
    }
}

/// The text of the first `<name>` element.
fn xml_tag(body: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let end = body[start..].find(&format!("</{name}>"))? + start;
    Some(body[start..end].to_string())
}

/// `https://user:pass@host` → `https://host` (for error messages).
fn strip_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((s, rest)) => match rest.split_once('@') {
            Some((_, host)) => format!("{s}://…@{host}"),
            None => url.to_string(),
        },
        None => url.split('@').next_back().unwrap_or_default().to_string(),
    }
}

/// `eu-west-1` from `bucket.s3.eu-west-1.amazonaws.com` or `s3-eu-west-1.amazonaws.com`.
fn region_of(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    labels.windows(2).find_map(|w| match w {
        ["s3", r] if *r != "amazonaws" => Some((*r).to_string()),
        [s, _] if s.starts_with("s3-") => Some(s[3..].to_string()),
        _ => None,
    })
}

/// An S3-compatible bucket we write outputs to.
#[derive(Debug)]
pub struct S3Bucket {
    cfg: S3Config,
    agent: ureq::Agent,
}

impl S3Bucket {
    /// A client for `cfg` (no network).
    pub fn new(cfg: S3Config) -> S3Bucket {
        S3Bucket {
            cfg,
            agent: http::agent(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &S3Config {
        &self.cfg
    }

    /// The folders job outputs go under at `at`: the prefix, then the month
    /// (`MM-YY`) when [`S3Config::month_folder`] is set.
    pub(crate) fn key_prefix(&self, at: &Stamp) -> String {
        if !self.cfg.month_folder {
            return self.cfg.prefix.clone();
        }
        let month = format!("{}-{}", &at.date[4..6], &at.date[2..4]);
        if self.cfg.prefix.is_empty() {
            month
        } else {
            format!("{}/{month}", self.cfg.prefix)
        }
    }

    /// Fails unless the bucket exists and the credentials are accepted
    /// (`HEAD` on the bucket, signed).
    pub fn check(&self) -> Result<(), CloudError> {
        let target = format!("s3://{}", self.cfg.bucket);
        let path = self.path("");
        let reply = http::send(
            &self.agent,
            &self.cfg.retry,
            "check access to",
            &target,
            None,
            &mut || Ok(self.signed("HEAD", &path, Vec::new(), &Stamp::now())),
        )?;
        match reply.status {
            200..=299 => Ok(()),
            status => Err(CloudError::Status {
                action: "check access to",
                target,
                status,
                attempts: reply.attempts,
                message: match status {
                    301 | 307 => "the bucket lives in another region; set BUCKET_REGION or the regional endpoint".into(),
                    403 => "the credentials were refused or may not use this bucket; check BUCKET_ACCESS_KEY_ID and BUCKET_SECRET_ACCESS_KEY".into(),
                    404 => "no such bucket; check BUCKET_ENDPOINT_URL / BUCKET_NAME".into(),
                    _ => http::service_message(&reply.body),
                },
            }),
        }
    }

    /// Uploads `payload` as object `key` with `If-None-Match: *` (never
    /// replacing an existing object) and returns a presigned GET URL.
    pub fn upload(
        &self,
        key: &str,
        payload: Payload<'_>,
        content_type: &str,
    ) -> Result<Uploaded, CloudError> {
        let uri = format!("s3://{}/{key}", self.cfg.bucket);
        let len = payload.len()?;
        if len > self.cfg.part_size.max(MIN_PART) {
            self.upload_multipart(key, &uri, payload, len, content_type)?;
            return Ok(Uploaded {
                url: self.presigned_get(key, &Stamp::now()),
                uri,
            });
        }
        let path = self.path(key);
        let headers = vec![
            ("content-type".to_string(), content_type.to_string()),
            ("if-none-match".to_string(), "*".to_string()),
        ];
        let reply = http::send(
            &self.agent,
            &self.cfg.retry,
            "upload",
            &uri,
            Some(payload),
            &mut || Ok(self.signed("PUT", &path, headers.clone(), &Stamp::now())),
        )?;
        match reply.status {
            200..=299 => Ok(Uploaded {
                url: self.presigned_get(key, &Stamp::now()),
                uri,
            }),
            412 => Err(CloudError::Exists { target: uri }),
            status => Err(CloudError::Status {
                action: "upload",
                target: uri,
                status,
                attempts: reply.attempts,
                message: http::service_message(&reply.body),
            }),
        }
    }

    /// CreateMultipartUpload, UploadPart for each part (each retried on its
    /// own), CompleteMultipartUpload with `If-None-Match: *`; on failure the
    /// upload is aborted so no parts linger.
    fn upload_multipart(
        &self,
        key: &str,
        uri: &str,
        payload: Payload<'_>,
        len: u64,
        content_type: &str,
    ) -> Result<(), CloudError> {
        let path = self.path(key);
        let headers = vec![("content-type".to_string(), content_type.to_string())];
        let reply = http::send(
            &self.agent,
            &self.cfg.retry,
            "start an upload of",
            uri,
            Some(Payload::Bytes(&[])),
            &mut || {
                Ok(self.signed_query("POST", &path, "uploads=", headers.clone(), &Stamp::now()))
            },
        )?;
        let upload_id = match (reply.status, xml_tag(&reply.body, "UploadId")) {
            (200..=299, Some(id)) => id,
            (status, _) => {
                return Err(CloudError::Status {
                    action: "start an upload of",
                    target: uri.to_string(),
                    status,
                    attempts: reply.attempts,
                    message: http::service_message(&reply.body),
                });
            }
        };
        let id_query = format!("uploadId={}", enc_query(&upload_id));
        let result = self.send_parts(&path, &id_query, uri, payload, len);
        if result.is_err() {
            // Best effort: abort, so the parts do not linger (and cost) in the bucket.
            let _ = http::send(
                &self.agent,
                &RetryPolicy {
                    retries: 1,
                    ..self.cfg.retry
                },
                "abort the upload of",
                uri,
                None,
                &mut || {
                    Ok(self.signed_query("DELETE", &path, &id_query, Vec::new(), &Stamp::now()))
                },
            );
        }
        result
    }

    fn send_parts(
        &self,
        path: &str,
        id_query: &str,
        uri: &str,
        payload: Payload<'_>,
        len: u64,
    ) -> Result<(), CloudError> {
        let part_size = self.cfg.part_size.max(MIN_PART);
        let mut etags = Vec::new();
        let mut start = 0;
        while start < len {
            let n = etags.len() + 1;
            let part = http::Part {
                payload,
                start,
                len: part_size.min(len - start),
            };
            // Canonical query: sorted by name (partNumber < uploadId).
            let query = format!("partNumber={n}&{id_query}");
            let reply = http::send_part(
                &self.agent,
                &self.cfg.retry,
                "upload a part of",
                uri,
                Some(part),
                &mut || Ok(self.signed_query("PUT", path, &query, Vec::new(), &Stamp::now())),
            )?;
            match (reply.status, reply.etag) {
                (200..=299, Some(etag)) => etags.push(etag),
                (status, _) => {
                    return Err(CloudError::Status {
                        action: "upload a part of",
                        target: uri.to_string(),
                        status,
                        attempts: reply.attempts,
                        message: http::service_message(&reply.body),
                    });
                }
            }
            start += part.len;
        }
        let body: String = etags
            .iter()
            .enumerate()
            .map(|(i, e)| {
                format!(
                    "<Part><PartNumber>{}</PartNumber><ETag>{e}</ETag></Part>",
                    i + 1
                )
            })
            .collect();
        let body = format!("<CompleteMultipartUpload>{body}</CompleteMultipartUpload>");
        let headers = vec![
            ("content-type".to_string(), "application/xml".to_string()),
            ("if-none-match".to_string(), "*".to_string()),
        ];
        let reply = http::send(
            &self.agent,
            &self.cfg.retry,
            "finish the upload of",
            uri,
            Some(Payload::Bytes(body.as_bytes())),
            &mut || Ok(self.signed_query("POST", path, id_query, headers.clone(), &Stamp::now())),
        )?;
        // S3 may answer 200 and put the error in the body.
        match reply.status {
            200..=299 if !reply.body.contains("<Error>") => Ok(()),
            412 => Err(CloudError::Exists {
                target: uri.to_string(),
            }),
            status => Err(CloudError::Status {
                action: "finish the upload of",
                target: uri.to_string(),
                status,
                attempts: reply.attempts,
                message: http::service_message(&reply.body),
            }),
        }
    }

    /// The URL path of `key` (`/bucket/key` path-style, `/key` otherwise).
    fn path(&self, key: &str) -> String {
        if self.cfg.path_style {
            format!("/{}/{}", self.cfg.bucket, enc_path(key))
        } else {
            format!("/{}", enc_path(key))
        }
    }

    fn host(&self) -> &str {
        self.cfg
            .endpoint
            .split_once("://")
            .map_or(self.cfg.endpoint.as_str(), |(_, h)| h)
    }

    fn scope(&self, at: &Stamp) -> String {
        format!("{}/{}/s3/aws4_request", at.date, self.cfg.region)
    }

    fn signature(&self, at: &Stamp, canonical: &str) -> String {
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{}\n{}",
            at.full,
            self.scope(at),
            sha256_hex(canonical.as_bytes())
        );
        let mac = |key: &[u8], msg: &str| {
            hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), msg.as_bytes())
                .as_ref()
                .to_vec()
        };
        let k = mac(format!("AWS4{}", self.cfg.secret_key).as_bytes(), &at.date);
        let k = mac(&k, &self.cfg.region);
        let k = mac(&k, "s3");
        let k = mac(&k, "aws4_request");
        hex::encode(mac(&k, &to_sign))
    }

    /// A request signed with an `Authorization` header.
    fn signed(
        &self,
        method: &'static str,
        path: &str,
        headers: Vec<(String, String)>,
        at: &Stamp,
    ) -> Request {
        self.signed_query(method, path, "", headers, at)
    }

    /// [`S3Bucket::signed`] with a query, given in canonical form (names
    /// sorted, names and values encoded).
    fn signed_query(
        &self,
        method: &'static str,
        path: &str,
        query: &str,
        mut headers: Vec<(String, String)>,
        at: &Stamp,
    ) -> Request {
        headers.push(("host".into(), self.host().to_string()));
        headers.push(("x-amz-content-sha256".into(), UNSIGNED.into()));
        headers.push(("x-amz-date".into(), at.full.clone()));
        headers.sort();
        let signed_names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        let signed_names = signed_names.join(";");
        let canonical_headers: String = headers
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        let canonical =
            format!("{method}\n{path}\n{query}\n{canonical_headers}\n{signed_names}\n{UNSIGNED}");
        let auth = format!(
            "AWS4-HMAC-SHA256 Credential={}/{}, SignedHeaders={signed_names}, Signature={}",
            self.cfg.access_key,
            self.scope(at),
            self.signature(at, &canonical)
        );
        headers.retain(|(k, _)| k != "host");
        headers.push(("authorization".into(), auth));
        let url = if query.is_empty() {
            format!("{}{path}", self.cfg.endpoint)
        } else {
            format!("{}{path}?{query}", self.cfg.endpoint)
        };
        Request {
            method,
            url,
            headers,
        }
    }

    /// A presigned GET URL for `key`, signed at `at`.
    pub(crate) fn presigned_get(&self, key: &str, at: &Stamp) -> String {
        let path = self.path(key);
        let mut query = [
            ("X-Amz-Algorithm", "AWS4-HMAC-SHA256".to_string()),
            (
                "X-Amz-Credential",
                format!("{}/{}", self.cfg.access_key, self.scope(at)),
            ),
            ("X-Amz-Date", at.full.clone()),
            (
                "X-Amz-Expires",
                self.cfg.signed_url_ttl.as_secs().to_string(),
            ),
            ("X-Amz-SignedHeaders", "host".to_string()),
        ]
        .map(|(k, v)| format!("{}={}", enc_query(k), enc_query(&v)));
        query.sort();
        let query = query.join("&");
        let canonical = format!(
            "GET\n{path}\n{query}\nhost:{}\n\nhost\n{UNSIGNED}",
            self.host()
        );
        format!(
            "{}{path}?{query}&X-Amz-Signature={}",
            self.cfg.endpoint,
            self.signature(at, &canonical)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::env::fixed as lookup;

    #[test]
    fn worker_comfyui_endpoints_name_the_bucket_and_region() {
        let get = lookup(&[
            (
                BUCKET_ENDPOINT_URL_ENV,
                "https://my-out.s3.eu-west-1.amazonaws.com/",
            ),
            (BUCKET_ACCESS_KEY_ID_ENV, "AK"),
            (BUCKET_SECRET_ACCESS_KEY_ENV, "SK"),
        ]);
        let c = S3Config::from_lookup(&get).unwrap();
        assert_eq!(c.bucket, "my-out");
        assert!(!c.path_style);
        assert_eq!(c.region, "eu-west-1");
        assert_eq!(c.endpoint, "https://my-out.s3.eu-west-1.amazonaws.com");
        assert_eq!(c.prefix, "comfyver");
        assert!(!format!("{c:?}").contains("SK"));
    }

    fn with_endpoint(endpoint: &str, more: &[(&str, &str)]) -> Result<S3Config, CloudError> {
        let mut vars = vec![
            (BUCKET_ENDPOINT_URL_ENV, endpoint),
            (BUCKET_ACCESS_KEY_ID_ENV, "AK"),
            (BUCKET_SECRET_ACCESS_KEY_ENV, "SK"),
        ];
        vars.extend_from_slice(more);
        S3Config::from_lookup(&lookup(&vars))
    }

    #[test]
    fn an_endpoint_path_is_the_bucket_and_folders_as_botocore_reads_it() {
        let c = with_endpoint("http://127.0.0.1:9000/outputs/", &[]).unwrap();
        assert_eq!(
            (c.endpoint.as_str(), c.bucket.as_str(), c.path_style),
            ("http://127.0.0.1:9000", "outputs", true)
        );
        assert_eq!((c.prefix.as_str(), c.month_folder), ("", true));
        // 2026-03-05: runpod's default bucket name `%m-%y` becomes a folder.
        let b = S3Bucket::new(c);
        assert_eq!(b.key_prefix(&Stamp::at(1_772_668_800)), "03-26");

        let c = with_endpoint("http://127.0.0.1:9000/outputs/team/a", &[]).unwrap();
        assert_eq!((c.prefix.as_str(), c.month_folder), ("team/a", true));
        let b = S3Bucket::new(c);
        assert_eq!(b.key_prefix(&Stamp::at(1_772_668_800)), "team/a/03-26");

        // BUCKET_NAME is rp_upload's `bucket_name`, BUCKET_PREFIX its `prefix`: both replace the month.
        let c = with_endpoint(
            "https://acc.r2.example/outputs/team",
            &[(BUCKET_NAME_ENV, "renders"), (BUCKET_PREFIX_ENV, "/p/q/")],
        )
        .unwrap();
        assert_eq!(
            (c.prefix.as_str(), c.month_folder),
            ("team/renders/p/q", false)
        );
        let c = with_endpoint("http://127.0.0.1:9000/outputs", &[(BUCKET_PREFIX_ENV, "")]).unwrap();
        assert_eq!((c.prefix.as_str(), c.month_folder), ("", false));

        for bad in [
            "http://127.0.0.1:9000/Not_A_Bucket",
            "http://127.0.0.1:9000/outputs//x",
            "http://127.0.0.1:9000/outputs/../x",
            "http://127.0.0.1:9000/outputs?x=1",
        ] {
            let e = with_endpoint(bad, &[]).unwrap_err();
            assert!(
                matches!(
                    e,
                    CloudError::BadEnv {
                        var: BUCKET_ENDPOINT_URL_ENV,
                        ..
                    }
                ),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn missing_credentials_are_errors_not_fallbacks() {
        let get = lookup(&[(BUCKET_ENDPOINT_URL_ENV, "http://127.0.0.1:9000")]);
        let e = S3Config::from_lookup(&get).unwrap_err();
        assert!(e.to_string().contains(BUCKET_ACCESS_KEY_ID_ENV), "{e}");
        let get = lookup(&[
            (BUCKET_ENDPOINT_URL_ENV, "http://127.0.0.1:9000"),
            (BUCKET_ACCESS_KEY_ID_ENV, "AK"),
            (BUCKET_SECRET_ACCESS_KEY_ENV, "SK"),
        ]);
        let e = S3Config::from_lookup(&get).unwrap_err();
        assert!(e.to_string().contains(BUCKET_NAME_ENV), "{e}");
        let get = lookup(&[
            (
                BUCKET_ENDPOINT_URL_ENV,
                "https://user:hunter2@host.example/x",
            ),
            (BUCKET_ACCESS_KEY_ID_ENV, "AK"),
            (BUCKET_SECRET_ACCESS_KEY_ENV, "SK"),
        ]);
        let e = S3Config::from_lookup(&get).unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    /// AWS's documented example of a presigned GET ("Example: GET Object",
    /// Authenticating Requests: Using Query Parameters, SigV4).
    #[test]
    fn presigned_url_matches_the_aws_documentation_example() {
        let b = S3Bucket::new(S3Config {
            endpoint: "https://examplebucket.s3.amazonaws.com".into(),
            bucket: "examplebucket".into(),
            path_style: false,
            region: "us-east-1".into(),
            access_key: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY".into(),
            prefix: String::new(),
            month_folder: false,
            signed_url_ttl: Duration::from_secs(86_400),
            retry: RetryPolicy::default(),
            part_size: DEFAULT_PART,
        });
        // 2013-05-24T00:00:00Z
        let url = b.presigned_get("test.txt", &Stamp::at(1_369_353_600));
        assert!(
            url.ends_with(
                "X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
            ),
            "{url}"
        );
    }
}
