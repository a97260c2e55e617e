//! Where a job's outputs go, and the job's result JSON.
//!
//! - `base64` (default): the bytes are inlined in the JSON, in worker-comfyui's
//!   shape `{"images": [{"filename", "type": "base64", "data"}], "errors"}`.
//! - `dir:PATH`: the files are written under PATH (names sanitised, nothing can
//!   escape PATH, nothing existing is overwritten) and the JSON lists their paths.
//! - `gcs` / `s3`: the files are uploaded to a bucket ([`crate::CloudSink`]) and
//!   the JSON carries `type: "gcs_url"`/`"s3_url"`, the URL (also as `data`,
//!   where worker-comfyui clients look) and the `gs://`/`s3://` URI.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine;
use serde_json::{Value, json};

use crate::error::{HandlerError, NodeFailure};
use crate::outputs::{OutputData, OutputItem};

/// Where outputs go.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum OutputSink {
    /// Inline, base64-encoded, in the result JSON.
    #[default]
    Base64,
    /// Written as files under this directory.
    Dir(PathBuf),
    /// Uploaded to Google Cloud Storage (`GCS_*` variables).
    Gcs,
    /// Uploaded to an S3-compatible bucket (`BUCKET_*` variables).
    S3,
}

impl OutputSink {
    /// The default sink: `gcs` when `GCS_BUCKET` is set (as the original plan
    /// switches it), else `base64`.
    pub fn from_env_default() -> OutputSink {
        match std::env::var(comfyver_cloud::GCS_BUCKET_ENV) {
            Ok(b) if !b.trim().is_empty() => OutputSink::Gcs,
            _ => OutputSink::Base64,
        }
    }
}

impl FromStr for OutputSink {
    type Err = String;

    /// `base64`, `dir:PATH`, `gcs` or `s3`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "base64" => Ok(OutputSink::Base64),
            "gcs" => Ok(OutputSink::Gcs),
            "s3" => Ok(OutputSink::S3),
            _ => match s.strip_prefix("dir:") {
                Some(p) if !p.is_empty() => Ok(OutputSink::Dir(PathBuf::from(p))),
                _ => Err(format!(
                    "unknown output sink `{s}`: use `base64`, `dir:PATH`, `gcs` or `s3`"
                )),
            },
        }
    }
}

/// How long the parts of a job took, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JobTimings {
    /// Uploading input images.
    pub upload_ms: u64,
    /// From `POST /prompt` to ComfyUI starting the prompt.
    pub queue_ms: u64,
    /// ComfyUI's own execution time (execution_start → execution_success timestamps).
    pub exec_ms: u64,
    /// Fetching the history and the outputs, and writing them to the sink.
    pub fetch_ms: u64,
    /// The whole job, as seen by the caller of `run_job`.
    pub total_ms: u64,
}

/// A finished job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobOutput {
    /// The prompt id ComfyUI ran it under. It is the id comfyver asked for,
    /// which also names the job's output folder (`comfyver/<id>/`), unless the
    /// ComfyUI is older than v0.3.45 and chose its own.
    pub prompt_id: String,
    /// The version that ran it.
    pub version_id: String,
    /// Every output, in node order.
    pub items: Vec<OutputItem>,
    /// Non-fatal problems (an output that could not be fetched, skipped outputs,
    /// a node that raised after others had produced outputs, ...).
    pub errors: Vec<String>,
    /// The node that raised, when the job still produced outputs.
    pub execution_error: Option<NodeFailure>,
    /// Timings.
    pub timings: JobTimings,
}

