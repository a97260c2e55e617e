//! URL rewrite rules, like git's `url.<base>.insteadOf`, applied to every
//! repository URL before any network access. The lock keeps the spec's URL.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One rule: URLs starting with `prefix` have it replaced by `replacement`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RewriteRule {
    /// The prefix to match (git's `insteadOf` value).
    pub(crate) prefix: String,
    /// What replaces it (git's `url.<base>`).
    pub(crate) replacement: String,
}

/// A set of rewrite rules; the longest matching prefix wins, as in git.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UrlRewrites {
    rules: Vec<RewriteRule>,
}

/// Rewrite rules that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RewriteError {
    /// A malformed rule.
    #[error(
        "invalid URL rewrite rule `{rule}` in {origin}: expected PREFIX=REPLACEMENT with a non-empty prefix"
    )]
    Rule {
        /// Where the rule came from.
        origin: String,
        /// The offending rule.
        rule: String,
    },
    /// The settings file cannot be read.
    #[error("could not read the settings file {}: fix its permissions or move it away", .path.display())]
    Read {
        /// The file (`<cache>/config.json`).
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// The `url_rewrites` part of the cache's `config.json`.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    url_rewrites: Vec<RewriteRule>,
}

impl UrlRewrites {
    /// The rules in effect: `COMFYVER_URL_REWRITES` first, then the
    /// `url_rewrites` of the cache's settings file `config_file`
    /// (`<cache>/config.json`, `CacheLayout::config_file`; a missing file
    /// holds no rule). Errors name the variable or the file.
    pub fn from_settings(config_file: &Path) -> Result<UrlRewrites, RewriteError> {
        use comfyver_env::COMFYVER_URL_REWRITES as VAR;
        let from_env = match std::env::var(VAR) {
            Ok(v) => UrlRewrites::parse_list(&v, VAR)?,
            Err(_) => UrlRewrites::default(),
        };
        let from_file = match std::fs::read_to_string(config_file) {
            Ok(text) => UrlRewrites::parse_config(&text, &config_file.display().to_string())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => UrlRewrites::default(),
            Err(source) => {
                return Err(RewriteError::Read {
                    path: config_file.to_path_buf(),
                    source,
                });
            }
        };
        Ok(from_env.merged(from_file))
    }

