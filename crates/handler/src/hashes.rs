//! Output hashes: a job's outputs reduced to checksums, recorded once
//! (`comfyver test --record FILE`) and compared later (`--expect FILE`), so
//! a changed environment shows up as a changed output.
//!
//! Every output gets the SHA-256 of its bytes (of its UTF-8 text for text
//! outputs). A PNG also gets a *pixel hash*: the SHA-256 of its dimensions,
//! color type, bit depth and decoded pixels (palettes expanded), so metadata
//! chunks (ComfyUI's embedded prompt, timestamps) do not change it. Images
//! are compared by pixel hash, everything else by SHA-256.
//!
//! The file is small JSON:
//! `{"format": "comfyver-output-hashes", "format_version": 1, "version_id",
//! "outputs": [{"id": "<node>/<key>/<n>", "kind", "filename", "sha256", "pixels"?}]}`.
//! Outputs are named by node id, `/history` key and position, never by file
//! name, which carries a per-job prefix.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::HandlerError;
use crate::outputs::OutputData;
use crate::sink::JobOutput;

/// The `format` of an output hashes file.
const FORMAT: &str = "comfyver-output-hashes";
/// The `format_version` this build reads and writes.
const FORMAT_VERSION: u64 = 1;

/// The hashes of one job's outputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputHashes {
    /// Always `comfyver-output-hashes`.
    pub format: String,
    /// The format's version: files of another version are refused.
    pub format_version: u64,
    /// The version that produced the outputs (for the reader; not compared).
    pub version_id: String,
    /// One entry per output, in the job's output order.
    pub outputs: Vec<OutputHash>,
}

/// The hashes of one output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputHash {
    /// `<node_id>/<key>/<n>`: the n-th output under `key` of that node.
    pub id: String,
    /// `image`, `text`, `video`, ...
    pub kind: String,
    /// The file name ComfyUI gave it (for the reader; not compared).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub filename: String,
    /// SHA-256 of the bytes (of the text for text outputs), lowercase hex.
    pub sha256: String,
    /// The pixel hash of a PNG (see the module docs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixels: Option<String>,
}

/// One difference between expected and actual hashes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HashMismatch {
    /// The output's id (`<node_id>/<key>/<n>`).
    pub id: String,
    /// `changed`, `missing` (expected, not produced) or `unexpected`.
    pub change: &'static str,
    /// What was compared: `pixels` or `sha256`.
    pub compared: &'static str,
    /// The expected hash.
    pub expected: Option<String>,
    /// The produced hash.
    pub actual: Option<String>,
}

impl OutputHashes {
    /// Hashes every output of `output` (file outputs written to a `dir:` sink
    /// are read back).
    pub fn of(output: &JobOutput) -> Result<OutputHashes, HandlerError> {
        let mut seen: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut outputs = Vec::new();
        for item in &output.items {
            let n = seen
                .entry((item.node_id.clone(), item.key.clone()))
                .or_default();
            let id = format!("{}/{}/{n}", item.node_id, item.key);
            *n += 1;
            let read;
            let bytes: &[u8] = match &item.data {
                OutputData::Bytes(b) => b,
                OutputData::Text(t) => t.as_bytes(),
                OutputData::Path(p) => {
                    read = std::fs::read(p)
                        .map_err(|e| HandlerError::io("could not read output", p, e))?;
                    &read
                }
                OutputData::Uploaded { .. } => {
                    return Err(HandlerError::HashOfUploaded { output: id });
                }
            };
            let is_file = !matches!(item.data, OutputData::Text(_));
            outputs.push(OutputHash {
                id,
                kind: item.kind.clone(),
                filename: item.filename.clone(),
                sha256: sha256_hex(bytes),
                pixels: if is_file { pixel_hash(bytes) } else { None },
            });
        }
        Ok(OutputHashes {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            version_id: output.version_id.clone(),
            outputs,
        })
    }

    /// The file's bytes: pretty JSON with a trailing newline.
    pub fn to_json(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("hashes serialize");
        bytes.push(b'\n');
        bytes
    }

