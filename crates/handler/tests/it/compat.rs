//! worker-comfyui compatibility, GPU choice, import report and per-job files,
//! on the stand-in ComfyUI (a real Python process on loopback).

use std::time::Duration;

use crate::common::{decode_png, empty_image, encode_png, env, opts, start};
use base64::Engine;
use comfyver_handler::{
    ComfyEnv, GpuChoice, HandlerError, Job, JobOptions, OutputData, OutputSink, Session,
    StartOptions,
};
use comfyver_testkit::comfy::ComfyHome;
use serde_json::{Value, json};

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The stand-in's command line, as it reports it in `/system_stats`.
fn argv(comfy: &Session) -> Vec<String> {
    let body = ureq::get(format!("http://127.0.0.1:{}/system_stats", comfy.port()))
        .call()
        .expect("system_stats")
        .body_mut()
        .read_to_string()
        .expect("body");
    let v: Value = serde_json::from_str(&body).expect("json");
    v["system"]["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .map(|a| a.as_str().unwrap_or_default().to_string())
        .collect()
}

/// Files in the stand-in's input directory (uploads land there).
fn input_files(comfy: &Session) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(comfy.data_dir().join("input"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn an_execution_error_keeps_the_outputs_produced_and_reports_errors() {
    let (_home, comfy) = start(&[]);
    let mut wf = empty_image(8, 8, 0x00ff00, "partial");
    wf["9"] = json!({"class_type": "FakeFail", "inputs": {}});
    let job = Job::from_workflow(wf).unwrap();
    let out = comfy
        .run_job(&job, &JobOptions::default(), &())
        .expect("a job with outputs is not failed by a node that raised");
    let v = out.to_json();
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{v}");
    let png = base64::engine::general_purpose::STANDARD
        .decode(images[0]["data"].as_str().unwrap())
        .unwrap();
    assert_eq!(decode_png(&png).2[..3], [0, 0xff, 0]);
    let errors = v["errors"].as_array().expect("errors listed");
    assert!(
        errors.iter().any(|e| e.as_str().is_some_and(|e| e
            .starts_with("Workflow execution error: Node Type: FakeFail")
            && e.contains("intentional failure"))),
        "{v}"
    );
    assert_eq!(v["execution_error"]["class_type"], "FakeFail");
}

#[test]
fn a_job_with_no_outputs_and_errors_fails_in_worker_comfyuis_shape() {
    let (_home, comfy) = start(&[]);
    let job = Job::from_workflow(json!({"1": {"class_type": "FakeFail", "inputs": {}}})).unwrap();
    let err = comfy
        .run_job(&job, &JobOptions::default(), &())
        .expect_err("fails");
    assert!(matches!(err, HandlerError::Execution { .. }), "{err}");
    let j = err.to_job_json();
    assert!(j["error"].is_string(), "{j}");
    let details = j["details"].as_array().unwrap();
    assert!(
        !details.is_empty() && details.iter().all(Value::is_string),
        "{j}"
    );
    assert!(j.get("images").is_none(), "{j}");
}

#[test]
fn a_comfyui_that_ignores_client_prompt_ids_still_completes_the_job() {
    let home = ComfyHome::new(&[]);
    let mut e = env(&home);
    e.env
        .insert("FAKE_COMFY_IGNORE_CLIENT_PROMPT_ID".into(), "1".into());
    let comfy = Session::start(&e, &opts()).expect("starts");
    let job = Job::from_workflow(empty_image(4, 4, 0x0000ff, "old")).unwrap();
    let o = JobOptions {
        // Without the returned id the job would wait for this and fail.
        timeout: Duration::from_secs(20),
        ..JobOptions::default()
    };
    let out = comfy.run_job(&job, &o, &()).expect("job completes");
    assert_eq!(out.items.len(), 1);
    assert_eq!(
        decode_png(out.items[0].bytes().unwrap()).2[..3],
        [0, 0, 0xff]
    );
    // The id is ComfyUI's own, not the one comfyver asked for (the folder's name).
    let folder = out.items[0].subfolder.trim_start_matches("comfyver/");
    assert_ne!(out.prompt_id, folder, "the stand-in chose its own id");
    let history = ureq::get(format!(
        "http://127.0.0.1:{}/history/{}",
        comfy.port(),
        out.prompt_id
    ))
    .call()
    .unwrap()
    .body_mut()
    .read_to_string()
    .unwrap();
    assert!(history.contains(&out.prompt_id), "{history}");
}

#[test]
fn comfy_org_api_key_reaches_extra_data_and_never_the_output() {
    let (_home, comfy) = start(&[]);
    let key = "comfyui-test-key-5f1e";
    let wf = json!({"1": {"class_type": "FakeApiNode", "inputs": {}}});
    let request = json!({"input": {"workflow": wf, "comfy_org_api_key": key}});
    let job = Job::from_runpod(&request).unwrap();
    let out = comfy.run_job(&job, &JobOptions::default(), &()).unwrap();
    let v = out.to_json();
    let expected: String = {
        use sha2::Digest;
        sha2::Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(
        v["outputs"][0]["text"],
        format!("api key sha256 {expected}"),
        "{v}"
    );
    assert!(!v.to_string().contains(key));
    assert!(
        !std::fs::read_to_string(comfy.log_path())
            .unwrap_or_default()
            .contains(key)
    );
    // Without a key the node sees none.
    let job = Job::from_runpod(&json!({"input": {"workflow": wf}})).unwrap();
    if std::env::var_os("COMFY_ORG_API_KEY").is_none() {
        let out = comfy.run_job(&job, &JobOptions::default(), &()).unwrap();
        assert_eq!(out.to_json()["outputs"][0]["text"], "no api key");
    }
}

#[test]
fn data_url_inputs_are_per_job_and_removed_after_the_job() {
    let (_home, comfy) = start(&[]);
    let wf = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "up"}}
    });
    let prefixes = [
        "data:image/png;base64,",
        "data:image/jpeg;base64,",
        "data:application/octet-stream;name=in.png;base64,",
        "",
    ];
    for (round, prefix) in prefixes.iter().enumerate() {
        let px = comfyver_testkit::http::pseudo_random(6 * 5 * 3, 40 + round as u64);
        let request = json!({"input": {"workflow": wf, "images": [{
            "name": "in.png", "image": format!("{prefix}{}", b64(&encode_png(6, 5, &px)))}]}});
        let job = Job::from_runpod(&request).unwrap();
        let out = comfy
            .run_job(&job, &JobOptions::default(), &())
            .expect("runs");
        assert_eq!(
            decode_png(out.items[0].bytes().unwrap()).2,
            px,
            "prefix {prefix:?}"
        );
        assert_eq!(input_files(&comfy), Vec::<String>::new(), "round {round}");
    }
    // Also after a failed job.
    let mut failing = wf.clone();
    failing["3"] = json!({"class_type": "FakeFail", "inputs": {}});
    failing
        .as_object_mut()
        .unwrap()
        .remove("2")
        .expect("node 2");
    let request = json!({"input": {"workflow": failing, "images": [{
        "name": "in.png", "image": b64(&encode_png(2, 2, &[9; 12]))}]}});
    let job = Job::from_runpod(&request).unwrap();
    assert!(comfy.run_job(&job, &JobOptions::default(), &()).is_err());
    assert_eq!(input_files(&comfy), Vec::<String>::new());
}

