use std::path::PathBuf;

/// Why an import, export, migration or edit failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// An input file could not be read.
    #[error("could not read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// An input file is not JSON.
    #[error("{} is not valid JSON", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        #[source]
        source: serde_json::Error,
    },
    /// An input file is not YAML.
    #[error("{} is not valid YAML", path.display())]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The parser's error (with line and column).
        #[source]
        source: yaml_rust2::ScanError,
    },
    /// An export could not be written as YAML.
    #[error("could not write the export as YAML")]
    YamlOut(#[source] yaml_rust2::EmitError),
    /// An input file is JSON but not of the expected format.
    #[error("{}: {at}: {expected}", path.display())]
    Format {
        /// The file.
        path: PathBuf,
        /// The JSON path of the problem.
        at: String,
        /// What was expected there.
        expected: String,
    },
    /// A version id is not a safe name.
    #[error("`{id}` is not a version id: {reason}")]
    BadId {
        /// The id given.
        id: String,
        /// Why it is refused.
        reason: String,
    },
    /// The target version already exists.
    #[error("version `{id}` already exists ({}); choose another id or remove the file first", path.display())]
    Exists {
        /// The id.
        id: String,
        /// Its spec file.
        path: PathBuf,
    },
    /// The version to edit does not exist.
    #[error("no version `{id}`: {} does not exist (create it with `comfyver new {id}`)", path.display())]
    NoVersion {
        /// The id.
        id: String,
        /// The spec file looked for.
        path: PathBuf,
    },
    /// A `REPO[@REF]` argument is not a repository.
    #[error(
        "`{given}` is not a repository: expected REPO[@REF] with an https, ssh, git, file:// URL or an absolute path"
    )]
    BadRepo {
        /// The argument.
        given: String,
    },
    /// The spec as read, or as produced by the import, is not valid.
    #[error(transparent)]
    Spec(#[from] comfyver_spec::SpecError),
    /// The edit would make the spec invalid, or names nothing in it.
    #[error(transparent)]
    Edit(#[from] comfyver_spec::edit::EditError),
    /// The version has no resolved lock to export.
    #[error("version `{id}` has no resolved lock yet: run `comfyver resolve {id}` first")]
    NoLock {
        /// The id.
        id: String,
    },
    /// Resolving the migrated spec failed (the spec was not written).
    #[error("the migrated spec could not be resolved, so nothing was written")]
    Resolve(#[source] Box<comfyver_resolver::ResolveError>),
    /// Reading the lock failed.
    #[error("could not read the lock of `{id}`")]
    Lock {
        /// The id.
        id: String,
        /// The cause.
        #[source]
        source: Box<comfyver_resolver::ResolveError>,
    },
    /// The spec file could not be written.
    #[error(transparent)]
    Write(#[from] comfyver_fs::FsError),
    /// The folder given to `import install` is not a ComfyUI install this
    /// import can read.
    #[error("{}: {why}", dir.display())]
    NotInstall {
        /// The folder.
        dir: PathBuf,
        /// What is missing and how to fix it.
        why: String,
    },
    /// Reading a git work tree failed.
    #[error("{}: {what}", dir.display())]
    Git {
        /// The work tree.
        dir: PathBuf,
        /// Which git command failed and why.
        what: String,
        /// The I/O error, when git could not be run.
        #[source]
        source: Option<std::io::Error>,
    },
    /// The install's model files could not be taken into the model store.
    #[error("the install's models could not be taken into the model store, so no spec was written")]
    Models(#[source] Box<comfyver_models::ModelsError>),
    /// The venv's installed set could not be read.
    #[error("could not read the installed Python packages of {}", venv.display())]
    Python {
        /// The venv.
        venv: PathBuf,
        /// The cause.
        #[source]
        source: Box<comfyver_python::PythonError>,
    },
    /// The lock of an imported version could not be written (the spec was).
    #[error("the lock of `{id}` could not be written (the spec was): run `comfyver resolve {id}`")]
    WriteLock {
        /// The id.
        id: String,
        /// The cause.
        #[source]
        source: Box<comfyver_resolver::ResolveError>,
    },
}
