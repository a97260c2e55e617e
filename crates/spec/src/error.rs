use std::fmt;
use std::path::PathBuf;

/// One problem found in a spec, at a JSON path such as `custom_nodes[2].repo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Where: a JSON path (`$` for the document itself).
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl Issue {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Issue {
        Issue {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a spec could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The file could not be read.
    #[error("could not read version spec {path}")]
    Read {
        /// The spec file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The versions directory could not be listed.
    #[error("could not list the versions directory {}", .dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("{path}:{line}:{column}: invalid JSON: {message}")]
    Syntax {
        /// The spec file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The parser's message.
        message: String,
    },
    /// The JSON is well-formed but the spec is not valid.
    #[error("{path}: {} problem{}:\n{}", issues.len(), if issues.len() == 1 { "" } else { "s" }, render(issues))]
    Invalid {
        /// The spec file.
        path: PathBuf,
        /// Every problem found.
        issues: Vec<Issue>,
    },
}

impl SpecError {
    /// The problems of an [`SpecError::Invalid`]; empty for other errors.
    pub fn issues(&self) -> &[Issue] {
        match self {
            SpecError::Invalid { issues, .. } => issues,
            _ => &[],
        }
    }
}

fn render(issues: &[Issue]) -> String {
    issues
        .iter()
        .map(|i| format!("  - {i}"))
        .collect::<Vec<_>>()
        .join("\n")
}
