//! Real, installable pure-Python wheels built at test time (no index, no
//! internet): uv and pip install them from a local `--find-links` directory.
//!
//! Wheels are written by `python3` with its standard `zipfile` module, which
//! keeps this fixture free of a zip dependency; every test machine that runs
//! the Python tests has `python3` anyway.

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The standard set of wheels used by the realize and handler tests:
/// `(name, version, Requires-Dist lines)`.
///
/// - `fakecomfydep 1.0`: the stand-in ComfyUI core's `requirements.txt` lists
///   `fakecomfydep>=1.0`.
/// - `nodedep-a 1.0` (requires `fakerequests>=2.0`, a transitive dependency),
///   `nodedep-b 1.0` and `2.0`, `conflictpkg 1.0` and `2.0`, `pyprojdep 1.0`,
///   `fakerequests 2.0`.
pub const STANDARD: &[(&str, &str, &[&str])] = &[
    ("fakecomfydep", "1.0", &[]),
    ("nodedep-a", "1.0", &["fakerequests>=2.0"]),
    ("nodedep-b", "1.0", &[]),
    ("nodedep-b", "2.0", &[]),
    ("conflictpkg", "1.0", &[]),
    ("conflictpkg", "2.0", &[]),
    ("pyprojdep", "1.0", &[]),
    ("fakerequests", "2.0", &[]),
];

/// Writes every wheel of [`STANDARD`] into `dir` (created when missing).
pub fn standard_wheels(dir: &Path) {
    for (name, version, requires) in STANDARD {
        build_wheel(dir, name, version, requires);
    }
}

/// The import name of a distribution's single module: `nodedep-a` → `nodedep_a`.
pub fn module_name(name: &str) -> String {
    name.replace(['-', '.'], "_").to_ascii_lowercase()
}

/// Writes a pure-Python wheel for `name` `version` into `dir` and returns its
/// path. The wheel holds `<module>/__init__.py` (with `__version__`), and a
/// `.dist-info` with `METADATA` (one `Requires-Dist` per entry of
/// `requires`), `WHEEL` and a `RECORD` with sha256 hashes. Panics with
/// python's output when it cannot be built.
pub fn build_wheel(dir: &Path, name: &str, version: &str, requires: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let args = serde_json::json!({
        "dir": dir,
        "name": name,
        "version": version,
        "module": module_name(name),
        "requires": requires,
    });
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(args.to_string())
        .env_remove("PYTHONPATH")
        .output()
        .expect("python3 must be installed for the wheel fixtures");
    assert!(
        out.status.success(),
        "building wheel {name} {version} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A PEP 503 "simple" package index on loopback, served by python's own
/// `http.server` from a directory: `<root>/simple/<name>/<wheel>` (the
/// server's directory listing is the project page uv and pip read). Each
/// request is logged, so a test can tell which index served a package.
pub struct SimpleIndex {
    root: PathBuf,
    port: u16,
    child: Child,
    log: PathBuf,
}

impl SimpleIndex {
    /// Starts serving `root` (created when missing) on a free loopback port.
    pub fn serve(root: &Path) -> SimpleIndex {
        std::fs::create_dir_all(root.join("simple")).unwrap();
        let log = root.with_extension("requests.log");
        let mut child = Command::new("python3")
            .args([
                "-u",
                "-m",
                "http.server",
                "0",
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(root)
            .env_remove("PYTHONPATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("python3 must be installed for the index fixture");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "Serving HTTP on 127.0.0.1 port 41234 (http://127.0.0.1:41234/) ..."
        let port = line
            .split_whitespace()
            .skip_while(|w| *w != "port")
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected http.server banner: {line:?}"));
        SimpleIndex {
            root: root.to_path_buf(),
            port,
            child,
            log,
        }
    }

    /// The index URL to give uv or pip: `http://127.0.0.1:<port>/simple`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/simple", self.port)
    }

    /// The server's root URL: `http://127.0.0.1:<port>` (for several
    /// indexes side by side, `<root>/<index>/<name>/`).
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Builds a wheel (see [`build_wheel`]) into the project's page.
    pub fn add_wheel(&self, name: &str, version: &str, requires: &[&str]) -> PathBuf {
        self.add_wheel_at("simple", name, version, requires)
    }

    /// Builds a wheel into the project's page of the index `<root>/<index>`.
    pub fn add_wheel_at(
        &self,
        index: &str,
        name: &str,
        version: &str,
        requires: &[&str],
    ) -> PathBuf {
        let dir = self.root.join(index).join(normalize(name));
        build_wheel(&dir, name, version, requires)
    }

    /// Whether any request fetched a file of project `name` from this index.
    pub fn served(&self, name: &str) -> bool {
        self.served_at("simple", name)
    }

    /// Whether any request fetched a file of project `name` from `<root>/<index>`.
    pub fn served_at(&self, index: &str, name: &str) -> bool {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let needle = format!("GET /{index}/{}/", normalize(name));
        text.lines()
            .any(|l| l.contains(&needle) && l.contains(".whl"))
    }
}

impl Drop for SimpleIndex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// PEP 503 project name normalization.
fn normalize(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

const SCRIPT: &str = r#"
import base64, hashlib, json, os, sys, zipfile
a = json.loads(sys.argv[1])
dist = a["name"].replace("-", "_").replace(".", "_")
info = f"{dist}-{a['version']}.dist-info"
meta = "Metadata-Version: 2.1\nName: %s\nVersion: %s\n" % (a["name"], a["version"])
meta += "".join("Requires-Dist: %s\n" % r for r in a["requires"])
files = {
    f"{a['module']}/__init__.py": f"__version__ = {a['version']!r}\n",
    f"{info}/METADATA": meta,
    f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: comfyver-testkit\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for path, text in files.items():
    data = text.encode()
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(data)}")
record.append(f"{info}/RECORD,,")
files[f"{info}/RECORD"] = "\n".join(record) + "\n"
out = os.path.join(a["dir"], f"{dist}-{a['version']}-py3-none-any.whl")
tmp = out + ".tmp"
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
    for path, text in files.items():
        info_ = zipfile.ZipInfo(path, date_time=(2025, 1, 1, 0, 0, 0))
        info_.external_attr = 0o644 << 16
        z.writestr(info_, text)
os.replace(tmp, out)
print(out)
"#;

/// Writes a pure-Python wheel `name 1.0` whose module carries a `payload`-byte
/// data file of random bytes (stored, not compressed): a stand-in for a large
/// package such as torch.
pub fn payload_wheel(dir: &Path, name: &str, payload: usize) {
    std::fs::create_dir_all(dir).unwrap();
    const SCRIPT: &str = r#"
import base64, hashlib, os, sys
import zipfile
d, name, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
info = f"{name}-1.0.dist-info"
files = {
    f"{name}/__init__.py": b"__version__ = '1.0'\n",
    f"{name}/payload.bin": os.urandom(size),
    f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
    f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: comfyver-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
record = []
for path, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{path},sha256={digest},{len(data)}")
record.append(f"{info}/RECORD,,")
files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
with zipfile.ZipFile(os.path.join(d, f"{name}-1.0-py3-none-any.whl"), "w", zipfile.ZIP_STORED) as z:
    for path, data in files.items():
        z.writestr(path, data)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(dir)
        .arg(name)
        .arg(payload.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_the_standard_set() {
        let dir = tempfile::tempdir().unwrap();
        standard_wheels(dir.path());
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), STANDARD.len());
        assert!(names.contains(&"nodedep_b-2.0-py3-none-any.whl".to_string()));
    }
}
