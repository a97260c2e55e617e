//! Listing a remote's refs through gix (the `git ls-remote` equivalent),
//! without cloning, from a throw-away bare repository in the system's
//! temporary directory (so even a dry run writes nothing into the cache).

use std::sync::mpsc;
use std::time::Duration;

use gix::protocol::handshake::Ref;
use gix::remote::{Direction, fetch::Tags, ref_map};

use crate::error::{RemoteCause, ResolveError};

/// Default time allowed for listing one remote's refs.
pub(crate) const DEFAULT_TIMEOUT: Duration = comfyver_git::DEFAULT_GIT_TIMEOUT;

/// One ref advertised by a remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RemoteRef {
    /// Full name: `HEAD`, `refs/heads/main`, `refs/tags/v1`, ...
    pub name: String,
    /// The object the ref points at (a tag object for annotated tags).
    pub target: String,
    /// The commit behind an annotated tag.
    pub peeled: Option<String>,
    /// For a symbolic ref such as `HEAD`, the ref it points to.
    pub symref_target: Option<String>,
}

impl RemoteRef {
    /// The commit this ref designates (annotated tags peeled).
    pub(crate) fn commit(&self) -> &str {
        self.peeled.as_deref().unwrap_or(&self.target)
    }
}

/// How listing a remote failed, before it is attributed to an entry.
#[derive(Debug)]
pub(crate) enum RemoteFailure {
    Unreachable(RemoteCause),
    Auth(RemoteCause),
    Timeout(u64),
}

impl RemoteFailure {
    pub(crate) fn into_error(self, entry: String, repo: String) -> ResolveError {
        match self {
            RemoteFailure::Unreachable(cause) => ResolveError::Unreachable { entry, repo, cause },
            RemoteFailure::Auth(cause) => ResolveError::AuthRequired { entry, repo, cause },
            RemoteFailure::Timeout(seconds) => ResolveError::Timeout {
                entry,
                repo,
                seconds,
            },
        }
    }
}

/// The name the scratch repositories are temporaries of.
const SCRATCH: &str = "comfyver-ls-remote";

/// Lists remotes through one scratch repository; shareable across threads.
pub(crate) struct Lister {
    repo: gix::ThreadSafeRepository,
    timeout: Duration,
    // Declared last so it is dropped after the repository handle.
    _dir: comfyver_fs::TempDir,
}

impl Lister {
    /// Creates the scratch repository in the system's temporary directory,
    /// named for its host and process so that one left by a process that
    /// was killed is removed by the next (once provably gone).
    pub(crate) fn new(timeout: Duration) -> Result<Lister, ResolveError> {
        let scratch_err = |message: String| ResolveError::Scratch {
            cause: RemoteCause(message),
        };
        let tmp = std::env::temp_dir();
        let _ = comfyver_fs::remove_stale_temps(&tmp, Some(SCRATCH));
        let dir = comfyver_fs::TempDir::beside(&tmp.join(SCRATCH))
            .map_err(|e| scratch_err(e.to_string()))?;
        comfyver_fs::test_pause("ls-remote-scratch");
        let repo = comfyver_git::init_bare(dir.path())
            .map_err(|e| scratch_err(error_text(&e, &[])))?
            .into_sync();
        Ok(Lister {
            repo,
            timeout,
            _dir: dir,
        })
    }

    /// Lists HEAD, branches and tags of `url` (plus `extra_ref` when it is a
    /// full ref name outside those), bounded by the timeout. On timeout the
    /// worker thread is abandoned; it holds nothing but a socket.
    pub(crate) fn list(
        &self,
        url: &str,
        extra_ref: Option<&str>,
    ) -> Result<Vec<RemoteRef>, RemoteFailure> {
        let (tx, rx) = mpsc::channel();
        let repo = self.repo.clone();
        let url_owned = url.to_string();
        let extra = extra_ref.map(str::to_string);
        let limit = self.timeout;
        let spawned = std::thread::Builder::new()
            .name("comfyver-ls-remote".into())
            .spawn(move || {
                let result =
                    list_blocking(&repo.to_thread_local(), &url_owned, extra.as_deref(), limit);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            return Err(RemoteFailure::Unreachable(RemoteCause(format!(
                "could not start a thread: {e}"
            ))));
        }
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(refs)) => Ok(refs),
            Ok(Err(e)) => Err(classify(&e, url)),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(RemoteFailure::Timeout(self.timeout.as_secs().max(1)))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(RemoteFailure::Unreachable(
                RemoteCause("the ref listing thread stopped unexpectedly".into()),
            )),
        }
    }
}

