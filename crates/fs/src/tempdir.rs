use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::FsError;
use crate::atomic::{parent_of, sync_dir};

/// Name prefix of every temporary sibling; [`remove_stale_temps`] removes them.
const TEMP_PREFIX: &str = ".tmp-";

/// How old a temporary sibling left by another host (or one whose owner
/// cannot be told) must be before it counts as abandoned: 24 hours. Same-host
/// temps of a dead process go at once.
pub const STALE_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// A temporary directory created next to its final place, so that
/// [`TempDir::publish`] is a single `rename(2)` on one filesystem.
///
/// Its name is `.tmp-<final name>.<host>-<pid>-<random>` (see [`temp_sibling`]),
/// unique across hosts sharing a volume. Dropping it without publishing removes it.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    published: bool,
}

impl TempDir {
    /// Creates an empty temporary sibling of `final_path`.
    pub fn beside(final_path: &Path) -> Result<TempDir, FsError> {
        let dir = parent_of(final_path);
        fs::create_dir_all(dir).map_err(|source| FsError::CreateDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let tmp = tempfile::Builder::new()
            .prefix(&temp_prefix(&file_name(final_path)))
            .rand_bytes(8)
            .tempdir_in(dir)
            .map_err(|source| FsError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        Ok(TempDir {
            path: tmp.keep(),
            published: false,
        })
    }

    /// The temporary directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the finished directory to `final_path`, replacing nothing: the
    /// caller must hold the entry's lock and have removed any stale entry.
    pub fn publish(mut self, final_path: &Path) -> Result<(), FsError> {
        fs::rename(&self.path, final_path).map_err(|source| FsError::Publish {
            from: self.path.clone(),
            to: final_path.to_path_buf(),
            source,
        })?;
        self.published = true;
        sync_dir(parent_of(final_path));
        Ok(())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if !self.published {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// Removes the directory `dir` safely for concurrent readers of its parent:
/// it is first renamed to a temporary sibling (one atomic step, after which
/// nothing looks for it under its name), then deleted.
pub fn discard(dir: &Path) -> Result<(), FsError> {
    let trash = TempDir::beside(dir)?;
    let target = trash.path().join("old");
    fs::rename(dir, &target).map_err(|source| FsError::Remove {
        path: dir.to_path_buf(),
        source,
    })?;
    drop(trash);
    Ok(())
}

/// A fresh temporary sibling path of `final_path`
/// (`.tmp-<name>.<host>-<pid>-<random>`), for files that other code creates
/// itself (with `create_new`). Unique across hosts: the host part tells
/// machines and pid namespaces apart, the pid and random part processes and
/// calls. [`remove_stale_temps`] removes it once its writer is provably gone.
pub fn temp_sibling(final_path: &Path) -> PathBuf {
    let name = format!("{}{}", temp_prefix(&file_name(final_path)), random_suffix());
    parent_of(final_path).join(name)
}

/// Removes temporary siblings left in `dir` by dead writers for the entry
/// named exactly `name` (or for every entry when `name` is `None`). Only
/// names made by [`TempDir`] / [`temp_sibling`] are considered. A temp is
/// removed only when its writer is provably gone: it was made on this host by
/// a process that no longer exists, or it is older than [`STALE_TEMP_AGE`].
/// So a live writer elsewhere is never disturbed, even when the caller's lock
/// was not seen by it. Returns how many were removed.
pub fn remove_stale_temps(dir: &Path, name: Option<&str>) -> Result<usize, FsError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = file_name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        // Only names of our own making: anything else is not ours to remove.
        let Some((entry_name, host, pid)) = parse_tag(rest) else {
            continue;
        };
        if name.is_some_and(|wanted| wanted != entry_name) {
            continue;
        }
        let path = entry.path();
        let dead =
            host == host_id() && pid != std::process::id() && !crate::child::process_alive(pid);
        if !dead && !older_than(&path, STALE_TEMP_AGE) {
            continue;
        }
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Ok(()) => removed += 1,
            // Another cleaner got there first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(FsError::Remove { path, source }),
        }
    }
    Ok(removed)
}

/// This host's id as used in temp names: 16 hex digits hashed from the boot
/// id, the host name and the pid namespace, so two containers (which often
/// share pids) and two machines get different ids.
pub fn host_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut seed = Vec::new();
        for file in [
            "/proc/sys/kernel/random/boot_id",
            "/proc/sys/kernel/hostname",
        ] {
            seed.extend(fs::read(file).unwrap_or_default());
            seed.push(0);
        }
        if let Ok(ns) = fs::read_link("/proc/self/ns/pid") {
            seed.extend(ns.to_string_lossy().as_bytes());
        }
        format!("{:016x}", fnv1a(&seed))
    })
}

fn temp_prefix(name: &str) -> String {
    format!("{TEMP_PREFIX}{name}.{}-{}-", host_id(), std::process::id())
}

