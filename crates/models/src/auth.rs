//! Tokens by host: `HF_TOKEN` for the Hugging Face endpoint's host,
//! `CIVITAI_TOKEN` for civitai.com. Sent as `Authorization: Bearer` only over
//! `https://` (or plain `http://` to a loopback address), and after a
//! redirect only to the host of the original request (signed CDN URLs need
//! none).

pub(crate) use comfyver_spec::model_source::host_of;

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
    pub(crate) fn from_env() -> Tokens {
        let hf_host = host_of(&comfyver_spec::model_source::hf_endpoint()).unwrap_or_default();
        Tokens {
            hf_host,
            hf: env_token(comfyver_env::HF_TOKEN),
            civitai: env_token(comfyver_env::CIVITAI_TOKEN),
        }
    }

    /// Tokens for tests: `hf` for `hf_host`, no CivitAI token.
    #[cfg(test)]
    pub(crate) fn for_tests(hf_host: &str, hf: &str) -> Tokens {
        Tokens {
            hf_host: hf_host.to_string(),
            hf: Some(hf.to_string()),
            civitai: None,
        }
    }

    /// The bearer token for `url`, if any: by host, and never over plain
    /// `http://` except to loopback.
    pub(crate) fn for_url(&self, url: &str) -> Option<&str> {
        let host = host_of(url)?;
        if !is_secure(url, &host) {
            return None;
        }
        if host == self.hf_host || host.ends_with(&format!(".{}", self.hf_host)) {
            return self.hf.as_deref();
        }
        if host == "civitai.com" || host.ends_with(".civitai.com") {
            return self.civitai.as_deref();
        }
        None
    }

    /// Removes every token from `text` (for error details from libraries).
    pub(crate) fn scrub(&self, text: &str) -> String {
        let mut out = text.to_string();
        for t in [&self.hf, &self.civitai].into_iter().flatten() {
            out = out.replace(t.as_str(), "***");
        }
        out
    }
}

/// Whether a token may travel to `url` (whose host is `host`): `https://`,
/// or `http://` to a loopback address (which never leaves the machine).
fn is_secure(url: &str, host: &str) -> bool {
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("https") => true,
        Some("http") => is_loopback(host),
        _ => false,
    }
}

/// `localhost`, `127.0.0.0/8` or `::1`.
pub(crate) fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
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
        // Never over plain http, except to loopback.
        assert_eq!(t.for_url("http://huggingface.co/a/b/resolve/main/c"), None);
        assert_eq!(t.for_url("http://civitai.com/api/download/models/1"), None);
        let local = Tokens::for_tests("127.0.0.1", "hf_l");
        assert_eq!(local.for_url("http://127.0.0.1:9/x"), Some("hf_l"));
        let v6 = Tokens::for_tests("::1", "hf_6");
        assert_eq!(v6.for_url("http://[::1]:9/x"), Some("hf_6"));
        let lan = Tokens::for_tests("192.0.2.7", "hf_n");
        assert_eq!(lan.for_url("http://192.0.2.7:9/x"), None);
        assert_eq!(lan.for_url("https://192.0.2.7:9/x"), Some("hf_n"));
        assert!(!format!("{t:?}").contains("hf_x"));
    }
}