#[test]
fn a_failed_upload_fails_the_job_naming_the_image_and_leaves_no_input() {
    let home = ComfyHome::new(&[]);
    let o = StartOptions {
        // The stand-in refuses bodies over about 100 bytes with HTTP 413.
        extra_args: vec!["--max-upload-size".into(), "0.0001".into()],
        ..opts()
    };
    let comfy = Session::start(&env(&home), &o).expect("starts");
    let wf = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "big.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}}
    });
    let mut job = Job::from_workflow(wf).unwrap();
    // Big enough (about 12 MB) that a server closing on an unread body would
    // reset the connection before the answer is read: the stand-in lingers
    // as aiohttp does, so the 413 itself must come through.
    let px = comfyver_testkit::http::pseudo_random(2048 * 2048 * 3, 5);
    job.add_image("big.png", encode_png(2048, 2048, &px))
        .unwrap();
    let err = comfy
        .run_job(&job, &JobOptions::default(), &())
        .expect_err("fails");
    assert!(matches!(err, HandlerError::Upload { .. }), "{err}");
    let j = err.to_job_json();
    assert!(
        j["error"]
            .as_str()
            .unwrap()
            .starts_with("Failed to upload one or more input images"),
        "{j}"
    );
    assert!(
        j["details"][0]
            .as_str()
            .is_some_and(|d| d.contains("big.png") && d.contains("413")),
        "{j}"
    );
    assert_eq!(input_files(&comfy), Vec::<String>::new());
}

