//! A job's inputs: the API-format workflow and its input images, from a
//! workflow file, a worker-comfyui job JSON (`{"input": {"workflow", "images"}}`)
//! or `--image name=path` arguments.

use std::path::Path;

use base64::Engine;
use serde_json::{Map, Value};

use crate::error::HandlerError;
use crate::job_models::{JobModel, loader_urls, parse_models};

/// An input image uploaded to ComfyUI before the workflow runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputImage {
    /// The name the workflow refers to (e.g. in `LoadImage.inputs.image`); a safe file name.
    pub name: String,
    /// The file's bytes.
    pub bytes: Vec<u8>,
}

/// One workflow run.
#[derive(Clone, PartialEq)]
pub struct Job {
    /// The API-format graph `{node_id: {class_type, inputs}}`.
    pub workflow: Value,
    /// Images to upload first.
    pub images: Vec<InputImage>,
    /// The Comfy.org API key for API nodes (worker-comfyui's
    /// `input.comfy_org_api_key`), sent as `extra_data.api_key_comfy_org`.
    /// When unset, `COMFY_ORG_API_KEY` is used. Never printed.
    pub comfy_org_api_key: Option<String>,
    /// Models the job brings (`input.models`, `--model`), fetched before
    /// the prompt is queued; URLs in loader inputs are added to them.
    pub models: Vec<JobModel>,
    /// The UI-format workflow the API graph was exported from (the job's
    /// `input.ui_workflow`), sent as `extra_data.extra_pnginfo.workflow`: with
    /// metadata kept, ComfyUI writes it into each output, so the result can be
    /// dragged back into its web UI.
    pub ui_workflow: Option<Value>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("workflow", &self.workflow)
            .field("images", &self.images)
            .field(
                "comfy_org_api_key",
                &self.comfy_org_api_key.as_ref().map(|_| "<redacted>"),
            )
            .field("models", &self.models)
            .field("ui_workflow", &self.ui_workflow.as_ref().map(|_| "<graph>"))
            .finish()
    }
}

impl Job {
    /// A job from an API-format workflow value (a `{"prompt": ...}` wrapper is
    /// accepted). The UI format is refused with an explanation.
    pub fn from_workflow(workflow: Value) -> Result<Job, HandlerError> {
        let workflow = match workflow {
            Value::Object(mut m)
                if m.len() == 1 && m.get("prompt").is_some_and(Value::is_object) =>
            {
                m.remove("prompt").unwrap_or_default()
            }
            other => other,
        };
        check_api_format(&workflow)?;
        Ok(Job {
            workflow,
            images: Vec::new(),
            comfy_org_api_key: None,
            models: Vec::new(),
            ui_workflow: None,
        })
    }

    /// A job from `--workflow wf.json`.
    pub fn from_workflow_file(path: &Path) -> Result<Job, HandlerError> {
        Job::from_workflow(read_json(path)?)
    }

