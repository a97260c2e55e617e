//! Read-only lookups of the branches and tags in a repository's local bare
//! mirror (`<cache>/git/<slug>.git`, owned by comfyver-git), for `--offline`.

use comfyver_git::Mirror;

use crate::remote::RemoteRef;

/// The mirror's branches and tags in the shape a remote advertises them
/// (see [`Mirror::branches_and_tags`]).
pub(crate) fn mirror_refs(mirror: &Mirror) -> Result<Vec<RemoteRef>, String> {
    let refs = mirror
        .branches_and_tags()
        .map_err(|e| crate::remote::error_text(&e, &[]))?;
    Ok(refs
        .into_iter()
        .map(|(name, commit)| RemoteRef {
            name,
            target: commit,
            peeled: None,
            symref_target: None,
        })
        .collect())
}
