use std::path::PathBuf;

/// Why a version could not be realized, verified or removed.
#[derive(Debug, thiserror::Error)]
pub enum RealizeError {
    /// Getting the core or the node packs failed.
    #[error("could not check out the version's repositories")]
    Nodes(#[from] comfyver_nodes::NodesError),
    /// Getting the models failed.
    #[error("could not bring the version's models into the store")]
    Models(#[from] comfyver_models::ModelsError),
    /// Building the Python environment failed.
    #[error("could not build the version's Python environment")]
    Python(#[from] comfyver_python::PythonError),
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] comfyver_fs::FsError),
    /// The home exists but comfyver did not make it.
    #[error(
        "{path} exists and is not a comfyver home (no .comfyver/ inside): move it away or choose \
         another home with COMFY_HOME"
    )]
    NotOurs {
        /// The directory in the way.
        path: PathBuf,
    },
    /// An I/O error on a path.
    #[error("{what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl RealizeError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        RealizeError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}