impl JobOutput {
    /// The result JSON: worker-comfyui's `{"images": [...], "errors": [...]}`
    /// extended with `kind`, `node_id`, an `outputs` array for everything that
    /// is not under `images`, `status`, `timings`, `version_id` and `prompt_id`.
    pub fn to_json(&self) -> Value {
        let mut images = Vec::new();
        let mut outputs = Vec::new();
        for item in &self.items {
            let mut v =
                json!({"filename": item.filename, "kind": item.kind, "node_id": item.node_id});
            match &item.data {
                OutputData::Bytes(b) => {
                    v["type"] = json!("base64");
                    v["data"] = json!(base64::engine::general_purpose::STANDARD.encode(b));
                }
                OutputData::Path(p) => {
                    v["type"] = json!("path");
                    v["path"] = json!(p.to_string_lossy());
                }
                OutputData::Text(t) => {
                    v = json!({"kind": "text", "node_id": item.node_id, "type": "text", "text": t});
                }
                OutputData::Uploaded { url_type, url, uri } => {
                    v["type"] = json!(url_type);
                    v["data"] = json!(url);
                    v["url"] = json!(url);
                    v["uri"] = json!(uri);
                }
            }
            if item.key == "images" {
                images.push(v);
            } else {
                outputs.push(v);
            }
        }
        let status = if images.is_empty() {
            "success_no_images"
        } else {
            "success"
        };
        let t = &self.timings;
        let mut out = json!({
            "status": status,
            "images": images,
            "outputs": outputs,
            "timings": {"upload_ms": t.upload_ms, "queue_ms": t.queue_ms, "exec_ms": t.exec_ms,
                        "fetch_ms": t.fetch_ms, "total_ms": t.total_ms},
            "version_id": self.version_id,
            "prompt_id": self.prompt_id,
        });
        if !self.errors.is_empty() {
            out["errors"] = json!(self.errors);
        }
        if let Some(failure) = &self.execution_error {
            out["execution_error"] = failure.to_json();
        }
        out
    }
}

/// Makes one path component safe: characters outside letters, digits and
/// `._-+@ ()[],=` become `_`, leading dots and dashes are dropped.
pub(crate) fn sanitize_component(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-+@ ()[],=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    s = s.trim_start_matches(['.', '-', ' ']).trim_end().to_string();
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    if s.is_empty() || !comfyver_spec::names::is_safe_component(&s) {
        "output".to_string()
    } else {
        s
    }
}

/// Writes the file outputs under `dir`, replacing their bytes by their paths.
/// `job_prefix` (`comfyver/<id>`) is removed from subfolders first.
pub(crate) fn write_to_dir(
    dir: &Path,
    job_prefix: &str,
    items: &mut [OutputItem],
) -> Result<(), HandlerError> {
    for item in items.iter_mut() {
        let OutputData::Bytes(bytes) = &item.data else {
            continue;
        };
        let sub = item
            .subfolder
            .strip_prefix(job_prefix)
            .unwrap_or(&item.subfolder);
        let mut target = dir.to_path_buf();
        for part in sub
            .split(['/', '\\'])
            .filter(|p| !p.is_empty() && *p != ".")
        {
            target.push(sanitize_component(part));
        }
        std::fs::create_dir_all(&target)
            .map_err(|e| HandlerError::io("could not create output directory", &target, e))?;
        let path = write_new_file(&target, &sanitize_component(&item.filename), bytes)?;
        item.data = OutputData::Path(path);
    }
    Ok(())
}

/// Writes `bytes` to a new file `dir/name`, or `dir/stem-N.ext` when that name
/// is taken: the bytes go to a temporary sibling first, which is then renamed
/// in without replacing anything (`renameat2(RENAME_NOREPLACE)`, or a hard
/// link where that is missing, or an exclusive create on a filesystem with
/// neither). So an existing file is never overwritten, not
/// even by another job writing the same name at the same moment, and a file
/// under its final name is always complete.
fn write_new_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, HandlerError> {
    let failed =
        |path: &Path, e: std::io::Error| HandlerError::io("could not write output", path, e);
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-comfyver-out-")
        .tempfile_in(dir)
        .map_err(|e| failed(dir, e))?;
    tmp.write_all(bytes).map_err(|e| failed(tmp.path(), e))?;
    tmp.as_file()
        .sync_all()
        .map_err(|e| failed(tmp.path(), e))?;
    let (stem, ext) = match name.rsplit_once('.') {
        Some((s, e)) if !s.is_empty() => (s, format!(".{e}")),
        _ => (name, String::new()),
    };
    for n in 0..MAX_NAME_ATTEMPTS {
        let path = if n == 0 {
            dir.join(name)
        } else {
            dir.join(format!("{stem}-{n}{ext}"))
        };
        match tmp.persist_noclobber(&path) {
            Ok(_) => return Ok(path),
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => tmp = e.file,
            // A filesystem with neither RENAME_NOREPLACE nor hard links (some
            // FUSE mounts): still no clobbering, through an exclusive create.
            Err(e) => {
                tmp = e.file;
                match std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&path)
                {
                    Ok(mut f) => {
                        let written = f.write_all(bytes).and_then(|()| f.sync_all());
                        if let Err(e) = written {
                            let _ = std::fs::remove_file(&path);
                            return Err(failed(&path, e));
                        }
                        return Ok(path);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(_) => return Err(failed(&path, e.error)),
                }
            }
        }
    }
    Err(failed(
        &dir.join(name),
        std::io::Error::other(format!(
            "{MAX_NAME_ATTEMPTS} names of this form are taken; write to an emptier directory"
        )),
    ))
}

