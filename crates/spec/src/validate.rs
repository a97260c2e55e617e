//! Validation of a spec's JSON value, collecting every problem with its path.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::Issue;
use crate::model_source::ModelSource;
use crate::names::{unsafe_component_reason, unsafe_relative_path_reason, version_id_reason};
use crate::suggest::closest;
use crate::version::CURRENT_SCHEMA_VERSION;
use crate::{RepoUrl, is_full_commit, model_folders};

const TOP: &[&str] = &[
    "schema_version",
    "version_id",
    "description",
    "comfy",
    "custom_nodes",
    "models",
    "python",
    "env",
    "options",
];
const COMFY: &[&str] = &["repo", "ref", "commit"];
const NODE: &[&str] = &[
    "repo",
    "ref",
    "commit",
    "name",
    "install_script",
    "writable",
];
const MODEL: &[&str] = &[
    "source",
    "name",
    "target_subdir",
    "sha256",
    "blake3",
    "size",
];
const PYTHON: &[&str] = &[
    "version",
    "requirements",
    "constraints",
    "index_url",
    "extra_index_urls",
    "find_links",
    "system_site_packages",
    "overrides",
    "torch_backend",
    "torch_index_url",
];
const OPTIONS: &[&str] = &["offline", "skip_models", "allow_comfyui_mismatch"];

/// Collected problems: errors stop the load, warnings do not.
#[derive(Default)]
struct Report {
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
}

impl Report {
    fn error(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.errors.push(Issue::new(path, msg));
    }
    fn warn(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.warnings.push(Issue::new(path, msg));
    }
}

/// Validates a spec value; returns (errors, warnings).
pub(crate) fn validate(value: &Value, expected_id: Option<&str>) -> (Vec<Issue>, Vec<Issue>) {
    let mut r = Report::default();
    let Some(top) = value.as_object() else {
        r.error(
            "$",
            format!("expected a JSON object, found {}", kind(value)),
        );
        return (r.errors, r.warnings);
    };
    if !schema_version(top, &mut r) {
        return (r.errors, r.warnings);
    }
    unknown_fields(top, TOP, "", &mut r);
    version_id(top, expected_id, &mut r);
    opt_string(top, "description", "description", &mut r);
    match top.get("comfy") {
        None => r.error("comfy", "required: the ComfyUI core, e.g. {\"repo\": \"https://…/ComfyUI\", \"ref\": \"v0.3.64\"}"),
        Some(v) => {
            if let Some(obj) = object(v, "comfy", &mut r) {
                unknown_fields(obj, COMFY, "comfy", &mut r);
                git_source(obj, "comfy", &mut r);
            }
        }
    }
    custom_nodes(top, &mut r);
    models(top, &mut r);
    python(top, &mut r);
    env(top, &mut r);
    if let Some(v) = top.get("options")
        && let Some(obj) = object(v, "options", &mut r)
    {
        unknown_fields(obj, OPTIONS, "options", &mut r);
        for k in OPTIONS {
            opt_bool(obj, k, &format!("options.{k}"), &mut r);
        }
    }
    (r.errors, r.warnings)
}

/// Checks schema_version; returns false when the rest should not be checked
/// because the document is of another schema.
fn schema_version(top: &Map<String, Value>, r: &mut Report) -> bool {
    match top.get("schema_version") {
        None => {
            r.error(
                "schema_version",
                format!("required: add \"schema_version\": {CURRENT_SCHEMA_VERSION}"),
            );
            true
        }
        Some(Value::Number(n)) if n.as_u64() == Some(CURRENT_SCHEMA_VERSION) => true,
        Some(Value::Number(n)) if n.as_u64() == Some(1) => {
            r.error(
                "schema_version",
                "schema_version 1 is no longer read: run `comfyver migrate <this file>` to write it \
                 as a schema 2 spec with its resolved lock (it reports what could not be carried \
                 over; see docs/create_version.md, \"Migrating\")",
            );
            false
        }
        Some(Value::Number(n)) => {
            r.error(
                "schema_version",
                format!(
                    "unsupported schema_version {n}: this comfyver reads schema_version \
                     {CURRENT_SCHEMA_VERSION}; upgrade comfyver if the spec was written by a newer one"
                ),
            );
            false
        }
        Some(v) => {
            r.error(
                "schema_version",
                format!(
                    "expected the integer {CURRENT_SCHEMA_VERSION}, found {}",
                    kind(v)
                ),
            );
            true
        }
    }
}

