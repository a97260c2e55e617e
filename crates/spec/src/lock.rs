//! The resolved lock (`<cache>/resolved/<id>.lock.json`): every ref of a
//! spec pinned to a full commit, its models and the installed Python set,
//! serialized deterministically; and what [`lock_diff`](crate::lock_diff)
//! finds between two locks.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::VersionSpec;

pub use crate::lock_diff::{Change, LockDiff};

/// The lock format version this build reads and writes.
pub const LOCK_VERSION: u64 = 1;

/// A resolved lock: every repository of a version pinned to a full commit.
///
/// Serialized deterministically by [`ResolvedLock::to_json`]: the same content
/// always gives the same bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolvedLock {
    /// Format version ([`LOCK_VERSION`]).
    pub lock_version: u64,
    /// The version's id.
    pub version_id: String,
    /// Digest of the spec this lock was resolved from.
    pub spec_digest: String,
    /// The comfyver version that wrote the lock.
    pub tool_version: String,
    /// The ComfyUI core.
    pub comfy: LockedRepo,
    /// Custom node packs, in spec order.
    #[serde(default)]
    pub custom_nodes: Vec<LockedRepo>,
    /// Models, in spec order.
    #[serde(default)]
    pub models: Vec<LockedModel>,
    /// The exact Python environment installed from this lock, once realized.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python: Option<LockedPython>,
}

/// A repository pinned to a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedRepo {
    /// Node directory name (absent for the core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The repository URL as written in the spec.
    pub repo: String,
    /// The spec's `ref` (absent: the remote's HEAD).
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The spec's `commit`, when the spec pinned one itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_commit: Option<String>,
    /// The resolved full commit.
    pub commit: String,
}

/// A model as locked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedModel {
    /// The spec's source.
    pub source: String,
    /// `<target_subdir>/<name>` inside the model store.
    pub path: String,
    /// Expected SHA-256, when the spec gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Expected BLAKE3, when the spec gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blake3: Option<String>,
    /// Expected size, when the spec gave one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
}

/// The Python packages installed for a lock (`name==version` lines, sorted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedPython {
    /// Digest of the requirement inputs the set was resolved from.
    pub inputs_digest: String,
    /// `name==version` for every installed distribution, sorted.
    pub packages: Vec<String>,
    /// The PyTorch backend the set was resolved for (`python.torch_backend`),
    /// when the spec names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_backend: Option<String>,
}

/// Why a lock file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LockParseError {
    /// Not JSON, or not a lock.
    #[error(
        "{path} is not a valid comfyver lock ({message}); delete it and run `comfyver resolve` again"
    )]
    Malformed {
        /// The lock file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Written by a newer comfyver.
    #[error(
        "{path} has lock_version {found}, this comfyver reads {LOCK_VERSION}; upgrade comfyver or re-resolve"
    )]
    UnsupportedVersion {
        /// The lock file.
        path: PathBuf,
        /// The version found.
        found: u64,
    },
}

impl ResolvedLock {
    /// The deterministic serialization: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("a lock serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Parses lock bytes read from `path`.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<ResolvedLock, LockParseError> {
        let value: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| LockParseError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        if let Some(found) = value.get("lock_version").and_then(|v| v.as_u64())
            && found != LOCK_VERSION
        {
            return Err(LockParseError::UnsupportedVersion {
                path: path.to_path_buf(),
                found,
            });
        }
        let lock: ResolvedLock =
            serde_json::from_value(value).map_err(|e| LockParseError::Malformed {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        // Commits become cache paths (`<slug>@<commit>`): only full hex ids.
        let repos = std::iter::once(("comfy".to_string(), &lock.comfy)).chain(
            lock.custom_nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (format!("custom_nodes[{i}]"), n)),
        );
        for (at, repo) in repos {
            if !crate::is_full_commit(&repo.commit) {
                return Err(LockParseError::Malformed {
                    path: path.to_path_buf(),
                    message: format!(
                        "{at}.commit is `{}`, expected a full 40-hex-digit commit id",
                        repo.commit.escape_debug()
                    ),
                });
            }
        }
        Ok(lock)
    }

    /// This lock with every credential removed from repository URLs
    /// (`user:***@`) and model sources (`?token=***`): what is stored in
    /// `resolved/<id>.lock.json` and printed. The spec keeps the secrets.
    pub fn redacted(mut self) -> ResolvedLock {
        for r in std::iter::once(&mut self.comfy).chain(self.custom_nodes.iter_mut()) {
            r.repo = crate::redact(&r.repo);
        }
        for m in &mut self.models {
            m.source = crate::redact(&m.source);
        }
        self
    }

    /// Whether the lock holds no credential ([`ResolvedLock::redacted`] changes nothing).
    pub fn is_redacted(&self) -> bool {
        self.clone().redacted() == *self
    }

