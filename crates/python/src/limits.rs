//! Time limits for the children this crate starts (uv, pip, install.py).

use std::ffi::OsString;
use std::time::Duration;

use super::error::PythonError;

/// Seconds one node's `install.py` may take before it is stopped; default 1800.
pub(crate) use comfyver_env::COMFYVER_INSTALL_SCRIPT_TIMEOUT as INSTALL_SCRIPT_TIMEOUT_ENV;
/// Seconds one uv or pip run (venv creation, resolution, install, freeze) may
/// take before it is stopped; default 3600.
pub(crate) use comfyver_env::COMFYVER_PIP_TIMEOUT as PIP_TIMEOUT_ENV;

/// How long each kind of child may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One uv or pip run ([`PIP_TIMEOUT_ENV`]).
    pub tool: Duration,
    /// One `install.py` ([`INSTALL_SCRIPT_TIMEOUT_ENV`]).
    pub install_script: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            tool: Duration::from_secs(3600),
            install_script: Duration::from_secs(1800),
        }
    }
}

/// One limit and the variable that sets it (named in the timeout error).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limit {
    pub(crate) duration: Duration,
    pub(crate) variable: &'static str,
}

impl Limits {
    /// The defaults, overridden by [`PIP_TIMEOUT_ENV`] and
    /// [`INSTALL_SCRIPT_TIMEOUT_ENV`] (whole seconds, > 0).
    pub fn from_env() -> Result<Limits, PythonError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// [`Limits::from_env`] with an explicit variable lookup.
    pub fn from_lookup(get: impl Fn(&str) -> Option<OsString>) -> Result<Limits, PythonError> {
        let mut limits = Limits::default();
        for (variable, slot) in [
            (PIP_TIMEOUT_ENV, &mut limits.tool),
            (INSTALL_SCRIPT_TIMEOUT_ENV, &mut limits.install_script),
        ] {
            let Some(raw) = get(variable) else { continue };
            let text = raw.to_string_lossy();
            match text.trim().parse::<u64>() {
                Ok(secs) if secs > 0 => *slot = Duration::from_secs(secs),
                _ => {
                    return Err(PythonError::BadLimit {
                        variable,
                        value: text.into_owned(),
                    });
                }
            }
        }
        Ok(limits)
    }

    pub(crate) fn tool_limit(&self) -> Limit {
        Limit {
            duration: self.tool,
            variable: PIP_TIMEOUT_ENV,
        }
    }

    pub(crate) fn script_limit(&self) -> Limit {
        Limit {
            duration: self.install_script,
            variable: INSTALL_SCRIPT_TIMEOUT_ENV,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_override_defaults_and_bad_values_name_the_variable() {
        let limits = Limits::from_lookup(|n| (n == PIP_TIMEOUT_ENV).then(|| "90".into())).unwrap();
        assert_eq!(limits.tool, Duration::from_secs(90));
        assert_eq!(limits.install_script, Limits::default().install_script);
        for bad in ["0", "ten", "-5", ""] {
            let err =
                Limits::from_lookup(|n| (n == INSTALL_SCRIPT_TIMEOUT_ENV).then(|| bad.into()))
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(INSTALL_SCRIPT_TIMEOUT_ENV), "{err}");
            assert!(err.contains("whole number of seconds"), "{err}");
        }
    }
}