    /// Parses `PREFIX=REPLACEMENT;...` (the format of `COMFYVER_URL_REWRITES`).
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
                    return Err(RewriteError::Rule {
                        origin: origin.to_string(),
                        rule: item.to_string(),
                    });
                }
            }
        }
        Ok(UrlRewrites { rules })
    }

    /// Parses the `url_rewrites` array of a cache `config.json`.
    fn parse_config(json: &str, origin: &str) -> Result<UrlRewrites, RewriteError> {
        let cfg: ConfigFile = serde_json::from_str(json).map_err(|e| RewriteError::Rule {
            origin: origin.to_string(),
            rule: e.to_string(),
        })?;
        if let Some(bad) = cfg.url_rewrites.iter().find(|r| r.prefix.is_empty()) {
            return Err(RewriteError::Rule {
                origin: origin.to_string(),
                rule: format!("{}={}", bad.prefix, bad.replacement),
            });
        }
        Ok(UrlRewrites {
            rules: cfg.url_rewrites,
        })
    }

    /// These rules followed by `other`'s (ours win on equal prefixes).
    fn merged(mut self, other: UrlRewrites) -> UrlRewrites {
        self.rules.extend(other.rules);
        self
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The URL to fetch from: `url` with the longest matching prefix replaced,
    /// then, when that is a local repository (`file://` URL or absolute path)
    /// that does not exist, the same path with `.git` appended if that one
    /// exists, as git does for local paths (so a rule can point at a
    /// directory of `git clone --mirror` copies).
    pub fn apply(&self, url: &str) -> String {
        with_git_suffix_if_needed(self.rewrite(url))
    }

    /// The replacements that are directories of this machine (`file://`
    /// URLs and absolute paths): what a confined child must be able to read
    /// to fetch through the rules.
    pub fn local_targets(&self) -> Vec<PathBuf> {
        self.rules
            .iter()
            .filter_map(|r| {
                let path = r
                    .replacement
                    .strip_prefix("file://")
                    .unwrap_or(&r.replacement);
                path.starts_with('/').then(|| PathBuf::from(path))
            })
            .collect()
    }

    /// The rules as git configuration for a child's environment
    /// (`GIT_CONFIG_COUNT`, `GIT_CONFIG_KEY_<n>=url.<replacement>.insteadOf`,
    /// `GIT_CONFIG_VALUE_<n>=<prefix>`), numbered after the `inherited`
    /// `GIT_CONFIG_COUNT` so entries already in the environment stay. Git,
    /// too, takes the longest matching `insteadOf`. Empty without rules. The
    /// values may hold credentials: never log them.
    pub fn git_config_env(&self, inherited: Option<&str>) -> Vec<(String, String)> {
        if self.rules.is_empty() {
            return Vec::new();
        }
        let first: usize = inherited.and_then(|c| c.trim().parse().ok()).unwrap_or(0);
        let mut env = Vec::with_capacity(self.rules.len() * 2 + 1);
        for (i, r) in self.rules.iter().enumerate() {
            let n = first + i;
            env.push((
                format!("GIT_CONFIG_KEY_{n}"),
                format!("url.{}.insteadOf", r.replacement),
            ));
            env.push((format!("GIT_CONFIG_VALUE_{n}"), r.prefix.clone()));
        }
        env.push((
            "GIT_CONFIG_COUNT".to_string(),
            (first + self.rules.len()).to_string(),
        ));
        env
    }

    /// `url` with the longest matching prefix replaced (no filesystem access).
    pub fn rewrite(&self, url: &str) -> String {
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

/// `<path>.git` for a local repository URL whose `<path>` does not exist but
/// `<path>.git` does; anything else unchanged.
fn with_git_suffix_if_needed(url: String) -> String {
    let path = match url.strip_prefix("file://") {
        Some(p) => p,
        None if url.starts_with('/') => url.as_str(),
        None => return url,
    };
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() || trimmed.ends_with(".git") || std::path::Path::new(trimmed).exists() {
        return url;
    }
    let with_suffix = format!("{trimmed}.git");
    if std::path::Path::new(&with_suffix).is_dir() {
        let scheme = if url.starts_with("file://") {
            "file://"
        } else {
            ""
        };
        format!("{scheme}{with_suffix}")
    } else {
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_become_git_config_after_the_inherited_entries() {
        let r = UrlRewrites::parse_list(
            "https://github.com/=/srv/mirrors/;https://git.example/o/=https://u:t@m.example/o/",
            "test",
        )
        .unwrap();
        let env = r.git_config_env(Some("2"));
        assert_eq!(
            env,
            [
                ("GIT_CONFIG_KEY_2", "url./srv/mirrors/.insteadOf"),
                ("GIT_CONFIG_VALUE_2", "https://github.com/"),
                ("GIT_CONFIG_KEY_3", "url.https://u:t@m.example/o/.insteadOf"),
                ("GIT_CONFIG_VALUE_3", "https://git.example/o/"),
                ("GIT_CONFIG_COUNT", "4"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(r.git_config_env(Some("junk"))[0].0, "GIT_CONFIG_KEY_0");
        assert!(UrlRewrites::default().git_config_env(None).is_empty());
    }

    #[test]
    fn local_targets_are_the_replacements_on_this_machine() {
        let r = UrlRewrites::parse_list(
            "https://a/=/srv/mirrors/;https://b/=file:///srv/other/;https://c/=https://m.example/",
            "test",
        )
        .unwrap();
        assert_eq!(
            r.local_targets(),
            [PathBuf::from("/srv/mirrors/"), PathBuf::from("/srv/other/")]
        );
    }

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
        // The bad item is named alone, not the whole list.
        let bad = |err: RewriteError| match err {
            RewriteError::Rule { origin, rule } => (origin, rule),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            bad(UrlRewrites::parse_list("https://a/=/b/;nonsense", "env").unwrap_err()),
            ("env".into(), "nonsense".into())
        );
        assert_eq!(
            bad(UrlRewrites::parse_list("=x", "env").unwrap_err()),
            ("env".into(), "=x".into())
        );
        assert_eq!(
            bad(UrlRewrites::parse_config(
                r#"{"url_rewrites": [{"prefix": "", "replacement": "/srv/"}]}"#,
                "config.json"
            )
            .unwrap_err()),
            ("config.json".into(), "=/srv/".into())
        );
    }

    #[test]
    fn settings_file_missing_read_or_bad() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config.json");
        // No file: no rule (the variable is not set in unit tests).
        assert!(UrlRewrites::from_settings(&file).unwrap().is_empty());
        std::fs::write(
            &file,
            r#"{"url_rewrites": [{"prefix": "https://h/", "replacement": "/srv/"}]}"#,
        )
        .unwrap();
        let r = UrlRewrites::from_settings(&file).unwrap();
        assert_eq!(r.rewrite("https://h/x"), "/srv/x");
        std::fs::write(&file, "{ oops").unwrap();
        match UrlRewrites::from_settings(&file).unwrap_err() {
            RewriteError::Rule { origin, .. } => assert_eq!(origin, file.display().to_string()),
            other => panic!("{other:?}"),
        }
        // A directory where the file should be cannot be read: named.
        let not_a_file = dir.path().join("dir");
        std::fs::create_dir(&not_a_file).unwrap();
        match UrlRewrites::from_settings(&not_a_file).unwrap_err() {
            RewriteError::Read { path, .. } => assert_eq!(path, not_a_file),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn local_results_find_the_bare_mirror_with_git_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().display().to_string();
        std::fs::create_dir_all(dir.path().join("o/bare.git")).unwrap();
        std::fs::create_dir_all(dir.path().join("o/plain")).unwrap();
        let r = UrlRewrites::parse_list(
            &format!("https://h/={root}/; git://h/=file://{root}/"),
            "env",
        )
        .unwrap();
        assert_eq!(r.apply("https://h/o/bare"), format!("{root}/o/bare.git"));
        assert_eq!(r.apply("https://h/o/bare/"), format!("{root}/o/bare.git"));
        assert_eq!(
            r.apply("git://h/o/bare"),
            format!("file://{root}/o/bare.git")
        );
        assert_eq!(r.apply("https://h/o/plain"), format!("{root}/o/plain"));
        // Neither exists: the rewritten URL as is, for the fetch to report.
        assert_eq!(r.apply("https://h/o/none"), format!("{root}/o/none"));
        assert_eq!(r.rewrite("https://h/o/bare"), format!("{root}/o/bare"));
    }
}
