//! Collecting the requirement inputs of one version into one resolution.

use std::path::{Path, PathBuf};

use comfyver_spec::{UrlRewrites, digest::Digest, digest::digest_json, version::PythonSettings};
use serde::Serialize;

use super::error::{PythonError, redact_text};
use super::limits::Limits;
use super::pyproject;

/// Everything the Python environment of a version is built from.
#[derive(Debug, Clone, Default)]
pub struct PythonInputs {
    /// The core checkout (its `requirements.txt` is read).
    pub core_dir: PathBuf,
    /// Custom node packs: `(name, directory)`, in spec order.
    pub nodes: Vec<(String, PathBuf)>,
    /// The spec's `python` section.
    pub settings: PythonSettings,
    /// A local wheel directory used as find-links (`--wheels-dir`).
    pub wheels_dir: Option<PathBuf>,
    /// Never use the network: packages come from uv's cache and wheel
    /// directories only.
    pub offline: bool,
    /// How long uv, pip and install scripts may run.
    pub limits: Limits,
    /// The URL rewrite rules, given to the git that uv and pip run for
    /// `git+` requirements (as git configuration; never logged).
    pub rewrites: UrlRewrites,
}

/// One requirement line and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    /// The line as given (comment stripped, continuation lines joined).
    pub line: String,
    /// The normalized distribution name (`Foo_Bar` → `foo-bar`), when known.
    pub name: Option<String>,
    /// Origin, e.g. `custom_nodes/pack_a/requirements.txt`.
    pub origin: String,
    /// 1-based line number in the origin.
    pub line_no: usize,
}

/// The combined requirement inputs of a version, resolved together.
#[derive(Debug, Clone, Default)]
pub struct Requirements {
    /// Requirements: core, then nodes in spec order, then the spec's.
    pub requirements: Vec<Requirement>,
    /// Constraints from the spec.
    pub constraints: Vec<Requirement>,
    /// The primary index (`python.index_url`).
    pub index_url: Option<String>,
    /// Extra indexes: the spec's, then those hoisted from node files.
    pub extra_index_urls: Vec<String>,
    /// Find-links: the spec's, then those hoisted from node files.
    pub find_links: Vec<String>,
    /// Interpreter version or path (`python.version`).
    pub python_version: Option<String>,
    /// The PyTorch backend (`python.torch_backend`).
    pub torch_backend: Option<String>,
    /// The base of the PyTorch indexes (`python.torch_index_url`).
    pub torch_index_url: Option<String>,
    /// Whether the venv sees the base interpreter's packages.
    pub system_site_packages: bool,
    /// A local wheel directory (not part of the inputs digest).
    pub wheels_dir: Option<PathBuf>,
    /// Offline: no index at all (not part of the inputs digest).
    pub offline: bool,
    /// Things the caller should tell the user (e.g. dynamic pyproject dependencies).
    pub warnings: Vec<String>,
    /// Index lines of packs' files: `(origin, url)`, also in
    /// `extra_index_urls` unless the torch pin took them.
    pub pack_indexes: Vec<(String, String)>,
    /// The index the torch family is pinned to (see `torch.rs`): the spec's
    /// `<torch_index_url>/<torch_backend>`, or a pack's torch index.
    pub torch_pin: Option<String>,
    /// How long uv and pip may run (not part of the inputs digest).
    pub limits: Limits,
    /// The URL rewrite rules for the git uv and pip run (not part of the
    /// inputs digest: the requirements keep their own URLs).
    pub rewrites: UrlRewrites,
}

/// Where the core's requirements come from, in origins and messages.
pub(crate) const CORE_ORIGIN: &str = "ComfyUI requirements.txt";
/// Origin of the spec's `python.requirements`.
pub(crate) const SPEC_ORIGIN: &str = "spec python.requirements";
/// Origin of the spec's `python.overrides`.
pub(crate) const OVERRIDES_ORIGIN: &str = "spec python.overrides";
/// Origin of the spec's `python.constraints`.
pub(crate) const CONSTRAINTS_ORIGIN: &str = "spec python.constraints";