fn version_id(top: &Map<String, Value>, expected: Option<&str>, r: &mut Report) {
    let Some(v) = top.get("version_id") else {
        let hint = expected
            .map(|e| format!(": add \"version_id\": \"{e}\""))
            .unwrap_or_default();
        r.error("version_id", format!("required{hint}"));
        return;
    };
    let Some(id) = string(v, "version_id", r) else {
        return;
    };
    if let Some(reason) = version_id_reason(id) {
        r.error("version_id", format!("not a safe version id: {reason}"));
    } else if let Some(e) = expected
        && e != id
    {
        r.error(
            "version_id",
            format!("`{id}` does not match the file name `{e}.json`: rename the file or set \"version_id\": \"{e}\""),
        );
    }
}

fn git_source(obj: &Map<String, Value>, at: &str, r: &mut Report) -> Option<RepoUrl> {
    let repo = match obj.get("repo") {
        None => {
            r.error(
                format!("{at}.repo"),
                "required: the git URL of the repository",
            );
            None
        }
        Some(v) => string(v, &format!("{at}.repo"), r).and_then(|s| match RepoUrl::parse(s) {
            Ok(u) => Some(u),
            Err(e) => {
                r.error(format!("{at}.repo"), e.to_string());
                None
            }
        }),
    };
    if let Some(v) = obj.get("ref")
        && let Some(s) = string(v, &format!("{at}.ref"), r)
        && s.trim().is_empty()
    {
        r.error(
            format!("{at}.ref"),
            "must not be empty: name a branch, tag or commit, or leave `ref` out for the remote's HEAD",
        );
    }
    if let Some(v) = obj.get("commit")
        && let Some(s) = string(v, &format!("{at}.commit"), r)
        && !is_full_commit(s)
    {
        r.error(
            format!("{at}.commit"),
            format!("`{s}` is not a full commit: expected 40 hex digits (put a short hash or a branch in `ref`)"),
        );
    }
    repo
}

fn custom_nodes(top: &Map<String, Value>, r: &mut Report) {
    let Some(v) = top.get("custom_nodes") else {
        return;
    };
    let Some(items) = array(v, "custom_nodes", r) else {
        return;
    };
    let mut names: HashMap<String, usize> = HashMap::new();
    let mut repos: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("custom_nodes[{i}]");
        let Some(obj) = object(item, &at, r) else {
            continue;
        };
        unknown_fields(obj, NODE, &at, r);
        let repo = git_source(obj, &at, r);
        opt_bool(obj, "install_script", &format!("{at}.install_script"), r);
        opt_bool(obj, "writable", &format!("{at}.writable"), r);
        let name = match obj.get("name") {
            Some(v) => string(v, &format!("{at}.name"), r).map(str::to_string),
            None => repo
                .as_ref()
                .map(|u| crate::repo_url::last_segment(u.as_str())),
        };
        if let Some(name) = name {
            let name_at = if obj.contains_key("name") {
                format!("{at}.name")
            } else {
                format!("{at}.repo")
            };
            if let Some(reason) = unsafe_component_reason(&name) {
                r.error(
                    &name_at,
                    format!("node directory name is not safe: {reason}; set `name`"),
                );
            } else if let Some(prev) = names.insert(name.clone(), i) {
                r.error(
                    &name_at,
                    format!("node name `{name}` is already used by custom_nodes[{prev}]; give one of them another `name`"),
                );
            }
        }
        if let Some(u) = repo
            && let Some(prev) = repos.insert(u.canonical().to_string(), i)
        {
            r.error(
                format!("{at}.repo"),
                format!(
                    "repository `{}` is already listed as custom_nodes[{prev}]",
                    u.redacted()
                ),
            );
        }
    }
}

