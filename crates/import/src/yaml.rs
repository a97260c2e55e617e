//! YAML input files as JSON values: the snapshots that ComfyUI-Manager's
//! `save-snapshot --output x.yaml` and comfy-cli's `snapshot save` write
//! (PyYAML's `yaml.dump` of the JSON snapshot under `custom_nodes`).

use std::path::Path;

use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

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
