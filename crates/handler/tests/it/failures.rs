//! Every failure is a clear error, and no ComfyUI process is left behind.

use std::time::{Duration, Instant};

use crate::common::{empty_image, env, process_alive, procs_in, start};
use comfyver_handler::{HandlerError, Job, JobOptions, Session, StartOptions};
use comfyver_testkit::comfy::ComfyHome;
use serde_json::{Value, json};

/// Runs a one-job scenario and checks that nothing survives the process.
fn run_failing(packs: &[&str], workflow: serde_json::Value, opts: JobOptions) -> HandlerError {
    let (home, comfy) = start(packs);
    let pid = comfy.pid();
    let job = Job::from_workflow(workflow).unwrap();
    let err = comfy.run_job(&job, &opts, &()).expect_err("the job fails");
    drop(comfy);
    assert!(!process_alive(pid), "ComfyUI {pid} is gone");
    assert!(
        procs_in(&home.core_dir).is_empty(),
        "no process left in the home"
    );
    err
}

#[test]
fn invalid_workflow_names_node_class_input_and_message() {
    let err = run_failing(&[], empty_image(0, 8, 0, "x"), JobOptions::default());
    let HandlerError::Validation { node_errors, .. } = &err else {
        panic!("expected a validation error, got {err}");
    };
    assert_eq!(node_errors.len(), 1, "{err}");
    let e = &node_errors[0];
    assert_eq!(
        (e.node_id.as_str(), e.class_type.as_str()),
        ("1", "EmptyImage")
    );
    assert_eq!(e.input.as_deref(), Some("width"));
    assert_eq!(e.kind, "value_smaller_than_min");
    let msg = err.to_string();
    assert!(
        msg.contains("node 1 (EmptyImage) input `width`: Value 0 smaller than min of 1"),
        "{msg}"
    );
    let j = err.to_job_json();
    assert_eq!(j["kind"], "validation");
    assert_eq!(j["node_errors"][0]["input"], "width");
    // worker-comfyui's clients read `details` as strings.
    assert!(
        j["details"][0]
            .as_str()
            .is_some_and(|d| d.contains("input `width`")),
        "{j}"
    );
}

#[test]
fn missing_node_class_names_class_and_version() {
    let mut wf = empty_image(8, 8, 0, "x");
    wf["3"] = json!({"class_type": "DoesNotExist", "inputs": {}});
    let err = run_failing(&[], wf, JobOptions::default());
    assert!(
        matches!(err, HandlerError::MissingNode { ref node_id, .. } if node_id == "3"),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("node class DoesNotExist is not available in version testver; is its custom node in the spec?"),
        "{msg}"
    );
    assert!(!msg.contains("failed to import"), "{msg}");
}

#[test]
fn execution_error_names_node_exception_and_traceback() {
    let wf = json!({"1": {"class_type": "FakeFail", "inputs": {}}});
    let err = run_failing(&[], wf, JobOptions::default());
    let HandlerError::Execution {
        node_id,
        class_type,
        exception_type,
        message,
        traceback,
        hint,
    } = &err
    else {
        panic!("expected an execution error, got {err}");
    };
    assert!(hint.is_none(), "no path was refused: {hint:?}");
    assert_eq!((node_id.as_str(), class_type.as_str()), ("1", "FakeFail"));
    assert!(exception_type.contains("RuntimeError"), "{exception_type}");
    assert_eq!(message, "FakeFail: intentional failure");
    assert!(
        traceback.iter().any(|l| l.contains("raise RuntimeError")),
        "{traceback:?}"
    );
    assert!(
        err.to_string().contains("node 1 (FakeFail) failed: "),
        "{err}"
    );
    let j = err.to_job_json();
    assert_eq!(
        j["execution_error"]["exception_message"],
        "FakeFail: intentional failure"
    );
    assert_eq!(
        j["details"],
        json!([
            "Workflow execution error: Node Type: FakeFail, Node ID: 1, Message: FakeFail: intentional failure"
        ])
    );
}

#[test]
fn crash_at_start_fails_fast_with_the_log() {
    let home = ComfyHome::new(&[]);
    let mut env = env(&home);
    env.env
        .insert("FAKE_COMFY_CRASH_AT_START".into(), "1".into());
    let opts = StartOptions {
        start_timeout: Duration::from_secs(300),
        ..StartOptions::default()
    };
    let t = Instant::now();
    let err = Session::start(&env, &opts).expect_err("start fails");
    assert!(
        t.elapsed() < Duration::from_secs(120),
        "did not wait for the start timeout"
    );
    let HandlerError::StartCrashed { status, log, tail } = &err else {
        panic!("expected StartCrashed, got {err}");
    };
    assert!(status.contains('3'), "{status}");
    assert!(log.is_file());
    assert!(
        tail.iter()
            .any(|l| l.contains("simulated crash during startup")),
        "{tail:?}"
    );
    assert!(
        err.to_string().contains("FAKE_COMFY_CRASH_AT_START"),
        "{err}"
    );
    assert!(procs_in(&home.core_dir).is_empty());
}