    /// Parses a hashes file read from `path`.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<OutputHashes, HandlerError> {
        let bad = |message: String| HandlerError::BadHashFile {
            path: path.to_path_buf(),
            message,
        };
        let hashes: OutputHashes = serde_json::from_slice(bytes).map_err(|e| bad(e.to_string()))?;
        if hashes.format != FORMAT {
            return Err(bad(format!(
                "`format` is {:?}, expected {FORMAT:?}",
                hashes.format
            )));
        }
        if hashes.format_version != FORMAT_VERSION {
            return Err(bad(format!(
                "`format_version` is {}, this comfyver reads {FORMAT_VERSION}",
                hashes.format_version
            )));
        }
        Ok(hashes)
    }

    /// What differs from `self` (expected) in `actual`, by output id; empty
    /// when every output is the same. Images are compared by pixel hash when
    /// both sides have one, everything else by SHA-256.
    pub fn compare(&self, actual: &OutputHashes) -> Vec<HashMismatch> {
        let mut out = Vec::new();
        for e in &self.outputs {
            match actual.outputs.iter().find(|a| a.id == e.id) {
                None => out.push(HashMismatch {
                    id: e.id.clone(),
                    change: "missing",
                    compared: "sha256",
                    expected: Some(e.sha256.clone()),
                    actual: None,
                }),
                Some(a) => {
                    let (compared, want, got) = match (&e.pixels, &a.pixels) {
                        (Some(w), Some(g)) => ("pixels", w, g),
                        _ => ("sha256", &e.sha256, &a.sha256),
                    };
                    if want != got {
                        out.push(HashMismatch {
                            id: e.id.clone(),
                            change: "changed",
                            compared,
                            expected: Some(want.clone()),
                            actual: Some(got.clone()),
                        });
                    }
                }
            }
        }
        for a in &actual.outputs {
            if !self.outputs.iter().any(|e| e.id == a.id) {
                out.push(HashMismatch {
                    id: a.id.clone(),
                    change: "unexpected",
                    compared: "sha256",
                    expected: None,
                    actual: Some(a.sha256.clone()),
                });
            }
        }
        out
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The pixel hash of a PNG: SHA-256 over a format tag, width, height, color
/// type, bit depth and the decoded pixels of every frame (palettes and low
/// bit depths expanded), as lowercase hex. `None` when `bytes` is not a PNG
/// that decodes.
pub(crate) fn pixel_hash(bytes: &[u8]) -> Option<String> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().ok()?;
    let frames = reader
        .info()
        .animation_control()
        .map(|a| a.num_frames.max(1))
        .unwrap_or(1);
    let mut h = Sha256::new();
    h.update(b"comfyver-pixels-v1\0");
    let mut buf = vec![0; reader.output_buffer_size()?];
    for _ in 0..frames {
        let info = reader.next_frame(&mut buf).ok()?;
        h.update(info.width.to_le_bytes());
        h.update(info.height.to_le_bytes());
        h.update([info.color_type as u8, info.bit_depth as u8]);
        h.update(&buf[..info.buffer_size()]);
    }
    Some(hex::encode(h.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outputs::OutputItem;

    /// A PNG of `pixels` (RGB, 8-bit), with a `tEXt` chunk per entry of `text`.
    fn png_with(width: u32, height: u32, pixels: &[u8], text: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut enc = png::Encoder::new(&mut out, width, height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            for (k, v) in text {
                enc.add_text_chunk(k.to_string(), v.to_string()).unwrap();
            }
            let mut w = enc.write_header().unwrap();
            w.write_image_data(pixels).unwrap();
        }
        out
    }

    fn pixels(seed: u8) -> Vec<u8> {
        (0..4 * 3 * 3)
            .map(|i| (i as u8).wrapping_mul(7) ^ seed)
            .collect()
    }

    #[test]
    fn same_pixels_with_other_metadata_give_the_same_pixel_hash() {
        let a = png_with(4, 3, &pixels(1), &[("prompt", "{\"seed\": 1}")]);
        let b = png_with(
            4,
            3,
            &pixels(1),
            &[("prompt", "{\"seed\": 2}"), ("workflow", "x")],
        );
        let plain = png_with(4, 3, &pixels(1), &[]);
        assert_ne!(a, b, "the files differ");
        assert_ne!(sha256_hex(&a), sha256_hex(&b));
        let ha = pixel_hash(&a).unwrap();
        assert_eq!(Some(&ha), pixel_hash(&b).as_ref());
        assert_eq!(Some(&ha), pixel_hash(&plain).as_ref());
    }

    #[test]
    fn other_pixels_or_another_shape_give_another_pixel_hash() {
        let base = pixel_hash(&png_with(4, 3, &pixels(1), &[])).unwrap();
        let mut one_off = pixels(1);
        one_off[5] ^= 1;
        assert_ne!(base, pixel_hash(&png_with(4, 3, &one_off, &[])).unwrap());
        // The same bytes as 3×4 instead of 4×3.
        assert_ne!(base, pixel_hash(&png_with(3, 4, &pixels(1), &[])).unwrap());
    }

    #[test]
    fn bytes_that_are_not_a_png_have_no_pixel_hash() {
        assert_eq!(pixel_hash(b"not a png"), None);
        assert_eq!(pixel_hash(&[]), None);
    }

    fn job(items: Vec<(&str, &str, OutputData)>) -> JobOutput {
        JobOutput {
            prompt_id: "p".into(),
            version_id: "v".into(),
            execution_error: None,
            items: items
                .into_iter()
                .map(|(node, key, data)| OutputItem {
                    node_id: node.into(),
                    key: key.into(),
                    kind: if key == "text" { "text" } else { "image" }.into(),
                    filename: "f.png".into(),
                    subfolder: String::new(),
                    comfy_type: "output".into(),
                    data,
                })
                .collect(),
            errors: Vec::new(),
            timings: Default::default(),
        }
    }

    #[test]
    fn compare_names_changed_missing_and_unexpected_outputs() {
        let img = |seed, text: &str| {
            OutputData::Bytes(png_with(4, 3, &pixels(seed), &[("prompt", text)]))
        };
        let expected = OutputHashes::of(&job(vec![
            ("2", "images", img(1, "a")),
            ("2", "images", img(2, "a")),
            ("4", "text", OutputData::Text("hello".into())),
        ]))
        .unwrap();
        let ids: Vec<&str> = expected.outputs.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["2/images/0", "2/images/1", "4/text/0"]);
        // Other metadata only: equal.
        let same = OutputHashes::of(&job(vec![
            ("2", "images", img(1, "b")),
            ("2", "images", img(2, "b")),
            ("4", "text", OutputData::Text("hello".into())),
        ]))
        .unwrap();
        assert_eq!(expected.compare(&same), vec![]);
        // One image changed, the text gone, a new output.
        let other = OutputHashes::of(&job(vec![
            ("2", "images", img(1, "a")),
            ("2", "images", img(3, "a")),
            ("5", "text", OutputData::Text("new".into())),
        ]))
        .unwrap();
        let mismatches = expected.compare(&other);
        let got: Vec<(&str, &str, &str)> = mismatches
            .iter()
            .map(|m| (m.id.as_str(), m.change, m.compared))
            .collect();
        assert_eq!(
            got,
            [
                ("2/images/1", "changed", "pixels"),
                ("4/text/0", "missing", "sha256"),
                ("5/text/0", "unexpected", "sha256"),
            ]
        );
    }

    #[test]
    fn the_file_round_trips_and_a_foreign_file_is_refused() {
        let h = OutputHashes::of(&job(vec![("1", "text", OutputData::Text("x".into()))])).unwrap();
        let bytes = h.to_json();
        assert_eq!(
            OutputHashes::from_json(&bytes, Path::new("h.json")).unwrap(),
            h
        );
        let err = OutputHashes::from_json(br#"{"images": []}"#, Path::new("h.json")).unwrap_err();
        assert!(err.to_string().contains("h.json"), "{err}");
        let mut v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["format_version"] = 7.into();
        let err =
            OutputHashes::from_json(v.to_string().as_bytes(), Path::new("h.json")).unwrap_err();
        assert!(err.to_string().contains("format_version"), "{err}");
    }
}
