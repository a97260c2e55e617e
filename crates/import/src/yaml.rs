//! YAML files as JSON values: the snapshots that ComfyUI-Manager's
//! `save-snapshot --output x.yaml` and comfy-cli's `snapshot save` write
//! (PyYAML's `yaml.dump` of the JSON snapshot under `custom_nodes`), comfy-cli's
//! build definitions, and the YAML form of an export.

use std::path::Path;

use serde_json::{Map, Value};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

use crate::ImportError;
use crate::workspace::format_error;

/// Whether `path` names a YAML file (`.yaml` or `.yml`).
pub(crate) fn is_yaml(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
}

/// The one YAML document in `path`, as JSON.
pub(crate) fn read_yaml(path: &Path) -> Result<Value, ImportError> {
    let text = std::fs::read_to_string(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let docs = YamlLoader::load_from_str(&text).map_err(|source| ImportError::Yaml {
        path: path.to_path_buf(),
        source,
    })?;
    match docs.as_slice() {
        [doc] => to_json(path, doc, "$"),
        [] => Err(format_error(
            path,
            "$",
            "expected one YAML document, found none",
        )),
        _ => Err(format_error(
            path,
            "$",
            format!("expected one YAML document, found {}", docs.len()),
        )),
    }
}

/// `value` as one YAML document (exports written to a `.yaml` file).
pub fn to_yaml(value: &Value) -> Result<String, ImportError> {
    let mut out = String::new();
    let mut emitter = YamlEmitter::new(&mut out);
    emitter.multiline_strings(true);
    emitter
        .dump(&from_json(value))
        .map_err(ImportError::YamlOut)?;
    out.push('\n');
    Ok(out)
}

fn from_json(v: &Value) -> Yaml {
    match v {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Yaml::Integer(i),
            None => Yaml::Real(n.to_string()),
        },
        Value::String(s) => Yaml::String(s.clone()),
        Value::Array(items) => Yaml::Array(items.iter().map(from_json).collect()),
        Value::Object(m) => {
            let mut h = Hash::new();
            for (k, v) in m {
                h.insert(Yaml::String(k.clone()), from_json(v));
            }
            Yaml::Hash(h)
        }
    }
}

fn to_json(path: &Path, y: &Yaml, at: &str) -> Result<Value, ImportError> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        // A snapshot holds no fractional numbers: a plain scalar that reads as
        // one (a version such as `1.0`, left unquoted by a hand edit) keeps its
        // text, so the field's own check reports it as what it is.
        Yaml::Real(text) | Yaml::String(text) => Value::String(text.clone()),
        Yaml::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| to_json(path, item, &format!("{at}[{i}]")))
                .collect::<Result<_, _>>()?,
        ),
        Yaml::Hash(entries) => {
            let mut out = Map::new();
            for (k, v) in entries {
                let key = match k {
                    Yaml::String(s) | Yaml::Real(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    _ => return Err(format_error(path, at, "expected text keys in a mapping")),
                };
                let value = to_json(path, v, &format!("{at}[{key:?}]"))?;
                out.insert(key, value);
            }
            Value::Object(out)
        }
        Yaml::Alias(_) | Yaml::BadValue => {
            return Err(format_error(
                path,
                at,
                "expected a plain value (an alias to an unknown anchor or a bad value)",
            ));
        }
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(text: &str) -> Result<Value, ImportError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.yaml");
        std::fs::write(&p, text).unwrap();
        read_yaml(&p)
    }

    #[test]
    fn block_mappings_lists_and_scalars_become_json() {
        let v = parse(
            "custom_nodes:\n  comfyui: null\n  cnr_custom_nodes:\n    pack: 1.0\n  \
             file_custom_nodes:\n  - disabled: false\n    filename: a.py\n  \
             pips:\n    numpy==1.26.4: ''\n    7: x\n",
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"custom_nodes": {"comfyui": null, "cnr_custom_nodes": {"pack": "1.0"},
                "file_custom_nodes": [{"disabled": false, "filename": "a.py"}],
                "pips": {"numpy==1.26.4": "", "7": "x"}}})
        );
    }

    #[test]
    fn json_written_as_yaml_reads_back_the_same() {
        let v = json!({"schema": "distribution-definition/0", "pipDependencies": "a==1\nb==2\n",
            "models": [{"sizeBytes": 7, "sha256": null, "type": "loras"}], "flag": true,
            "version": "1.0", "n": 12345678901_u64});
        let text = to_yaml(&v).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.yaml");
        std::fs::write(&p, &text).unwrap();
        assert_eq!(read_yaml(&p).unwrap(), v, "{text}");
    }

    #[test]
    fn bad_yaml_names_the_file_and_the_line() {
        let err = parse("custom_nodes:\n  comfyui: [\n").unwrap_err();
        assert!(
            err.to_string().ends_with("s.yaml is not valid YAML"),
            "{err}"
        );
        let cause = std::error::Error::source(&err).unwrap().to_string();
        assert!(cause.contains("line 3"), "{cause}");
        let err = parse("a: 1\n---\nb: 2\n").unwrap_err();
        assert!(err.to_string().contains("found 2"), "{err}");
        let err = parse("? [a]\n: 1\n").unwrap_err();
        assert!(err.to_string().contains("$: expected text keys"), "{err}");
    }
}
