//! Local sources (`file://` or an absolute path): hard-linked into the store
//! when on the same filesystem, else copied, always through a temporary
//! sibling renamed into place after verification. Both digests are taken on
//! the way (reading a local file is cheap next to a download), so the index
//! can answer a later SHA-256 question without reading the file again.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;

use comfyver_spec::{lock::LockedModel, redact};

use crate::hash::{BUF, Digests, Hashers, first_mismatch, hash_file};
use crate::{ModelsError, Reporter};

/// Places `src` at `dest`; returns whether it was hard-linked, and its digests.
pub(crate) fn place(
    reporter: &dyn Reporter,
    m: &LockedModel,
    src: &Path,
    dest: &Path,
) -> Result<(bool, Digests), ModelsError> {
    let src_err = |source| ModelsError::LocalSource {
        path: m.path.clone(),
        file: src.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(src).map_err(src_err)?;
    if !meta.is_file() {
        return Err(src_err(std::io::Error::other("not a regular file")));
    }
    // Never copy more than the spec's size: a wrong file is refused first.
    if let Some(size) = m.size
        && size != meta.len()
    {
        return Err(ModelsError::Mismatch {
            path: m.path.clone(),
            url: redact(&m.source),
            what: "size",
            expected: size.to_string(),
            actual: meta.len().to_string(),
        });
    }
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| ModelsError::io("create", parent, e))?;
    // Host id + pid + random: unique across hosts whose locks we may not see.
    let tmp = comfyver_fs::temp_sibling(dest);
    reporter.start(&m.path, 0, Some(meta.len()));
    let linked = std::fs::hard_link(src, &tmp).is_ok();
    let result = if linked {
        hash_file(&tmp, true)
    } else {
        copy_hashing(reporter, m, src, &tmp)
    };
    reporter.finish(&m.path);
    let digests = match result {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if let Some((what, expected, actual)) =
        first_mismatch(&digests, m.size, m.sha256.as_deref(), m.blake3.as_deref())
    {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelsError::Mismatch {
            path: m.path.clone(),
            url: redact(&m.source),
            what,
            expected,
            actual,
        });
    }
    if let Err(e) = std::fs::rename(&tmp, dest) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelsError::io("move into place", dest, e));
    }
    if let Ok(d) = File::open(parent) {
        let _ = d.sync_all();
    }
    Ok((linked, digests))
}

fn copy_hashing(
    reporter: &dyn Reporter,
    m: &LockedModel,
    src: &Path,
    tmp: &Path,
) -> Result<Digests, ModelsError> {
    let mut input = File::open(src).map_err(|source| ModelsError::LocalSource {
        path: m.path.clone(),
        file: src.to_path_buf(),
        source,
    })?;
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(tmp)
        .map_err(|e| ModelsError::io("create", tmp, e))?;
    let mut h = Hashers::new(true);
    let mut buf = vec![0u8; BUF];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| ModelsError::io("read", src, e))?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])
            .map_err(|e| ModelsError::io("write", tmp, e))?;
        h.update(&buf[..n]);
        reporter.progress(&m.path, h.len(), None);
    }
    out.sync_all()
        .map_err(|e| ModelsError::io("flush", tmp, e))?;
    Ok(h.finish())
}
