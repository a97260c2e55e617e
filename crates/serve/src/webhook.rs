//! Webhook deliveries: a job's final status POSTed to the URL its `/run` body
//! named, signed per Standard Webhooks when a secret is set, retried with
//! backoff on a connection error or a 5xx, on threads of their own so that no
//! delivery holds back the next job.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::ServeError;

/// Attempts per delivery at most.
const ATTEMPTS: u32 = 5;
/// The wait before the second attempt; doubled for each next one.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// How long one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// The key of a Standard Webhooks secret `whsec_<base64>`.
#[derive(Clone)]
pub(crate) struct WebhookKey(Vec<u8>);

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(<redacted>)")
    }
}

impl WebhookKey {
    /// Parses `whsec_<base64>`.
    pub(crate) fn parse(secret: &str) -> Result<WebhookKey, ServeError> {
        let key = secret
            .trim()
            .strip_prefix("whsec_")
            .and_then(|b| STANDARD.decode(b).ok())
            .filter(|k| !k.is_empty())
            .ok_or(ServeError::WebhookSecret)?;
        Ok(WebhookKey(key))
    }

    /// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
    fn sign(&self, id: &str, timestamp: u64, body: &str) -> String {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, &self.0);
        let tag = aws_lc_rs::hmac::sign(&key, format!("{id}.{timestamp}.{body}").as_bytes());
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }
}

/// One message to deliver.
#[derive(Debug)]
pub(crate) struct Delivery {
    /// The receiver.
    pub(crate) url: String,
    /// `webhook-id`: the same on every attempt.
    pub(crate) id: String,
    /// The final status JSON.
    pub(crate) body: String,
}

/// Delivers `d`, retrying; `Err` holds why the last attempt failed.
pub(crate) fn deliver(d: &Delivery, key: Option<&WebhookKey>) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(ATTEMPT_TIMEOUT))
        .max_redirects(0)
        .build()
        .into();
    let mut backoff = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        if attempt > 1 {
            std::thread::sleep(backoff);
            backoff *= 2;
        }
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut req = agent
            .post(&d.url)
            .header("content-type", "application/json")
            .header("webhook-id", &d.id)
            .header("webhook-timestamp", timestamp.to_string());
        if let Some(key) = key {
            req = req.header("webhook-signature", key.sign(&d.id, timestamp, &d.body));
        }
        match req.send(d.body.as_str()) {
            Ok(resp) if resp.status().is_server_error() => {
                last = format!("the receiver answered {}", resp.status());
            }
            Ok(resp) if resp.status().is_success() => return Ok(()),
            // A 4xx or a redirect: retrying would not change it.
            Ok(resp) => return Err(format!("the receiver answered {}", resp.status())),
            Err(e) => last = e.to_string(),
        }
    }
    Err(format!("{last} (after {ATTEMPTS} attempts)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_parse_and_sign_like_the_spec() {
        assert!(WebhookKey::parse("nope").is_err());
        assert!(WebhookKey::parse("whsec_!!").is_err());
        let key = WebhookKey::parse(&format!("whsec_{}", STANDARD.encode(b"k"))).unwrap();
        // HMAC-SHA256("k", "m.1.{}"), computed independently with Python's hmac.
        let sig = key.sign("m", 1, "{}");
        assert_eq!(sig, "v1,5HDAuTkTpxOhkrk9bBHzAsIh9dH985cPnRX2CFqL5iI=");
        assert_ne!(sig, key.sign("m", 2, "{}"));
    }
}