    /// A copy for fetching: each redacted URL or source is replaced by the
    /// spec's own value it was made from, which holds the secret. Never
    /// store or print the result.
    pub fn with_secrets_from(&self, spec: &VersionSpec) -> ResolvedLock {
        let urls: Vec<&str> = std::iter::once(spec.comfy.repo.as_str())
            .chain(spec.custom_nodes.iter().map(|n| n.repo.as_str()))
            .chain(spec.models.iter().map(|m| m.source.as_str()))
            .collect();
        let restore = |shown: &mut String| {
            if let Some(full) = urls.iter().find(|u| crate::redact(u) == *shown) {
                *shown = full.to_string();
            }
        };
        let mut out = self.clone();
        for r in std::iter::once(&mut out.comfy).chain(out.custom_nodes.iter_mut()) {
            restore(&mut r.repo);
        }
        for m in &mut out.models {
            restore(&mut m.source);
        }
        out
    }

    /// Whether this lock was resolved from exactly `spec`.
    pub fn matches(&self, spec: &VersionSpec) -> bool {
        self.spec_digest == spec.digest().as_str()
    }

    /// The digest of the lock's content (what a realized stamp records).
    pub fn digest(&self) -> crate::digest::Digest {
        crate::digest::Digest::of_bytes(&self.to_json())
    }

    /// The models of `spec` as locked entries.
    pub fn models_from(spec: &VersionSpec) -> Vec<LockedModel> {
        spec.models
            .iter()
            .map(|m| LockedModel {
                source: m.source.clone(),
                path: m.relative_path(),
                sha256: m.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
                blake3: m.blake3.as_ref().map(|s| s.to_ascii_lowercase()),
                size: m.size,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ResolvedLock {
        ResolvedLock {
            lock_version: LOCK_VERSION,
            version_id: "v".into(),
            spec_digest: "blake3:00".into(),
            tool_version: "0.1.0".into(),
            comfy: LockedRepo {
                name: None,
                repo: "https://h/o/ComfyUI".into(),
                git_ref: Some("v1".into()),
                requested_commit: None,
                commit: "a".repeat(40),
            },
            custom_nodes: vec![],
            models: vec![],
            python: None,
        }
    }

    #[test]
    fn round_trip_is_byte_identical() {
        let l = sample();
        let bytes = l.to_json();
        let back = ResolvedLock::from_json(&bytes, Path::new("x")).unwrap();
        assert_eq!(back, l);
        assert_eq!(back.to_json(), bytes);
    }

    #[test]
    fn newer_lock_is_refused() {
        let mut v: serde_json::Value = serde_json::from_slice(&sample().to_json()).unwrap();
        v["lock_version"] = 9.into();
        let err = ResolvedLock::from_json(v.to_string().as_bytes(), Path::new("x")).unwrap_err();
        assert!(matches!(
            err,
            LockParseError::UnsupportedVersion { found: 9, .. }
        ));
    }

    #[test]
    fn a_commit_that_is_not_full_hex_is_refused_before_it_becomes_a_path() {
        for bad in ["../../../etc", "abc", &"g".repeat(40)] {
            let mut l = sample();
            l.custom_nodes.push(LockedRepo {
                name: Some("n".into()),
                repo: "https://h/o/n".into(),
                git_ref: None,
                requested_commit: None,
                commit: bad.to_string(),
            });
            let err = ResolvedLock::from_json(&l.to_json(), Path::new("x.lock.json")).unwrap_err();
            let text = err.to_string();
            assert!(text.contains("custom_nodes[0].commit"), "{text}");
            assert!(text.contains("x.lock.json"), "{text}");
        }
    }

    #[test]
    fn redaction_keeps_secrets_out_and_the_spec_puts_them_back() {
        let mut l = sample();
        l.comfy.repo = "https://bot:hunter22@h.invalid/o/ComfyUI".into();
        l.models.push(LockedModel {
            source: "https://files.invalid/m.bin?download=1&token=tok-123456".into(),
            path: "checkpoints/m.bin".into(),
            sha256: None,
            blake3: None,
            size: None,
        });
        assert!(!l.is_redacted());
        let spec: VersionSpec = serde_json::from_value(serde_json::json!({
            "schema_version": 2,
            "version_id": "v",
            "comfy": {"repo": l.comfy.repo, "ref": "v1"},
            "models": [{"source": l.models[0].source, "target_subdir": "checkpoints"}],
        }))
        .unwrap();
        let stored = l.clone().redacted();
        let text = String::from_utf8(stored.to_json()).unwrap();
        assert!(
            !text.contains("hunter22") && !text.contains("tok-123456"),
            "{text}"
        );
        assert!(
            text.contains("bot:***@h.invalid") && text.contains("token=***"),
            "{text}"
        );
        assert!(stored.is_redacted());
        assert_eq!(stored.with_secrets_from(&spec), l);
    }
}
