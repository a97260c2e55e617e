//! The shared-volume fault suite: a realize whose Python step takes seconds
//! (many wheels and one of 200 MB, built at test time) is killed with SIGKILL
//! at seeded random moments across all its steps. After every kill, no
//! process of the killed run is alive 2 s later (every child dies with
//! comfyver), and ONE rerun succeeds and `verify` is clean.
//!
//! Runnable alone: `cargo test -p comfyver --test it faults::`. Seeded and bounded
//! (a fixed number of trials), so a run is repeatable.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use comfyver_testkit::wheels;
use comfyver_testkit::world::World;

/// Kills per run.
const TRIALS: u64 = 30;
/// Small wheels the Python step installs besides the big one.
const SMALL_WHEELS: usize = 60;
/// The big wheel's payload (a stand-in for torch).
const BIG_PAYLOAD: usize = 200 << 20;
/// The variable that marks every process of one trial (children inherit it).
const MARK: &str = "COMFYVER_FAULT_TRIAL";

/// xorshift64*: seeded, so the kill moments are the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_comfyver"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `comfyver <args>` against `cache` with the world's versions and wheels.
fn comfyver(w: &World, cache: &Path, args: &[&str]) -> Command {
    let mut c = comfyver_testkit::cli::comfyver_command(bin(), cache, &w.root.join("versions"));
    c.args(args)
        .env("COMFYVER_WHEELS_DIR", w.root.join("wheels"));
    c
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// Every live process whose environment carries `MARK=<trial>`.
fn processes_of(trial: &str) -> Vec<String> {
    let needle = format!("{MARK}={trial}\0");
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(env) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if env.windows(needle.len()).any(|w| w == needle.as_bytes()) {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!("{name}: {}", text(&cmd).replace('\0', " ")));
        }
    }
    found
}

fn kill(child: &mut Child, whole_group: bool) {
    if whole_group {
        let _ = Command::new("kill")
            .args(["-9", "--", &format!("-{}", child.id())])
            .stderr(Stdio::null())
            .status();
    } else {
        let _ = child.kill();
    }
    let _ = child.wait();
}

#[test]
fn sigkill_at_30_random_moments_then_one_rerun_succeeds_and_nothing_survives() {
    let w = World::new(&["hello_pack"]);
    let wheel_dir = w.root.join("wheels");
    let mut requirements: Vec<String> = (0..SMALL_WHEELS)
        .map(|i| {
            let name = format!("faultdep-{i:03}");
            wheels::build_wheel(&wheel_dir, &name, "1.0", &[]);
            name
        })
        .collect();
    wheels::payload_wheel(&wheel_dir, "bigfault", BIG_PAYLOAD);
    requirements.push("bigfault".into());
    let mut spec = w.spec("faults");
    spec["python"]["requirements"] = serde_json::json!(requirements);
    w.write_spec("faults", &spec);
    let cache = |i: u64| -> PathBuf { w.root.join(format!("cache-{i}")) };

    // How long a cold realize takes here: the window the kills fall in.
    let started = Instant::now();
    ok(
        &comfyver(&w, &cache(0), &["realize", "faults"])
            .output()
            .unwrap(),
        "calibration realize",
    );
    let cold = started.elapsed();
    ok(
        &comfyver(&w, &cache(0), &["verify", "faults"])
            .output()
            .unwrap(),
        "calibration verify",
    );
    std::fs::remove_dir_all(cache(0)).unwrap();

    let mut rng = Rng(0x5eed_fa17_0000_0030);
    let mut log = Vec::new();
    for i in 1..=TRIALS {
        let trial = format!("t{i}");
        let delay = Duration::from_micros(rng.next() % cold.as_micros().max(1) as u64);
        let whole_group = i % 2 == 0;
        let stderr_log = w.root.join(format!("killed-{i}.log"));
        let mut child = comfyver(&w, &cache(i), &["realize", "faults"])
            .env(MARK, &trial)
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr_log).unwrap())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let finished = child.try_wait().unwrap().is_some();
        kill(&mut child, whole_group);
        let progress = std::fs::read_to_string(&stderr_log).unwrap_or_default();
        let step = match progress.lines().rfind(|l| l.starts_with("== ")) {
            _ if finished => "finished",
            Some(l) => l.trim_start_matches("== "),
            None => "resolving",
        };
        let who = if whole_group {
            "its process group"
        } else {
            "comfyver alone"
        };
        log.push(format!(
            "trial {i}: kill -9 {who} at {delay:?}, during {step}"
        ));

        std::thread::sleep(Duration::from_secs(2));
        let alive = processes_of(&trial);
        assert!(
            alive.is_empty(),
            "{}: processes of the killed run still alive 2 s later:\n{}",
            log.last().unwrap(),
            alive.join("\n")
        );

        let rerun = comfyver(&w, &cache(i), &["realize", "faults"])
            .output()
            .unwrap();
        ok(
            &rerun,
            &format!("the one rerun after {}", log.last().unwrap()),
        );
        let verify = comfyver(&w, &cache(i), &["verify", "faults"])
            .output()
            .unwrap();
        ok(&verify, &format!("verify after {}", log.last().unwrap()));
        std::fs::remove_dir_all(cache(i)).unwrap();
    }
    eprintln!("cold realize: {cold:?}\n{}", log.join("\n"));
}
