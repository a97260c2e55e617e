//! The PyTorch backend (`python.torch_backend`): the torch family from the
//! backend's index, every other package from the primary index.
//!
//! Without `python.torch_index_url`, uv's own `--torch-backend` does this
//! (uv knows PyTorch's indexes and detects the driver for `auto`). With it
//! (a mirror or a local copy), comfyver pins the torch family itself: the
//! inputs become a `pyproject.toml` whose `[tool.uv.sources]` send exactly
//! those packages to an `explicit` index `<torch_index_url>/<backend>`, which
//! serves nothing else. A plain extra index would not do: uv takes a package
//! from the first index that has it, so a torch index that also hosts numpy
//! or pillow would capture them.

use std::ffi::OsString;

use super::requirements::{Requirements, normalize_name};

/// The packages PyTorch publishes per backend.
const TORCH_FAMILY: &[&str] = &[
    "torch",
    "torchvision",
    "torchaudio",
    "torchtext",
    "torchdata",
    "triton",
    "pytorch-triton",
    "pytorch-triton-rocm",
    "pytorch-triton-xpu",
];

/// The index the torch family is pinned to when comfyver pins it itself.
pub(crate) fn pinned_index(reqs: &Requirements) -> Option<String> {
    reqs.torch_pin.clone()
}

/// Decides where the torch family comes from, once the requirements are
/// collected:
/// - the spec's `<torch_index_url>/<torch_backend>`, pinned;
/// - the spec's `torch_backend` alone: uv's `--torch-backend`;
/// - else a pack's index line, in a file that also asks for a torch-family
///   package, is that pack's torch index: pinned the same way (torch family
///   only), so it cannot capture the pack's other packages or anyone else's.
///
/// With a spec backend, packs' torch indexes are dropped: the spec decides the
/// build. Every such decision is a warning naming the pack's file.
pub(crate) fn choose_pin(reqs: &mut Requirements) {
    let torch_files: Vec<(String, String)> = reqs
        .pack_indexes
        .iter()
        .filter(|(origin, _)| {
            reqs.requirements.iter().any(|r| {
                r.origin == *origin && r.name.as_deref().is_some_and(|n| TORCH_FAMILY.contains(&n))
            })
        })
        .cloned()
        .collect();
    let spec_pin = match (&reqs.torch_index_url, &reqs.torch_backend) {
        (Some(base), Some(backend)) => Some(format!("{}/{backend}", base.trim_end_matches('/'))),
        _ => None,
    };
    let mut chosen = spec_pin.clone();
    for (origin, url) in &torch_files {
        reqs.extra_index_urls.retain(|u| u != url);
        let redacted = comfyver_spec::redact(url);
        if reqs.torch_backend.is_some() {
            reqs.warnings.push(format!(
                "{origin}: index {redacted} not used: the spec's python.torch_backend decides \
                 where torch comes from"
            ));
        } else if chosen.is_none() {
            reqs.warnings.push(format!(
                "{origin}: index {redacted} is used for the torch family only (torch, \
                 torchvision, torchaudio, ...); every other package comes from the primary index"
            ));
            chosen = Some(url.clone());
        } else if chosen.as_deref() != Some(url.as_str()) {
            reqs.warnings.push(format!(
                "{origin}: index {redacted} not used: torch already comes from another pack's \
                 index; set python.torch_backend to choose"
            ));
        }
    }
    for (origin, url) in &reqs.pack_indexes {
        if !torch_files.iter().any(|(o, u)| o == origin && u == url) {
            reqs.warnings.push(format!(
                "{origin}: index {} is added as an extra index for the whole environment \
                 (uv takes each package from the first index that has it); list it in the \
                 spec's python.extra_index_urls to make that explicit",
                comfyver_spec::redact(url)
            ));
        }
    }
    reqs.torch_pin = chosen;
}

/// `--torch-backend <b>` for uv when uv picks the index itself.
pub(crate) fn uv_args(reqs: &Requirements) -> Vec<OsString> {
    match (&reqs.torch_backend, &reqs.torch_index_url) {
        (Some(b), None) => vec!["--torch-backend".into(), b.into()],
        _ => Vec::new(),
    }
}

/// A `pyproject.toml` whose dependencies are `lines` (requirement lines or
/// `name==version` pins), with every torch-family package among them pinned
/// to the explicit index `index`. A package of the family that is only
/// pulled in by another (torch by torchvision) is added as a dependency, so
/// that the pin applies to it too (uv's sources apply to direct ones).
pub(crate) fn pyproject(lines: &[String], index: &str) -> String {
    let deps: Vec<String> = lines.iter().map(|l| pep508(l)).collect();
    let names: Vec<String> = deps.iter().map(|d| normalize_name(name_of(d))).collect();
    let mut pinned: Vec<&str> = TORCH_FAMILY
        .iter()
        .copied()
        .filter(|f| names.iter().any(|n| n == f))
        .collect();
    let mut extra = Vec::new();
    if !pinned.is_empty() && !pinned.contains(&"torch") {
        pinned.insert(0, "torch");
        extra.push("torch".to_string());
    }
    let mut out = String::from(
        "# comfyver: the version's requirements, the torch family pinned to its backend's index\n\
         [project]\nname = \"comfyver-environment\"\nversion = \"0\"\ndependencies = [\n",
    );
    for d in deps.iter().chain(&extra) {
        out.push_str(&format!("  {},\n", toml_string(d)));
    }
    out.push_str("]\n\n[tool.uv.sources]\n");
    for p in &pinned {
        out.push_str(&format!("{p} = {{ index = \"comfyver-torch\" }}\n"));
    }
    out.push_str(&format!(
        "\n[[tool.uv.index]]\nname = \"comfyver-torch\"\nurl = {}\nexplicit = true\n",
        toml_string(index)
    ));
    out
}

/// A requirement line as PEP 508: `--hash` options dropped, a bare
/// `git+https://…#egg=name` URL written as `name @ url`.
fn pep508(line: &str) -> String {
    let line = line.split(" --").next().unwrap_or(line).trim();
    if let Some((url, egg)) = line.split_once("#egg=")
        && line.contains("://")
        && !line.contains(" @ ")
    {
        let name: String = egg
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            .collect();
        return format!("{name} @ {url}");
    }
    line.to_string()
}

fn name_of(dep: &str) -> &str {
    let end = dep
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(dep.len());
    &dep[..end]
}

fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_family_is_pinned_and_torch_added_when_only_pulled_in() {
        let text = pyproject(
            &[
                "torchvision>=0.20".into(),
                "numpy".into(),
                "qux==1 --hash=sha256:ab".into(),
            ],
            "http://127.0.0.1:1/whl/cu128",
        );
        assert!(text.contains("  \"torchvision>=0.20\",\n"), "{text}");
        assert!(text.contains("  \"qux==1\",\n"), "{text}");
        assert!(text.contains("  \"torch\",\n"), "{text}");
        assert!(
            text.contains("torch = { index = \"comfyver-torch\" }"),
            "{text}"
        );
        assert!(
            text.contains("torchvision = { index = \"comfyver-torch\" }"),
            "{text}"
        );
        assert!(!text.contains("numpy = {"), "{text}");
        assert!(
            text.contains("url = \"http://127.0.0.1:1/whl/cu128\"\nexplicit = true"),
            "{text}"
        );
    }
}
