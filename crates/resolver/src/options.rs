use std::time::Duration;

use comfyver_spec::UrlRewrites;

/// Environment variable: seconds allowed for listing one remote's refs (and,
/// in comfyver-nodes, for a fetch to go without receiving anything).
pub use comfyver_nodes::GIT_TIMEOUT_ENV;

/// Which locked entries to re-resolve even though the spec did not change them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UpdatePolicy {
    /// Keep every locked commit whose spec entry is unchanged (the default).
    #[default]
    None,
    /// Re-resolve every entry (`--update`).
    All,
    /// Re-resolve these entries: node names, or `comfy` for the core (`--update NAME`).
    Names(Vec<String>),
}

impl UpdatePolicy {
    /// Whether the entry with this key (`comfy` or a node name) is re-resolved.
    pub fn covers(&self, key: &str) -> bool {
        match self {
            UpdatePolicy::None => false,
            UpdatePolicy::All => true,
            UpdatePolicy::Names(names) => names.iter().any(|n| n == key),
        }
    }
}

/// How [`crate::resolve`] behaves.
#[derive(Debug, Clone)]
pub struct ResolveOptions {
    /// Use no network: only the lock and local mirrors (`--offline`).
    pub offline: bool,
    /// Fail instead of changing or creating the lock (`--locked`).
    pub locked: bool,
    /// Work out the plan and write nothing, not even directories (`--dry-run`).
    pub dry_run: bool,
    /// Which locked entries to re-resolve (`--update`).
    pub update: UpdatePolicy,
    /// How many repositories are resolved at once (at least 1).
    pub jobs: usize,
    /// Time allowed for listing one remote's refs.
    pub timeout: Duration,
    /// URL rewrite rules applied before any network access.
    pub rewrites: UrlRewrites,
}

impl Default for ResolveOptions {
    fn default() -> ResolveOptions {
        ResolveOptions {
            offline: false,
            locked: false,
            dry_run: false,
            update: UpdatePolicy::None,
            jobs: 8,
            timeout: crate::remote::DEFAULT_TIMEOUT,
            rewrites: UrlRewrites::default(),
        }
    }
}
