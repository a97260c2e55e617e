//! Real git repositories and a real git daemon on loopback.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Runs `git` with a hermetic environment (no user or system config, fixed
/// identity and dates) in `dir`; panics with git's output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_command(dir)
        .args(args)
        .output()
        .expect("git must be installed for the tests");
    assert!(
        out.status.success(),
        "git {args:?} in {} failed:\n{}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A `git` command with the hermetic environment used by [`git`].
pub fn git_command(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_AUTHOR_NAME", "Test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "Test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .env("GIT_AUTHOR_DATE", "2025-01-01T00:00:00Z")
        .env("GIT_COMMITTER_DATE", "2025-01-01T00:00:00Z")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    c
}

/// A repository under construction: a work tree whose commits are pushed to a
/// bare remote (`<root>/<name>.git`) that the code under test fetches from.
pub struct Repo {
    work: PathBuf,
    bare: PathBuf,
    counter: u32,
}

impl Repo {
    /// Creates `<root>/<name>.git` (bare, default branch `main`) and a work tree.
    pub fn new(root: &Path, name: &str) -> Repo {
        let bare = root.join(format!("{name}.git"));
        let work = root.join("work").join(name);
        std::fs::create_dir_all(&bare).unwrap();
        std::fs::create_dir_all(&work).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        git(&work, &["init", "-q", "-b", "main"]);
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Repo {
            work,
            bare,
            counter: 0,
        }
    }

    /// The bare remote's path.
    pub fn bare(&self) -> &Path {
        &self.bare
    }

    /// The work tree's path.
    pub fn work(&self) -> &Path {
        &self.work
    }

    /// Lets the bare remote serve partial fetches (`uploadpack.allowFilter`),
    /// as forges do; git's default is to refuse them.
    pub fn allow_filter(&mut self) -> &mut Repo {
        git(&self.bare, &["config", "uploadpack.allowFilter", "true"]);
        self
    }

    /// The `file://` URL of the bare remote.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    /// Writes files (path, content) into the work tree.
    pub fn write(&mut self, files: &[(&str, &str)]) -> &mut Repo {
        for (path, content) in files {
            let p = self.work.join(path);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
        }
        self
    }

    /// Copies a directory tree into the work tree (for fixture trees).
    pub fn copy_tree(&mut self, from: &Path) -> &mut Repo {
        copy_dir(from, &self.work);
        self
    }

    /// Commits everything with `message` (a file `commit-N.txt` is added so
    /// every commit differs) and returns the new commit id.
    pub fn commit(&mut self, message: &str) -> String {
        self.counter += 1;
        let marker = format!("commit-{}.txt", self.counter);
        std::fs::write(self.work.join(&marker), message).unwrap();
        git(&self.work, &["add", "-A"]);
        // Distinct timestamps keep commit ids distinct across runs of one test.
        let date = format!(
            "2025-01-01T00:{:02}:{:02}Z",
            self.counter / 60,
            self.counter % 60
        );
        let out = git_command(&self.work)
            .env("GIT_AUTHOR_DATE", &date)
            .env("GIT_COMMITTER_DATE", &date)
            .args(["commit", "-q", "-m", message])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.head()
    }

    /// The work tree's HEAD commit.
    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    /// Creates or moves branch `name` to HEAD and checks it out.
    pub fn branch(&mut self, name: &str) -> &mut Repo {
        git(&self.work, &["checkout", "-q", "-B", name]);
        self
    }

    /// Checks out an existing branch.
    pub fn checkout(&mut self, name: &str) -> &mut Repo {
        git(&self.work, &["checkout", "-q", name]);
        self
    }

    /// A lightweight tag at HEAD.
    pub fn tag(&mut self, name: &str) -> &mut Repo {
        git(&self.work, &["tag", "-f", name]);
        self
    }

    /// An annotated tag at HEAD; returns the tag object's id.
    pub fn annotated_tag(&mut self, name: &str) -> String {
        git(
            &self.work,
            &["tag", "-f", "-a", name, "-m", &format!("release {name}")],
        );
        git(&self.work, &["rev-parse", &format!("refs/tags/{name}")])
    }

    /// Pushes every branch and tag to the bare remote (force, so moved
    /// branches move there too) and makes `main` the remote's HEAD.
    pub fn push(&mut self) -> &mut Repo {
        git(&self.work, &["push", "-q", "-f", "origin", "--all"]);
        git(&self.work, &["push", "-q", "-f", "origin", "--tags"]);
        self
    }

    /// Deletes a branch on the remote.
    pub fn delete_remote_branch(&mut self, name: &str) -> &mut Repo {
        git(&self.work, &["push", "-q", "origin", "--delete", name]);
        self
    }

    /// Adds `sub` as a submodule at `path` (by its file:// URL) and commits.
    pub fn add_submodule(&mut self, sub: &Repo, path: &str) -> String {
        let out = git_command(&self.work)
            .args([
                "-c",
                "protocol.file.allow=always",
                "submodule",
                "add",
                "-q",
                &sub.file_url(),
                path,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.commit(&format!("add submodule {path}"))
    }
}

/// The standard fixture repository of the resolve tests, pushed to
/// `<root>/<name>.git`: `main` with commits zero, one (lightweight tag
/// `light`), two (annotated tag `v2`) and three, and branch `dev` forked at
/// two with one commit of its own. Returns the repository and the commits
/// `[light, v2, main, dev, root]` (what each ref resolves to; `root` is the
/// first commit).
pub fn standard_repo(root: &Path, name: &str) -> (Repo, Vec<String>) {
    let mut r = Repo::new(root, name);
    r.write(&[("__init__.py", "X = 1\n")]);
    let c0 = r.commit("zero");
    let c1 = r.commit("one");
    r.tag("light");
    let c2 = r.commit("two");
    r.annotated_tag("v2");
    r.branch("dev");
    let c_dev = r.commit("dev work");
    r.checkout("main");
    let c3 = r.commit("three");
    r.push();
    (r, vec![c1, c2, c3, c_dev, c0])
}

/// Copies a directory recursively (files and directories only).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// `git daemon` serving every repository under a base path over `git://` on
/// a free loopback port; killed on drop.
pub struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    /// Starts the daemon for `base` and waits until it accepts connections.
    pub fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        // Run git-daemon itself: `git daemon` would fork it as a child that
        // outlives a kill of the `git` wrapper.
        let exec_path = git(base, &["--exec-path"]);
        let child = Command::new(Path::new(&exec_path).join("git-daemon"))
            .current_dir(base)
            .args([
                "--export-all",
                "--reuseaddr",
                "--enable=upload-pack",
                "--listen=127.0.0.1",
                &format!("--port={port}"),
                &format!("--base-path={}", base.display()),
                base.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("git daemon starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "git daemon did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        GitDaemon { child, port }
    }

    /// The `git://` URL of `<base>/<relative>`.
    pub fn url(&self, relative: &str) -> String {
        format!("git://127.0.0.1:{}/{relative}", self.port)
    }

    /// The daemon's process id (tests pause it with SIGSTOP to make it stall).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stops the daemon (the remote becomes unreachable).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        self.stop();
    }
}

/// git's smart HTTP protocol on loopback: `git http-backend` (git's own CGI
/// program, as forges run it) behind a small Python web server
/// (`fixtures/git-http/serve.py`), serving every repository under a base
/// path; killed on drop.
pub struct GitHttp {
    child: Child,
    base_url: String,
}

impl GitHttp {
    /// Starts the server for `base` and waits for its address.
    pub fn start(base: &Path) -> GitHttp {
        use std::io::BufRead;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/git-http/serve.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(base)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the git HTTP server starts");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("its stdout");
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .expect("it prints its address");
        assert!(line.starts_with("http://"), "git HTTP server: {line:?}");
        GitHttp {
            child,
            base_url: line.trim().to_string(),
        }
    }

    /// The `http://` URL of `<base>/<relative>`.
    pub fn url(&self, relative: &str) -> String {
        format!("{}/{relative}", self.base_url)
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_serves() {
        let root = tempfile::tempdir().unwrap();
        let mut r = Repo::new(root.path(), "pack");
        r.write(&[("__init__.py", "X = 1\n")]);
        let c1 = r.commit("one");
        r.tag("v1");
        let tag_obj = r.annotated_tag("v2");
        assert_ne!(tag_obj, c1);
        r.push();
        let mut d = GitDaemon::start(root.path());
        let out = git(root.path(), &["ls-remote", &d.url("pack.git")]);
        assert!(
            out.contains(&c1) && out.contains("refs/tags/v2^{}"),
            "{out}"
        );
        d.stop();
        assert!(
            git_command(root.path())
                .args(["ls-remote", &d.url("pack.git")])
                .output()
                .map(|o| !o.status.success())
                .unwrap_or(true)
        );
    }
}