/// Splits `<name>.<host>-<pid>-<random>` (after the `.tmp-` prefix).
fn parse_tag(rest: &str) -> Option<(&str, &str, u32)> {
    let (name, tag) = rest.rsplit_once('.')?;
    let mut parts = tag.splitn(3, '-');
    let host = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let random = parts.next()?;
    let hex = host.len() == 16 && host.bytes().all(|b| b.is_ascii_hexdigit());
    let alnum = !random.is_empty() && random.bytes().all(|b| b.is_ascii_alphanumeric());
    (hex && alnum).then_some((name, host, pid))
}

fn older_than(path: &Path, age: Duration) -> bool {
    fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|elapsed| elapsed > age)
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Eight random alphanumerics (from a fresh tempfile name: its generator is
/// seeded per process).
fn random_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let mut x = fnv1a(format!("{now}-{n}-{}", std::process::id()).as_bytes());
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..8)
        .map(|_| {
            let c = alphabet[(x % alphabet.len() as u64) as usize] as char;
            x /= alphabet.len() as u64;
            c
        })
        .collect()
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pid that is certainly not running: a child we started and reaped.
    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn publish_and_cleanup() {
        let root = tempfile::tempdir().unwrap();
        let fin = root.path().join("entry");
        let t = TempDir::beside(&fin).unwrap();
        fs::write(t.path().join("f"), b"x").unwrap();
        t.publish(&fin).unwrap();
        assert_eq!(fs::read(fin.join("f")).unwrap(), b"x");

        // A temp of a dead writer on this host goes; our own live one stays.
        let dead = root
            .path()
            .join(format!(".tmp-other.{}-{}-abcdefgh", host_id(), dead_pid()));
        fs::create_dir(&dead).unwrap();
        let live = TempDir::beside(&root.path().join("other")).unwrap();
        assert_eq!(remove_stale_temps(root.path(), Some("other")).unwrap(), 1);
        assert!(!dead.exists());
        assert!(live.path().exists(), "a live writer's temp is kept");
        assert!(fin.exists());
    }

    #[test]
    fn cleanup_matches_the_exact_name_not_a_prefix() {
        let root = tempfile::tempdir().unwrap();
        let pid = dead_pid();
        let of_a = root
            .path()
            .join(format!(".tmp-comfy-a.{}-{pid}-abcdefgh", host_id()));
        let of_a_b = root
            .path()
            .join(format!(".tmp-comfy-a-b.{}-{pid}-abcdefgh", host_id()));
        fs::create_dir(&of_a).unwrap();
        fs::create_dir(&of_a_b).unwrap();
        assert_eq!(remove_stale_temps(root.path(), Some("comfy-a")).unwrap(), 1);
        assert!(!of_a.exists());
        assert!(of_a_b.exists(), "cleaning `comfy-a` touched `comfy-a-b`");
        // A name comfyver did not make is never removed, however old.
        let foreign = root.path().join(".tmp-notes");
        fs::write(&foreign, b"user file").unwrap();
        let old = std::time::SystemTime::now() - STALE_TEMP_AGE * 2;
        fs::File::open(&foreign).unwrap().set_modified(old).unwrap();
        assert_eq!(
            remove_stale_temps(root.path(), None).unwrap(),
            1,
            "only a-b's"
        );
        assert!(foreign.exists());
    }

    #[test]
    fn another_hosts_temp_is_kept_until_it_is_old() {
        let root = tempfile::tempdir().unwrap();
        let foreign = root.path().join(format!(
            ".tmp-e.{}-{}-abcdefgh",
            "0123456789abcdef",
            dead_pid()
        ));
        fs::create_dir(&foreign).unwrap();
        assert_eq!(remove_stale_temps(root.path(), Some("e")).unwrap(), 0);
        assert!(foreign.exists(), "a temp from another host may be live");
        let old = std::time::SystemTime::now() - STALE_TEMP_AGE - Duration::from_secs(60);
        fs::File::open(&foreign).unwrap().set_modified(old).unwrap();
        assert_eq!(remove_stale_temps(root.path(), Some("e")).unwrap(), 1);
        assert!(!foreign.exists());
    }

    #[test]
    fn names_are_unique_and_parse_back() {
        let a = temp_sibling(Path::new("/x/some.name@1"));
        let b = temp_sibling(Path::new("/x/some.name@1"));
        assert_ne!(a, b);
        let n = a.file_name().unwrap().to_string_lossy().into_owned();
        let (name, host, pid) = parse_tag(n.strip_prefix(TEMP_PREFIX).unwrap()).unwrap();
        assert_eq!(name, "some.name@1");
        assert_eq!(host, host_id());
        assert_eq!(pid, std::process::id());
        let t = TempDir::beside(&std::env::temp_dir().join("y.z")).unwrap();
        let n = t.path().file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            parse_tag(n.strip_prefix(TEMP_PREFIX).unwrap()).unwrap().0,
            "y.z"
        );
    }
}