#[test]
fn crash_mid_job_is_reported_with_the_log() {
    let wf = json!({"1": {"class_type": "FakeCrash", "inputs": {"exit_code": 7}}});
    let err = run_failing(&[], wf, JobOptions::default());
    let HandlerError::ComfyDied { status, tail, .. } = &err else {
        panic!("expected ComfyDied, got {err}");
    };
    assert!(status.contains('7'), "{status}");
    assert!(
        tail.iter().any(|l| l.contains("FakeCrash: terminating")),
        "{tail:?}"
    );
}

#[test]
fn job_timeout_interrupts_the_prompt() {
    let (home, comfy) = start(&[]);
    let slow =
        Job::from_workflow(json!({"1": {"class_type": "FakeSlow", "inputs": {"seconds": 30.0}}}))
            .unwrap();
    let opts = JobOptions {
        timeout: Duration::from_secs(2),
        ..JobOptions::default()
    };
    let err = comfy.run_job(&slow, &opts, &()).expect_err("times out");
    let HandlerError::Timeout { prompt_id, .. } = &err else {
        panic!("expected Timeout, got {err}");
    };
    assert!(
        err.to_string()
            .contains("did not finish within 2s; it was interrupted"),
        "{err}"
    );
    // The interrupt reached ComfyUI: its history says so, and the next job
    // runs at once (it would wait ~28 s behind the slow one otherwise).
    let h: serde_json::Value = ureq::get(format!(
        "http://127.0.0.1:{}/history/{prompt_id}",
        comfy.port()
    ))
    .call()
    .unwrap()
    .body_mut()
    .read_json()
    .unwrap();
    let messages = h[prompt_id]["status"]["messages"].to_string();
    assert!(messages.contains("execution_interrupted"), "{h}");
    let quick = JobOptions {
        timeout: Duration::from_secs(10),
        ..JobOptions::default()
    };
    comfy
        .run_job(
            &Job::from_workflow(empty_image(2, 2, 0, "q")).unwrap(),
            &quick,
            &(),
        )
        .expect("ComfyUI is free again");
    drop(comfy);
    assert!(procs_in(&home.core_dir).is_empty());
}

#[test]
fn ui_format_is_refused_with_the_export_hint() {
    let ui = json!({"last_node_id": 2, "last_link_id": 1, "version": 0.4,
                    "nodes": [{"id": 1, "type": "EmptyImage", "widgets_values": [64, 64, 1, 0]}],
                    "links": [[1, 1, 0, 2, 0, "IMAGE"]]});
    let err = Job::from_workflow(ui.clone()).expect_err("refused");
    assert!(matches!(err, HandlerError::UiWorkflow));
    assert!(err.to_string().contains("Workflow → Export (API)"), "{err}");
    let request = json!({"input": {"workflow": ui}});
    assert!(matches!(
        Job::from_runpod(&request),
        Err(HandlerError::UiWorkflow)
    ));
}

#[test]
fn failed_node_pack_is_reported_and_explains_missing_classes() {
    let (home, comfy) = start(&["hello_pack", "broken_pack"]);
    let report = comfy.node_report().unwrap();
    assert_eq!(report.loaded["hello_pack"], vec!["HelloText".to_string()]);
    assert_eq!(report.failed.len(), 1);
    let failed = &report.failed[0];
    assert_eq!(failed.name, "broken_pack");
    let lines = failed.log_lines.join("\n");
    assert!(
        lines.contains("Traceback (most recent call last)"),
        "{lines}"
    );
    assert!(
        lines.contains("ImportError: broken_pack requires comfy_api.v9"),
        "{lines}"
    );
    assert!(
        lines.contains("Cannot import") && lines.contains("(IMPORT FAILED)"),
        "{lines}"
    );

    let job = Job::from_workflow(json!({"1": {"class_type": "BrokenNode", "inputs": {}}})).unwrap();
    let opts = JobOptions::default();
    let err = comfy.run_job(&job, &opts, &()).expect_err("fails");
    let msg = err.to_string();
    assert!(
        msg.contains("node class BrokenNode is not available in version testver"),
        "{msg}"
    );
    assert!(
        msg.contains("node pack `broken_pack` of this version failed to import"),
        "{msg}"
    );
    assert!(msg.contains("requires comfy_api.v9"), "{msg}");
    let j = err.to_job_json();
    assert_eq!(j["missing_node"]["failed_packs"][0]["name"], "broken_pack");
    assert!(
        j["details"]
            .as_array()
            .unwrap()
            .iter()
            .all(Value::is_string),
        "{j}"
    );
    // A working pack's class runs.
    let hello =
        Job::from_workflow(json!({"1": {"class_type": "HelloText", "inputs": {}}})).unwrap();
    let out = comfy.run_job(&hello, &JobOptions::default(), &()).unwrap();
    assert_eq!(out.to_json()["outputs"][0]["text"], "hello from hello_pack");
    drop(comfy);
    assert!(procs_in(&home.core_dir).is_empty());
}
