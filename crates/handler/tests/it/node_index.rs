//! The node index against the stand-in ComfyUI: recorded after a start,
//! keyed, and a pre-check that refuses only what ComfyUI itself refuses.

use comfyver_handler::node_index::{NodeIndex, NodeIndexFile};
use comfyver_handler::{ComfyEnv, HandlerError, Job, JobOptions, Session};
use comfyver_testkit::comfy::ComfyHome;
use serde_json::{Value, json};

use crate::common::{env, opts};

fn kind(e: &HandlerError) -> &'static str {
    e.kind()
}

/// Workflows ComfyUI refuses and accepts, each with what the pre-check must say.
fn cases() -> Vec<(&'static str, Value)> {
    let save = |from: Value| json!({"class_type": "SaveImage", "inputs": {"images": from, "filename_prefix": "p"}});
    let empty = |w: Value| json!({"class_type": "EmptyImage", "inputs": {"width": w, "height": 8, "batch_size": 1, "color": 0}});
    vec![
        (
            "ok",
            json!({"1": empty(json!(8)), "2": save(json!(["1", 0]))}),
        ),
        (
            "ok: python converts the string",
            json!({"1": empty(json!(" 8 ")), "2": save(json!(["1", 0]))}),
        ),
        (
            "ok: one good output is run",
            json!({"1": empty(json!(8)), "2": save(json!(["1", 0])), "3": {"class_type": "SaveImage", "inputs": {}}}),
        ),
        (
            "unknown class",
            json!({"1": {"class_type": "NoSuchNode", "inputs": {}}, "2": save(json!(["1", 0]))}),
        ),
        (
            "bad INT",
            json!({"1": empty(json!("wide")), "2": save(json!(["1", 0]))}),
        ),
        (
            "missing input",
            json!({"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}, "2": save(json!(["1", 0]))}),
        ),
        (
            "link to a missing node",
            json!({"2": save(json!(["9", 0]))}),
        ),
        (
            "link to a missing slot",
            json!({"1": empty(json!(8)), "2": save(json!(["1", 3]))}),
        ),
        ("no outputs", json!({"1": empty(json!(8))})),
    ]
}

#[test]
fn the_index_is_recorded_once_keyed_and_the_precheck_refuses_only_what_comfyui_refuses() {
    let home = ComfyHome::new(&[]);
    let file = NodeIndexFile {
        path: home.data_dir.join("meta").join("node-index.json"),
        key: "stamp-1".into(),
    };
    let env = ComfyEnv {
        node_index: Some(file.clone()),
        ..env(&home)
    };
    // No index yet: nothing is refused before the start.
    let bad = Job::from_workflow(cases()[4].1.clone()).expect("job");
    assert!(env.precheck(&bad).is_ok());

    let session = Session::start(&env, &opts()).expect("ComfyUI starts");
    let index = NodeIndex::read(&file).expect("the first start records the index");
    let save = index.class("SaveImage").expect("SaveImage");
    assert!(save.output_node && save.pack.is_none());
    assert_eq!(
        index.class("EmptyImage").expect("EmptyImage").required["width"].kind,
        "INT"
    );
    // Another key (a realize of a changed lock) never reads it.
    let other = NodeIndexFile {
        key: "stamp-2".into(),
        ..file.clone()
    };
    assert!(NodeIndex::read(&other).is_none());
    let env_other = ComfyEnv {
        node_index: Some(other),
        ..env.clone()
    };
    assert!(
        env_other.precheck(&bad).is_ok(),
        "a stale index is not used"
    );

    for (name, wf) in cases() {
        let job = Job::from_workflow(wf).expect("job");
        let pre = env.precheck(&job);
        let job_opts = JobOptions {
            timeout: std::time::Duration::from_secs(30),
            ..JobOptions::default()
        };
        let comfy = session.run_job(&job, &job_opts, &());
        match (&pre, &comfy) {
            (Ok(()), _) => assert!(
                name.starts_with("ok") == comfy.is_ok(),
                "{name}: passed the pre-check; ComfyUI said {comfy:?}"
            ),
            (Err(p), Err(c)) => {
                assert!(!name.starts_with("ok"), "{name}: refused: {p}");
                assert_eq!(kind(p), kind(c), "{name}: pre-check {p} vs ComfyUI {c}");
            }
            (Err(p), Ok(_)) => panic!("{name}: the pre-check refused what ComfyUI ran: {p}"),
        }
        if !name.starts_with("ok") && name != "no outputs" {
            assert!(pre.is_err(), "{name}: the pre-check let it through");
        }
    }
    let pre = env
        .precheck(&Job::from_workflow(cases()[4].1.clone()).expect("job"))
        .expect_err("bad INT");
    let HandlerError::Validation { node_errors, .. } = &pre else {
        panic!("{pre}")
    };
    assert_eq!(node_errors[0].node_id, "1");
    assert_eq!(node_errors[0].input.as_deref(), Some("width"));
    assert!(node_errors[0].message.contains("INT"), "{pre}");
    session.stop();
}
