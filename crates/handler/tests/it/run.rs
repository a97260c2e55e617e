//! End-to-end jobs on the stand-in ComfyUI (a real Python process on loopback).

use crate::common::{decode_png, empty_image, encode_png, process_alive, start};
use base64::Engine;
use comfyver_handler::{Job, JobOptions, OutputData, OutputSink};
use serde_json::{Value, json};

#[test]
fn empty_image_comes_back_as_base64_png_with_the_right_pixels() {
    let (_home, comfy) = start(&[]);
    let job = Job::from_workflow(empty_image(64, 32, 0x336699, "smoke")).unwrap();
    let out = comfy
        .run_job(&job, &JobOptions::default(), &())
        .expect("job runs");
    let v = out.to_json();
    assert_eq!(v["status"], "success");
    assert_eq!(v["version_id"], "testver");
    assert_eq!(v["prompt_id"], out.prompt_id);
    let images = v["images"].as_array().unwrap();
    assert_eq!(images.len(), 1, "{v}");
    assert_eq!(images[0]["type"], "base64");
    assert_eq!(images[0]["kind"], "image");
    assert_eq!(images[0]["node_id"], "2");
    assert!(
        images[0]["filename"]
            .as_str()
            .unwrap()
            .starts_with("smoke_")
    );
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(images[0]["data"].as_str().unwrap())
        .unwrap();
    let (w, h, rgb) = decode_png(&bytes);
    assert_eq!((w, h), (64, 32));
    assert!(
        rgb.chunks(3).all(|p| p == [0x33, 0x66, 0x99]),
        "every pixel is 0x336699"
    );
    assert!(v["timings"]["total_ms"].as_u64().is_some());
    assert!(v.get("errors").is_none());
    // The job's files are removed from ComfyUI's output dir once fetched.
    let job_dir = comfy
        .data_dir()
        .join("output/comfyver")
        .join(&out.prompt_id);
    assert!(!job_dir.exists());
    let pid = comfy.pid();
    assert!(process_alive(pid));
    comfy.stop();
    assert!(!process_alive(pid), "ComfyUI is gone after stop()");
}

#[test]
fn dir_sink_writes_sanitised_files_inside_the_directory() {
    let (home, comfy) = start(&[]);
    let target = home.path().join("out");
    let mut wf = empty_image(8, 8, 0xff0000, "../../escape/red");
    wf["3"] = json!({"class_type": "FakeSaveAudio", "inputs": {"filename_prefix": "sub dir/<a|b>", "duration": 0.05}});
    wf["4"] = json!({"class_type": "FakeText", "inputs": {"text": "hi"}});
    let opts = JobOptions {
        sink: OutputSink::Dir(target.clone()),
        ..JobOptions::default()
    };
    let job = Job::from_workflow(wf.clone()).unwrap();
    let out = comfy.run_job(&job, &opts, &()).expect("job runs");
    let files: Vec<_> = out
        .items
        .iter()
        .filter_map(|i| match &i.data {
            OutputData::Path(p) => Some(p.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(files.len(), 2, "{:?}", out.items);
    for item in out.items.iter().filter(|i| i.kind != "text") {
        let ours = format!("comfyver/{}/", out.prompt_id);
        assert!(
            item.subfolder.starts_with(&ours),
            "`..` in a prefix stays in the job folder: {}",
            item.subfolder
        );
    }
    let root = target.canonicalize().unwrap();
    for f in &files {
        assert!(
            f.canonicalize().unwrap().starts_with(&root),
            "{f:?} escapes {root:?}"
        );
        assert!(f.is_file());
    }
    let png = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "png"))
        .unwrap();
    assert_eq!(
        decode_png(&std::fs::read(png).unwrap()).2[..3],
        [0xff, 0, 0]
    );
    let wav = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == "wav"))
        .unwrap();
    assert!(wav.to_string_lossy().contains("sub dir"));
    assert!(!wav.to_string_lossy().contains('<'));
    let v = out.to_json();
    assert_eq!(v["images"][0]["type"], "path");
    let kinds: Vec<&str> = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["audio", "text"]);
    assert_eq!(v["outputs"][1]["text"], "hi");
    // A second run into the same directory does not overwrite the first.
    let again = comfy.run_job(&job, &opts, &()).expect("job runs");
    for item in &again.items {
        if let OutputData::Path(p) = &item.data {
            assert!(!files.contains(p), "{p:?} was overwritten");
        }
    }
}