/// Reads the core's and every node's requirements and the spec's python
/// settings into one [`Requirements`]. A node's `requirements.txt` wins over its
/// `pyproject.toml` `[project].dependencies`; a pack with neither has none.
pub fn collect_requirements(inputs: &PythonInputs) -> Result<Requirements, PythonError> {
    let s = &inputs.settings;
    let mut reqs = Requirements {
        index_url: s.index_url.clone(),
        extra_index_urls: s.extra_index_urls.clone(),
        find_links: s.find_links.clone(),
        python_version: s.version.clone(),
        torch_backend: s.torch_backend.clone(),
        torch_index_url: s.torch_index_url.clone(),
        system_site_packages: s.system_site_packages.unwrap_or(false),
        wheels_dir: inputs.wheels_dir.clone(),
        offline: inputs.offline,
        limits: inputs.limits,
        rewrites: inputs.rewrites.clone(),
        ..Requirements::default()
    };
    let core_file = inputs.core_dir.join("requirements.txt");
    if let Some(text) = read_optional(&core_file)? {
        parse_file(&text, CORE_ORIGIN, true, &mut reqs)?;
    }
    for (name, dir) in &inputs.nodes {
        if let Some(reason) = comfyver_spec::names::unsafe_component_reason(name) {
            return Err(PythonError::BadName {
                name: name.clone(),
                reason,
            });
        }
        let req_file = dir.join("requirements.txt");
        let pyproject_file = dir.join("pyproject.toml");
        if let Some(text) = read_optional(&req_file)? {
            let origin = format!("custom_nodes/{name}/requirements.txt");
            parse_file(&text, &origin, true, &mut reqs)?;
        } else if let Some(text) = read_optional(&pyproject_file)? {
            let origin = format!("custom_nodes/{name}/pyproject.toml");
            match pyproject::project_dependencies(&text) {
                Ok(pyproject::Dependencies::Listed(deps)) => {
                    for (i, dep) in deps.iter().enumerate() {
                        parse_line(dep, &origin, i + 1, false, &mut reqs)?;
                    }
                }
                Ok(pyproject::Dependencies::Dynamic) => reqs.warnings.push(format!(
                    "{origin} declares its dependencies as dynamic; comfyver installs none for \
                     it (add them to the spec's python.requirements)"
                )),
                Ok(pyproject::Dependencies::None) => {}
                Err(message) => {
                    return Err(PythonError::Pyproject {
                        path: pyproject_file,
                        message,
                    });
                }
            }
        }
    }
    for (i, line) in s.requirements.iter().enumerate() {
        parse_line(line, SPEC_ORIGIN, i + 1, false, &mut reqs)?;
    }
    let mut constraints = Requirements::default();
    for (i, line) in s.constraints.iter().enumerate() {
        parse_line(line, CONSTRAINTS_ORIGIN, i + 1, false, &mut constraints)?;
    }
    reqs.constraints = constraints.requirements;
    let mut overrides = Requirements::default();
    for (i, line) in s.overrides.iter().enumerate() {
        parse_line(line, OVERRIDES_ORIGIN, i + 1, false, &mut overrides)?;
    }
    for o in overrides.requirements {
        reqs.requirements
            .retain(|r| r.name.is_none() || r.name != o.name);
        reqs.requirements.push(o);
    }
    super::fixups::apply(&mut reqs)?;
    super::torch::choose_pin(&mut reqs);
    Ok(reqs)
}

