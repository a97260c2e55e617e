//! URL rewrite rules, like git's `url.<base>.insteadOf`, applied to every
//! repository URL before any network access. The lock keeps the spec's URL.

use serde::{Deserialize, Serialize};

/// One rule: URLs starting with `prefix` have it replaced by `replacement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewriteRule {
    /// The prefix to match (git's `insteadOf` value).
    pub prefix: String,
    /// What replaces it (git's `url.<base>`).
    pub replacement: String,
}

/// A set of rewrite rules; the longest matching prefix wins, as in git.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlRewrites {
    rules: Vec<RewriteRule>,
}

/// A malformed rewrite rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid URL rewrite rule `{rule}` in {origin}: expected PREFIX=REPLACEMENT with a non-empty prefix"
)]
pub struct RewriteError {
    /// Where the rule came from.
    pub origin: String,
    /// The offending rule.
    pub rule: String,
}

/// The `url_rewrites` part of the cache's `config.json`.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    url_rewrites: Vec<RewriteRule>,
}

impl UrlRewrites {
    /// Rules from a list.
    pub fn new(rules: Vec<RewriteRule>) -> UrlRewrites {
        UrlRewrites { rules }
    }

    /// Parses `PREFIX=REPLACEMENT;...` (the format of [`URL_REWRITES_ENV`]).
    pub fn parse_list(text: &str, origin: &str) -> Result<UrlRewrites, RewriteError> {
        let mut rules = Vec::new();
        for item in text
            .split([';', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            match item.split_once('=') {
                Some((p, r)) if !p.trim().is_empty() => rules.push(RewriteRule {
                    prefix: p.trim().to_string(),
                    replacement: r.trim().to_string(),
                }),
                _ => {
                    return Err(RewriteError {
                        origin: origin.to_string(),
                        rule: item.to_string(),
                    });
                }
            }
        }
        Ok(UrlRewrites { rules })
    }

    /// Parses the `url_rewrites` array of a cache `config.json`.
    pub fn parse_config(json: &str, origin: &str) -> Result<UrlRewrites, RewriteError> {
        let cfg: ConfigFile = serde_json::from_str(json).map_err(|e| RewriteError {
            origin: origin.to_string(),
            rule: e.to_string(),
        })?;
        if let Some(bad) = cfg.url_rewrites.iter().find(|r| r.prefix.is_empty()) {
            return Err(RewriteError {
                origin: origin.to_string(),
                rule: format!("{}={}", bad.prefix, bad.replacement),
            });
        }
        Ok(UrlRewrites {
            rules: cfg.url_rewrites,
        })
    }

    /// These rules followed by `other`'s (ours win on equal prefixes).
    pub fn merged(mut self, other: UrlRewrites) -> UrlRewrites {
        self.rules.extend(other.rules);
        self
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The URL to fetch from: `url` with the longest matching prefix replaced.
    pub fn apply(&self, url: &str) -> String {
        let best = self
            .rules
            .iter()
            .filter(|r| url.starts_with(&r.prefix))
            .fold(None::<&RewriteRule>, |best, r| match best {
                Some(b) if b.prefix.len() >= r.prefix.len() => Some(b),
                _ => Some(r),
            });
        match best {
            Some(r) => format!("{}{}", r.replacement, &url[r.prefix.len()..]),
            None => url.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_prefix_wins() {
        let r = UrlRewrites::parse_list(
            "https://github.com/=file:///m/gh/; https://github.com/comfy/=file:///m/core/",
            "env",
        )
        .unwrap();
        assert_eq!(r.apply("https://github.com/a/b"), "file:///m/gh/a/b");
        assert_eq!(
            r.apply("https://github.com/comfy/ComfyUI"),
            "file:///m/core/ComfyUI"
        );
        assert_eq!(r.apply("https://gitlab.com/x"), "https://gitlab.com/x");
    }

    #[test]
    fn config_and_errors() {
        let r = UrlRewrites::parse_config(
            r#"{"url_rewrites": [{"prefix": "https://h/", "replacement": "/srv/"}]}"#,
            "config.json",
        )
        .unwrap();
        assert_eq!(r.apply("https://h/x"), "/srv/x");
        assert!(UrlRewrites::parse_list("nonsense", "env").is_err());
        assert!(UrlRewrites::parse_list("=x", "env").is_err());
    }
}
