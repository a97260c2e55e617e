//! Tokens by host: `HF_TOKEN` for the Hugging Face endpoint's host,
//! `CIVITAI_TOKEN` for civitai.com. Sent as `Authorization: Bearer`, which ureq
//! drops on a redirect to another host (signed CDN URLs need none).

pub(crate) use comfyver_spec::host_of;

/// The tokens read from the environment once per fetch.
#[derive(Clone, Default)]
pub(crate) struct Tokens {
    hf_host: String,
    hf: Option<String>,
    civitai: Option<String>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("hf_host", &self.hf_host)
            .field("hf", &self.hf.as_ref().map(|_| "***"))
            .field("civitai", &self.civitai.as_ref().map(|_| "***"))
            .finish()
    }
}

fn env_token(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
}

impl Tokens {
    pub fn from_env() -> Tokens {
        let hf_host = host_of(&comfyver_spec::hf_endpoint()).unwrap_or_default();
        Tokens {
            hf_host,
            hf: env_token(comfyver_env::HF_TOKEN),
            civitai: env_token(comfyver_env::CIVITAI_TOKEN),
        }
    }

    /// The bearer token for `url`, if any.
    pub fn for_url(&self, url: &str) -> Option<&str> {
        let host = host_of(url)?;
        if host == self.hf_host || host.ends_with(&format!(".{}", self.hf_host)) {
            return self.hf.as_deref();
        }
        if host == "civitai.com" || host.ends_with(".civitai.com") {
            return self.civitai.as_deref();
        }
        None
    }

    /// Removes every token from `text` (for error details from libraries).
    pub fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for t in [&self.hf, &self.civitai].into_iter().flatten() {
            out = out.replace(t.as_str(), "***");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_go_to_their_hosts_only() {
        let t = Tokens {
            hf_host: "huggingface.co".into(),
            hf: Some("hf_x".into()),
            civitai: Some("cv_y".into()),
        };
        assert_eq!(
            t.for_url("https://huggingface.co/a/b/resolve/main/c"),
            Some("hf_x")
        );
        assert_eq!(
            t.for_url("https://civitai.com/api/download/models/1"),
            Some("cv_y")
        );
        assert_eq!(t.for_url("https://evilhuggingface.co/x"), None);
        assert_eq!(t.for_url("https://cdn.example/x"), None);
        assert_eq!(
            host_of("http://u:p@127.0.0.1:8080/x"),
            Some("127.0.0.1".into())
        );
        assert_eq!(t.scrub("bad hf_x here"), "bad *** here");
        assert!(!format!("{t:?}").contains("hf_x"));
    }
}
