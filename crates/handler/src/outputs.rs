//! The outputs `/history` reports, fetched through `/view`: every key whose
//! value is a list of file dicts (`images`, `gifs`, `audio`, `latents`, ...)
//! and `text` lists.

use serde_json::Value;

use crate::http::ComfyHttp;

/// What an output holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputData {
    /// The file's bytes (base64 sink).
    Bytes(Vec<u8>),
    /// Where the file was written (`dir:` sink).
    Path(std::path::PathBuf),
    /// A text output (`"text": ["..."]`).
    Text(String),
    /// Where the file was uploaded (`gcs`/`s3` sinks).
    Uploaded {
        /// `gcs_url` or `s3_url`.
        url_type: &'static str,
        /// A signed (or public) URL.
        url: String,
        /// `gs://bucket/name` or `s3://bucket/key`.
        uri: String,
    },
}

/// One output of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputItem {
    /// The node that produced it.
    pub node_id: String,
    /// The `/history` key it came from (`images`, `gifs`, `audio`, `text`, ...).
    pub key: String,
    /// `image`, `video`, `audio`, `latent`, `3d`, `text`, or the key itself.
    pub kind: String,
    /// The file name ComfyUI gave it (empty for text).
    pub filename: String,
    /// ComfyUI's subfolder (under its output directory).
    pub subfolder: String,
    /// ComfyUI's type: `output` or `temp` (`text` for text).
    pub comfy_type: String,
    /// The content.
    pub data: OutputData,
}

impl OutputItem {
    /// The bytes of a file output still held in memory.
    pub fn bytes(&self) -> Option<&[u8]> {
        match &self.data {
            OutputData::Bytes(b) => Some(b),
            _ => None,
        }
    }
}

fn kind_of(key: &str, filename: &str) -> String {
    let ext = filename
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match key {
        "images" if matches!(ext.as_str(), "mp4" | "webm" | "mov" | "mkv") => "video".into(),
        "images" => "image".into(),
        "gifs" | "videos" | "video" => "video".into(),
        "audio" => "audio".into(),
        "latents" => "latent".into(),
        other => other.into(),
    }
}

/// Node ids sorted numerically when they are numbers (`"2" < "10"`).
fn sorted_nodes(outputs: &serde_json::Map<String, Value>) -> Vec<(&String, &Value)> {
    let mut v: Vec<_> = outputs.iter().collect();
    v.sort_by(|a, b| {
        let key = |s: &str| (s.parse::<u64>().unwrap_or(u64::MAX), s.to_string());
        key(a.0).cmp(&key(b.0))
    });
    v
}

/// Fetches every output listed in a `/history` entry's `outputs`; `temp`
/// files only when `include_temp`. Fetch failures become entries of the
/// returned error list (the job still returns what it could get).
pub(crate) fn fetch_outputs(
    http: &ComfyHttp,
    outputs: &Value,
    include_temp: bool,
) -> (Vec<OutputItem>, Vec<String>) {
    let mut items = Vec::new();
    let mut errors = Vec::new();
    let Some(outputs) = outputs.as_object() else {
        return (items, errors);
    };
    for (node_id, ui) in sorted_nodes(outputs) {
        let Some(ui) = ui.as_object() else { continue };
        for (key, list) in ui {
            let Some(list) = list.as_array() else {
                continue;
            };
            for entry in list {
                if key == "text" {
                    if let Some(t) = entry.as_str() {
                        items.push(OutputItem {
                            node_id: node_id.clone(),
                            key: key.clone(),
                            kind: "text".into(),
                            filename: String::new(),
                            subfolder: String::new(),
                            comfy_type: "text".into(),
                            data: OutputData::Text(t.to_string()),
                        });
                    }
                    continue;
                }
                let Some(filename) = entry.get("filename").and_then(Value::as_str) else {
                    continue;
                };
                let subfolder = entry.get("subfolder").and_then(Value::as_str).unwrap_or("");
                let comfy_type = entry
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("output");
                if comfy_type == "temp" && !include_temp {
                    continue;
                }
                let query = [
                    ("filename", filename),
                    ("subfolder", subfolder),
                    ("type", comfy_type),
                ];
                match http.get("/view", &query) {
                    Ok(a) if a.status == 200 => items.push(OutputItem {
                        node_id: node_id.clone(),
                        key: key.clone(),
                        kind: kind_of(key, filename),
                        filename: filename.to_string(),
                        subfolder: subfolder.to_string(),
                        comfy_type: comfy_type.to_string(),
                        data: OutputData::Bytes(a.body),
                    }),
                    Ok(a) => errors.push(format!(
                        "could not fetch {subfolder}/{filename} of node {node_id}: HTTP {} {}",
                        a.status,
                        a.text()
                    )),
                    Err(e) => errors.push(format!(
                        "could not fetch {subfolder}/{filename} of node {node_id}: {e}"
                    )),
                }
            }
        }
    }
    (items, errors)
}

#[cfg(test)]
mod tests {
    use super::kind_of;

    #[test]
    fn kinds_follow_keys_and_extensions() {
        assert_eq!(kind_of("images", "a.png"), "image");
        assert_eq!(kind_of("images", "a.webm"), "video");
        assert_eq!(kind_of("gifs", "a.mp4"), "video");
        assert_eq!(kind_of("audio", "a.wav"), "audio");
        assert_eq!(kind_of("latents", "a.latent"), "latent");
        assert_eq!(kind_of("3d", "a.glb"), "3d");
    }
}
