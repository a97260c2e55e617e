//! `comfyver migrate`: schema 1 specs and the old per-tag lockfiles
//! (`lockfiles/comfy-<tag>.lock.json`: commit SHAs of ComfyUI and the nodes,
//! pinned Python dependencies, models with source, checksum and target path)
//! → a schema 2 spec and its resolved lock.
//!
//! Both old formats spelled the same things in several ways, so the reader
//! accepts the known spellings of each field (`comfy`/`comfyui`/`core`,
//! `repo`/`url`, `commit`/`sha`/`hash`, `target_path`/`path`, …) and reports
//! every field it could not place instead of dropping it silently.

use std::collections::BTreeMap;
use std::path::Path;

use comfyver_resolver::{NoReporter, ResolveOptions};
use comfyver_spec::{
    VersionSpec, edit::SpecDocument, is_full_commit, model_folders, redact, version::ComfyCore,
    version::CustomNode, version::Model, version::Options, version::PythonSettings,
};
use serde_json::{Map, Value};

use crate::workspace::{Workspace, Written, format_error, read_json};
use crate::{DEFAULT_COMFY_REPO, ImportError};

/// `comfyver migrate FILE [--id ID] [--comfy REPO]`: writes
/// `versions/<id>.json` and its resolved lock. The id is `--id`, else the
/// file's `version_id`, else `<tag>` of `comfy-<tag>.lock.json`, else the
/// file's stem. `comfy` is the core repository when the old file records
/// only a commit. Nothing is written when the result does not validate or
/// does not resolve.
pub fn migrate(
    ws: &Workspace,
    file: &Path,
    id: Option<&str>,
    comfy: Option<&str>,
) -> Result<Written, ImportError> {
    let raw = read_json(file)?;
    let Some(top) = raw.as_object() else {
        return Err(format_error(
            file,
            "$",
            "expected a schema 1 spec or an old lockfile (a JSON object)",
        ));
    };
    if top.get("schema_version").and_then(Value::as_u64)
        == Some(comfyver_spec::version::CURRENT_SCHEMA_VERSION)
    {
        return Err(format_error(
            file,
            "schema_version",
            "this is already a schema 2 spec: nothing to migrate",
        ));
    }
    let id = match id {
        Some(i) => i.to_string(),
        None => default_id(file, top),
    };
    let path = ws.new_spec_path(&id)?;
    let mut r = Reader {
        file,
        notes: Vec::new(),
        done: Vec::new(),
    };
    let spec = r.spec(top, &id, comfy)?;
    let doc = SpecDocument::from_spec(&spec, &path)?;
    let opts = ResolveOptions {
        dry_run: false,
        locked: false,
        offline: ws.resolve.offline || spec.offline(),
        ..ws.resolve.clone()
    };
    let outcome = comfyver_resolver::resolve(doc.spec(), &ws.layout, &opts, &NoReporter)
        .map_err(|e| ImportError::Resolve(Box::new(e)))?;
    r.done.push(format!("lock {}", outcome.lock_path.display()));
    let mut written = ws.write(&path, &doc, r.done, r.notes)?;
    written.preview = None;
    Ok(written)
}

fn default_id(file: &Path, top: &Map<String, Value>) -> String {
    if let Some(id) = top.get("version_id").and_then(Value::as_str) {
        return id.to_string();
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name
        .strip_suffix(".lock.json")
        .or_else(|| name.strip_suffix(".json"))
        .unwrap_or(&name);
    stem.strip_prefix("comfy-").unwrap_or(stem).to_string()
}

const TOP_KNOWN: &[&str] = &[
    "schema_version",
    "version_id",
    "description",
    "comfy",
    "comfyui",
    "core",
    "custom_nodes",
    "nodes",
    "models",
    "python",
    "pip",
    "python_packages",
    "requirements",
    "env",
    "options",
    "tag",
    "generated_at",
    "created_at",
    "lock_version",
];
const REPO_KEYS: &[&str] = &["repo", "url", "repository", "git_url"];
const REF_KEYS: &[&str] = &["ref", "branch", "tag", "version"];
const COMMIT_KEYS: &[&str] = &["commit", "sha", "hash", "commit_sha", "revision"];

struct Reader<'a> {
    file: &'a Path,
    notes: Vec<String>,
    done: Vec<String>,
}

