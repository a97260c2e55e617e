//! Small blocking clients for the buckets job outputs go to.
//!
//! - [`GcsBucket`]: Google Cloud Storage over the JSON API. Media uploads
//!   streamed from memory or disk with `ifGenerationMatch=0` (never
//!   overwrite), resumable in chunks above 8 MiB, a `testIamPermissions` pre-check, V4 signed URLs
//!   (GOOG4-RSA-SHA256) or public URLs, OAuth2 tokens from a service-account
//!   key (RS256 JWT bearer grant). `STORAGE_EMULATOR_HOST` is honoured as
//!   Google's clients honour it: requests go there and carry no credentials.
//! - [`S3Bucket`]: S3-compatible storage with Signature V4: streamed `PUT`
//!   with `If-None-Match: *` (multipart above 16 MiB), a signed `HEAD` bucket pre-check, presigned GET
//!   URLs. Configured with worker-comfyui's `BUCKET_*` variables.
//! - [`Bucket`]: either one, chosen by [`Provider`] and read from the
//!   environment; it names objects `<prefix>/<job id>/<file>` and picks the
//!   content type from the file name.
//!
//! Every request is retried with exponential backoff and jitter on connection
//! errors, timeouts, `408`, `429` and `5xx`, never on another `4xx`
//! ([`RetryPolicy`]). Errors ([`CloudError`]) never hold key material,
//! access keys, tokens or signatures.
//!
//! Hand-written on `ureq` and `aws-lc-rs` (both already in comfyver's tree)
//! rather than on `object_store` or the Google SDKs: those are async, pull
//! in a runtime and much more code, and none reads `STORAGE_EMULATOR_HOST`
//! or works against `gcp-storage-emulator`'s JSON API.

mod clock;
mod env;
mod error;
mod gcs;
mod http;
mod retry;
mod s3;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

pub use clock::basic_utc;
pub use error::CloudError;
pub use gcs::{
    DEFAULT_CHUNK, GCS_BUCKET_ENV, GCS_PREFIX_ENV, GCS_PUBLIC_ENV, GCS_RETRIES_ENV,
    GCS_RETRY_BASE_SLEEP_ENV, GCS_SIGNED_URL_TTL_ENV, GOOGLE_APPLICATION_CREDENTIALS_ENV,
    GcsBucket, GcsConfig, STORAGE_EMULATOR_HOST_ENV,
};
pub use http::Payload;
pub use retry::RetryPolicy;
pub use s3::{
    BUCKET_ACCESS_KEY_ID_ENV, BUCKET_ENDPOINT_URL_ENV, BUCKET_NAME_ENV, BUCKET_PREFIX_ENV,
    BUCKET_REGION_ENV, BUCKET_RETRIES_ENV, BUCKET_RETRY_BASE_SLEEP_ENV,
    BUCKET_SECRET_ACCESS_KEY_ENV, BUCKET_SIGNED_URL_TTL_ENV, DEFAULT_PART, S3Bucket, S3Config,
};

/// An uploaded object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    /// Where to download it: a signed URL, or the public URL.
    pub url: String,
    /// `gs://bucket/name` or `s3://bucket/key`.
    pub uri: String,
}

/// Which kind of bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    /// Google Cloud Storage (`GCS_*` variables).
    Gcs,
    /// S3-compatible storage (`BUCKET_*` variables).
    S3,
}

/// A bucket of either kind.
#[derive(Debug)]
pub enum Bucket {
    /// Google Cloud Storage.
    Gcs(GcsBucket),
    /// S3-compatible.
    S3(S3Bucket),
}

impl Bucket {
    /// Reads the provider's variables and loads its credentials (no network).
    pub fn from_env(provider: Provider) -> Result<Bucket, CloudError> {
        Ok(match provider {
            Provider::Gcs => Bucket::Gcs(GcsBucket::new(GcsConfig::from_env()?)?),
            Provider::S3 => Bucket::S3(S3Bucket::new(S3Config::from_env()?)),
        })
    }

    /// The permission pre-check: fails unless uploads can work.
    pub fn check(&self) -> Result<(), CloudError> {
        match self {
            Bucket::Gcs(b) => b.check(),
            Bucket::S3(b) => b.check(),
        }
    }

    /// `gcs_url` or `s3_url`: the output entry type worker-comfyui clients know.
    pub fn url_type(&self) -> &'static str {
        match self {
            Bucket::Gcs(_) => "gcs_url",
            Bucket::S3(_) => "s3_url",
        }
    }

    /// The object name for a job's file: `<prefix>/<job id>/<file>`, where
    /// an S3 prefix may end with the month (see [`S3Config::month_folder`]).
    pub fn object_name(&self, job_id: &str, file: &str) -> String {
        let prefix = match self {
            Bucket::Gcs(b) => b.config().prefix.clone(),
            Bucket::S3(b) => b.key_prefix(&clock::Stamp::now()),
        };
        if prefix.is_empty() {
            format!("{job_id}/{file}")
        } else {
            format!("{prefix}/{job_id}/{file}")
        }
    }

    /// Uploads one job output as [`Bucket::object_name`]. `job_id` and
    /// `file` must be safe single names (the caller sanitises them).
    pub fn upload(
        &self,
        job_id: &str,
        file: &str,
        payload: Payload<'_>,
    ) -> Result<Uploaded, CloudError> {
        let name = self.object_name(job_id, file);
        let ct = content_type(file);
        match self {
            Bucket::Gcs(b) => b.upload(&name, payload, ct),
            Bucket::S3(b) => b.upload(&name, payload, ct),
        }
    }
}

/// The MIME type for a file name, by extension (`application/octet-stream` when unknown).
pub fn content_type(file: &str) -> &'static str {
    let ext = file
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "bmp" => "image/bmp",
        "tif" | "tiff" => "image/tiff",
        "svg" => "image/svg+xml",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        "avi" => "video/x-msvideo",
        "mp3" => "audio/mpeg",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "ogg" => "audio/ogg",
        "opus" => "audio/opus",
        "m4a" => "audio/mp4",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "glb" => "model/gltf-binary",
        "gltf" => "model/gltf+json",
        "obj" => "model/obj",
        _ => "application/octet-stream",
    }
}

/// Everything but RFC 3986's unreserved characters is escaped.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');
/// The same, keeping `/` (object names in paths).
const PATH: &AsciiSet = &QUERY.remove(b'/');

/// A query name or value, as the signing schemes canonicalise it.
pub(crate) fn enc_query(s: &str) -> String {
    utf8_percent_encode(s, QUERY).to_string()
}

/// A path (slashes kept), as the signing schemes canonicalise it.
pub(crate) fn enc_path(s: &str) -> String {
    utf8_percent_encode(s, PATH).to_string()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_come_from_the_extension() {
        assert_eq!(content_type("ComfyUI_00001_.PNG"), "image/png");
        assert_eq!(content_type("clip.mp4"), "video/mp4");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }

    #[test]
    fn encodings_follow_the_signing_rules() {
        assert_eq!(enc_query("a b/c@d~"), "a%20b%2Fc%40d~");
        assert_eq!(enc_path("pre/job/x y+.png"), "pre/job/x%20y%2B.png");
    }
}