impl Requirements {
    /// A stable digest of the inputs: requirement lines with their origins,
    /// constraints and the python settings (index URLs redacted, so rotating
    /// a token does not count as a change). The wheel directory and offline
    /// mode are where packages come from, not what is asked for, so they are
    /// left out.
    pub fn inputs_digest(&self) -> Digest {
        #[derive(Serialize)]
        struct Inputs<'a> {
            format: &'static str,
            requirements: Vec<(&'a str, &'a str)>,
            constraints: Vec<(&'a str, &'a str)>,
            index_url: Option<String>,
            extra_index_urls: Vec<String>,
            find_links: Vec<String>,
            python_version: &'a Option<String>,
            system_site_packages: bool,
            #[serde(skip_serializing_if = "Option::is_none")]
            torch_backend: &'a Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            torch_index_url: Option<String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            torch_pin: Option<String>,
        }
        fn pairs(v: &[Requirement]) -> Vec<(&str, &str)> {
            v.iter()
                .map(|r| (r.origin.as_str(), r.line.as_str()))
                .collect()
        }
        digest_json(&Inputs {
            format: "comfyver-python-inputs/1",
            requirements: pairs(&self.requirements),
            constraints: pairs(&self.constraints),
            index_url: self.index_url.as_deref().map(comfyver_spec::redact),
            extra_index_urls: self
                .extra_index_urls
                .iter()
                .map(|u| comfyver_spec::redact(u))
                .collect(),
            find_links: self
                .find_links
                .iter()
                .map(|u| comfyver_spec::redact(u))
                .collect(),
            python_version: &self.python_version,
            system_site_packages: self.system_site_packages,
            torch_backend: &self.torch_backend,
            torch_index_url: self.torch_index_url.as_deref().map(comfyver_spec::redact),
            torch_pin: self.torch_pin.as_deref().map(comfyver_spec::redact),
        })
    }

    /// The combined requirements file: one line per requirement, each
    /// annotated with its origin.
    pub fn combined_file(&self) -> String {
        annotated(&self.requirements, "requirements")
    }

    /// The constraints file.
    pub fn constraints_file(&self) -> String {
        annotated(&self.constraints, "constraints")
    }
}

fn annotated(reqs: &[Requirement], what: &str) -> String {
    let mut out = format!("# comfyver: combined {what}, resolved together\n");
    for r in reqs {
        out.push_str(&format!("{}  # from {}\n", r.line, r.origin));
    }
    out
}

/// Reads `path` if it exists and resolves inside its checkout (its parent):
/// a `requirements.txt` that is a symlink out of the pack is refused.
fn read_optional(path: &Path) -> Result<Option<String>, PythonError> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(None);
    };
    let bytes = comfyver_fs::read_inside(dir, &name.to_string_lossy())?;
    Ok(bytes.map(|b| String::from_utf8_lossy(&b).into_owned()))
}

/// Parses a requirements.txt: comments and blank lines skipped, `\`
/// continuations joined, option lines hoisted (`allow_options`) or refused.
fn parse_file(
    text: &str,
    origin: &str,
    allow_options: bool,
    reqs: &mut Requirements,
) -> Result<(), PythonError> {
    let mut pending = String::new();
    let mut start = 0;
    for (i, raw) in text.lines().enumerate() {
        if pending.is_empty() {
            start = i + 1;
        }
        if let Some(stripped) = raw.strip_suffix('\\') {
            pending.push_str(stripped);
            pending.push(' ');
            continue;
        }
        pending.push_str(raw);
        let line = std::mem::take(&mut pending);
        parse_line(&line, origin, start, allow_options, reqs)?;
    }
    if !pending.is_empty() {
        parse_line(&pending, origin, start, allow_options, reqs)?;
    }
    Ok(())
}

fn parse_line(
    raw: &str,
    origin: &str,
    line_no: usize,
    allow_options: bool,
    reqs: &mut Requirements,
) -> Result<(), PythonError> {
    let line = strip_comment(raw).trim();
    if line.is_empty() {
        return Ok(());
    }
    let refuse = |reason: &str| PythonError::UnsupportedLine {
        origin: origin.to_string(),
        line_no,
        line: redact_text(line),
        reason: reason.to_string(),
    };
    if line.starts_with('-') {
        if allow_options && skippable_option(line) {
            reqs.warnings.push(format!(
                "{origin} line {line_no}: `{}` skipped: comfyver does not pass pip options \
                 from packs on (only --index-url, --extra-index-url and --find-links)",
                redact_text(line)
            ));
            return Ok(());
        }
        let before = reqs.extra_index_urls.len();
        hoist_option(line, allow_options, reqs).map_err(|r| refuse(&r))?;
        if let Some(url) = reqs.extra_index_urls.get(before).cloned() {
            reqs.pack_indexes.push((origin.to_string(), url));
        } else if let Some((_, url)) = line.split_once([' ', '=', '\t']) {
            // Already listed by another pack: still this pack's index.
            let url = url.trim().trim_start_matches('=').trim().to_string();
            if reqs.extra_index_urls.contains(&url) {
                reqs.pack_indexes.push((origin.to_string(), url));
            }
        }
        return Ok(());
    }
    let lower = line.to_ascii_lowercase();
    if line.starts_with(['.', '/', '~']) || lower.starts_with("file:") || line.contains(" @ file:")
    {
        return Err(refuse(
            "is a local path; comfyver installs only named requirements and URLs so that \
             a lock means the same on every machine (publish the package, or use --wheels-dir)",
        ));
    }
    let name = if is_bare_url(line) {
        egg_name(line)
    } else {
        let name: String = line
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect();
        if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(refuse(
                "is not a PEP 508 requirement (expected a package name first)",
            ));
        }
        Some(normalize_name(&name))
    };
    reqs.requirements.push(Requirement {
        line: line.to_string(),
        name,
        origin: origin.to_string(),
        line_no,
    });
    Ok(())
}

