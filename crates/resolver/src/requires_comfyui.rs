//! `[tool.comfy] requires-comfyui` of each pack, checked against the core's
//! version at the locked commits, so a pack that needs another ComfyUI fails
//! the resolve instead of the first run.
//!
//! The files are read from the repositories' mirrors (a commit not there yet
//! is read from the remote without fetching it where the server allows, else
//! fetched; a dry run, which changes nothing on disk, and an offline resolve
//! read only what the mirrors hold); a file that cannot be read is a
//! warning, never a failed resolve.

use comfyver_fs::CacheLayout;
use comfyver_git::{Mirror, TreeFile};
use comfyver_spec::{RepoUrl, ResolvedLock, VersionSpec};

use crate::{ResolveError, ResolveOptions};

/// One pack whose requirement the core does not meet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComfyuiMismatch {
    /// The pack's name in the spec.
    pub pack: String,
    /// Its `requires-comfyui` as written.
    pub requires: String,
    /// The core's version.
    pub core_version: String,
}

impl std::fmt::Display for ComfyuiMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "custom node `{}` requires ComfyUI {}, the core is {}",
            self.pack, self.requires, self.core_version
        )
    }
}

/// Checks every pack of `lock` against its core. Returns the warnings to
/// show (mismatches allowed by `options.allow_comfyui_mismatch`, files that
/// could not be read), or [`ResolveError::RequiresComfyui`].
pub(crate) fn check(
    spec: &VersionSpec,
    lock: &ResolvedLock,
    layout: &CacheLayout,
    opts: &ResolveOptions,
) -> Result<Vec<String>, ResolveError> {
    let mut warnings = Vec::new();
    let mut requirements = Vec::new();
    for node in &lock.custom_nodes {
        let name = node.name.clone().unwrap_or_else(|| node.repo.clone());
        match read(layout, opts, &node.repo, &node.commit, "pyproject.toml") {
            Ok(Some(text)) => {
                if let Some(req) = requires_comfyui(&text) {
                    requirements.push((name, req));
                }
            }
            Ok(None) => {}
            // A dry run changes nothing on disk, so it checks only what the mirrors hold.
            Err(_) if opts.dry_run => {}
            Err(why) => warnings.push(format!(
                "could not read the pyproject.toml of `{name}` to check `requires-comfyui`: {why}"
            )),
        }
    }
    if requirements.is_empty() {
        return Ok(warnings);
    }
    let core = &lock.comfy;
    let version = match core_version(layout, opts, &core.repo, &core.commit) {
        Ok(Some(v)) => v,
        Ok(None) => {
            warnings.push(format!(
                "the core at {} names no version (comfyui_version.py, pyproject.toml): \
                 `requires-comfyui` of {} not checked",
                &core.commit[..core.commit.len().min(12)],
                names(&requirements)
            ));
            return Ok(warnings);
        }
        Err(_) if opts.dry_run => return Ok(warnings),
        Err(why) => {
            warnings.push(format!(
                "could not read the core's version to check `requires-comfyui`: {why}"
            ));
            return Ok(warnings);
        }
    };
    let mut mismatches = Vec::new();
    for (pack, requires) in requirements {
        match matches(&requires, &version) {
            Ok(true) => {}
            Ok(false) => mismatches.push(ComfyuiMismatch {
                pack,
                requires,
                core_version: version.clone(),
            }),
            Err(why) => warnings.push(format!(
                "custom node `{pack}`: `requires-comfyui = \"{requires}\"` not checked: {why}"
            )),
        }
    }
    if mismatches.is_empty() {
        return Ok(warnings);
    }
    if spec
        .options
        .as_ref()
        .and_then(|o| o.allow_comfyui_mismatch)
        .unwrap_or(false)
    {
        warnings.extend(
            mismatches
                .iter()
                .map(|m| format!("{m} (allowed by options.allow_comfyui_mismatch)")),
        );
        return Ok(warnings);
    }
    Err(ResolveError::RequiresComfyui {
        version_id: spec.version_id.clone(),
        mismatches,
    })
}