fn list_blocking(
    repo: &gix::Repository,
    url: &str,
    extra_ref: Option<&str>,
    limit: Duration,
) -> Result<Vec<RemoteRef>, gix::Error> {
    let mut specs = vec![
        "+refs/heads/*:refs/remotes/origin/*".to_string(),
        "+refs/tags/*:refs/tags/*".to_string(),
        "HEAD".to_string(),
    ];
    if let Some(r) = extra_ref
        && r.starts_with("refs/")
        && !r.starts_with("refs/heads/")
        && !r.starts_with("refs/tags/")
    {
        specs.push(r.to_string());
    }
    let remote = repo
        .remote_at_without_url_rewrite(url)?
        .with_fetch_tags(Tags::None)
        .with_refspecs(specs.iter().map(String::as_str), Direction::Fetch)?;
    // Credentials come from the URL or from `git credential fill`, i.e. the
    // user's git credential helpers (the scratch repository itself is
    // isolated from git config). git prompts only when a terminal is attached
    // and GIT_TERMINAL_PROMPT is not 0.
    let options = ref_map::Options {
        // Let the server send only HEAD, branches, tags (and the extra ref):
        // hosting services also advertise thousands of pull-request refs.
        prefix_from_spec_as_filter_on_remote: true,
        ..Default::default()
    };
    // git:// and local repositories through comfyver's bounded transports
    // (a local `git upload-pack` is contained: own group, killed with us).
    let (map, _handshake) =
        match comfyver_git::bounded_transport(url, limit).map_err(gix::Error::from_error)? {
            Some((transport, _guard)) => remote
                .to_connection_with_transport(transport)
                .ref_map(gix::progress::Discard, options)?,
            None => remote
                .connect(Direction::Fetch)?
                .with_credentials(gix::credentials::builtin)
                .ref_map(gix::progress::Discard, options)?,
        };
    let mut out = Vec::new();
    for r in &map.remote_refs {
        let converted = match r {
            Ref::Direct {
                full_ref_name,
                object,
            } => RemoteRef {
                name: full_ref_name.to_string(),
                target: object.to_string(),
                peeled: None,
                symref_target: None,
            },
            Ref::Peeled {
                full_ref_name,
                tag,
                object,
            } => RemoteRef {
                name: full_ref_name.to_string(),
                target: tag.to_string(),
                peeled: Some(object.to_string()),
                symref_target: None,
            },
            Ref::Symbolic {
                full_ref_name,
                target,
                tag,
                object,
            } => RemoteRef {
                name: full_ref_name.to_string(),
                target: tag.unwrap_or(*object).to_string(),
                peeled: tag.map(|_| object.to_string()),
                symref_target: Some(target.to_string()),
            },
            Ref::Unborn { .. } => continue,
        };
        out.push(converted);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    Ok(out)
}

/// Sorts a transport error into unreachable / authentication / timeout.
fn classify(err: &gix::Error, url: &str) -> RemoteFailure {
    let text = error_text(err, &[url]);
    let lower = text.to_ascii_lowercase();
    // gix refuses to send URL credentials over plain http: the cause says so.
    if lower.contains("clear text") {
        return RemoteFailure::Unreachable(RemoteCause(text));
    }
    if err.dominant_class() == Some(gix::error::Class::Unauthenticated)
        || ["401", "403"].iter().any(|code| has_number(&lower, code))
        || [
            "authentication",
            "permission denied (publickey",
            "could not read username",
            "could not read password",
            "terminal prompts disabled",
            "failed to obtain credentials",
        ]
        .iter()
        .any(|needle| lower.contains(needle))
    {
        return RemoteFailure::Auth(RemoteCause(text));
    }
    if lower.contains("timed out") {
        return RemoteFailure::Timeout(0);
    }
    RemoteFailure::Unreachable(RemoteCause(text))
}

/// Whether `text` holds `number` as a number of its own, not as a part of
/// another (a port such as `40343` is not an HTTP 403).
fn has_number(text: &str, number: &str) -> bool {
    text.match_indices(number).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + number.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

/// The error and its causes on one line, with the secrets of `urls` removed.
pub(crate) fn error_text(err: &(dyn std::error::Error + 'static), urls: &[&str]) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    scrub(&parts.join(": "), urls)
}

/// Removes every credential of `urls` from `text`, and redacts any other URL
/// with user-info that the transport may have echoed.
pub(crate) fn scrub(text: &str, urls: &[&str]) -> String {
    let mut out = text.to_string();
    for url in urls {
        out = out.replace(url, &comfyver_spec::redact(url));
        if let Some(secret) = userinfo_secret(url) {
            out = out.replace(&secret, "***");
        }
    }
    out.split(' ')
        .map(|word| {
            if word.contains("://") && word.contains('@') {
                comfyver_spec::redact(word)
            } else {
                word.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The password (or bare token) in a URL's user-info, if any.
fn userinfo_secret(url: &str) -> Option<String> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let secret = match userinfo.split_once(':') {
        Some((_, pw)) => pw,
        None if userinfo == "git" => return None,
        None => userinfo,
    };
    (secret.len() >= 3).then(|| secret.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_with_403_in_it_is_not_an_authentication_failure() {
        let url = "https://127.0.0.1:40343/org/pack.git";
        let refused = gix::Error::from_error(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            format!("error sending request for url ({url}): Connection refused"),
        ));
        assert!(matches!(
            classify(&refused, url),
            RemoteFailure::Unreachable(_)
        ));
        let denied = gix::Error::from_error(std::io::Error::other(format!(
            "{url}: server answered 403 Forbidden"
        )));
        assert!(matches!(classify(&denied, url), RemoteFailure::Auth(_)));
    }

    #[test]
    fn scrubbing_removes_secrets() {
        let url = "https://user:hunter22@h.invalid/a/b";
        let msg = format!("could not connect to {url}: password hunter22 rejected");
        let s = scrub(&msg, &[url]);
        assert!(!s.contains("hunter22"), "{s}");
        assert!(s.contains("https://user:***@h.invalid/a/b"), "{s}");
        let other = scrub("see https://tok123@x.invalid/y now", &[]);
        assert!(!other.contains("tok123"), "{other}");
    }
}