fn is_bare_url(line: &str) -> bool {
    let scheme_end = match line.find("://") {
        Some(i) => i,
        None => return false,
    };
    line[..scheme_end]
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '+')
}

fn egg_name(line: &str) -> Option<String> {
    let frag = line.split_once("#egg=")?.1;
    let name: String = frag
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .collect();
    (!name.is_empty()).then(|| normalize_name(&name))
}

/// Hoists an option line into flags, or says why it is refused.
fn hoist_option(line: &str, allow: bool, reqs: &mut Requirements) -> Result<(), String> {
    let (opt, value) = match line.split_once(['=', ' ', '\t']) {
        Some((o, v)) => (o, v.trim().trim_start_matches('=').trim()),
        None => (line, ""),
    };
    let hoistable = matches!(
        opt,
        "--extra-index-url" | "--index-url" | "-i" | "--find-links" | "-f"
    );
    if hoistable && !allow {
        return Err(
            "is an option; use the spec's python.index_url, extra_index_urls or find_links fields"
                .into(),
        );
    }
    if hoistable && value.is_empty() {
        return Err("has no value".into());
    }
    match opt {
        // A node must not replace the index of every other pack: its
        // `--index-url` is added as an extra index.
        "--extra-index-url" | "--index-url" | "-i" => {
            push_unique(&mut reqs.extra_index_urls, value);
            Ok(())
        }
        "--find-links" | "-f" => {
            if !value.contains("://") && !value.starts_with('/') {
                return Err("is a relative find-links path; use an absolute path or URL".into());
            }
            push_unique(&mut reqs.find_links, value);
            Ok(())
        }
        "-e" | "--editable" => Err(
            "is an editable install; comfyver does not install packs' local sources \
             (set `install_script` or list the package in the spec's python.requirements)"
                .into(),
        ),
        "-r" | "--requirement" | "-c" | "--constraint" => Err(
            "includes another file, which comfyver does not follow; copy its lines into \
             the spec's python.requirements or python.constraints"
                .into(),
        ),
        _ => Err(
            "is a pip option comfyver does not pass on; only --index-url, --extra-index-url \
             and --find-links lines are honoured"
                .into(),
        ),
    }
}

/// Option lines of a pack's requirements file that are skipped with a
/// warning rather than refused: everything except the hoisted index/links
/// options and those that change what is installed (`-e`, `-r`, `-c`).
fn skippable_option(line: &str) -> bool {
    let opt = line.split([' ', '=', '\t']).next().unwrap_or(line);
    !matches!(
        opt,
        "--extra-index-url"
            | "--index-url"
            | "-i"
            | "--find-links"
            | "-f"
            | "-e"
            | "--editable"
            | "-r"
            | "--requirement"
            | "-c"
            | "--constraint"
    )
}

fn push_unique(v: &mut Vec<String>, value: &str) {
    if !v.iter().any(|x| x == value) {
        v.push(value.to_string());
    }
}

