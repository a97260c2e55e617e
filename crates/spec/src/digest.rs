//! Content digests (`blake3:<hex>`) of locks, specs and inputs.

use std::fmt;

use serde::Serialize;

/// A content digest written as `blake3:<64 hex>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

impl Digest {
    /// The digest of raw bytes.
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        Digest(format!("blake3:{}", blake3::hash(bytes).to_hex()))
    }

    /// The digest as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The digest of a value's compact JSON serialization.
pub fn digest_json<T: Serialize>(value: &T) -> Digest {
    let bytes = serde_json::to_vec(value).expect("serializing plain data cannot fail");
    Digest::of_bytes(&bytes)
}
