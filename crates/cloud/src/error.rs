//! The one error type of the crate.

use std::path::PathBuf;

/// What went wrong talking to a bucket. Messages never hold key material,
/// access keys, tokens or signatures.
#[derive(Debug, thiserror::Error)]
pub enum CloudError {
    /// A required variable is missing.
    #[error("{var} is not set: {hint}")]
    MissingEnv {
        /// The variable.
        var: &'static str,
        /// What to set it to.
        hint: &'static str,
    },
    /// A variable has a value we cannot use (never used for secret variables).
    #[error("{var}=`{value}` is not valid: expected {expected}")]
    BadEnv {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What it should look like.
        expected: &'static str,
    },
    /// The service-account key file cannot be read.
    #[error(
        "could not read the service-account key file {} (GOOGLE_APPLICATION_CREDENTIALS): check the path and its permissions",
        path.display()
    )]
    KeyFileRead {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The service-account key file is not a usable service-account key.
    #[error(
        "the service-account key file {} (GOOGLE_APPLICATION_CREDENTIALS) is not usable: {problem}; download a JSON key of type `service_account` from the Google Cloud console",
        path.display()
    )]
    KeyFileInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it (never its contents).
        problem: String,
    },
    /// A local output file cannot be read for upload.
    #[error("could not read {} to upload it", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The service answered with an error status (after retries when it was retryable).
    #[error("could not {action} {target}: HTTP {status} after {attempts} attempt(s): {message}")]
    Status {
        /// What we tried (`upload`, `check write access to`, ...).
        action: &'static str,
        /// The object or bucket (`gs://bucket/name`).
        target: String,
        /// The HTTP status.
        status: u16,
        /// How many requests were sent.
        attempts: u32,
        /// The service's own short explanation, or a hint.
        message: String,
    },
    /// The service could not be reached (after retries).
    #[error(
        "could not {action} {target}: no answer after {attempts} attempt(s); check the endpoint and the network"
    )]
    Transport {
        /// What we tried.
        action: &'static str,
        /// The object or bucket.
        target: String,
        /// How many requests were sent.
        attempts: u32,
        /// The last transport error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The object exists already: outputs never overwrite.
    #[error(
        "{target} already exists; comfyver never overwrites an object (is another job using the same job id?)"
    )]
    Exists {
        /// The object.
        target: String,
    },
    /// The permission pre-check found that objects cannot be created.
    #[error(
        "the credentials may not create objects in {bucket} (missing {permission}); grant the service account a role with it, e.g. Storage Object Creator"
    )]
    Denied {
        /// The bucket (`gs://bucket`).
        bucket: String,
        /// The missing permission.
        permission: &'static str,
    },
    /// The OAuth token endpoint gave no usable token.
    #[error(
        "the OAuth token endpoint of the service-account key answered without a usable access token: {problem}"
    )]
    Token {
        /// What was wrong with the answer.
        problem: String,
    },
    /// Signing failed (a key that parsed but cannot sign).
    #[error("could not sign with the service-account key; the key file may be damaged")]
    Sign,
}