fn names(reqs: &[(String, String)]) -> String {
    reqs.iter()
        .map(|(n, _)| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The core's version: `comfyui_version.py`'s `__version__`, else
/// `pyproject.toml`'s `[project] version`.
fn core_version(
    layout: &CacheLayout,
    opts: &ResolveOptions,
    repo: &str,
    commit: &str,
) -> Result<Option<String>, String> {
    if let Some(text) = read(layout, opts, repo, commit, "comfyui_version.py")?
        && let Some(v) = text.lines().find_map(|l| {
            let (key, value) = l.split_once('=')?;
            (key.trim() == "__version__").then(|| unquote(value))?
        })
    {
        return Ok(Some(v));
    }
    Ok(read(layout, opts, repo, commit, "pyproject.toml")?
        .and_then(|text| table_value(&text, "[project]", "version")))
}

/// The text of `path` at `commit`, `None` when the tree has no such file.
fn read(
    layout: &CacheLayout,
    opts: &ResolveOptions,
    repo: &str,
    commit: &str,
    path: &str,
) -> Result<Option<String>, String> {
    let url = RepoUrl::parse(repo).map_err(|e| e.to_string())?;
    let mirror = match Mirror::existing(layout, &url, &opts.rewrites) {
        Some(m) if m.has_commit(commit) => m,
        _ if opts.offline || opts.dry_run => {
            return Err(format!(
                "{}, and the commit {} is not in the local mirror",
                if opts.offline { "offline" } else { "a dry run" },
                &commit[..commit.len().min(12)]
            ));
        }
        _ => {
            let mirror = Mirror::open(layout, &url, &opts.rewrites)
                .map_err(|e| e.to_string())?
                .with_git_timeout(opts.timeout);
            if let Ok(Some(files)) = mirror.peek_files(commit, &[path], &Silent)
                && let Some(file) = files.into_iter().next()
            {
                return Ok(text_of(file));
            }
            mirror
                .ensure_commit(commit, false)
                .map_err(|e| e.to_string())?;
            mirror
        }
    };
    mirror
        .read_file(commit, path)
        .map(text_of)
        .map_err(|e| e.to_string())
}

fn text_of(file: TreeFile) -> Option<String> {
    match file {
        TreeFile::Blob(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
        TreeFile::Absent | TreeFile::Other => None,
    }
}

struct Silent;
impl comfyver_git::Reporter for Silent {}

/// `[tool.comfy] requires-comfyui` of a pyproject text.
fn requires_comfyui(pyproject: &str) -> Option<String> {
    table_value(pyproject, "[tool.comfy]", "requires-comfyui")
}

/// A one-line string value of `key` in the TOML table `header` (a tiny
/// reader for the few keys needed here; anything else is ignored).
fn table_value(text: &str, header: &str, key: &str) -> Option<String> {
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            inside = line.split('#').next().unwrap_or("").trim() == header;
            continue;
        }
        if !inside {
            continue;
        }
        if let Some((k, v)) = line.split_once('=')
            && k.trim().trim_matches('"') == key
        {
            return unquote(v);
        }
    }
    None
}

/// A TOML/Python string literal's contents (`"x"` or `'x'`), comments after it ignored.
fn unquote(value: &str) -> Option<String> {
    let value = value.trim();
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let rest = &value[1..];
    let end = rest.find(quote)?;
    Some(rest[..end].trim().to_string())
}

/// Whether `version` satisfies the specifier list `spec` (`>=0.3.10,<0.4`,
/// `~=0.3.0`, `==0.3.*`, `!=0.3.5`): PEP 440's common forms on release
/// numbers. Pre-release and local parts of `version` are ignored.
pub(crate) fn matches(spec: &str, version: &str) -> Result<bool, String> {
    let have = release(version).ok_or_else(|| format!("`{version}` is not a version"))?;
    for clause in spec.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let op_len = clause
            .find(|c: char| c.is_ascii_digit() || c == 'v')
            .ok_or_else(|| format!("`{clause}` has no version"))?;
        let (op, want) = (clause[..op_len].trim(), clause[op_len..].trim());
        let ok = if let Some(prefix) = want.strip_suffix(".*") {
            let prefix = release(prefix).ok_or_else(|| format!("`{clause}` is not understood"))?;
            let same = have.len() >= prefix.len() && have[..prefix.len()] == prefix[..]
                || pad(&have, prefix.len()) == prefix;
            match op {
                "==" => same,
                "!=" => !same,
                _ => return Err(format!("`{clause}`: `.*` only goes with == and !=")),
            }
        } else {
            let want_r = release(want).ok_or_else(|| format!("`{clause}` is not understood"))?;
            let n = have.len().max(want_r.len());
            let ord = pad(&have, n).cmp(&pad(&want_r, n));
            match op {
                ">=" => ord.is_ge(),
                "<=" => ord.is_le(),
                ">" => ord.is_gt(),
                "<" => ord.is_lt(),
                "==" | "===" => ord.is_eq(),
                "!=" => ord.is_ne(),
                "~=" => {
                    if want_r.len() < 2 {
                        return Err(format!("`{clause}`: ~= needs at least two numbers"));
                    }
                    let stem = &want_r[..want_r.len() - 1];
                    ord.is_ge() && pad(&have, stem.len())[..stem.len()] == stem[..]
                }
                other => return Err(format!("`{other}` is not a version operator")),
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The release numbers of a version (`v0.3.10rc1+local` → `[0, 3, 10]`).
fn release(version: &str) -> Option<Vec<u64>> {
    let v = version.trim().trim_start_matches('v');
    let v = v.split('+').next()?;
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let nums: Option<Vec<u64>> = v[..end]
        .trim_end_matches('.')
        .split('.')
        .map(|p| p.parse().ok())
        .collect();
    nums.filter(|n| !n.is_empty())
}

fn pad(v: &[u64], n: usize) -> Vec<u64> {
    let mut out = v.to_vec();
    out.resize(n.max(v.len()), 0);
    out
}

#[cfg(test)]
mod tests {
    use super::{matches, requires_comfyui, table_value};

    #[test]
    fn specifiers_of_the_common_forms() {
        for (spec, version, want) in [
            (">=0.3.0", "0.3.10", true),
            (">=0.3.11", "0.3.10", false),
            ("<=0.3.10", "0.3.10", true),
            ("<0.3.10", "0.3.10", false),
            (">0.3", "0.3.1", true),
            ("==0.3.10", "0.3.10", true),
            ("==0.3", "0.3.0", true),
            ("!=0.3.10", "0.3.10", false),
            ("~=0.3.2", "0.3.9", true),
            ("~=0.3.2", "0.4.0", false),
            ("~=0.3", "0.9", true),
            ("~=0.3", "1.0", false),
            (">=0.3.0, <0.4", "0.3.44", true),
            (">=0.3.0,<0.4", "0.4.0", false),
            ("==0.3.*", "0.3.7", true),
            ("!=0.3.*", "0.3.7", false),
            (">=0.3.0", "v0.3.5rc1", true),
        ] {
            assert_eq!(matches(spec, version), Ok(want), "{spec} vs {version}");
        }
        assert!(matches(">=x", "0.3").is_err());
        assert!(matches("~=1", "1.0").is_err());
        assert!(matches(">=0.3", "main").is_err());
    }

    #[test]
    fn reads_the_tool_comfy_table_only() {
        let text = "[project]\nname = \"p\"\nversion = \"1.2\"\n\n[tool.comfy]\n\
                    PublisherId = \"x\"\nrequires-comfyui = \">=0.3.40\" # newest nodes\n";
        assert_eq!(requires_comfyui(text).as_deref(), Some(">=0.3.40"));
        assert_eq!(
            table_value(text, "[project]", "version").as_deref(),
            Some("1.2")
        );
        assert_eq!(
            requires_comfyui("[project]\nrequires-comfyui = \"1\"\n"),
            None
        );
    }
}
