//! Where a model comes from (`http(s)://`, `hf://`, `file://` or a path),
//! parsed, with the Hugging Face endpoint and URL hosts (for credentials).

use std::path::PathBuf;

use percent_encoding::percent_decode_str;

/// The endpoint used for `hf://` when `HF_ENDPOINT` is not set.
const DEFAULT_HF_ENDPOINT: &str = "https://huggingface.co";

/// Where a model comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// An http(s) URL (including CivitAI download URLs).
    Http {
        /// The URL as written.
        url: String,
    },
    /// `hf://owner/repo/path[@revision]`.
    HuggingFace {
        /// Repository owner.
        owner: String,
        /// Repository name.
        repo: String,
        /// File path inside the repository.
        path: String,
        /// Branch, tag or commit; `main` when absent.
        revision: Option<String>,
    },
    /// A local file (`file://` URL or absolute path).
    Local {
        /// The absolute path.
        path: PathBuf,
    },
}

/// Why a model source cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelSourceError {
    /// Empty string.
    #[error("the model source is empty")]
    Empty,
    /// Unknown scheme.
    #[error(
        "unsupported model source scheme `{0}`: use https://, http://, hf://owner/repo/path[@revision], \
         file:// or an absolute path"
    )]
    UnsupportedScheme(String),
    /// Relative path.
    #[error("`{0}` is a relative path: use an absolute path or a file:// URL")]
    Relative(String),
    /// A `hf://` source without owner, repo and file path.
    #[error("`{0}` must look like hf://owner/repo/path/to/file[@revision]")]
    BadHuggingFace(String),
    /// A URL without a host or path.
    #[error("`{0}` has no host or no file path")]
    Malformed(String),
}

impl ModelSource {
    /// Parses a spec's `source` string.
    pub fn parse(source: &str) -> Result<ModelSource, ModelSourceError> {
        let s = source.trim();
        if s.is_empty() {
            return Err(ModelSourceError::Empty);
        }
        if s.starts_with('/') {
            return Ok(ModelSource::Local { path: s.into() });
        }
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(ModelSourceError::Relative(s.to_string()));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "http" | "https" => {
                let host_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
                let path = rest[host_end..].split(['?', '#']).next().unwrap_or("");
                if host_end == 0 || path.trim_matches('/').is_empty() {
                    return Err(ModelSourceError::Malformed(crate::redact(s)));
                }
                Ok(ModelSource::Http { url: s.to_string() })
            }
            "hf" => parse_hf(s, rest),
            "file" => {
                if !rest.starts_with('/') {
                    return Err(ModelSourceError::Relative(s.to_string()));
                }
                let decoded = percent_decode_str(rest).decode_utf8_lossy().into_owned();
                Ok(ModelSource::Local {
                    path: decoded.into(),
                })
            }
            other => Err(ModelSourceError::UnsupportedScheme(other.to_string())),
        }
    }

    /// The URL to download from (`None` for local files). `hf://` expands to
    /// `<HF_ENDPOINT>/<owner>/<repo>/resolve/<revision>/<path>`.
    pub fn download_url(&self) -> Option<String> {
        match self {
            ModelSource::Http { url } => Some(url.clone()),
            ModelSource::HuggingFace {
                owner,
                repo,
                path,
                revision,
            } => {
                let endpoint = hf_endpoint();
                Some(format!(
                    "{}/{owner}/{repo}/resolve/{}/{path}",
                    endpoint.trim_end_matches('/'),
                    revision.as_deref().unwrap_or("main")
                ))
            }
            ModelSource::Local { .. } => None,
        }
    }

    /// The file name a model gets when the spec names none: the last path
    /// segment, percent-decoded, without query or fragment.
    pub fn default_name(&self) -> String {
        let last = |p: &str| {
            let p = p.split(['?', '#']).next().unwrap_or("");
            let seg = p.trim_end_matches('/').rsplit('/').next().unwrap_or("");
            percent_decode_str(seg).decode_utf8_lossy().into_owned()
        };
        match self {
            ModelSource::Http { url } => {
                let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
                let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
                last(path)
            }
            ModelSource::HuggingFace { path, .. } => last(path),
            ModelSource::Local { path } => path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }

    /// Whether the URL is a CivitAI download, whose path does not carry the file name.
    pub fn is_civitai(&self) -> bool {
        matches!(self, ModelSource::Http { url } if host_of(url).is_some_and(|h| h == "civitai.com" || h.ends_with(".civitai.com")))
    }
}

/// The Hugging Face endpoint `hf://` sources expand against: `HF_ENDPOINT`,
/// else the public one.
pub fn hf_endpoint() -> String {
    std::env::var(comfyver_env::HF_ENDPOINT)
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| DEFAULT_HF_ENDPOINT.to_string())
}

/// The lower-case host of an http(s) URL, without port or user-info.
pub fn host_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if let Some(v6) = host_port.strip_prefix('[') {
        v6.split(']').next()?
    } else {
        host_port.split(':').next()?
    };
    Some(host.to_ascii_lowercase())
}

fn parse_hf(s: &str, rest: &str) -> Result<ModelSource, ModelSourceError> {
    let (body, revision) = match rest.rsplit_once('@') {
        Some((b, r)) if !r.is_empty() && !r.contains('/') => (b, Some(r.to_string())),
        Some(_) => return Err(ModelSourceError::BadHuggingFace(s.to_string())),
        None => (rest, None),
    };
    let mut parts = body.splitn(3, '/');
    let (Some(owner), Some(repo), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(ModelSourceError::BadHuggingFace(s.to_string()));
    };
    if owner.is_empty() || repo.is_empty() || path.trim_matches('/').is_empty() {
        return Err(ModelSourceError::BadHuggingFace(s.to_string()));
    }
    Ok(ModelSource::HuggingFace {
        owner: owner.to_string(),
        repo: repo.to_string(),
        path: path.trim_matches('/').to_string(),
        revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        let s =
            ModelSource::parse("https://h.example/x/My%20Model.safetensors?download=true").unwrap();
        assert_eq!(s.default_name(), "My Model.safetensors");
        let hf = ModelSource::parse("hf://org/repo/sub/m.safetensors@v1").unwrap();
        assert_eq!(hf.default_name(), "m.safetensors");
        assert!(
            hf.download_url()
                .unwrap()
                .ends_with("/org/repo/resolve/v1/sub/m.safetensors")
        );
        let local = ModelSource::parse("file:///srv/m%201.ckpt").unwrap();
        assert_eq!(local.default_name(), "m 1.ckpt");
        assert!(
            ModelSource::parse("https://civitai.com/api/download/models/1")
                .unwrap()
                .is_civitai()
        );
    }

    #[test]
    fn rejects() {
        assert!(matches!(
            ModelSource::parse("s3://b/k"),
            Err(ModelSourceError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            ModelSource::parse("models/x.ckpt"),
            Err(ModelSourceError::Relative(_))
        ));
        assert!(matches!(
            ModelSource::parse("hf://org/repo"),
            Err(ModelSourceError::BadHuggingFace(_))
        ));
        assert!(matches!(
            ModelSource::parse("https://host.example/"),
            Err(ModelSourceError::Malformed(_))
        ));
    }
}
