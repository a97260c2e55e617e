//! The exact set of distributions installed in a venv.

use std::path::Path;

use super::error::PythonError;
use super::limits::Limits;
use super::requirements::normalize_name;
use super::tool::{hermetic, run};

/// Lists every distribution installed in `venv` (not the base interpreter's,
/// even with system site packages) as sorted `name==version` lines with
/// normalized names; direct-URL installs are `name @ <url>` (VCS installs
/// pinned to their commit). Uses the venv's own interpreter, so it works for
/// uv and pip venvs alike.
pub fn freeze(venv: &Path) -> Result<Vec<String>, PythonError> {
    let python = venv.join("bin").join("python");
    let out = run(
        hermetic(&python).arg("-I").arg("-c").arg(SCRIPT),
        "listing the installed Python packages",
        Limits::default().tool_limit(),
    )?;
    let mut lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(normalize_line)
        .collect();
    lines.sort();
    lines.dedup();
    Ok(lines)
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

const SCRIPT: &str = r#"
import importlib.metadata as m, json, os, sys
prefix = os.path.realpath(sys.prefix)
for d in m.distributions():
    loc = os.path.realpath(str(d.locate_file("")))
    if not (loc == prefix or loc.startswith(prefix + os.sep)):
        continue
    name = d.metadata["Name"]
    line = f"{name}=={d.version}"
    raw = d.read_text("direct_url.json")
    if raw:
        u = json.loads(raw)
        vcs = u.get("vcs_info")
        if vcs:
            line = f"{name} @ {vcs['vcs']}+{u['url']}@{vcs['commit_id']}"
        elif "archive_info" in u:
            line = f"{name} @ {u['url']}"
        elif "dir_info" in u:
            line = f"{name} @ {u['url']}"
    print(line)
"#;

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
