//! Exponential backoff with jitter, and which failures deserve another try.

use std::time::Duration;

/// The longest single pause between two attempts.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// How often and how patiently a request is retried. Only connection errors,
/// timeouts, `408`, `429` and `5xx` are retried; any other `4xx` fails at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Extra attempts after the first one.
    pub retries: u32,
    /// The pause before the first retry; it doubles for each further one.
    pub base_sleep: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            retries: 5,
            base_sleep: Duration::from_millis(500),
        }
    }
}

impl RetryPolicy {
    /// The pause after failed attempt number `attempt` (1-based): a random
    /// value in `[d/2, d]` where `d = base_sleep * 2^(attempt-1)`, capped at 30 s.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .base_sleep
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(20))
            .min(MAX_SLEEP);
        let mut b = [0u8; 4];
        let frac = if aws_lc_rs::rand::fill(&mut b).is_ok() {
            f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX)
        } else {
            1.0
        };
        full / 2 + full.mul_f64(frac / 2.0)
    }
}

/// Whether a status is worth another attempt.
pub(crate) fn retryable_status(status: u16) -> bool {
    status == 408 || status == 429 || status >= 500
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stay_jittered_within_bounds() {
        let p = RetryPolicy {
            retries: 5,
            base_sleep: Duration::from_millis(100),
        };
        for attempt in 1..=4 {
            let full = Duration::from_millis(100 * (1 << (attempt - 1)));
            for _ in 0..20 {
                let d = p.delay(attempt);
                assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
            }
        }
        assert!(p.delay(40) <= MAX_SLEEP);
        let distinct: std::collections::HashSet<_> = (0..20).map(|_| p.delay(3)).collect();
        assert!(distinct.len() > 1, "no jitter");
    }

    #[test]
    fn only_throttling_and_server_errors_are_retried() {
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(s), "{s}");
        }
        for s in [400, 401, 403, 404, 409, 412] {
            assert!(!retryable_status(s), "{s}");
        }
    }
}
