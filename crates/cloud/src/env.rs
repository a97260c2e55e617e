//! Reading the sink variables: one lookup function so tests need not touch
//! the process environment.

use std::time::Duration;

use crate::error::CloudError;
use crate::retry::RetryPolicy;

/// Looks a variable up.
pub(crate) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment.
pub(crate) fn process(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

pub(crate) fn required(
    get: Lookup<'_>,
    var: &'static str,
    hint: &'static str,
) -> Result<String, CloudError> {
    get(var)
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .ok_or(CloudError::MissingEnv { var, hint })
}

/// `1`, `true`, `yes` / `0`, `false`, `no`, unset or empty.
pub(crate) fn flag(get: Lookup<'_>, var: &'static str) -> Result<bool, CloudError> {
    match get(var).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "0" | "false" | "no") => Ok(false),
        Some("1" | "true" | "yes") => Ok(true),
        Some(other) => Err(CloudError::BadEnv {
            var,
            value: other.to_string(),
            expected: "1, true, yes, 0, false or no",
        }),
    }
}

pub(crate) fn number(
    get: Lookup<'_>,
    var: &'static str,
    default: f64,
    expected: &'static str,
) -> Result<f64, CloudError> {
    match get(var).map(|v| v.trim().to_string()) {
        None => Ok(default),
        Some(v) if v.is_empty() => Ok(default),
        Some(v) => v
            .parse::<f64>()
            .ok()
            .filter(|n| n.is_finite() && *n >= 0.0)
            .ok_or(CloudError::BadEnv {
                var,
                value: v,
                expected,
            }),
    }
}

/// `<retries var>` (a whole number, default 5) and `<sleep var>` (seconds, default 0.5).
pub(crate) fn retry(
    get: Lookup<'_>,
    retries: &'static str,
    sleep: &'static str,
) -> Result<RetryPolicy, CloudError> {
    let n = number(get, retries, 5.0, "a whole number of retries, e.g. 5")?;
    if n.fract() != 0.0 || n > 100.0 {
        return Err(CloudError::BadEnv {
            var: retries,
            value: n.to_string(),
            expected: "a whole number of retries from 0 to 100",
        });
    }
    let s = number(get, sleep, 0.5, "a number of seconds, e.g. 0.5")?;
    if s > 60.0 {
        return Err(CloudError::BadEnv {
            var: sleep,
            value: s.to_string(),
            expected: "a number of seconds up to 60",
        });
    }
    Ok(RetryPolicy {
        retries: n as u32,
        base_sleep: Duration::from_secs_f64(s),
    })
}

/// The object prefix: default `comfyver`, slashes trimmed, every part a safe name.
pub(crate) fn prefix(get: Lookup<'_>, var: &'static str) -> Result<String, CloudError> {
    let raw = get(var).unwrap_or_else(|| "comfyver".to_string());
    let p = raw.trim().trim_matches('/');
    let ok = p.split('/').all(safe_part);
    if p.is_empty() || ok {
        Ok(p.to_string())
    } else {
        Err(CloudError::BadEnv {
            var,
            value: raw,
            expected: "slash-separated names without empty, `.` or `..` parts",
        })
    }
}

/// One folder of an object name: not empty, `.` or `..`, no control characters or backslashes.
pub(crate) fn safe_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.chars().all(|c| !c.is_control() && c != '\\')
}

/// A bucket name as GCS and S3 accept it: 3-222 lowercase letters, digits, `-_.`.
pub(crate) fn bucket_name(var: &'static str, name: &str) -> Result<String, CloudError> {
    let ok = (3..=222).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(name.to_string())
    } else {
        Err(CloudError::BadEnv {
            var,
            value: name.to_string(),
            expected: "a bucket name: 3-222 lowercase letters, digits, `-`, `_` or `.`",
        })
    }
}

/// A fixed set of variables, for tests.
#[cfg(test)]
pub(crate) fn fixed(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}
