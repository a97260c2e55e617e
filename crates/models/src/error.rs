use std::path::PathBuf;

use comfyver_fs::FsError;

/// Why a model operation failed. Messages name the model and say how to fix it;
/// URLs are always redacted and tokens never appear.
#[derive(Debug, thiserror::Error)]
pub enum ModelsError {
    /// A model path would escape the store.
    #[error("model path `{path}` is unsafe: {reason}; fix `name`/`target_subdir` in the spec")]
    UnsafePath {
        /// The offending relative path.
        path: String,
        /// Why it is unsafe.
        reason: String,
    },
    /// Two different sources land on the same file.
    #[error(
        "models/{path} is claimed by two different sources ({first} and {second}); \
         give one of them another `name` or `target_subdir`, or remove the stored file \
         and its index entry with `comfyver models gc`"
    )]
    Conflict {
        /// The store path.
        path: String,
        /// The source already using it (redacted).
        first: String,
        /// The other source (redacted).
        second: String,
    },
    /// The model source cannot be parsed.
    #[error("model {path}: bad source `{url}`")]
    BadSource {
        /// The store path.
        path: String,
        /// The source (redacted).
        url: String,
        /// The parse error.
        #[source]
        source: comfyver_spec::model_source::ModelSourceError,
    },
    /// The server answered with a status that retrying cannot fix.
    #[error("model {path}: {url} answered HTTP {status}; {hint}")]
    HttpStatus {
        /// The store path.
        path: String,
        /// The URL (redacted).
        url: String,
        /// The HTTP status.
        status: u16,
        /// What to do about it.
        hint: String,
    },
    /// The download kept failing after every retry.
    #[error(
        "model {path}: downloading {url} failed after {attempts} attempts ({detail}); \
         check the network and run the command again: the download resumes where it stopped \
         (raise --retries for a flaky link)"
    )]
    Transfer {
        /// The store path.
        path: String,
        /// The URL (redacted).
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure, with secrets removed.
        detail: String,
    },
    /// The server announced or sent more bytes than the model may have.
    #[error(
        "model {path}: {url}: {detail}; the partial download was deleted and nothing was \
         put in the store; check the URL and the spec's `size`"
    )]
    TooLarge {
        /// The store path.
        path: String,
        /// The URL (redacted).
        url: String,
        /// What was announced or sent, and the limit.
        detail: String,
    },
    /// A job model's URL (or a redirect) leads where jobs may not fetch from.
    #[error("model {path}: {url} is refused: {reason}")]
    HostRefused {
        /// The store path.
        path: String,
        /// The URL (redacted).
        url: String,
        /// Why (scheme, loopback, private, link-local or metadata address).
        reason: String,
    },
    /// Redirects went on without end.
    #[error(
        "model {path}: {url} redirected more than {max} times (a redirect loop?); \
         check the URL in the spec"
    )]
    Redirects {
        /// The store path.
        path: String,
        /// The URL (redacted).
        url: String,
        /// The most redirects followed.
        max: u32,
    },
    /// The bytes received do not match the spec.
    #[error(
        "model {path}: {what} mismatch for {url}: expected {expected}, got {actual}; \
         the partial download was deleted; fix the checksum/size in the spec if the file \
         changed upstream"
    )]
    Mismatch {
        /// The store path.
        path: String,
        /// The source (redacted).
        url: String,
        /// `sha256`, `blake3` or `size`.
        what: &'static str,
        /// The spec's value.
        expected: String,
        /// What was received.
        actual: String,
    },
    /// A file already at the model's path has other content than the spec
    /// (or the store's index) says: damaged, or not this model.
    #[error(
        "{file} already exists and its {what} is {actual}, not {expected} as the spec or the \
         store's index says; it was left untouched: run the command again with --repair \
         (`comfyver models fetch --repair <id>` or `comfyver realize --repair <id>`) to move \
         it aside into .comfyver/damaged/ and fetch it again, or fix the spec"
    )]
    ExistingMismatch {
        /// The existing file.
        file: PathBuf,
        /// `sha256`, `blake3` or `size`.
        what: &'static str,
        /// The spec's value.
        expected: String,
        /// The file's value.
        actual: String,
    },
    /// A local source could not be read.
    #[error("model {path}: cannot read the local source {file}")]
    LocalSource {
        /// The store path.
        path: String,
        /// The source file.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file in the store could not be read or written.
    #[error("could not {action} {file}: check that MODELS_DIR is writable and has free space")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file involved.
        file: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A second worker whose lock was not seen restarted the same partial
    /// download under its name; this worker's bytes are not published.
    #[error(
        "model {path}: another worker restarted its partial download {file} meanwhile, so this copy was not published; run again (the other worker's download goes on)"
    )]
    PartialReplaced {
        /// The store path.
        path: String,
        /// The partial file.
        file: PathBuf,
    },
    /// The store index is unreadable.
    #[error(
        "the model index {file} is not valid ({message}); delete it, it is rebuilt on the next fetch"
    )]
    Index {
        /// The index file.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A lock or atomic write failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Several models failed; the CLI lists each with its causes.
    #[error("{} models failed", .0.len())]
    Several(Vec<ModelsError>),
}

impl ModelsError {
    pub(crate) fn io(action: &'static str, file: &std::path::Path, source: std::io::Error) -> Self {
        ModelsError::Io {
            action,
            file: file.to_path_buf(),
            source,
        }
    }
}
