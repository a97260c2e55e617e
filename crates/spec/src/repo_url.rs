use std::fmt;

/// A git repository URL as written in a spec, with the identity every stage
/// uses for caching.
///
/// Accepted forms: `https://`, `http://`, `ssh://`, `git://`, scp-like
/// `user@host:owner/repo`, `file://` and absolute paths. Two spellings of the
/// same network repository (`https://h/a/b.git`, `https://h/a/b/`,
/// `git@h:a/b`) share one [`RepoUrl::canonical`] form and one [`RepoUrl::slug`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUrl {
    original: String,
    canonical: String,
}

/// Why a string is not a repository URL comfyver accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RepoUrlError {
    /// Empty string.
    #[error("the repository URL is empty")]
    Empty,
    /// A scheme comfyver does not fetch from.
    #[error(
        "unsupported URL scheme `{scheme}`: use https://, http://, ssh://, git://, \
         git@host:owner/repo, file:// or an absolute path"
    )]
    UnsupportedScheme {
        /// The scheme found.
        scheme: String,
    },
    /// Relative paths depend on the current directory, so they are refused.
    #[error("`{0}` is a relative path: use an absolute path or a file:// URL")]
    Relative(String),
    /// Host or path missing.
    #[error("`{url}` is not a repository URL: {reason}")]
    Malformed {
        /// The offending URL (credentials removed).
        url: String,
        /// What is missing.
        reason: &'static str,
    },
}

impl RepoUrl {
    /// Parses and normalizes a repository URL.
    pub fn parse(url: &str) -> Result<RepoUrl, RepoUrlError> {
        let url = url.trim();
        if url.is_empty() {
            return Err(RepoUrlError::Empty);
        }
        let canonical = canonicalize(url)?;
        Ok(RepoUrl {
            original: url.to_string(),
            canonical,
        })
    }

    /// The URL as written (may contain credentials: never print it; use
    /// [`RepoUrl::redacted`]).
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The identity of the repository: `host[:port]/path` for network URLs
    /// (lower-case host, no user, no trailing `/` or `.git`), `file://<path>`
    /// for local ones.
    pub fn canonical(&self) -> &str {
        &self.canonical
    }

    /// Whether the repository is on the local filesystem.
    pub fn is_local(&self) -> bool {
        self.canonical.starts_with("file://")
    }

    /// A directory-name-safe, collision-free key: a readable part from the
    /// last two path segments plus 12 hex digits of BLAKE3 of the canonical form.
    pub fn slug(&self) -> String {
        let hash = blake3::hash(self.canonical.as_bytes()).to_hex();
        let segments: Vec<&str> = self
            .canonical
            .trim_start_matches("file://")
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let tail = &segments[segments.len().saturating_sub(2)..];
        let readable: String = tail
            .join("_")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let readable = readable.trim_start_matches('.');
        let readable: String = readable.chars().take(60).collect();
        format!("{readable}-{}", &hash[..12])
    }

    /// The URL with any password or token removed, safe for logs and errors.
    pub fn redacted(&self) -> String {
        redact(&self.original)
    }
}

impl fmt::Display for RepoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Removes the password (or a bare token) from a URL's user-info:
/// `https://user:secret@host/x` → `https://user:***@host/x`,
/// `https://token@host/x` → `https://***@host/x`. Also masks values of query
/// parameters named like secrets (`token`, `key`, `sig`, ...).
pub fn redact(url: &str) -> String {
    let mut out = url.to_string();
    if let Some(scheme_end) = out.find("://") {
        let rest_start = scheme_end + 3;
        let authority_end = out[rest_start..]
            .find(['/', '?', '#'])
            .map(|i| rest_start + i)
            .unwrap_or(out.len());
        if let Some(at) = out[rest_start..authority_end].rfind('@') {
            let userinfo = &out[rest_start..rest_start + at];
            let masked = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                None if userinfo == "git" => userinfo.to_string(),
                None => "***".to_string(),
            };
            out.replace_range(rest_start..rest_start + at, &masked);
        }
    }
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if is_secret_param(k) => format!("{k}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{base}{}", masked.join("&"));
    }
    out
}

