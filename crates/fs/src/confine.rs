//! Landlock confinement of a child process: what it may read, what it may
//! write, nothing else.
//!
//! A [`Confinement`] is a typed set of paths (read-only, read-write), always
//! with the system paths a Python process needs. [`Confinement::apply`]
//! builds the Landlock ruleset in the parent and restricts the *child*
//! between fork and exec (`landlock_restrict_self` and `PR_SET_NO_NEW_PRIVS`,
//! both async-signal-safe): comfyver itself is never confined.
//!
//! The filesystem rights handled are those of Landlock ABI 5 (read, write,
//! make, remove, `refer` from ABI 2, `truncate` from ABI 3, device `ioctl`
//! from ABI 5); the `landlock` crate degrades them to what the kernel has
//! (best effort). The network is not restricted.
#![allow(unsafe_code)]

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use landlock::{
    ABI, Access, AccessFs, BitFlags, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    path_beneath_rules,
};

use crate::FsError;

/// The filesystem rights comfyver handles (and so refuses unless granted).
const HANDLED: ABI = ABI::V5;

/// System paths every confined child may read (those that exist).
const SYSTEM_READ: &[&str] = &[
    "/usr",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/bin",
    "/sbin",
    "/etc",
    "/opt",
    "/proc",
    "/sys",
    "/run",
    "/nix/store",
];

/// Whether and how strictly a child is confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ConfineMode {
    /// Confined when the kernel has Landlock; else it runs unconfined (said once).
    #[default]
    Auto,
    /// Confined, or not started at all.
    Required,
    /// Never confined.
    Off,
}

impl std::str::FromStr for ConfineMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(ConfineMode::Auto),
            "required" => Ok(ConfineMode::Required),
            "off" => Ok(ConfineMode::Off),
            other => Err(format!(
                "`{other}` is no confinement mode: use auto, required or off"
            )),
        }
    }
}

impl std::fmt::Display for ConfineMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ConfineMode::Auto => "auto",
            ConfineMode::Required => "required",
            ConfineMode::Off => "off",
        })
    }
}

/// What the kernel offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LandlockSupport {
    /// Landlock of this ABI version.
    Available {
        /// The kernel's Landlock ABI version.
        abi: u32,
    },
    /// No Landlock, and why.
    Unavailable {
        /// Why (not built in, disabled at boot, refused by a seccomp filter, simulated).
        reason: String,
    },
}

impl LandlockSupport {
    /// Asks the running kernel, unless the test hook
    /// `COMFYVER_LANDLOCK_PROBE` says `none` (a kernel without Landlock) or
    /// an ABI number.
    pub fn probe() -> LandlockSupport {
        match std::env::var(comfyver_env::COMFYVER_LANDLOCK_PROBE) {
            Ok(v) => Self::simulated(&v),
            Err(_) => Self::kernel(),
        }
    }

    fn simulated(value: &str) -> LandlockSupport {
        match value.parse::<u32>() {
            Ok(abi) if abi > 0 => LandlockSupport::Available { abi },
            _ => LandlockSupport::Unavailable {
                reason: format!(
                    "the kernel has no Landlock (simulated: {}={value})",
                    comfyver_env::COMFYVER_LANDLOCK_PROBE
                ),
            },
        }
    }

    fn kernel() -> LandlockSupport {
        const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
        // SAFETY: with a null attribute, size 0 and the VERSION flag the
        // syscall only returns the ABI version; it touches no memory.
        let v = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<libc::c_void>(),
                0usize,
                LANDLOCK_CREATE_RULESET_VERSION,
            )
        };
        if v > 0 {
            return LandlockSupport::Available {
                abi: u32::try_from(v).unwrap_or(u32::MAX),
            };
        }
        let err = std::io::Error::last_os_error();
        let reason = match err.raw_os_error() {
            Some(libc::ENOSYS) => "the kernel has no Landlock (Linux 5.13 or later built with \
                                   CONFIG_SECURITY_LANDLOCK), or a seccomp filter hides it"
                .to_string(),
            Some(libc::EOPNOTSUPP) => {
                "Landlock is built into the kernel but not enabled at boot (add `landlock` to the \
                 `lsm=` kernel parameter)"
                    .to_string()
            }
            Some(libc::EPERM) => "a seccomp filter (the container engine's profile) refuses the \
                                  Landlock system calls"
                .to_string(),
            _ => format!("the Landlock probe failed: {err}"),
        };
        LandlockSupport::Unavailable { reason }
    }
}