/// Cuts a `#` comment that starts the line or follows whitespace (pip's rule,
/// so `#egg=` in URLs survives).
fn strip_comment(line: &str) -> &str {
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

/// PEP 503 name normalization: lowercase, runs of `-`, `_`, `.` become `-`.
pub(crate) fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut sep = false;
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
        } else {
            if sep && !out.is_empty() {
                out.push('-');
            }
            sep = false;
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Requirements, PythonError> {
        let mut r = Requirements::default();
        parse_file(text, "custom_nodes/p/requirements.txt", true, &mut r)?;
        Ok(r)
    }

    #[test]
    fn a_requirements_txt_linked_outside_its_pack_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let core = dir.path().join("core");
        let pack = dir.path().join("pack");
        std::fs::create_dir_all(&core).unwrap();
        std::fs::create_dir_all(&pack).unwrap();
        std::fs::write(dir.path().join("elsewhere.txt"), "secretpkg==1\n").unwrap();
        std::os::unix::fs::symlink("../elsewhere.txt", pack.join("requirements.txt")).unwrap();
        let inputs = PythonInputs {
            core_dir: core,
            nodes: vec![("pack".into(), pack)],
            settings: PythonSettings::default(),
            wheels_dir: None,
            offline: false,
            limits: Limits::default(),
            rewrites: UrlRewrites::default(),
        };
        let err = collect_requirements(&inputs).unwrap_err().to_string();
        assert!(
            err.contains("requirements.txt") && err.contains("leads outside"),
            "{err}"
        );
    }

    #[test]
    fn plain_lines_comments_and_continuations() {
        let r = parse(
            "# c\n\nFoo_Bar>=1.0  # why\nbaz ; python_version >= '3.8'\nqux==1 \\\n  --hash=sha256:ab\n",
        )
        .unwrap();
        let lines: Vec<_> = r.requirements.iter().map(|r| r.line.as_str()).collect();
        assert_eq!(
            lines,
            [
                "Foo_Bar>=1.0",
                "baz ; python_version >= '3.8'",
                "qux==1    --hash=sha256:ab"
            ]
        );
        assert_eq!(r.requirements[0].name.as_deref(), Some("foo-bar"));
        assert_eq!(r.requirements[0].line_no, 3);
        assert_eq!(r.requirements[2].line_no, 5);
    }

    #[test]
    fn index_lines_are_hoisted() {
        let r =
            parse("--extra-index-url https://x.example/simple\n-i=https://y.example/simple\na\n")
                .unwrap();
        assert_eq!(
            r.extra_index_urls,
            ["https://x.example/simple", "https://y.example/simple"]
        );
        assert_eq!(r.requirements.len(), 1);
    }

    #[test]
    fn urls_are_kept_with_their_names() {
        let r =
            parse("git+https://h.example/o/r.git@v1#egg=My.Pkg\nfoo @ https://h.example/foo.whl\n")
                .unwrap();
        assert_eq!(r.requirements[0].name.as_deref(), Some("my-pkg"));
        assert_eq!(r.requirements[1].name.as_deref(), Some("foo"));
    }

    #[test]
    fn editable_paths_and_nested_files_are_refused() {
        for bad in ["-e .", "./local", "-r other.txt", "file:///x.whl", "==1"] {
            let err = parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("custom_nodes/p/requirements.txt line 1"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn spec_lines_may_not_carry_options() {
        let mut r = Requirements::default();
        let err = parse_line("--extra-index-url https://x", SPEC_ORIGIN, 1, false, &mut r)
            .unwrap_err()
            .to_string();
        assert!(err.contains("python.index_url"), "{err}");
    }

    #[test]
    fn digest_ignores_tokens_and_wheels_dir() {
        let base = Requirements {
            requirements: parse("a\n").unwrap().requirements,
            index_url: Some("https://u:one@idx.example/simple".into()),
            ..Requirements::default()
        };
        let mut other = base.clone();
        other.index_url = Some("https://u:two@idx.example/simple".into());
        other.wheels_dir = Some("/w".into());
        assert_eq!(base.inputs_digest(), other.inputs_digest());
        other.requirements[0].line = "a==1".into();
        assert_ne!(base.inputs_digest(), other.inputs_digest());
    }

    #[test]
    fn names_normalize() {
        assert_eq!(normalize_name("Foo__Bar.baz"), "foo-bar-baz");
    }
}