    /// A job from a worker-comfyui request: `{"input": {"workflow": ..., "images":
    /// [{"name", "image"}]}}`, where `input` may also be a JSON string and `image`
    /// is base64 or a `data:` URL.
    pub fn from_runpod(request: &Value) -> Result<Job, HandlerError> {
        let input = request.get("input").ok_or_else(|| {
            HandlerError::BadJobInput(
                "missing `input` (expected {\"input\": {\"workflow\": ...}})".into(),
            )
        })?;
        let parsed;
        let input = match input {
            Value::String(s) => {
                parsed = serde_json::from_str::<Value>(s).map_err(|e| {
                    HandlerError::BadJobInput(format!("`input` is a string but not JSON: {e}"))
                })?;
                &parsed
            }
            other => other,
        };
        let workflow = input
            .get("workflow")
            .cloned()
            .ok_or_else(|| HandlerError::BadJobInput("Missing 'workflow' parameter".into()))?;
        let mut job = Job::from_workflow(workflow)?;
        match input.get("comfy_org_api_key") {
            None | Some(Value::Null) => {}
            Some(Value::String(key)) if !key.is_empty() => {
                job.comfy_org_api_key = Some(key.clone())
            }
            Some(Value::String(_)) => {}
            Some(_) => {
                return Err(HandlerError::BadJobInput(
                    "'comfy_org_api_key' must be a string".into(),
                ));
            }
        }
        match input.get("models") {
            None | Some(Value::Null) => {}
            Some(models) => job.models = parse_models(models)?,
        }
        match input.get("ui_workflow") {
            None | Some(Value::Null) => {}
            Some(graph @ Value::Object(_)) => job.ui_workflow = Some(graph.clone()),
            Some(_) => {
                return Err(HandlerError::BadJobInput(
                    "'ui_workflow' must be a UI-format workflow object (ComfyUI: Workflow → Export)"
                        .into(),
                ));
            }
        }
        match input.get("images") {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let (Some(name), Some(data)) = (
                        item.get("name").and_then(Value::as_str),
                        item.get("image").and_then(Value::as_str),
                    ) else {
                        return Err(HandlerError::BadJobInput(
                            "'images' must be a list of objects with 'name' and 'image' keys"
                                .into(),
                        ));
                    };
                    job.add_image(name, decode_image_data(name, data)?)?;
                }
            }
            Some(_) => {
                return Err(HandlerError::BadJobInput(
                    "'images' must be a list of objects with 'name' and 'image' keys".into(),
                ));
            }
        }
        Ok(job)
    }

    /// A job from `--input job.json` (see [`Job::from_runpod`]).
    pub fn from_input_file(path: &Path) -> Result<Job, HandlerError> {
        Job::from_runpod(&read_json(path)?)
    }

    /// Adds an input image; its name must be a safe file name.
    pub fn add_image(&mut self, name: &str, bytes: Vec<u8>) -> Result<(), HandlerError> {
        if let Some(reason) = comfyver_spec::names::unsafe_component_reason(name) {
            return Err(HandlerError::BadImageName {
                name: name.to_string(),
                reason,
            });
        }
        self.images.retain(|i| i.name != name);
        self.images.push(InputImage {
            name: name.to_string(),
            bytes,
        });
        Ok(())
    }

    /// Adds a model from `--model URL[,target_subdir]` (folder default `checkpoints`).
    pub fn add_model_arg(&mut self, arg: &str) -> Result<(), HandlerError> {
        let (url, subdir) = match arg.rsplit_once(',') {
            Some((u, s))
                if !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c)) =>
            {
                (u, s.trim())
            }
            _ => (arg, "checkpoints"),
        };
        if url.trim().is_empty() || subdir.is_empty() {
            return Err(HandlerError::BadJobInput(format!(
                "--model `{}` must be URL[,target_subdir]",
                comfyver_spec::redact(arg)
            )));
        }
        let n = self
            .models
            .iter()
            .filter(|m| m.json_path.starts_with("--model"))
            .count();
        self.models.push(JobModel {
            json_path: format!("--model[{n}]"),
            source: url.trim().to_string(),
            target_subdir: subdir.to_string(),
            name: None,
            sha256: None,
            size: None,
            replaces: None,
        });
        Ok(())
    }

    /// Every model the job needs: [`Job::models`], then the URLs in known
    /// loader inputs ([`crate::MODEL_INPUTS`]).
    pub fn model_requests(&self) -> Vec<JobModel> {
        let mut all = self.models.clone();
        all.extend(loader_urls(&self.workflow));
        all
    }

    /// Adds an image from `--image name=path`.
    pub fn add_image_arg(&mut self, arg: &str) -> Result<(), HandlerError> {
        let (name, path) = arg.split_once('=').ok_or_else(|| {
            HandlerError::BadJobInput(format!("--image `{arg}` must be NAME=PATH"))
        })?;
        let bytes = std::fs::read(path).map_err(|e| HandlerError::InputFile {
            path: path.into(),
            reason: e.to_string(),
        })?;
        self.add_image(name, bytes)
    }
}

