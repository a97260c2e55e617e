//! What a session offers besides jobs: freeing ComfyUI's memory, and a
//! control that other threads use to interrupt or kill it.

use std::time::{Duration, Instant};

use crate::common::{process_alive, start};

/// Waits until ComfyUI's log holds `needle` (it is written by another thread).
fn log_shows(session: &comfyver_handler::Session, needle: &str) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let log = std::fs::read_to_string(session.log_path()).unwrap_or_default();
        if log.contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn free_memory_asks_comfyui_to_unload_models_and_free_memory() {
    let (_home, session) = start(&[]);
    session.free_memory().expect("POST /free is answered");
    assert!(
        log_shows(
            &session,
            r#"fake-comfyui: POST /free {"free_memory": true, "unload_models": true}"#
        ),
        "{:?}",
        session.log_tail()
    );
}

#[test]
fn control_interrupts_from_another_thread_and_kills_the_group() {
    let (_home, session) = start(&[]);
    let control = session.control();
    std::thread::spawn(move || control.interrupt(None))
        .join()
        .unwrap();
    assert!(
        log_shows(&session, "Global interrupt (no prompt_id specified)"),
        "{:?}",
        session.log_tail()
    );
    let pid = session.pid();
    session.control().kill();
    let until = Instant::now() + Duration::from_secs(10);
    while session.exit_status().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(session.exit_status().is_some(), "killed ComfyUI has exited");
    drop(session);
    assert!(!process_alive(pid));
}