fn first<'v>(
    obj: &'v Map<String, Value>,
    keys: &[&'static str],
) -> Option<(&'static str, &'v Value)> {
    keys.iter().find_map(|k| obj.get(*k).map(|v| (*k, v)))
}

const MODEL_SOURCE: &[&str] = &["source", "url", "uri", "download_url"];
const MODEL_NAME: &[&str] = &["name", "filename", "file"];
const MODEL_DIR: &[&str] = &["target_subdir", "subdir", "folder", "type", "directory"];
const MODEL_PATH: &[&str] = &["target_path", "target", "path", "dest"];
const MODEL_SHA: &[&str] = &["sha256", "checksum", "hash"];

impl Reader<'_> {
    fn unknown(&mut self, at: &str, obj: &Map<String, Value>, known: &[&str]) {
        for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
            self.notes
                .push(format!("{at}.{k} was not carried over (no schema 2 field)"));
        }
    }

    fn string(&self, v: &Value, at: &str) -> Result<String, ImportError> {
        v.as_str()
            .map(str::to_string)
            .ok_or_else(|| format_error(self.file, at, "expected a string"))
    }

    fn spec(
        &mut self,
        top: &Map<String, Value>,
        id: &str,
        comfy: Option<&str>,
    ) -> Result<VersionSpec, ImportError> {
        self.unknown("$", top, TOP_KNOWN);
        let core = match first(top, &["comfy", "comfyui", "core"]) {
            Some((_, v)) => v,
            None => {
                return Err(format_error(
                    self.file,
                    "comfy",
                    "expected the ComfyUI core (`comfy`, `comfyui` or `core`)",
                ));
            }
        };
        let mut core = self.git("comfy", core, comfy.unwrap_or(DEFAULT_COMFY_REPO))?;
        if core.git_ref.is_none()
            && let Some(tag) = top.get("tag").and_then(Value::as_str)
            && core.commit.is_none()
        {
            core.git_ref = Some(tag.to_string());
        }
        self.done.push(format!(
            "core {} {}",
            redact(&core.repo),
            core.commit
                .as_deref()
                .or(core.git_ref.as_deref())
                .unwrap_or("HEAD")
        ));
        let comfy = ComfyCore {
            repo: core.repo,
            git_ref: core.git_ref,
            commit: core.commit,
        };
        let mut custom_nodes = Vec::new();
        if let Some((key, v)) =
            first(top, &["custom_nodes", "nodes"]).map(|(_, v)| ("custom_nodes", v))
        {
            let entries: Vec<(String, Option<String>, &Value)> = match v {
                Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .map(|(i, e)| (format!("{key}[{i}]"), None, e))
                    .collect(),
                Value::Object(m) => m
                    .iter()
                    .map(|(k, e)| (format!("{key}[{k:?}]"), Some(k.clone()), e))
                    .collect(),
                _ => {
                    return Err(format_error(
                        self.file,
                        key,
                        "expected an array or an object of nodes",
                    ));
                }
            };
            for (at, map_key, e) in entries {
                if e.get("disabled").and_then(Value::as_bool) == Some(true)
                    || e.get("enabled").and_then(Value::as_bool) == Some(false)
                {
                    self.notes.push(format!("{at} left out (disabled)"));
                    continue;
                }
                // A map key is a URL (snapshot style) or the node's name.
                let (default_repo, name) = match &map_key {
                    Some(k) if k.contains('/') => (Some(k.clone()), None),
                    Some(k) => (None, Some(k.clone())),
                    None => (None, None),
                };
                let g = self.git_entry(&at, e, default_repo.as_deref())?;
                let name = match e
                    .as_object()
                    .and_then(|o| first(o, &["name", "dir", "directory"]).map(|(_, v)| v))
                {
                    Some(v) => Some(self.string(v, &format!("{at}.name"))?),
                    None => name,
                };
                let node = CustomNode {
                    repo: g.repo,
                    git_ref: g.git_ref,
                    commit: g.commit,
                    name,
                    install_script: e.get("install_script").and_then(Value::as_bool),
                    writable: None,
                };
                self.done.push(format!(
                    "+ node {} {}",
                    node.effective_name(),
                    redact(&node.repo)
                ));
                custom_nodes.push(node);
            }
        }
        let models = match top.get("models") {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, m)| self.model(&format!("models[{i}]"), m))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flatten()
                .collect(),
            Some(_) => {
                return Err(format_error(
                    self.file,
                    "models",
                    "expected an array of models",
                ));
            }
        };
        let python = self.python(top)?;
        let env = match top.get("env") {
            None | Some(Value::Null) => BTreeMap::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    Ok((
                        k.clone(),
                        match v {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        },
                    ))
                })
                .collect::<Result<_, ImportError>>()?,
            Some(_) => {
                return Err(format_error(
                    self.file,
                    "env",
                    "expected an object of strings",
                ));
            }
        };
        let options = match top.get("options") {
            Some(Value::Object(o)) => {
                self.unknown("options", o, &["offline", "skip_models"]);
                Some(Options {
                    offline: o.get("offline").and_then(Value::as_bool),
                    skip_models: o.get("skip_models").and_then(Value::as_bool),
                    allow_comfyui_mismatch: None,
                })
            }
            _ => None,
        };
        Ok(VersionSpec {
            schema_version: comfyver_spec::version::CURRENT_SCHEMA_VERSION,
            version_id: id.to_string(),
            description: top
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            comfy,
            custom_nodes,
            models,
            python,
            env,
            options,
        })
    }

    /// The core: an object, or a bare commit/URL string.
    fn git(&mut self, at: &str, v: &Value, default_repo: &str) -> Result<Git, ImportError> {
        self.git_entry(at, v, Some(default_repo))
    }

    fn git_entry(
        &mut self,
        at: &str,
        v: &Value,
        default_repo: Option<&str>,
    ) -> Result<Git, ImportError> {
        let mut g = Git {
            repo: String::new(),
            git_ref: None,
            commit: None,
        };
        match v {
            Value::String(s) if is_full_commit(s) => g.commit = Some(s.to_ascii_lowercase()),
            Value::String(s) => g.repo = s.clone(),
            Value::Object(o) => {
                let mut known: Vec<&str> = [REPO_KEYS, REF_KEYS, COMMIT_KEYS].concat();
                known.extend([
                    "name",
                    "dir",
                    "directory",
                    "install_script",
                    "disabled",
                    "enabled",
                ]);
                self.unknown(at, o, &known);
                if let Some((k, r)) = first(o, REPO_KEYS) {
                    g.repo = self.string(r, &format!("{at}.{k}"))?;
                }
                if let Some((k, c)) = first(o, COMMIT_KEYS) {
                    let c = self.string(c, &format!("{at}.{k}"))?;
                    if is_full_commit(&c) {
                        g.commit = Some(c.to_ascii_lowercase());
                    } else {
                        g.git_ref = Some(c);
                    }
                }
                if let Some((k, r)) = first(o, REF_KEYS)
                    && g.git_ref.is_none()
                {
                    g.git_ref = Some(self.string(r, &format!("{at}.{k}"))?);
                }
            }
            _ => {
                return Err(format_error(
                    self.file,
                    at,
                    "expected an object with `repo` and `commit`/`ref`, or a commit",
                ));
            }
        }
        if g.repo.is_empty() {
            match default_repo {
                Some(d) => {
                    if at == "comfy" {
                        self.notes
                            .push(format!("{at}: no repository recorded; using {}", redact(d)));
                    }
                    g.repo = d.to_string();
                }
                None => {
                    return Err(format_error(
                        self.file,
                        at,
                        "expected the node's repository URL (`repo` or `url`)",
                    ));
                }
            }
        }
        if g.commit.is_some() && g.git_ref.is_some() {
            self.notes.push(format!("{at}: both a commit and a ref; the commit wins (the ref is kept for `resolve --update`)"));
        }
        Ok(g)
    }

    fn model(&mut self, at: &str, v: &Value) -> Result<Option<Model>, ImportError> {
        let Some(o) = v.as_object() else {
            return Err(format_error(self.file, at, "expected a model object"));
        };
        let known: Vec<&str> = [
            MODEL_SOURCE,
            MODEL_NAME,
            MODEL_DIR,
            MODEL_PATH,
            MODEL_SHA,
            &["blake3", "size", "bytes"],
        ]
        .concat();
        self.unknown(at, o, &known);
        let Some((_, source)) = first(o, MODEL_SOURCE) else {
            self.notes
                .push(format!("{at} has no source URL and was not carried over"));
            return Ok(None);
        };
        let source = self.string(source, &format!("{at}.source"))?;
        let mut name = first(o, MODEL_NAME)
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string);
        let mut subdir = first(o, MODEL_DIR)
            .and_then(|(_, v)| v.as_str())
            .map(str::to_string);
        if let Some((_, p)) = first(o, MODEL_PATH)
            && let Some(p) = p.as_str()
        {
            // `models/checkpoints/x.safetensors` or `checkpoints/x.safetensors`.
            let rel = p.trim_start_matches('/');
            let rel = rel.find("models/").map(|i| &rel[i + 7..]).unwrap_or(rel);
            if let Some((dir, file)) = rel.rsplit_once('/') {
                subdir = subdir.or(Some(dir.to_string()));
                name = name.or(Some(file.to_string()));
            } else {
                name = name.or(Some(rel.to_string()));
            }
        }
        let subdir = subdir.map(|s| model_folders::map_legacy(&s).to_string());
        let mut sha256 = None;
        if let Some((k, h)) = first(o, MODEL_SHA) {
            let h = self.string(h, &format!("{at}.{k}"))?;
            let hex = h.strip_prefix("sha256:").unwrap_or(&h);
            if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                sha256 = Some(hex.to_ascii_lowercase());
            } else {
                self.notes.push(format!(
                    "{at}.{k} `{h}` is not a SHA-256 and was not carried over"
                ));
            }
        }
        let m = Model {
            source,
            name,
            target_subdir: subdir,
            sha256,
            blake3: o.get("blake3").and_then(Value::as_str).map(str::to_string),
            size: o.get("size").or(o.get("bytes")).and_then(Value::as_u64),
        };
        self.done.push(format!("+ model {}", m.relative_path()));
        Ok(Some(m))
    }

    fn python(&mut self, top: &Map<String, Value>) -> Result<Option<PythonSettings>, ImportError> {
        let mut py = PythonSettings::default();
        let mut lines: Vec<String> = Vec::new();
        let mut any = false;
        if let Some(Value::Object(p)) = top.get("python") {
            any = true;
            let known = [
                "version",
                "requirements",
                "constraints",
                "packages",
                "pinned",
                "pip",
                "index_url",
                "extra_index_urls",
                "find_links",
                "wheels",
                "system_site_packages",
            ];
            self.unknown("python", p, &known);
            py.version = p.get("version").and_then(Value::as_str).map(str::to_string);
            py.index_url = p
                .get("index_url")
                .and_then(Value::as_str)
                .map(str::to_string);
            py.extra_index_urls = strings(p.get("extra_index_urls"));
            py.find_links = strings(p.get("find_links"));
            py.system_site_packages = p.get("system_site_packages").and_then(Value::as_bool);
            py.requirements = strings(p.get("requirements"));
            py.constraints = strings(p.get("constraints"));
            for k in ["packages", "pinned", "pip", "wheels"] {
                lines.extend(self.pins(&format!("python.{k}"), p.get(k))?);
            }
        }
        for k in ["pip", "python_packages", "requirements"] {
            if top.contains_key(k) {
                any = true;
                lines.extend(self.pins(k, top.get(k))?);
            }
        }
        for l in lines {
            // A wheel URL must be installed as such; a pin only constrains.
            if l.contains(" @ ") || l.contains("://") {
                if l.contains("file:") {
                    self.notes.push(format!(
                        "`{}` points at a local file of the old machine: not carried over",
                        redact(&l)
                    ));
                } else {
                    py.requirements.push(l);
                }
            } else if !py.constraints.contains(&l) {
                py.constraints.push(l);
            }
        }
        if !py.constraints.is_empty() {
            self.done.push(format!(
                "{} pinned Python packages as constraints",
                py.constraints.len()
            ));
        }
        Ok(any.then_some(py))
    }

    /// Pinned packages: `["a==1"]`, `{"a": "1"}` or `[{"name", "version"}]`.
    fn pins(&self, at: &str, v: Option<&Value>) -> Result<Vec<String>, ImportError> {
        Ok(match v {
            None | Some(Value::Null) => vec![],
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, e)| match e {
                    Value::String(s) => Ok(s.clone()),
                    Value::Object(o) => match (
                        o.get("name").and_then(Value::as_str),
                        o.get("version").and_then(Value::as_str),
                        o.get("url").and_then(Value::as_str),
                    ) {
                        (Some(n), _, Some(u)) => Ok(format!("{n} @ {u}")),
                        (Some(n), Some(ver), None) => Ok(format!("{n}=={ver}")),
                        _ => Err(format_error(
                            self.file,
                            format!("{at}[{i}]"),
                            "expected {\"name\", \"version\"} or {\"name\", \"url\"}",
                        )),
                    },
                    _ => Err(format_error(
                        self.file,
                        format!("{at}[{i}]"),
                        "expected a requirement string",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(Value::Object(m)) => m
                .iter()
                .map(|(n, ver)| match ver.as_str() {
                    Some(u) if u.contains("://") => Ok(format!("{n} @ {u}")),
                    Some("") => Ok(n.clone()),
                    Some(ver) => Ok(format!("{n}=={ver}")),
                    None => Err(format_error(
                        self.file,
                        format!("{at}[{n:?}]"),
                        "expected a version string",
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => {
                return Err(format_error(
                    self.file,
                    at,
                    "expected a list of pinned requirements",
                ));
            }
        })
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

struct Git {
    repo: String,
    git_ref: Option<String>,
    commit: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(v: Value) -> (VersionSpec, Vec<String>) {
        let mut r = Reader {
            file: Path::new("old.json"),
            notes: vec![],
            done: vec![],
        };
        let spec = r.spec(v.as_object().unwrap(), "x", None).unwrap();
        (spec, r.notes)
    }

    #[test]
    fn map_forms_and_pin_spellings() {
        let sha = "c".repeat(40);
        let (spec, notes) = read(json!({
            "core": sha,
            "nodes": {
                "https://h/o/a": {"hash": "a".repeat(40), "disabled": false},
                "b": {"url": "https://h/o/b", "tag": "v2"},
                "https://h/o/off": {"hash": "d".repeat(40), "disabled": true}
            },
            "pip": {"numpy": "1.26.4", "wheel": "https://w.example/wheel-1-py3-none-any.whl"},
            "python_packages": [{"name": "requests", "version": "2.32.0"}]
        }));
        assert_eq!(spec.comfy.repo, DEFAULT_COMFY_REPO);
        assert_eq!(spec.comfy.commit.as_deref(), Some(sha.as_str()));
        assert_eq!(spec.custom_nodes.len(), 2);
        assert_eq!(spec.custom_nodes[0].repo, "https://h/o/a");
        assert_eq!(spec.custom_nodes[1].name.as_deref(), Some("b"));
        assert_eq!(spec.custom_nodes[1].git_ref.as_deref(), Some("v2"));
        let py = spec.python.unwrap();
        assert_eq!(py.constraints, ["numpy==1.26.4", "requests==2.32.0"]);
        assert_eq!(
            py.requirements,
            ["wheel @ https://w.example/wheel-1-py3-none-any.whl"]
        );
        assert!(
            notes
                .iter()
                .any(|n| n.contains("off") && n.contains("disabled")),
            "{notes:?}"
        );
        assert!(
            notes.iter().any(|n| n.contains("no repository recorded")),
            "{notes:?}"
        );
    }

    #[test]
    fn wrong_shapes_name_the_path() {
        let mut r = Reader {
            file: Path::new("old.json"),
            notes: vec![],
            done: vec![],
        };
        let v = json!({"comfy": {"repo": "https://h/o/c"}, "models": [{"url": 3}]});
        let err = r.spec(v.as_object().unwrap(), "x", None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "old.json: models[0].source: expected a string"
        );
        let v = json!({"comfy": {"repo": "https://h/o/c"}, "nodes": [{"branch": "main"}]});
        let err = r.spec(v.as_object().unwrap(), "x", None).unwrap_err();
        assert!(
            err.to_string()
                .contains("custom_nodes[0]: expected the node's repository URL"),
            "{err}"
        );
    }
}