/// Whether a child was confined, and why (for the log, `run --json` and `/health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfineStatus {
    /// True when the kernel restricts the child.
    pub confined: bool,
    /// The kernel's Landlock ABI, when it has Landlock.
    pub abi: Option<u32>,
    /// Why, in words (`Landlock ABI 6`, `turned off (--confine off)`, ...).
    pub reason: String,
}

impl std::fmt::Display for ConfineStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.confined {
            write!(f, "confined: {}", self.reason)
        } else {
            write!(f, "not confined: {}", self.reason)
        }
    }
}

/// The paths a confined child may read and write; everything else is
/// refused by the kernel. Paths are kept resolved (symbolic links followed),
/// since Landlock grants by directory, not by the name used to reach it;
/// paths that do not exist are left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Confinement {
    read: BTreeSet<PathBuf>,
    write: BTreeSet<PathBuf>,
}

impl Default for Confinement {
    fn default() -> Self {
        Self::new()
    }
}

impl Confinement {
    /// The system's library, configuration and device paths, read-only
    /// (`/dev` also writable for device files, `/dev/shm` fully).
    pub fn new() -> Confinement {
        let mut c = Confinement {
            read: BTreeSet::new(),
            write: BTreeSet::new(),
        };
        for p in SYSTEM_READ {
            c.read(p);
        }
        c.read("/dev");
        c.write("/dev/shm");
        c
    }

    /// Grants reading (and executing) beneath `path`.
    pub fn read(&mut self, path: impl AsRef<Path>) -> &mut Self {
        if let Ok(p) = std::fs::canonicalize(path.as_ref()) {
            self.read.insert(p);
        }
        self
    }

    /// Grants reading and writing beneath `path`.
    pub fn write(&mut self, path: impl AsRef<Path>) -> &mut Self {
        if let Ok(p) = std::fs::canonicalize(path.as_ref()) {
            self.write.insert(p);
        }
        self
    }

    /// Grants reading the Python environment of `python` (a venv's
    /// `<venv>/bin/python`, or a bare name found on `PATH` as a spawn finds
    /// it): the venv, and the install root of the interpreter it was built
    /// from (the link's target, and the venv's `pyvenv.cfg` `home`).
    pub fn python(&mut self, python: &Path) -> &mut Self {
        for root in python_roots(python) {
            self.read(root);
        }
        self
    }

    /// The resolved read-only paths.
    pub fn readable(&self) -> impl Iterator<Item = &Path> {
        self.read.iter().map(PathBuf::as_path)
    }

    /// The resolved read-write paths.
    pub fn writable(&self) -> impl Iterator<Item = &Path> {
        self.write.iter().map(PathBuf::as_path)
    }

    /// The path a refusal names in an error text: the last `'...'`-quoted
    /// absolute path (Python's `[Errno 13] Permission denied: '/x'`, git's
    /// `could not create ... '/x'`).
    pub fn quoted_path(text: &str) -> Option<PathBuf> {
        text.split('\'')
            .skip(1)
            .step_by(2)
            .filter(|s| s.starts_with('/'))
            .last()
            .map(PathBuf::from)
    }

    /// Whether the child may write at `path` (a path that need not exist:
    /// its nearest existing ancestor is resolved).
    pub fn allows_write(&self, path: &Path) -> bool {
        let resolved = resolve_existing(path);
        self.write.iter().any(|w| resolved.starts_with(w)) || resolved.starts_with("/dev")
    }

    /// Whether the child may read at `path` (as [`Confinement::allows_write`]).
    pub fn allows_read(&self, path: &Path) -> bool {
        let resolved = resolve_existing(path);
        self.allows_write(&resolved) || self.read.iter().any(|r| resolved.starts_with(r))
    }