fn is_secret_param(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token",
        "key",
        "sig",
        "signature",
        "secret",
        "password",
        "auth",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// The last path segment of a repository URL without `.git` (the default
/// node directory name).
pub(crate) fn last_segment(url: &str) -> String {
    let trimmed = url.trim().trim_end_matches('/');
    let after_scp = trimmed.rsplit([':', '/']).next().unwrap_or(trimmed);
    after_scp
        .strip_suffix(".git")
        .unwrap_or(after_scp)
        .to_string()
}

fn canonicalize(url: &str) -> Result<String, RepoUrlError> {
    if url.starts_with('/') {
        return Ok(format!("file://{}", normalize_local(url)));
    }
    if let Some((scheme, rest)) = url.split_once("://") {
        let scheme = scheme.to_ascii_lowercase();
        return match scheme.as_str() {
            "file" => {
                if !rest.starts_with('/') {
                    return Err(RepoUrlError::Malformed {
                        url: redact(url),
                        reason: "file:// URLs need an absolute path (file:///path)",
                    });
                }
                Ok(format!("file://{}", normalize_local(rest)))
            }
            "http" | "https" | "ssh" | "git" | "git+ssh" | "ssh+git" => network(url, rest),
            _ => Err(RepoUrlError::UnsupportedScheme { scheme }),
        };
    }
    // scp-like: [user@]host:path, where no slash precedes the colon.
    if let Some((host_part, path)) = url.split_once(':')
        && !host_part.contains('/')
        && !host_part.is_empty()
    {
        if path.is_empty() {
            return Err(RepoUrlError::Malformed {
                url: redact(url),
                reason: "no repository path after `:`",
            });
        }
        let host = host_part.rsplit('@').next().unwrap_or(host_part);
        if host.is_empty() {
            return Err(RepoUrlError::Malformed {
                url: redact(url),
                reason: "no host before `:`",
            });
        }
        return Ok(join_network(host, "", path));
    }
    Err(RepoUrlError::Relative(url.to_string()))
}

fn network(url: &str, rest: &str) -> Result<String, RepoUrlError> {
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.is_empty() {
        return Err(RepoUrlError::Malformed {
            url: redact(url),
            reason: "no host",
        });
    }
    let path = path.split(['?', '#']).next().unwrap_or("");
    if path.trim_matches('/').is_empty() {
        return Err(RepoUrlError::Malformed {
            url: redact(url),
            reason: "no repository path",
        });
    }
    let (host, port) = match host_port.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || host_port.starts_with('[') => (h, p),
        _ => (host_port, ""),
    };
    Ok(join_network(host, port, path))
}

fn join_network(host: &str, port: &str, path: &str) -> String {
    let path = path.trim_matches('/');
    let path = path
        .strip_suffix(".git")
        .unwrap_or(path)
        .trim_end_matches('/');
    let host = host.to_ascii_lowercase();
    let port = match port {
        "" | "80" | "443" | "22" | "9418" => String::new(),
        p => format!(":{p}"),
    };
    format!("{host}{port}/{path}")
}

fn normalize_local(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(u: &str) -> String {
        RepoUrl::parse(u).unwrap().slug()
    }

    #[test]
    fn spellings_of_one_repo_share_a_slug() {
        let forms = [
            "https://github.com/a/b.git",
            "https://github.com/a/b/",
            "https://github.com/a/b",
            "http://github.com/a/b",
            "https://GitHub.com/a/b.git/",
            "git@github.com:a/b",
            "git@github.com:a/b.git",
            "ssh://git@github.com/a/b.git",
            "ssh://git@github.com:22/a/b",
            "https://user:tok@github.com/a/b",
        ];
        let first = slug(forms[0]);
        for f in forms {
            assert_eq!(slug(f), first, "{f}");
            assert_eq!(RepoUrl::parse(f).unwrap().canonical(), "github.com/a/b");
        }
        assert!(first.starts_with("a_b-"), "{first}");
    }

    #[test]
    fn different_repos_never_share_a_slug() {
        let forms = [
            "https://github.com/a/b",
            "https://github.com/a/B",
            "https://gitlab.com/a/b",
            "https://github.com/a_b/c",
            "https://github.com/a/b_c",
            "https://github.com/x/a/b",
            "https://github.com:8443/a/b",
            "file:///srv/a/b",
            "file:///srv/a/b.git",
            "/srv/x/a/b",
            "https://github.com/a/b-c",
            "https://github.com/a/b.c",
        ];
        let mut seen = std::collections::HashMap::new();
        for f in forms {
            if let Some(prev) = seen.insert(slug(f), f) {
                panic!("{f} and {prev} collide");
            }
        }
        // Readable parts that sanitize to the same text still differ by hash.
        assert_ne!(slug("https://h/a/b c"), slug("https://h/a/b_c"));
    }

    #[test]
    fn local_paths() {
        let a = RepoUrl::parse("/srv/repos/x.git/").unwrap();
        let b = RepoUrl::parse("file:///srv/repos/./x.git").unwrap();
        assert_eq!(a.canonical(), "file:///srv/repos/x.git");
        assert_eq!(a.slug(), b.slug());
        assert!(a.is_local());
    }

    #[test]
    fn rejects() {
        assert_eq!(RepoUrl::parse(""), Err(RepoUrlError::Empty));
        assert!(matches!(
            RepoUrl::parse("ftp://h/a/b"),
            Err(RepoUrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            RepoUrl::parse("relative/path"),
            Err(RepoUrlError::Relative(_))
        ));
        assert!(matches!(
            RepoUrl::parse("https://github.com/"),
            Err(RepoUrlError::Malformed { .. })
        ));
        assert!(matches!(
            RepoUrl::parse("file://relative"),
            Err(RepoUrlError::Malformed { .. })
        ));
    }

    #[test]
    fn redaction() {
        assert_eq!(redact("https://u:s3cret@h/a"), "https://u:***@h/a");
        assert_eq!(redact("https://hf_abc@h/a"), "https://***@h/a");
        assert_eq!(
            redact("https://h/a?token=zzz&x=1"),
            "https://h/a?token=***&x=1"
        );
        assert_eq!(redact("git@github.com:a/b"), "git@github.com:a/b");
    }

    #[test]
    fn last_segments() {
        assert_eq!(
            last_segment("https://h/o/ComfyUI-Manager.git"),
            "ComfyUI-Manager"
        );
        assert_eq!(last_segment("git@h:o/pack"), "pack");
        assert_eq!(last_segment("/srv/pack/"), "pack");
    }
}