fn models(top: &Map<String, Value>, r: &mut Report) {
    let Some(v) = top.get("models") else {
        return;
    };
    let Some(items) = array(v, "models", r) else {
        return;
    };
    let mut landing: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("models[{i}]");
        let Some(obj) = object(item, &at, r) else {
            continue;
        };
        unknown_fields(obj, MODEL, &at, r);
        let source = match obj.get("source") {
            None => {
                r.error(
                    format!("{at}.source"),
                    "required: an https://, hf://, file:// URL or an absolute path",
                );
                None
            }
            Some(v) => {
                string(v, &format!("{at}.source"), r).and_then(|s| match ModelSource::parse(s) {
                    Ok(src) => Some(src),
                    Err(e) => {
                        r.error(format!("{at}.source"), e.to_string());
                        None
                    }
                })
            }
        };
        let name = match obj.get("name") {
            Some(v) => string(v, &format!("{at}.name"), r).map(str::to_string),
            None => source.as_ref().map(|s| {
                if s.is_civitai() {
                    r.error(
                        format!("{at}.name"),
                        "required for CivitAI download URLs, whose path does not carry the file name",
                    );
                }
                s.default_name()
            }),
        };
        let name_at = if obj.contains_key("name") {
            format!("{at}.name")
        } else {
            format!("{at}.source")
        };
        let name_ok = match &name {
            Some(n) => match unsafe_component_reason(n) {
                Some(reason) => {
                    r.error(
                        &name_at,
                        format!("model file name is not safe: {reason}; set `name`"),
                    );
                    false
                }
                None => true,
            },
            None => false,
        };
        let subdir = match obj.get("target_subdir") {
            None => Some(model_folders::DEFAULT_FOLDER.to_string()),
            Some(v) => string(v, &format!("{at}.target_subdir"), r).and_then(|s| subdir(s, &at, r)),
        };
        for (key, len) in [("sha256", 64), ("blake3", 64)] {
            if let Some(v) = obj.get(key)
                && let Some(s) = string(v, &format!("{at}.{key}"), r)
                && !(s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit()))
            {
                r.error(
                    format!("{at}.{key}"),
                    format!("expected {len} hex digits, found `{s}`"),
                );
            }
        }
        if let Some(v) = obj.get("size")
            && v.as_u64().is_none()
        {
            r.error(
                format!("{at}.size"),
                format!("expected a non-negative integer (bytes), found {}", kind(v)),
            );
        }
        if let (Some(n), Some(d), true) = (name, subdir, name_ok) {
            let path = format!("{d}/{n}");
            if let Some(prev) = landing.insert(path.clone(), i) {
                r.error(&name_at, format!("lands on `{path}` like models[{prev}]; give one of them another `name` or `target_subdir`"));
            }
        }
    }
}

/// Validates a target_subdir; returns the mapped folder when usable.
fn subdir(s: &str, at: &str, r: &mut Report) -> Option<String> {
    let path = format!("{at}.target_subdir");
    let trimmed = s.trim_end_matches('/');
    if let Some(reason) = unsafe_relative_path_reason(s) {
        r.error(path, format!("not a safe folder: {reason}"));
        return None;
    }
    let first = trimmed.split('/').next().unwrap_or(trimmed);
    let nested = model_folders::nested_key(trimmed);
    if let Some(key) = [first, nested.as_str()]
        .into_iter()
        .find(|k| model_folders::RESERVED_YAML_KEYS.contains(k))
    {
        r.error(
            path,
            format!(
                "`{trimmed}` cannot be a model folder: `{key}` is an extra_model_paths.yaml key with \
                 another meaning; use a folder such as `checkpoints`, or another name"
            ),
        );
        return None;
    }
    if model_folders::is_known(trimmed) {
        return Some(model_folders::map_legacy(trimmed).to_string());
    }
    if let Some(instead) = model_folders::registered_over(first) {
        r.warn(
            path,
            format!(
                "`{first}` is a folder packs register over ComfyUI's own directories, not a \
                 directory: use `target_subdir: \"{instead}\"` so the pack finds the file"
            ),
        );
        return Some(trimmed.to_string());
    }
    if model_folders::is_known(first) {
        return Some(trimmed.to_string());
    }
    let hint = closest(trimmed, &model_folders::names())
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    r.warn(
        path,
        format!("`{trimmed}` is not one of ComfyUI's model folders{hint}; it is added to extra_model_paths.yaml as a custom folder"),
    );
    Some(trimmed.to_string())
}

