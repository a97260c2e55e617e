use std::path::{Path, PathBuf};

use crate::error::Issue;
use crate::validate::validate;
use crate::{SpecError, VersionSpec};

/// A spec that parsed and validated, with the warnings found on the way.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The file it came from.
    pub path: PathBuf,
    /// The spec.
    pub spec: VersionSpec,
    /// Problems that do not stop comfyver (e.g. a custom `target_subdir`).
    pub warnings: Vec<Issue>,
}

/// Reads, parses and validates `path`; the spec's `version_id` must equal the
/// file's stem.
pub fn load_spec(path: &Path) -> Result<Loaded, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let stem = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .map(|n| n.strip_suffix(".json").map(str::to_string).unwrap_or(n));
    parse_spec(&text, path, stem.as_deref())
}

/// The spec files (`*.json`) of a versions directory, sorted by name.
pub fn spec_files(dir: &Path) -> Result<Vec<PathBuf>, SpecError> {
    let entries = std::fs::read_dir(dir).map_err(|source| SpecError::ReadDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    paths.sort();
    Ok(paths)
}

/// Every spec of a versions directory, loaded, and the files that failed to
/// load, each with its error. A missing directory holds no spec.
pub fn load_specs(dir: &Path) -> Result<SpecScan, SpecError> {
    let paths = match spec_files(dir) {
        Ok(paths) => paths,
        Err(SpecError::ReadDir { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(SpecScan::default());
        }
        Err(e) => return Err(e),
    };
    let mut scan = SpecScan::default();
    for path in paths {
        match load_spec(&path) {
            Ok(loaded) => scan.specs.push(loaded),
            Err(err) => scan.unreadable.push((path, err)),
        }
    }
    Ok(scan)
}

/// What [`load_specs`] found.
#[derive(Debug, Default)]
pub struct SpecScan {
    /// The specs that loaded, sorted by file name.
    pub specs: Vec<Loaded>,
    /// Files that could not be read, parsed or validated, with the error.
    pub unreadable: Vec<(PathBuf, SpecError)>,
}

/// Parses and validates spec text. `origin` names the source in errors;
/// `expected_id`, when given, must equal the spec's `version_id`. A UTF-8
/// byte order mark at the start is accepted; a key given twice in one object
/// is a syntax error naming the key and where.
pub fn parse_spec(
    text: &str,
    origin: &Path,
    expected_id: Option<&str>,
) -> Result<Loaded, SpecError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let value = crate::strict_json::parse(text).map_err(|e| SpecError::Syntax {
        path: origin.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    })?;
    let (errors, warnings) = validate(&value, expected_id);
    if !errors.is_empty() {
        return Err(SpecError::Invalid {
            path: origin.to_path_buf(),
            issues: errors,
        });
    }
    let spec: VersionSpec = serde_json::from_value(value).map_err(|e| SpecError::Invalid {
        path: origin.to_path_buf(),
        issues: vec![Issue::new("$", e.to_string())],
    })?;
    Ok(Loaded {
        path: origin.to_path_buf(),
        spec,
        warnings,
    })
}

/// serde_json appends " at line L column C"; we print the position ourselves.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}