    /// Arranges for `cmd`'s child to be confined to these paths, as `mode`
    /// asks and `support` allows. The ruleset is built here; the child
    /// restricts itself between fork and exec. Returns what the child will
    /// be; [`FsError::ConfineUnavailable`] when `mode` is
    /// [`ConfineMode::Required`] and the kernel has no Landlock.
    pub fn apply(
        &self,
        cmd: &mut Command,
        mode: ConfineMode,
        support: &LandlockSupport,
    ) -> Result<ConfineStatus, FsError> {
        let abi = match (mode, support) {
            (ConfineMode::Off, s) => {
                return Ok(ConfineStatus {
                    confined: false,
                    abi: match s {
                        LandlockSupport::Available { abi } => Some(*abi),
                        LandlockSupport::Unavailable { .. } => None,
                    },
                    reason: "turned off (--confine off)".into(),
                });
            }
            (ConfineMode::Required, LandlockSupport::Unavailable { reason }) => {
                return Err(FsError::ConfineUnavailable {
                    reason: reason.clone(),
                });
            }
            (ConfineMode::Auto, LandlockSupport::Unavailable { reason }) => {
                return Ok(ConfineStatus {
                    confined: false,
                    abi: None,
                    reason: reason.clone(),
                });
            }
            (_, LandlockSupport::Available { abi }) => *abi,
        };
        let created = self
            .ruleset()
            .map_err(|e| FsError::Confine { source: e.into() })?;
        let mut pending = Some(created);
        // SAFETY: the closure runs between fork and exec; restrict_self only
        // calls prctl and landlock_restrict_self, builds plain values and
        // closes the ruleset's descriptor; the error path allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                let Some(ruleset) = pending.take() else {
                    return Ok(());
                };
                match ruleset.restrict_self() {
                    Ok(s) if s.ruleset != RulesetStatus::NotEnforced => Ok(()),
                    _ => Err(std::io::Error::from_raw_os_error(libc::EPERM)),
                }
            });
        }
        Ok(ConfineStatus {
            confined: true,
            abi: Some(abi),
            reason: format!("Landlock ABI {abi}{}", abi_note(abi)),
        })
    }

    fn ruleset(&self) -> Result<landlock::RulesetCreated, landlock::RulesetError> {
        let all = AccessFs::from_all(HANDLED);
        let read = AccessFs::from_read(HANDLED);
        let devices: BitFlags<AccessFs> =
            read | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev;
        let dev = [PathBuf::from("/dev")];
        Ruleset::default()
            .handle_access(all)?
            .create()?
            .add_rules(path_beneath_rules(&self.read, read))?
            .add_rules(path_beneath_rules(&dev, devices))?
            .add_rules(path_beneath_rules(&self.write, all))
    }
}

/// The venv of `python` and the install root of the interpreter it was
/// built from (see [`Confinement::python`]).
fn python_roots(python: &Path) -> Vec<PathBuf> {
    let mut roots = Vec::new();
    // A bare name (`python3`) is found on PATH, as the spawn finds it.
    let found;
    let python = if python.components().count() == 1 {
        found = std::env::var_os("PATH")
            .map(|path| {
                std::env::split_paths(&path)
                    .map(|d| d.join(python))
                    .find(|p| p.is_file())
            })
            .unwrap_or_default();
        match &found {
            Some(p) => p.as_path(),
            None => return roots,
        }
    } else {
        python
    };
    let venv = python.parent().and_then(Path::parent);
    if let Some(venv) = venv {
        roots.push(venv.to_path_buf());
        if let Ok(cfg) = std::fs::read_to_string(venv.join("pyvenv.cfg")) {
            for line in cfg.lines() {
                if let Some((key, value)) = line.split_once('=')
                    && key.trim() == "home"
                {
                    let bin = PathBuf::from(value.trim());
                    roots.extend(bin.parent().map(Path::to_path_buf));
                }
            }
        }
    }
    if let Ok(real) = std::fs::canonicalize(python) {
        roots.extend(real.parent().and_then(Path::parent).map(Path::to_path_buf));
    }
    roots
}

/// What an older ABI leaves out, for the status line.
fn abi_note(abi: u32) -> &'static str {
    match abi {
        1 => " (files cannot be moved or linked across folders; truncate is not checked)",
        2 => " (truncate is not checked)",
        3 | 4 => " (device ioctls are not checked)",
        _ => "",
    }
}