#[test]
fn two_concurrent_jobs_with_one_input_name_each_see_their_own_image() {
    let (_home, comfy) = start(&[]);
    let wf = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "same.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "c"}}
    });
    let out_dir = tempfile::tempdir().unwrap();
    let results: Vec<(Vec<u8>, Vec<std::path::PathBuf>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2u64)
            .map(|i| {
                let comfy = &comfy;
                let wf = wf.clone();
                let dir = out_dir.path().to_path_buf();
                s.spawn(move || {
                    let px = comfyver_testkit::http::pseudo_random(4 * 4 * 3, 90 + i);
                    let mut job = Job::from_workflow(wf).unwrap();
                    job.add_image("same.png", encode_png(4, 4, &px)).unwrap();
                    let o = JobOptions {
                        sink: OutputSink::Dir(dir),
                        ..JobOptions::default()
                    };
                    let out = comfy.run_job(&job, &o, &()).expect("runs");
                    let paths = out
                        .items
                        .iter()
                        .filter_map(|i| match &i.data {
                            OutputData::Path(p) => Some(p.clone()),
                            _ => None,
                        })
                        .collect();
                    (px, paths)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_ne!(results[0].1, results[1].1, "both jobs wrote one file");
    for (px, paths) in &results {
        assert_eq!(paths.len(), 1);
        let bytes = std::fs::read(&paths[0]).unwrap();
        assert_eq!(
            &decode_png(&bytes).2,
            px,
            "{:?} holds the other job's image",
            paths[0]
        );
    }
    assert_eq!(input_files(&comfy), Vec::<String>::new());
}

#[test]
fn a_gpu_device_node_means_no_cpu_flag() {
    let home = ComfyHome::new(&[]);
    let dev = tempfile::tempdir().unwrap();
    let start_with = |choice: GpuChoice| {
        let o = StartOptions {
            gpu: choice,
            ..opts()
        };
        Session::start(&env(&home), &o).expect("starts")
    };
    let comfy = start_with(GpuChoice::ProbeDir(dev.path().to_path_buf()));
    assert!(argv(&comfy).contains(&"--cpu".to_string()), "no GPU: --cpu");
    assert!(!comfy.device().gpu);
    comfy.stop();

    std::fs::write(dev.path().join("nvidia0"), "").unwrap();
    let comfy = start_with(GpuChoice::ProbeDir(dev.path().to_path_buf()));
    assert!(
        !argv(&comfy).contains(&"--cpu".to_string()),
        "a GPU: no --cpu"
    );
    assert!(comfy.device().to_string().contains("nvidia0"));
    comfy.stop();

    let comfy = start_with(GpuChoice::Cpu);
    assert!(argv(&comfy).contains(&"--cpu".to_string()), "--cpu forced");
    comfy.stop();
}

#[test]
fn import_report_names_failures_only() {
    let home = ComfyHome::new(&[
        "hello_pack",
        "js_only_pack",
        "missing_dep_pack",
        "broken_pack",
    ]);
    let expected: Vec<String> = [
        "hello_pack",
        "js_only_pack",
        "missing_dep_pack",
        "broken_pack",
    ]
    .map(String::from)
    .to_vec();
    let env = ComfyEnv {
        node_packs: expected,
        node_index: None,
        ..env(&home)
    };
    let comfy = Session::start(&env, &opts()).expect("starts");
    let report = comfy.node_report().unwrap();
    let failed: Vec<&str> = report.failed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(failed, ["missing_dep_pack", "broken_pack"], "{report:?}");
    assert_eq!(report.loaded.get("js_only_pack"), Some(&Vec::new()));
    assert!(
        !report.loaded.contains_key("websocket_image_save"),
        "core's own file is no pack: {report:?}"
    );
    let j = report.failed_json();
    assert_eq!(j[0]["name"], "missing_dep_pack");
    assert!(
        j[0]["error"]
            .as_str()
            .unwrap()
            .contains("No module named 'comfyver_no_such_module'"),
        "{j}"
    );
    assert!(
        j[0]["log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l.as_str().unwrap().starts_with("Traceback")),
        "{j}"
    );
    assert!(
        j[1]["error"].as_str().unwrap().contains("ImportError"),
        "{j}"
    );
}
