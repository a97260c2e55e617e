//! Which versions use each node checkout (`nodes list`).

use std::collections::BTreeMap;

use comfyver_spec::{RepoUrl, ResolvedLock};

use crate::cache::entry_name;

/// `<slug>@<commit>` → the ids of the versions in `locks` whose custom
/// nodes use that checkout, in the order of `locks`, each id once. A node
/// whose URL does not parse names no entry.
pub fn users_by_entry(locks: &[ResolvedLock]) -> BTreeMap<String, Vec<String>> {
    let mut users: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for lock in locks {
        for node in &lock.custom_nodes {
            let Ok(url) = RepoUrl::parse(&node.repo) else {
                continue;
            };
            let ids = users.entry(entry_name(&url, &node.commit)).or_default();
            if !ids.contains(&lock.version_id) {
                ids.push(lock.version_id.clone());
            }
        }
    }
    users
}

#[cfg(test)]
mod tests {
    use comfyver_spec::{lock::LOCK_VERSION, lock::LockedRepo};

    use super::*;

    const C: &str = "cccccccccccccccccccccccccccccccccccccccc";
    const D: &str = "dddddddddddddddddddddddddddddddddddddddd";

    fn repo(url: &str, commit: &str) -> LockedRepo {
        LockedRepo {
            name: None,
            repo: url.into(),
            git_ref: None,
            requested_commit: None,
            commit: commit.into(),
        }
    }

    fn lock(id: &str, nodes: Vec<LockedRepo>) -> ResolvedLock {
        ResolvedLock {
            lock_version: LOCK_VERSION,
            version_id: id.into(),
            spec_digest: "blake3:00".into(),
            tool_version: "0".into(),
            comfy: repo("https://h.invalid/o/ComfyUI", C),
            custom_nodes: nodes,
            models: vec![],
            python: None,
        }
    }

    #[test]
    fn each_checkout_lists_the_versions_using_it_once() {
        let a = "https://h.invalid/o/a";
        let locks = [
            lock("v1", vec![repo(a, C), repo(a, C), repo("not a url", C)]),
            lock("v2", vec![repo(a, C), repo(a, D)]),
        ];
        let users = users_by_entry(&locks);
        let slug = RepoUrl::parse(a).unwrap().slug();
        assert_eq!(users[&format!("{slug}@{C}")], ["v1", "v2"]);
        assert_eq!(users[&format!("{slug}@{D}")], ["v2"]);
        assert_eq!(users.len(), 2, "{users:?}; the core is no node");
    }
}
