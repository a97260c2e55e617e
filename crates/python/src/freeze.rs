//! The exact set of distributions installed in a venv.

use std::path::{Path, PathBuf};

use super::error::PythonError;
use super::requirements::normalize_name;

/// Lists every distribution installed in `venv` (not the base interpreter's,
/// even with system site packages) as sorted `name==version` lines with
/// normalized names; direct-URL installs are `name @ <url>` (VCS installs
/// pinned to their commit).
///
/// Reads the metadata directories of the venv's `site-packages` as
/// `importlib.metadata` does (`*.dist-info/METADATA`, `*.egg-info`, PEP 610
/// `direct_url.json`), without starting an interpreter: it works for uv and
/// pip venvs alike and costs a directory listing.
pub fn freeze(venv: &Path) -> Result<Vec<String>, PythonError> {
    let mut lines = Vec::new();
    for site in site_packages(venv)? {
        let entries = std::fs::read_dir(&site).map_err(|source| read_err(&site, source))?;
        for entry in entries {
            let entry = entry.map_err(|source| read_err(&site, source))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let line = if name.ends_with(".dist-info") {
                distribution(&path.join("METADATA"), Some(&path.join("direct_url.json")))?
            } else if name.ends_with(".egg-info") {
                // A directory with PKG-INFO, or the PKG-INFO file itself.
                let info = if path.is_dir() {
                    path.join("PKG-INFO")
                } else {
                    path
                };
                distribution(&info, None)?
            } else {
                None
            };
            lines.extend(line.as_deref().and_then(normalize_line));
        }
    }
    lines.sort();
    lines.dedup();
    Ok(lines)
}

/// `<venv>/lib*/python*/site-packages`, each once (`lib64` is often a link
/// to `lib`).
fn site_packages(venv: &Path) -> Result<Vec<PathBuf>, PythonError> {
    let mut found: Vec<PathBuf> = Vec::new();
    for lib in ["lib", "lib64"] {
        let dir = venv.join(lib);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let site = entry.path().join("site-packages");
            let is_python = entry.file_name().to_string_lossy().starts_with("python");
            if !is_python || !site.is_dir() {
                continue;
            }
            let real = std::fs::canonicalize(&site).unwrap_or(site);
            if !found.contains(&real) {
                found.push(real);
            }
        }
    }
    Ok(found)
}

/// The freeze line of one distribution (before normalizing), from its
/// metadata file (RFC 822 headers) and PEP 610 file; `None` when the
/// metadata is unreadable or names no distribution (`importlib.metadata`
/// skips those too).
fn distribution(metadata: &Path, direct_url: Option<&Path>) -> Result<Option<String>, PythonError> {
    let Ok(bytes) = std::fs::read(metadata) else {
        return Ok(None);
    };
    let text = String::from_utf8_lossy(&bytes);
    let (Some(name), Some(version)) = (header(&text, "Name"), header(&text, "Version")) else {
        return Ok(None);
    };
    let url = direct_url
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|u| direct_reference(&u));
    Ok(Some(match url {
        Some(url) => format!("{name} @ {url}"),
        None => format!("{name}=={version}"),
    }))
}

/// The first value of header `key` (case-insensitive) in the header block.
fn header<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// What `pip freeze` prints after `@` for a PEP 610 record: a VCS install
/// pinned to its commit, an archive or a local directory by its URL.
fn direct_reference(u: &serde_json::Value) -> Option<String> {
    let url = u.get("url")?.as_str()?;
    if let Some(vcs) = u
        .get("vcs_info")
        .filter(|v| v.as_object().is_some_and(|o| !o.is_empty()))
    {
        let kind = vcs.get("vcs")?.as_str()?;
        let commit = vcs.get("commit_id")?.as_str()?;
        return Some(format!("{kind}+{url}@{commit}"));
    }
    (u.get("archive_info").is_some() || u.get("dir_info").is_some()).then(|| url.to_string())
}

fn read_err(path: &Path, source: std::io::Error) -> PythonError {
    comfyver_fs::FsError::Read {
        path: path.to_path_buf(),
        source,
    }
    .into()
}

/// `Foo_Bar==1.0` → `foo-bar==1.0`; `Foo @ url` → `foo @ url`.
fn normalize_line(line: &str) -> Option<String> {
    let line = line.trim();
    if line.is_empty() {
        return None;
    }
    if let Some((name, url)) = line.split_once(" @ ") {
        return Some(format!("{} @ {}", normalize_name(name), url.trim()));
    }
    let (name, version) = line.split_once("==")?;
    Some(format!("{}=={}", normalize_name(name), version.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_normalized() {
        assert_eq!(
            normalize_line("Foo_Bar==1.0").as_deref(),
            Some("foo-bar==1.0")
        );
        assert_eq!(
            normalize_line("My.Pkg @ git+https://h/r@abc").as_deref(),
            Some("my-pkg @ git+https://h/r@abc")
        );
        assert_eq!(normalize_line("  "), None);
    }
}
