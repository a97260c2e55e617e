//! The models a job brings: `input.models` entries and URLs in known loader
//! inputs ([`MODEL_INPUTS`]). The handler only finds and rewrites them; a
//! [`JobModelProvider`] (the CLI's, backed by the model store) fetches them
//! before the prompt is queued.

use serde_json::Value;

use crate::error::HandlerError;

/// Loader inputs whose value may be a URL: `(input name, node class or
/// `None` for any class, model folder)`. A URL there is fetched into the
/// folder and replaced by the stored file's name. Extend it here.
pub const MODEL_INPUTS: &[(&str, Option<&str>, &str)] = &[
    ("ckpt_name", None, "checkpoints"),
    ("lora_name", None, "loras"),
    ("vae_name", None, "vae"),
    ("unet_name", None, "diffusion_models"),
    ("clip_name", None, "text_encoders"),
    ("control_net_name", None, "controlnet"),
    ("model_name", Some("UpscaleModelLoader"), "upscale_models"),
];

/// One model a job needs, with where it was asked for.
#[derive(Clone, PartialEq, Eq)]
pub struct JobModel {
    /// Where the job asked for it (`input.models[0]`,
    /// `input.workflow.4.inputs.lora_name`, `--model[1]`).
    pub json_path: String,
    /// The http(s) URL (may carry credentials; see [`JobModel::redacted_url`]).
    pub source: String,
    /// The ComfyUI model folder.
    pub target_subdir: String,
    /// The file name; default: the URL's last path segment.
    pub name: Option<String>,
    /// Expected SHA-256.
    pub sha256: Option<String>,
    /// Expected size in bytes.
    pub size: Option<u64>,
    /// The workflow input `(node id, input name)` to set to the stored name.
    pub replaces: Option<(String, String)>,
}

impl std::fmt::Debug for JobModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobModel")
            .field("json_path", &self.json_path)
            .field("source", &self.redacted_url())
            .field("target_subdir", &self.target_subdir)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl JobModel {
    /// The URL without credentials.
    pub fn redacted_url(&self) -> String {
        comfyver_spec::redact(&self.source)
    }
}

/// Fetches a job's models and keeps them usable until the returned guard is dropped.
pub trait JobModelProvider: Send + Sync + std::fmt::Debug {
    /// Brings `models` where the running ComfyUI sees them; per model, the
    /// file's name inside its folder. `Err((index, reason))` names the model
    /// that failed.
    fn provide(&self, models: &[JobModel]) -> Result<ProvidedModels, ModelFailure>;
}

/// What a [`JobModelProvider`] gives back.
pub struct ProvidedModels {
    /// Per model, the file's name inside its folder.
    pub names: Vec<String>,
    /// Held until the job ends (e.g. "in use" locks).
    pub guard: Box<dyn Send>,
}

/// Why one model could not be provided.
#[derive(Debug)]
pub struct ModelFailure {
    /// Its position in the slice given to [`JobModelProvider::provide`].
    pub index: usize,
    /// Why.
    pub reason: Box<dyn std::error::Error + Send + Sync>,
}

/// Parses `input.models`: a list of `{source, target_subdir, name?, sha256?, size?}`.
pub(crate) fn parse_models(value: &Value) -> Result<Vec<JobModel>, HandlerError> {
    let bad =
        |i: usize, what: &str| HandlerError::BadJobInput(format!("`input.models[{i}]`: {what}"));
    let Some(items) = value.as_array() else {
        return Err(HandlerError::BadJobInput(
            "`input.models` must be a list of {\"source\", \"target_subdir\", \"name\", \"sha256\", \"size\"}".into(),
        ));
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let text = |key: &str| -> Result<Option<String>, HandlerError> {
            match item.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(bad(i, &format!("`{key}` must be a string"))),
            }
        };
        let source = text("source")?.ok_or_else(|| bad(i, "`source` (a URL) is missing"))?;
        let target_subdir = text("target_subdir")?
            .ok_or_else(|| bad(i, "`target_subdir` (e.g. `loras`) is missing"))?;
        let size = match item.get("size") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or_else(|| bad(i, "`size` must be a number of bytes"))?,
            ),
        };
        out.push(JobModel {
            json_path: format!("input.models[{i}]"),
            source,
            target_subdir,
            name: text("name")?,
            sha256: text("sha256")?,
            size,
            replaces: None,
        });
    }
    Ok(out)
}

/// The URLs in known loader inputs ([`MODEL_INPUTS`]) of `workflow`.
pub(crate) fn loader_urls(workflow: &Value) -> Vec<JobModel> {
    let mut out = Vec::new();
    let Some(nodes) = workflow.as_object() else {
        return out;
    };
    for (id, node) in nodes {
        let class = node
            .get("class_type")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let Some(inputs) = node.get("inputs").and_then(Value::as_object) else {
            continue;
        };
        for (input, value) in inputs {
            let Some(url) = value.as_str() else { continue };
            let lower = url.trim_start().to_ascii_lowercase();
            if !(lower.starts_with("http://") || lower.starts_with("https://")) {
                continue;
            }
            let Some((_, _, folder)) = MODEL_INPUTS
                .iter()
                .find(|(name, only, _)| name == input && only.is_none_or(|c| c == class))
            else {
                continue;
            };
            out.push(JobModel {
                json_path: format!("input.workflow.{id}.inputs.{input}"),
                source: url.trim().to_string(),
                target_subdir: folder.to_string(),
                name: None,
                sha256: None,
                size: None,
                replaces: Some((id.clone(), input.clone())),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn loader_urls_are_found_by_the_table() {
        let wf = json!({
            "1": {"class_type": "LoraLoader", "inputs": {"lora_name": "https://h.example/a.safetensors", "strength": 1}},
            "2": {"class_type": "UpscaleModelLoader", "inputs": {"model_name": "http://h.example/x.pth"}},
            "3": {"class_type": "Other", "inputs": {"model_name": "http://h.example/y.pth", "ckpt_name": "local.safetensors"}},
        });
        let found = loader_urls(&wf);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].target_subdir, "loras");
        assert_eq!(found[0].json_path, "input.workflow.1.inputs.lora_name");
        assert_eq!(found[1].target_subdir, "upscale_models");
        assert_eq!(found[1].replaces, Some(("2".into(), "model_name".into())));
    }

    #[test]
    fn models_entries_parse_and_bad_ones_say_where() {
        let m = parse_models(
            &json!([{"source": "https://u:secret@h.example/l.safetensors",
            "target_subdir": "loras", "sha256": "ab", "size": 3}]),
        )
        .unwrap();
        assert_eq!(m[0].size, Some(3));
        assert!(!format!("{m:?}").contains("secret"));
        let e = parse_models(&json!([{"source": "x", "target_subdir": "loras"}, {"source": "y"}]))
            .unwrap_err();
        assert!(e.to_string().contains("input.models[1]"), "{e}");
        assert!(parse_models(&json!({"a": 1})).is_err());
    }
}
