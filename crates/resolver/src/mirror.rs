//! Read-only lookups of the branches and tags in a repository's local bare
//! mirror (`<cache>/git/<slug>.git`, owned by comfyver-nodes), for `--offline`.

use std::path::Path;

use crate::remote::RemoteRef;

/// The mirror's branches and tags in the shape a remote advertises them
/// (remote-tracking `refs/remotes/origin/x` counted as `refs/heads/x`).
/// The mirror's own HEAD is left out: fetches do not record the remote's
/// HEAD, so it says nothing about what an absent `ref` means.
pub(crate) fn mirror_refs(path: &Path) -> Result<Vec<RemoteRef>, String> {
    let repo = open(path)?;
    let mut out = Vec::new();
    let platform = repo.references().map_err(|e| e.to_string())?;
    for reference in platform.all().map_err(|e| e.to_string())? {
        let Ok(mut reference) = reference else {
            continue;
        };
        let full = reference.name().as_bstr().to_string();
        let name = match full.strip_prefix("refs/remotes/origin/") {
            Some("HEAD") => continue,
            Some(branch) => format!("refs/heads/{branch}"),
            None => full,
        };
        if !(name.starts_with("refs/heads/") || name.starts_with("refs/tags/")) {
            continue;
        }
        let Ok(commit) = reference.peel_to_id() else {
            continue;
        };
        out.push(RemoteRef {
            name,
            target: commit.to_string(),
            peeled: None,
            symref_target: None,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    // A real branch wins over a remote-tracking one of the same name.
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

fn open(path: &Path) -> Result<gix::Repository, String> {
    gix::open_opts(path, gix::open::Options::isolated())
        .map_err(|e| format!("could not open the mirror: {e}"))
}