/// How many numbered names are tried before giving up.
const MAX_NAME_ATTEMPTS: usize = 10_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_are_sanitised() {
        assert_eq!(sanitize_component("../../etc"), "_.._etc");
        assert_eq!(sanitize_component(".."), "output");
        assert_eq!(sanitize_component("a/b\\c"), "a_b_c");
        assert_eq!(sanitize_component("ok_00001_.png"), "ok_00001_.png");
        assert_eq!(sanitize_component("-rf"), "rf");
    }

    #[test]
    fn concurrent_writers_never_overwrite_each_other() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("out.png"), b"already here").unwrap();
        let threads = 8;
        let per_thread = 25;
        let written: Vec<(PathBuf, Vec<u8>)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let dir = dir.path();
                    s.spawn(move || {
                        (0..per_thread)
                            .map(|i| {
                                let bytes = format!("thread {t} file {i}").into_bytes();
                                (write_new_file(dir, "out.png", &bytes).unwrap(), bytes)
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let mut paths: Vec<&PathBuf> = written.iter().map(|(p, _)| p).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(
            paths.len(),
            threads * per_thread,
            "two writers got one name"
        );
        for (path, bytes) in &written {
            assert_eq!(
                &std::fs::read(path).unwrap(),
                bytes,
                "{path:?} was overwritten"
            );
        }
        assert_eq!(
            std::fs::read(dir.path().join("out.png")).unwrap(),
            b"already here"
        );
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), threads * per_thread + 1, "no temp file left");
        assert!(names.iter().all(|n| !n.starts_with(".tmp")), "{names:?}");
    }

    #[test]
    fn uploaded_outputs_carry_the_url_type_url_and_uri() {
        let out = JobOutput {
            prompt_id: "p".into(),
            version_id: "v".into(),
            execution_error: None,
            items: vec![OutputItem {
                node_id: "9".into(),
                key: "images".into(),
                kind: "image".into(),
                filename: "a_00001_.png".into(),
                subfolder: String::new(),
                comfy_type: "output".into(),
                data: OutputData::Uploaded {
                    url_type: "gcs_url",
                    url: "http://h/b/o?X-Goog-Signature=ab".into(),
                    uri: "gs://b/o".into(),
                },
            }],
            errors: Vec::new(),
            timings: JobTimings::default(),
        };
        let v = out.to_json();
        let img = &v["images"][0];
        assert_eq!(img["type"], "gcs_url");
        assert_eq!(img["url"], "http://h/b/o?X-Goog-Signature=ab");
        assert_eq!(img["data"], img["url"]);
        assert_eq!(img["uri"], "gs://b/o");
        assert_eq!(img["filename"], "a_00001_.png");
        assert_eq!(v["status"], "success");
    }

    #[test]
    fn sinks_parse() {
        assert_eq!("base64".parse::<OutputSink>(), Ok(OutputSink::Base64));
        assert_eq!(
            "dir:/x".parse::<OutputSink>(),
            Ok(OutputSink::Dir("/x".into()))
        );
        assert_eq!("gcs".parse::<OutputSink>(), Ok(OutputSink::Gcs));
        assert_eq!("s3".parse::<OutputSink>(), Ok(OutputSink::S3));
        for bad in ["gcs:x", "dir:", "S3"] {
            assert_eq!(
                bad.parse::<OutputSink>(),
                Err(format!(
                    "unknown output sink `{bad}`: use `base64`, `dir:PATH`, `gcs` or `s3`"
                ))
            );
        }
    }
}
