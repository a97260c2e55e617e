//! The one meaning of `COMFYVER_GIT_TIMEOUT`: seconds a git network call may
//! go without receiving anything (a fetch) or in all (listing one remote's
//! refs) before it is stopped. A positive whole number; unset means
//! [`DEFAULT_GIT_TIMEOUT`]. 0 is refused rather than read as "no limit":
//! every network call has a limit, so a stalled server never holds a worker
//! (and a mirror's lock) for ever.

use std::time::Duration;

use crate::GitError;

/// Environment variable: seconds a fetch may go without receiving anything
/// (and the limit for listing one remote's refs) before it is stopped.
pub(crate) use comfyver_env::COMFYVER_GIT_TIMEOUT as GIT_TIMEOUT_ENV;

/// The limit when [`GIT_TIMEOUT_ENV`] is unset: 120 s.
pub const DEFAULT_GIT_TIMEOUT: Duration = Duration::from_secs(120);

/// [`GIT_TIMEOUT_ENV`] as a duration: the default when unset,
/// [`GitError::BadTimeout`] when it is not a positive whole number of seconds.
pub fn git_timeout() -> Result<Duration, GitError> {
    match std::env::var(GIT_TIMEOUT_ENV) {
        Err(_) => Ok(DEFAULT_GIT_TIMEOUT),
        Ok(value) => parse_git_timeout(&value),
    }
}

/// A value of [`GIT_TIMEOUT_ENV`]: a positive whole number of seconds
/// (surrounding whitespace allowed).
pub(crate) fn parse_git_timeout(value: &str) -> Result<Duration, GitError> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|secs| *secs > 0)
        .map(Duration::from_secs)
        .ok_or_else(|| GitError::BadTimeout {
            value: value.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_read_with_surrounding_whitespace() {
        assert_eq!(parse_git_timeout("7").unwrap(), Duration::from_secs(7));
        assert_eq!(parse_git_timeout(" 30\n").unwrap(), Duration::from_secs(30));
    }

    #[test]
    fn zero_is_refused_naming_the_variable_and_what_it_takes() {
        let err = parse_git_timeout("0").unwrap_err();
        assert!(matches!(&err, GitError::BadTimeout { value } if value == "0"));
        let text = err.to_string();
        assert!(text.contains("COMFYVER_GIT_TIMEOUT=`0`"), "{text}");
        assert!(text.contains("positive whole number of seconds"), "{text}");
    }

    #[test]
    fn garbage_is_refused() {
        for value in ["", "ten", "-5", "1.5", "5s", "99999999999999999999999"] {
            let err = parse_git_timeout(value).unwrap_err();
            assert!(
                matches!(&err, GitError::BadTimeout { value: v } if v == value),
                "{value}: {err}"
            );
        }
    }
}
