//! Streaming hashes: BLAKE3 always, SHA-256 when the spec asks for it.

use std::io::Read;
use std::path::Path;

use sha2::Digest as _;

use crate::ModelsError;

/// Read/write buffer size for hashing and copying.
pub(crate) const BUF: usize = 1 << 20;

/// BLAKE3 and optionally SHA-256 over the same bytes.
#[derive(Clone)]
pub(crate) struct Hashers {
    blake3: blake3::Hasher,
    sha256: Option<sha2::Sha256>,
    len: u64,
}

/// Finished digests (lowercase hex) and the byte count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Digests {
    pub blake3: String,
    pub sha256: Option<String>,
    pub len: u64,
}

impl Hashers {
    pub(crate) fn new(with_sha256: bool) -> Hashers {
        Hashers {
            blake3: blake3::Hasher::new(),
            sha256: with_sha256.then(sha2::Sha256::new),
            len: 0,
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.blake3.update(bytes);
        if let Some(s) = &mut self.sha256 {
            s.update(bytes);
        }
        self.len += bytes.len() as u64;
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn finish(self) -> Digests {
        Digests {
            blake3: self.blake3.finalize().to_hex().to_string(),
            sha256: self.sha256.map(|s| hex::encode(s.finalize())),
            len: self.len,
        }
    }

    /// Feeds up to `limit` bytes of `reader` (all when `None`).
    pub(crate) fn feed(
        &mut self,
        reader: &mut impl Read,
        limit: Option<u64>,
    ) -> std::io::Result<()> {
        let mut buf = vec![0u8; BUF];
        let mut left = limit.unwrap_or(u64::MAX);
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = reader.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            self.update(&buf[..n]);
            left -= n as u64;
        }
        Ok(())
    }
}

/// Hashes a whole file.
pub(crate) fn hash_file(path: &Path, with_sha256: bool) -> Result<Digests, ModelsError> {
    let mut f = std::fs::File::open(path).map_err(|e| ModelsError::io("read", path, e))?;
    let mut h = Hashers::new(with_sha256);
    h.feed(&mut f, None)
        .map_err(|e| ModelsError::io("read", path, e))?;
    Ok(h.finish())
}

/// A check of digests against what the spec expects: the first mismatch as
/// `(what, expected, actual)`.
pub(crate) fn first_mismatch(
    d: &Digests,
    size: Option<u64>,
    sha256: Option<&str>,
    blake3: Option<&str>,
) -> Option<(&'static str, String, String)> {
    if let Some(s) = size
        && s != d.len
    {
        return Some(("size", s.to_string(), d.len.to_string()));
    }
    if let Some(want) = sha256 {
        let got = d.sha256.clone().unwrap_or_default();
        if !want.eq_ignore_ascii_case(&got) {
            return Some(("sha256", want.to_ascii_lowercase(), got));
        }
    }
    if let Some(want) = blake3
        && !want.eq_ignore_ascii_case(&d.blake3)
    {
        return Some(("blake3", want.to_ascii_lowercase(), d.blake3.clone()));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_digests() {
        let mut h = Hashers::new(true);
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(
            d.sha256.as_deref(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(d.blake3, blake3::hash(b"abc").to_hex().to_string());
        assert!(first_mismatch(&d, Some(3), d.sha256.as_deref(), Some(&d.blake3)).is_none());
        assert_eq!(first_mismatch(&d, Some(4), None, None).unwrap().0, "size");
        assert_eq!(
            first_mismatch(&d, None, Some("00"), None).unwrap().0,
            "sha256"
        );
    }
}
