//! A test-only fault hook: `COMFYVER_TEST_PAUSE_AT=<point>` makes the process
//! print `comfyver-test: paused at <point>` on stderr and sleep there, so a
//! test can SIGKILL it at a known place and check that a rerun recovers.
//! Never set it in production.

use std::io::Write;

/// Sleeps forever (until killed) when `COMFYVER_TEST_PAUSE_AT` equals `point`.
pub fn test_pause(point: &str) {
    if std::env::var(comfyver_env::COMFYVER_TEST_PAUSE_AT).is_ok_and(|v| v == point) {
        let _ = writeln!(std::io::stderr(), "comfyver-test: paused at {point}");
        loop {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
    }
}