fn python(top: &Map<String, Value>, r: &mut Report) {
    let Some(v) = top.get("python") else {
        return;
    };
    let Some(obj) = object(v, "python", r) else {
        return;
    };
    unknown_fields(obj, PYTHON, "python", r);
    opt_string(obj, "version", "python.version", r);
    opt_bool(
        obj,
        "system_site_packages",
        "python.system_site_packages",
        r,
    );
    for key in [
        "requirements",
        "constraints",
        "overrides",
        "extra_index_urls",
        "find_links",
    ] {
        let at = format!("python.{key}");
        if let Some(v) = obj.get(key)
            && let Some(items) = array(v, &at, r)
        {
            for (i, item) in items.iter().enumerate() {
                let item_at = format!("{at}[{i}]");
                if let Some(s) = string(item, &item_at, r) {
                    if s.trim().is_empty() {
                        r.error(&item_at, "must not be empty");
                    } else if s.contains('\n') {
                        r.error(&item_at, "must be a single line");
                    } else if key.ends_with("urls") {
                        index_url(s, &item_at, r);
                    }
                }
            }
        }
    }
    if let Some(v) = obj.get("index_url")
        && let Some(s) = string(v, "python.index_url", r)
    {
        index_url(s, "python.index_url", r);
    }
    let backend = obj
        .get("torch_backend")
        .and_then(|v| string(v, "python.torch_backend", r));
    if let Some(b) = backend
        && !is_torch_backend(b)
    {
        r.error(
            "python.torch_backend",
            format!(
                "`{b}` is not a PyTorch backend: expected auto, cpu, cu<version> (e.g. cu128), \
                 rocm<version> (e.g. rocm6.3) or xpu"
            ),
        );
    }
    if let Some(v) = obj.get("torch_index_url")
        && let Some(s) = string(v, "python.torch_index_url", r)
    {
        index_url(s, "python.torch_index_url", r);
        if backend.is_none_or(|b| b == "auto") {
            r.error(
                "python.torch_index_url",
                "needs an explicit python.torch_backend (cpu, cu128, ...): `<torch_index_url>/<backend>` \
                 is the index used, and `auto` is only known to uv's built-in indexes",
            );
        }
    }
}

/// `auto`, `cpu`, `xpu`, `cu<digits>` or `rocm<digits and dots>`.
fn is_torch_backend(b: &str) -> bool {
    let digits = |s: &str, dots: bool| {
        !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || (dots && c == '.'))
    };
    matches!(b, "auto" | "cpu" | "xpu")
        || b.strip_prefix("cu").is_some_and(|v| digits(v, false))
        || b.strip_prefix("rocm").is_some_and(|v| digits(v, true))
}

fn index_url(s: &str, at: &str, r: &mut Report) {
    let ok = ["https://", "http://", "file://"]
        .iter()
        .any(|p| s.starts_with(p));
    if !ok {
        r.error(
            at,
            format!(
                "`{}` is not an index URL: expected https://, http:// or file://",
                crate::redact(s)
            ),
        );
    }
}

fn env(top: &Map<String, Value>, r: &mut Report) {
    let Some(v) = top.get("env") else {
        return;
    };
    let Some(obj) = object(v, "env", r) else {
        return;
    };
    for (k, v) in obj {
        let at = format!("env.{k}");
        let valid_key = !k.is_empty()
            && !k.starts_with(|c: char| c.is_ascii_digit())
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_key {
            r.error(&at, "not a valid environment variable name: use letters, digits and `_`, not starting with a digit");
        }
        if !v.is_string() {
            r.error(&at, format!("expected a string, found {}", kind(v)));
        }
        let upper = k.to_ascii_uppercase();
        if ["TOKEN", "SECRET", "PASSWORD", "API_KEY"]
            .iter()
            .any(|s| upper.contains(s))
        {
            r.warn(&at, "looks like a secret: specs are shared and committed; set it in the worker's environment instead");
        }
    }
}

fn unknown_fields(obj: &Map<String, Value>, known: &[&str], at: &str, r: &mut Report) {
    for key in obj.keys() {
        if known.contains(&key.as_str()) {
            continue;
        }
        let path = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        let msg = match closest(key, known) {
            Some(k) => format!("unknown field `{key}`; did you mean `{k}`?"),
            None => format!(
                "unknown field `{key}`; expected one of: {}",
                known.join(", ")
            ),
        };
        r.error(path, msg);
    }
}

fn object<'a>(v: &'a Value, at: &str, r: &mut Report) -> Option<&'a Map<String, Value>> {
    let o = v.as_object();
    if o.is_none() {
        r.error(at, format!("expected an object, found {}", kind(v)));
    }
    o
}

fn array<'a>(v: &'a Value, at: &str, r: &mut Report) -> Option<&'a Vec<Value>> {
    let a = v.as_array();
    if a.is_none() {
        r.error(at, format!("expected an array, found {}", kind(v)));
    }
    a
}

fn string<'a>(v: &'a Value, at: &str, r: &mut Report) -> Option<&'a str> {
    let s = v.as_str();
    if s.is_none() {
        r.error(at, format!("expected a string, found {}", kind(v)));
    }
    s
}

fn opt_string(obj: &Map<String, Value>, key: &str, at: &str, r: &mut Report) {
    if let Some(v) = obj.get(key) {
        string(v, at, r);
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str, at: &str, r: &mut Report) {
    if let Some(v) = obj.get(key)
        && !v.is_boolean()
    {
        r.error(at, format!("expected true or false, found {}", kind(v)));
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let short: String = s.chars().take(40).collect();
            format!("the string \"{short}\"")
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}