fn read_json(path: &Path) -> Result<Value, HandlerError> {
    let text = std::fs::read(path).map_err(|e| HandlerError::InputFile {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    serde_json::from_slice(&text).map_err(|e| HandlerError::InputFile {
        path: path.to_path_buf(),
        reason: format!("not valid JSON: {e}"),
    })
}

/// Base64 (standard or URL-safe, padding optional, whitespace ignored), with
/// or without any `data:<type>[;params];base64,` prefix. Like worker-comfyui,
/// everything up to the first comma is a prefix (base64 has no commas); a
/// `data:` URL that is not base64-encoded is refused.
fn decode_image_data(name: &str, data: &str) -> Result<Vec<u8>, HandlerError> {
    let trimmed = data.trim_start();
    let payload = match trimmed.split_once(',') {
        Some((prefix, rest)) => {
            let prefix = prefix.trim().to_ascii_lowercase();
            if prefix.starts_with("data:") && !prefix.ends_with(";base64") {
                return Err(HandlerError::BadJobInput(format!(
                    "image `{name}` is a data: URL without `;base64` (`{prefix},`): send the image base64-encoded"
                )));
            }
            rest
        }
        None => trimmed,
    };
    let clean: String = payload
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .trim_end_matches('=')
        .to_string();
    let engines = [
        base64::engine::general_purpose::STANDARD_NO_PAD,
        base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    engines
        .iter()
        .find_map(|e| e.decode(&clean).ok())
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            HandlerError::BadJobInput(format!(
                "image `{name}` is not valid base64 (optionally with a data:...;base64, prefix)"
            ))
        })
}

/// Whether `v` looks like ComfyUI's UI ("save") format.
pub(crate) fn is_ui_format(v: &Value) -> bool {
    let Some(m) = v.as_object() else {
        return false;
    };
    m.get("nodes").is_some_and(Value::is_array)
        && (m.get("links").is_some_and(Value::is_array)
            || m.contains_key("last_node_id")
            || m.contains_key("state")
            || m.get("version").is_some_and(Value::is_number))
}

/// Refuses anything but an API-format graph: every top-level value is an
/// object with a string `class_type` and an object `inputs`.
pub(crate) fn check_api_format(v: &Value) -> Result<(), HandlerError> {
    if is_ui_format(v) {
        return Err(HandlerError::UiWorkflow);
    }
    let Some(m) = v.as_object() else {
        return Err(HandlerError::NotApiFormat(
            "it must be a JSON object {\"<node id>\": {\"class_type\", \"inputs\"}}".into(),
        ));
    };
    if m.is_empty() {
        return Err(HandlerError::NotApiFormat("it has no nodes".into()));
    }
    for (id, node) in m {
        let ok = node.get("class_type").is_some_and(Value::is_string)
            && node.get("inputs").is_some_and(Value::is_object);
        if !ok {
            return Err(HandlerError::NotApiFormat(format!(
                "top-level key `{id}` is not a node with a string `class_type` and an object `inputs` \
                 (export with Workflow → Export (API))"
            )));
        }
    }
    Ok(())
}

fn nodes_mut(workflow: &mut Value) -> impl Iterator<Item = &mut Map<String, Value>> {
    workflow
        .as_object_mut()
        .into_iter()
        .flat_map(|m| m.values_mut())
        .filter_map(|n| n.get_mut("inputs").and_then(Value::as_object_mut))
}

/// Rewrites every literal `filename_prefix` input to `<prefix>/<original>`
/// (without `..` components), so this job's outputs land in a folder of their
/// own. Returns how many changed.
pub(crate) fn prefix_outputs(workflow: &mut Value, prefix: &str) -> usize {
    let mut n = 0;
    for inputs in nodes_mut(workflow) {
        if let Some(Value::String(p)) = inputs.get_mut("filename_prefix") {
            // `..` would climb out of the job's folder: drop it (and `.`).
            let original: Vec<&str> = p
                .split(['/', '\\'])
                .filter(|c| !c.is_empty() && *c != "." && *c != "..")
                .collect();
            *p = format!("{prefix}/{}", original.join("/"));
            n += 1;
        }
    }
    n
}

/// Replaces every literal string input equal to `from` (or `from [input]`)
/// with `to`: the name ComfyUI gave an uploaded image.
pub(crate) fn substitute_input(workflow: &mut Value, from: &str, to: &str) {
    let annotated = format!("{from} [input]");
    for inputs in nodes_mut(workflow) {
        for value in inputs.values_mut() {
            if let Value::String(s) = value
                && (s == from || *s == annotated)
            {
                *s = to.to_string();
            }
        }
    }
}

/// The class of node `id`.
pub(crate) fn class_of(workflow: &Value, id: &str) -> String {
    workflow
        .get(id)
        .and_then(|n| n.get("class_type"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ui_format_is_refused_and_api_format_accepted() {
        let ui = json!({"last_node_id": 2, "nodes": [{"id": 1}], "links": [], "version": 0.4});
        assert!(matches!(
            Job::from_workflow(ui),
            Err(HandlerError::UiWorkflow)
        ));
        let api = json!({"1": {"class_type": "EmptyImage", "inputs": {}}});
        assert!(Job::from_workflow(json!({"prompt": api.clone()})).is_ok());
        assert!(matches!(
            Job::from_workflow(json!({"1": {"class_type": "X"}})),
            Err(HandlerError::NotApiFormat(_))
        ));
    }

    #[test]
    fn runpod_input_with_string_input_and_data_url() {
        let inner = json!({"workflow": {"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}}},
                           "images": [{"name": "a.png", "image": "data:image/png;base64,aGVsbG8="}]});
        let job = Job::from_runpod(&json!({"input": inner.to_string()})).unwrap();
        assert_eq!(job.images[0].bytes, b"hello");
        let bad = json!({"input": {"workflow": {"1": {"class_type": "A", "inputs": {}}},
                                   "images": [{"name": "../x.png", "image": "aGVsbG8="}]}});
        assert!(matches!(
            Job::from_runpod(&bad),
            Err(HandlerError::BadImageName { .. })
        ));
        assert!(matches!(
            Job::from_runpod(&json!({"input": {}})),
            Err(HandlerError::BadJobInput(_))
        ));
    }

    #[test]
    fn any_base64_data_prefix_is_accepted() {
        for data in [
            "aGVsbG8=",
            "aGVsbG8",
            "data:image/png;base64,aGVsbG8=",
            "data:image/webp;base64,aGVs\nbG8=",
            "DATA:IMAGE/JPEG;BASE64,aGVsbG8=",
            "data:application/octet-stream;name=a.png;base64,aGVsbG8=",
            "data:;base64,aGVsbG8=",
        ] {
            assert_eq!(
                decode_image_data("a.png", data).unwrap(),
                b"hello",
                "{data}"
            );
        }
        assert!(matches!(
            decode_image_data("a.png", "data:image/png,%89PNG"),
            Err(HandlerError::BadJobInput(m)) if m.contains(";base64")
        ));
        assert!(decode_image_data("a.png", "data:image/png;base64,").is_err());
    }

    #[test]
    fn comfy_org_api_key_is_read_and_never_printed() {
        let wf = json!({"1": {"class_type": "A", "inputs": {}}});
        let job = Job::from_runpod(
            &json!({"input": {"workflow": wf, "comfy_org_api_key": "sk-secret-1"}}),
        )
        .unwrap();
        assert_eq!(job.comfy_org_api_key.as_deref(), Some("sk-secret-1"));
        assert!(!format!("{job:?}").contains("sk-secret-1"));
        assert!(matches!(
            Job::from_runpod(&json!({"input": {"workflow": wf, "comfy_org_api_key": 3}})),
            Err(HandlerError::BadJobInput(_))
        ));
    }

    #[test]
    fn ui_workflow_is_taken_from_the_job_and_must_be_an_object() {
        let wf = json!({"1": {"class_type": "EmptyImage", "inputs": {}}});
        let ui = json!({"nodes": [], "links": []});
        let job = Job::from_runpod(&json!({"input": {"workflow": wf, "ui_workflow": ui}})).unwrap();
        assert_eq!(job.ui_workflow, Some(ui));
        assert!(
            Job::from_workflow(wf.clone())
                .unwrap()
                .ui_workflow
                .is_none()
        );
        let err = Job::from_runpod(&json!({"input": {"workflow": wf, "ui_workflow": "x"}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'ui_workflow' must be"), "{err}");
    }

    #[test]
    fn prefixes_and_inputs_are_rewritten() {
        let mut wf = json!({"1": {"class_type": "LoadImage", "inputs": {"image": "a.png"}},
                            "2": {"class_type": "SaveImage", "inputs": {"filename_prefix": "x/../../y", "images": ["1", 0]}}});
        assert_eq!(prefix_outputs(&mut wf, "comfyver/j"), 1);
        substitute_input(&mut wf, "a.png", "a (1).png");
        assert_eq!(wf["2"]["inputs"]["filename_prefix"], "comfyver/j/x/y");
        assert_eq!(wf["1"]["inputs"]["image"], "a (1).png");
        assert_eq!(wf["2"]["inputs"]["images"], json!(["1", 0]));
    }
}