/// `path` with its nearest existing ancestor resolved.
fn resolve_existing(path: &Path) -> PathBuf {
    let mut rest = Vec::new();
    let mut cur = path.to_path_buf();
    loop {
        if let Ok(real) = std::fs::canonicalize(&cur) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (cur.file_name().map(|n| n.to_os_string()), cur.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                cur = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn kernel_abi() -> Option<u32> {
        match LandlockSupport::kernel() {
            LandlockSupport::Available { abi } => Some(abi),
            LandlockSupport::Unavailable { .. } => None,
        }
    }

    #[test]
    fn modes_parse_and_print() {
        for m in ["auto", "required", "off"] {
            assert_eq!(m.parse::<ConfineMode>().unwrap().to_string(), m);
        }
        assert!("on".parse::<ConfineMode>().unwrap_err().contains("auto"));
    }

    #[test]
    fn a_simulated_kernel_without_landlock_refuses_required_and_explains_auto() {
        let none = LandlockSupport::simulated("none");
        let c = Confinement::new();
        let err = c
            .apply(&mut Command::new("true"), ConfineMode::Required, &none)
            .unwrap_err();
        assert!(err.to_string().contains("simulated"), "{err}");
        assert!(err.to_string().contains("--confine auto"), "{err}");
        let auto = c
            .apply(&mut Command::new("true"), ConfineMode::Auto, &none)
            .unwrap();
        assert!(
            !auto.confined && auto.reason.contains("no Landlock"),
            "{auto}"
        );
        let off = c
            .apply(&mut Command::new("true"), ConfineMode::Off, &none)
            .unwrap();
        assert!(!off.confined && off.reason.contains("off"), "{off}");
    }

    #[test]
    fn paths_are_resolved_and_checked_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        std::os::unix::fs::symlink(&real, dir.path().join("link")).unwrap();
        let mut c = Confinement::new();
        c.write(dir.path().join("link")).read("/no/such/path");
        let real = std::fs::canonicalize(&real).unwrap();
        assert!(c.writable().any(|p| p == real));
        assert!(!c.readable().any(|p| p == Path::new("/no/such/path")));
        assert!(c.allows_write(&dir.path().join("link/new/file")));
        assert!(!c.allows_write(&dir.path().join("elsewhere")));
        assert!(c.allows_read(Path::new("/usr/bin")));
        assert!(!c.allows_read(&dir.path().join("elsewhere")));
    }

    #[test]
    fn a_venv_grants_itself_and_the_python_it_was_built_from() {
        let home = tempfile::tempdir().unwrap();
        let base = tempfile::tempdir().unwrap();
        let venv = home.path().join(".venv");
        std::fs::create_dir_all(venv.join("bin")).unwrap();
        std::fs::create_dir_all(base.path().join("bin")).unwrap();
        std::fs::write(
            venv.join("pyvenv.cfg"),
            format!("home = {}\n", base.path().join("bin").display()),
        )
        .unwrap();
        let mut c = Confinement::new();
        c.python(&venv.join("bin/python"));
        assert!(c.allows_read(&base.path().join("bin/python3")));
        assert!(c.allows_read(&venv.join("lib")));
        assert!(!c.allows_write(&venv.join("lib")));
        assert!(!c.allows_read(&home.path().join("other")));
    }

    /// Runs `sh -c script` confined to reading `/` plus writing `area`.
    fn confined_sh(area: &Path, script: &str) -> std::process::Output {
        let mut c = Confinement::new();
        c.write(area);
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let status = c
            .apply(
                &mut cmd,
                ConfineMode::Required,
                &LandlockSupport::Available { abi: 1 },
            )
            .unwrap();
        assert!(status.confined);
        cmd.output().unwrap()
    }

    #[test]
    fn a_confined_child_writes_only_its_area_and_the_parent_stays_free() {
        if kernel_abi().is_none() {
            eprintln!("skipped: this kernel has no Landlock");
            return;
        }
        let area = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let secret = outside.path().join("secret");
        std::fs::write(&secret, "s").unwrap();
        let inside = area.path().join("ok");
        let out = confined_sh(
            area.path(),
            &format!(
                "echo x > {0} && cat {1}; echo y > {2}; echo done",
                inside.display(),
                secret.display(),
                outside.path().join("new").display()
            ),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(String::from_utf8_lossy(&out.stdout), "done\n", "{stderr}");
        assert!(inside.is_file(), "the area is writable");
        assert!(stderr.contains("Permission denied"), "{stderr}");
        assert!(!outside.path().join("new").exists());
        // comfyver itself is not confined.
        std::fs::write(outside.path().join("parent"), "p").unwrap();
    }
}
