//! Matching a spec's `ref` against a list of refs, the way git does.

use crate::remote::RemoteRef;

/// What a `ref` designates among a set of refs.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RefMatch {
    /// A full commit.
    Commit(String),
    /// No HEAD to resolve an absent ref against.
    NoHead,
    /// A branch and a tag share the name.
    Ambiguous,
    /// A commit prefix that matches several advertised tips.
    AmbiguousPrefix(Vec<String>),
    /// A commit prefix matching no advertised tip: it needs the history.
    NeedsHistory,
    /// Nothing by that name.
    Unknown {
        suggestions: Vec<String>,
        available: Vec<String>,
    },
}

/// Whether `s` can be a commit prefix (4 to 39 hex digits).
pub(crate) fn is_commit_prefix(s: &str) -> bool {
    (4..40).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Resolves `wanted` (absent: HEAD) against `refs` with git's DWIM order:
/// an exact `refs/...` name, then `refs/<x>`, `refs/tags/<x>`,
/// `refs/heads/<x>`; a branch and a tag of the same name are ambiguous. A
/// hex string naming no ref is tried as a prefix of the advertised commits.
pub(crate) fn match_ref(refs: &[RemoteRef], wanted: Option<&str>) -> RefMatch {
    let find = |name: &str| refs.iter().find(|r| r.name == name);
    let wanted = match wanted {
        None | Some("HEAD") => {
            return match find("HEAD") {
                Some(r) => RefMatch::Commit(r.commit().to_ascii_lowercase()),
                None => RefMatch::NoHead,
            };
        }
        Some(w) => w,
    };
    if wanted.starts_with("refs/") {
        if let Some(r) = find(wanted) {
            return RefMatch::Commit(r.commit().to_ascii_lowercase());
        }
    } else {
        let tag = find(&format!("refs/tags/{wanted}"));
        let head = find(&format!("refs/heads/{wanted}"));
        if let (Some(t), Some(h)) = (tag, head)
            && t.commit() != h.commit()
        {
            return RefMatch::Ambiguous;
        }
        if let Some(r) = find(&format!("refs/{wanted}")).or(tag).or(head) {
            return RefMatch::Commit(r.commit().to_ascii_lowercase());
        }
        if is_commit_prefix(wanted) {
            let prefix = wanted.to_ascii_lowercase();
            let mut hits: Vec<String> = refs
                .iter()
                .map(|r| r.commit().to_ascii_lowercase())
                .filter(|c| c.starts_with(&prefix))
                .collect();
            hits.sort();
            hits.dedup();
            return match hits.len() {
                0 => RefMatch::NeedsHistory,
                1 => RefMatch::Commit(hits.remove(0)),
                _ => RefMatch::AmbiguousPrefix(hits),
            };
        }
    }
    let (suggestions, available) = suggest(refs, wanted);
    RefMatch::Unknown {
        suggestions,
        available,
    }
}

/// Branch and tag names close to `wanted`, and a short list of what exists.
pub(crate) fn suggest(refs: &[RemoteRef], wanted: &str) -> (Vec<String>, Vec<String>) {
    let short = |name: &str| -> Option<String> {
        name.strip_prefix("refs/heads/")
            .or_else(|| name.strip_prefix("refs/tags/"))
            .map(str::to_string)
    };
    let mut names: Vec<String> = refs.iter().filter_map(|r| short(&r.name)).collect();
    names.sort();
    names.dedup();
    let bare = wanted
        .trim_start_matches("refs/")
        .trim_start_matches("heads/")
        .trim_start_matches("tags/");
    let limit = (bare.chars().count() / 3).max(2);
    let mut close: Vec<(usize, String)> = names
        .iter()
        .map(|n| {
            (
                comfyver_spec::suggest::levenshtein(&bare.to_lowercase(), &n.to_lowercase()),
                n.clone(),
            )
        })
        .filter(|(d, _)| *d <= limit)
        .collect();
    close.sort();
    let suggestions: Vec<String> = close.into_iter().take(5).map(|(_, n)| n).collect();
    let available = if suggestions.is_empty() {
        let mut branches_first: Vec<&RemoteRef> = refs
            .iter()
            .filter(|r| r.name.starts_with("refs/heads/"))
            .chain(refs.iter().filter(|r| r.name.starts_with("refs/tags/")))
            .collect();
        branches_first.truncate(10);
        branches_first
            .iter()
            .filter_map(|r| short(&r.name))
            .collect()
    } else {
        Vec::new()
    };
    (suggestions, available)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(name: &str, target: &str, peeled: Option<&str>) -> RemoteRef {
        RemoteRef {
            name: name.into(),
            target: target.repeat(40 / target.len()),
            peeled: peeled.map(|p| p.repeat(40 / p.len())),
            symref_target: None,
        }
    }

    fn refs() -> Vec<RemoteRef> {
        vec![
            r("HEAD", "a1", None),
            r("refs/heads/main", "a1", None),
            r("refs/heads/dev", "b2", None),
            r("refs/heads/same", "c3", None),
            r("refs/tags/same", "d4", None),
            r("refs/tags/v1", "e5", Some("c3")),
            r("refs/tags/light", "b2", None),
        ]
    }

    #[test]
    fn dwim_order_and_peeling() {
        let refs = refs();
        let c = |s: &str| RefMatch::Commit(s.repeat(40 / s.len()));
        assert_eq!(match_ref(&refs, None), c("a1"));
        assert_eq!(match_ref(&refs, Some("main")), c("a1"));
        assert_eq!(match_ref(&refs, Some("heads/dev")), c("b2"));
        assert_eq!(match_ref(&refs, Some("v1")), c("c3"));
        assert_eq!(match_ref(&refs, Some("same")), RefMatch::Ambiguous);
        assert_eq!(match_ref(&refs, Some("refs/heads/same")), c("c3"));
        assert_eq!(match_ref(&refs, Some("refs/tags/same")), c("d4"));
        assert_eq!(match_ref(&refs, Some("b2b2")), c("b2"));
        assert_eq!(match_ref(&refs, Some("ffff")), RefMatch::NeedsHistory);
    }

    #[test]
    fn unknown_names_suggest_close_ones() {
        match match_ref(&refs(), Some("mian")) {
            RefMatch::Unknown { suggestions, .. } => assert_eq!(suggestions, ["main"]),
            other => panic!("{other:?}"),
        }
        match match_ref(&refs(), Some("completely-different")) {
            RefMatch::Unknown {
                suggestions,
                available,
            } => {
                assert!(suggestions.is_empty());
                assert!(available.contains(&"main".to_string()), "{available:?}");
            }
            other => panic!("{other:?}"),
        }
    }
}