#[test]
fn uploaded_image_goes_through_load_image_unchanged() {
    let (_home, comfy) = start(&[]);
    let pixels = comfyver_testkit::http::pseudo_random(16 * 12 * 3, 7);
    let wf = json!({
        "1": {"class_type": "LoadImage", "inputs": {"image": "in.png"}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "up"}}
    });
    let request = json!({"input": {"workflow": wf, "images": [{
        "name": "in.png",
        "image": format!("data:image/png;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(encode_png(16, 12, &pixels)))
    }]}});
    let job = Job::from_runpod(&request).unwrap();
    for round in 0..2 {
        // The second round uploads different pixels under the same name: each
        // job's upload has a name of its own and the workflow follows it.
        let mut job = job.clone();
        let px = comfyver_testkit::http::pseudo_random(16 * 12 * 3, 7 + round);
        job.images[0].bytes = encode_png(16, 12, &px);
        let out = comfy
            .run_job(&job, &JobOptions::default(), &())
            .expect("job runs");
        let (w, h, rgb) = decode_png(out.items[0].bytes().unwrap());
        assert_eq!((w, h), (16, 12));
        assert_eq!(
            rgb, px,
            "round {round}: output pixels equal the input pixels"
        );
    }
    // Each job's input files are gone once it is done.
    let input = comfy.data_dir().join("input");
    assert_eq!(std::fs::read_dir(&input).unwrap().count(), 0);
}

#[test]
fn two_jobs_in_a_row_never_see_each_others_outputs() {
    let (_home, comfy) = start(&[]);
    let job_a = Job::from_workflow(empty_image(4, 4, 0x00ff00, "same")).unwrap();
    let job_b = Job::from_workflow(empty_image(4, 4, 0x0000ff, "same")).unwrap();
    let keep = JobOptions {
        keep_outputs: true,
        ..JobOptions::default()
    };
    let a = comfy.run_job(&job_a, &keep, &()).unwrap();
    let b = comfy.run_job(&job_b, &keep, &()).unwrap();
    let a2 = comfy.run_job(&job_a, &keep, &()).unwrap();
    assert_ne!(a.prompt_id, b.prompt_id);
    assert_eq!(a.items.len(), 1);
    assert_eq!(b.items.len(), 1);
    assert_eq!(a2.items.len(), 1);
    let color =
        |o: &comfyver_handler::JobOutput| decode_png(o.items[0].bytes().unwrap()).2[..3].to_vec();
    assert_eq!(color(&a), [0, 0xff, 0]);
    assert_eq!(color(&b), [0, 0, 0xff]);
    assert_eq!(color(&a2), [0, 0xff, 0]);
    for o in [&a, &b, &a2] {
        assert_eq!(o.items[0].subfolder, format!("comfyver/{}", o.prompt_id));
        assert!(
            comfy
                .data_dir()
                .join("output")
                .join(&o.items[0].subfolder)
                .join(&o.items[0].filename)
                .is_file()
        );
    }
}

#[test]
fn progress_is_reported_and_temp_outputs_are_skipped_unless_asked() {
    use std::sync::Mutex;
    #[derive(Default)]
    struct Rec(Mutex<Vec<String>>);
    impl comfyver_handler::JobReporter for Rec {
        fn node_started(&self, id: &str, class: &str) {
            self.0.lock().unwrap().push(format!("start {id} {class}"));
        }
        fn progress(&self, id: &str, value: f64, max: f64) {
            self.0
                .lock()
                .unwrap()
                .push(format!("progress {id} {value}/{max}"));
        }
    }
    let (_home, comfy) = start(&[]);
    let wf = json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 0}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        "3": {"class_type": "FakeSlow", "inputs": {"seconds": 0.3}}
    });
    let job = Job::from_workflow(wf).unwrap();
    let rec = Rec::default();
    let out = comfy.run_job(&job, &JobOptions::default(), &rec).unwrap();
    let events = rec.0.lock().unwrap().clone();
    assert!(events.iter().any(|e| e == "start 3 FakeSlow"), "{events:?}");
    assert!(events.iter().any(|e| e == "progress 3 3/3"), "{events:?}");
    let kinds: Vec<&str> = out.items.iter().map(|i| i.kind.as_str()).collect();
    assert_eq!(kinds, ["text"], "the temp preview is skipped");
    let with_temp = JobOptions {
        include_temp: true,
        ..JobOptions::default()
    };
    let out = comfy.run_job(&job, &with_temp, &()).unwrap();
    let v: Value = out.to_json();
    assert_eq!(v["images"].as_array().unwrap().len(), 1, "{v}");
}
