//! Shared helpers: a stand-in ComfyUI home, workflows, and a PNG codec (the `png` crate).

use std::time::Duration;

use comfyver_handler::{ComfyEnv, Session, StartOptions};
use comfyver_testkit::comfy::{ComfyHome, python};
use serde_json::{Value, json};

pub(crate) use comfyver_fs::child::process_alive;

/// The env of a version whose ComfyUI is the stand-in in `home`.
pub(crate) fn env(home: &ComfyHome) -> ComfyEnv {
    ComfyEnv {
        python: python(),
        core_dir: home.core_dir.clone(),
        base_dir: None,
        extra_model_paths: Some(home.extra_model_paths.clone()),
        env: Default::default(),
        logs_dir: home.logs_dir.clone(),
        data_dir: home.data_dir.clone(),
        version_id: "testver".into(),
        node_packs: Vec::new(),
        model_dirs: vec![home.models_dir.clone()],
        node_index: None,
    }
}

/// Options for tests: a start timeout that still fails a broken test quickly.
pub(crate) fn opts() -> StartOptions {
    StartOptions {
        start_timeout: Duration::from_secs(60),
        ..StartOptions::default()
    }
}

/// Starts the stand-in with `packs` linked in (and expected).
pub(crate) fn start(packs: &[&str]) -> (ComfyHome, Session) {
    let home = ComfyHome::new(packs);
    let env = ComfyEnv {
        node_packs: packs.iter().map(|p| p.to_string()).collect(),
        node_index: None,
        ..env(&home)
    };
    let comfy = Session::start(&env, &opts()).expect("ComfyUI starts");
    (home, comfy)
}

/// EmptyImage(w x h, color) -> SaveImage(prefix).
pub(crate) fn empty_image(w: u32, h: u32, color: u32, prefix: &str) -> Value {
    json!({
        "1": {"class_type": "EmptyImage", "inputs": {"width": w, "height": h, "batch_size": 1, "color": color}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}}
    })
}

/// Decodes an 8-bit RGB/RGBA PNG: (width, height, RGB bytes).
pub(crate) fn decode_png(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let mut reader = decoder.read_info().expect("PNG header");
    let mut buf = vec![0; reader.output_buffer_size().expect("buffer size")];
    let info = reader.next_frame(&mut buf).expect("PNG data");
    buf.truncate(info.buffer_size());
    let rgb = match info.color_type {
        png::ColorType::Rgb => buf,
        png::ColorType::Rgba => buf.chunks(4).flat_map(|p| p[..3].to_vec()).collect(),
        other => panic!("unexpected PNG color type {other:?}"),
    };
    (info.width, info.height, rgb)
}

/// Encodes RGB bytes as a PNG.
pub(crate) fn encode_png(w: u32, h: u32, rgb: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().expect("PNG header");
        writer.write_image_data(rgb).expect("PNG data");
    }
    out
}

/// Live (non-zombie) processes whose working directory is under `dir`:
/// after a test, none may be left in the home's ComfyUI copy.
pub(crate) fn procs_in(dir: &std::path::Path) -> Vec<u32> {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if cwd.starts_with(&dir) && process_alive(pid) {
            found.push(pid);
        }
    }
    found
}
