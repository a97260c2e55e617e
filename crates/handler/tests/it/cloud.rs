//! The `gcs` sink inside `run_job` on the stand-in ComfyUI: every file output
//! uploaded to gcp-storage-emulator under `<prefix>/<job id>/<subfolder>/<file>`
//! with its content type, text outputs left inline.

use std::time::Duration;

use crate::common::{decode_png, empty_image, start};
use comfyver_cloud::{Bucket, GcsBucket, GcsConfig, RetryPolicy};
use comfyver_handler::{CloudSink, Job, JobOptions, OutputData, OutputSink};
use comfyver_testkit::cloud::GcsEmulator;
use serde_json::json;

#[test]
fn outputs_go_to_the_bucket_under_the_callers_job_id() {
    let emu = GcsEmulator::start("job-out");
    let sink = CloudSink::from_bucket(Bucket::Gcs(
        GcsBucket::new(GcsConfig {
            bucket: "job-out".into(),
            prefix: "renders".into(),
            credentials: None,
            api_base: emu.base(),
            anonymous: true,
            public: true,
            signed_url_ttl: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            chunk_size: comfyver_cloud::DEFAULT_CHUNK,
        })
        .unwrap(),
    ))
    .unwrap();
    let (_home, comfy) = start(&[]);
    let mut wf = empty_image(16, 8, 0x00ff00, "shots/green");
    wf["3"] = json!({"class_type": "FakeSaveAudio", "inputs": {"filename_prefix": "voice", "duration": 0.05}});
    wf["4"] = json!({"class_type": "FakeText", "inputs": {"text": "hi"}});
    let opts = JobOptions {
        sink: OutputSink::Gcs,
        cloud: Some(sink),
        job_id: Some("runpod-job-42".into()),
        ..JobOptions::default()
    };
    let out = comfy
        .run_job(&Job::from_workflow(wf).unwrap(), &opts, &())
        .unwrap();
    comfy.stop();

    let v = out.to_json();
    let img = &v["images"][0];
    assert_eq!(img["type"], "gcs_url", "{v}");
    let file = img["filename"].as_str().unwrap();
    let name = format!("renders/runpod-job-42/shots/{file}");
    assert_eq!(img["uri"], format!("gs://job-out/{name}"));
    assert_eq!(img["url"], format!("{}/job-out/{name}", emu.base()));
    assert_eq!(
        emu.metadata("job-out", &name).unwrap()["contentType"],
        "image/png"
    );
    let (w, h, rgb) = decode_png(&emu.object("job-out", &name).unwrap());
    assert_eq!((w, h), (16, 8));
    assert!(rgb.chunks(3).all(|p| p == [0, 0xff, 0]));

    let audio = v["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "audio")
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(audio["type"], "gcs_url", "{v}");
    let uri = audio["uri"].as_str().unwrap();
    let audio_name = uri.strip_prefix("gs://job-out/").unwrap();
    assert!(audio_name.starts_with("renders/runpod-job-42/"), "{uri}");
    let meta = emu.metadata("job-out", audio_name).unwrap();
    assert!(
        meta["contentType"].as_str().unwrap().starts_with("audio/"),
        "{meta}"
    );

    assert!(
        out.items
            .iter()
            .any(|i| matches!(&i.data, OutputData::Text(t) if t == "hi")),
        "text stays inline"
    );
}
