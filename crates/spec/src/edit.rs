//! Editing a spec file's text in place, as `cargo add` does: an edit splices
//! only the part of the text it changes (an array element, a key), so the
//! file's indentation, key order and every unrelated byte stay as they were.
//! Every edit is validated before it is accepted; an edit that would make the
//! spec invalid leaves the document unchanged.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::parse::parse_spec;
use crate::version::{CustomNode, Model};
use crate::{SpecError, VersionSpec};

/// A spec's text together with its parsed, validated content.
#[derive(Debug, Clone)]
pub struct SpecDocument {
    text: String,
    origin: PathBuf,
    expected_id: Option<String>,
    spec: VersionSpec,
}

/// Why an edit was refused. The document is unchanged in every case.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The edited text would not be a valid spec.
    #[error("the edit was refused because it would leave the spec invalid; nothing was changed")]
    Invalid {
        /// The validation problems of the edited text.
        #[source]
        source: SpecError,
    },
    /// `remove node` named a node the spec does not have.
    #[error("{} has no custom node named `{name}` (its nodes: {known})", path.display())]
    NoSuchNode {
        /// The spec file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The names it has, comma-separated.
        known: String,
    },
    /// `remove model` named a model the spec does not have.
    #[error("{} has no model named `{name}` (its models: {known})", path.display())]
    NoSuchModel {
        /// The spec file.
        path: PathBuf,
        /// The name asked for.
        name: String,
        /// The models it has (`folder/name`), comma-separated.
        known: String,
    },
}

impl SpecDocument {
    /// Parses and validates `text`; `expected_id`, when given, must equal the
    /// spec's `version_id` (the file's stem).
    pub fn parse(
        text: String,
        origin: &Path,
        expected_id: Option<&str>,
    ) -> Result<SpecDocument, SpecError> {
        let loaded = parse_spec(&text, origin, expected_id)?;
        Ok(SpecDocument {
            text,
            origin: origin.to_path_buf(),
            expected_id: expected_id.map(str::to_string),
            spec: loaded.spec,
        })
    }

    /// Reads `path` (whose stem must be the spec's id).
    pub fn load(path: &Path) -> Result<SpecDocument, SpecError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let stem = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .map(|n| n.strip_suffix(".json").map(str::to_string).unwrap_or(n));
        SpecDocument::parse(text, path, stem.as_deref())
    }

    /// A new document for `spec`: pretty JSON, two-space indent, trailing newline.
    pub fn from_spec(spec: &VersionSpec, origin: &Path) -> Result<SpecDocument, SpecError> {
        let mut text = serde_json::to_string_pretty(spec).expect("a spec serializes");
        text.push('\n');
        SpecDocument::parse(text, origin, Some(&spec.version_id))
    }

    /// The current text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The current content.
    pub fn spec(&self) -> &VersionSpec {
        &self.spec
    }

    /// Appends a custom node (refused when its name or repository is taken).
    pub fn add_node(&mut self, node: &CustomNode) -> Result<(), EditError> {
        let text =
            Layout::of(&self.text).append(&self.text, "custom_nodes", &["comfy"], &to_value(node));
        self.accept(text, self.expected_id.clone())
    }

    /// Appends a model (refused when another model lands on the same path).
    pub fn add_model(&mut self, model: &Model) -> Result<(), EditError> {
        let text = Layout::of(&self.text).append(
            &self.text,
            "models",
            &["custom_nodes", "comfy"],
            &to_value(model),
        );
        self.accept(text, self.expected_id.clone())
    }

    /// Removes the custom node whose directory name is `name`; returns it.
    pub fn remove_node(&mut self, name: &str) -> Result<CustomNode, EditError> {
        let Some(i) = self
            .spec
            .custom_nodes
            .iter()
            .position(|n| n.effective_name() == name)
        else {
            return Err(EditError::NoSuchNode {
                path: self.origin.clone(),
                name: name.to_string(),
                known: list(self.spec.custom_nodes.iter().map(|n| n.effective_name())),
            });
        };
        let removed = self.spec.custom_nodes[i].clone();
        let text = Layout::of(&self.text).remove(&self.text, "custom_nodes", i);
        self.accept(text, self.expected_id.clone())?;
        Ok(removed)
    }

    /// Removes the model whose file name (or `folder/name`) is `name`; returns it.
    pub fn remove_model(&mut self, name: &str) -> Result<Model, EditError> {
        let Some(i) = self
            .spec
            .models
            .iter()
            .position(|m| m.effective_name() == name || m.relative_path() == name)
        else {
            return Err(EditError::NoSuchModel {
                path: self.origin.clone(),
                name: name.to_string(),
                known: list(self.spec.models.iter().map(|m| m.relative_path())),
            });
        };
        let removed = self.spec.models[i].clone();
        let text = Layout::of(&self.text).remove(&self.text, "models", i);
        self.accept(text, self.expected_id.clone())?;
        Ok(removed)
    }

    /// Sets `version_id` (the document then belongs to `<id>.json`).
    pub fn set_version_id(&mut self, id: &str) -> Result<(), EditError> {
        let text = Layout::of(&self.text).replace_top(&self.text, "version_id", &id.into());
        self.accept(text, Some(id.to_string()))
    }

    fn accept(&mut self, text: String, expected_id: Option<String>) -> Result<(), EditError> {
        let loaded = parse_spec(&text, &self.origin, expected_id.as_deref())
            .map_err(|source| EditError::Invalid { source })?;
        self.text = text;
        self.spec = loaded.spec;
        self.expected_id = expected_id;
        Ok(())
    }
}

fn list(names: impl Iterator<Item = String>) -> String {
    let v: Vec<String> = names.collect();
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

fn to_value<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("spec parts serialize")
}

/// Byte spans of a JSON value in the text (end exclusive).
#[derive(Debug)]
enum Span {
    Object {
        start: usize,
        end: usize,
        members: Vec<Member>,
    },
    Array {
        start: usize,
        end: usize,
        items: Vec<Span>,
    },
    Scalar {
        start: usize,
        end: usize,
    },
}

#[derive(Debug)]
struct Member {
    key: String,
    key_start: usize,
    value: Span,
}

impl Span {
    fn start(&self) -> usize {
        match self {
            Span::Object { start, .. } | Span::Array { start, .. } | Span::Scalar { start, .. } => {
                *start
            }
        }
    }
    fn end(&self) -> usize {
        match self {
            Span::Object { end, .. } | Span::Array { end, .. } | Span::Scalar { end, .. } => *end,
        }
    }
}

/// A scanner over text already known to be valid JSON.
struct Scanner<'a> {
    text: &'a str,
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> u8 {
        self.text.as_bytes().get(self.i).copied().unwrap_or(0)
    }

    fn ws(&mut self) {
        while matches!(self.peek(), b' ' | b'\t' | b'\r' | b'\n') {
            self.i += 1;
        }
    }

    fn string(&mut self) {
        self.i += 1;
        loop {
            match self.peek() {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return;
                }
                0 => return,
                _ => self.i += 1,
            }
        }
    }

    fn value(&mut self) -> Span {
        self.ws();
        let start = self.i;
        match self.peek() {
            b'{' => {
                self.i += 1;
                let mut members = Vec::new();
                loop {
                    self.ws();
                    if matches!(self.peek(), b'}' | 0) {
                        self.i += 1;
                        break;
                    }
                    let key_start = self.i;
                    self.string();
                    let key =
                        serde_json::from_str(&self.text[key_start..self.i]).unwrap_or_default();
                    self.ws();
                    self.i += 1; // ':'
                    let value = self.value();
                    members.push(Member {
                        key,
                        key_start,
                        value,
                    });
                    self.ws();
                    if self.peek() == b',' {
                        self.i += 1;
                    }
                }
                Span::Object {
                    start,
                    end: self.i,
                    members,
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                loop {
                    self.ws();
                    if matches!(self.peek(), b']' | 0) {
                        self.i += 1;
                        break;
                    }
                    items.push(self.value());
                    self.ws();
                    if self.peek() == b',' {
                        self.i += 1;
                    }
                }
                Span::Array {
                    start,
                    end: self.i,
                    items,
                }
            }
            b'"' => {
                self.string();
                Span::Scalar { start, end: self.i }
            }
            _ => {
                while !matches!(
                    self.peek(),
                    b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n' | 0
                ) {
                    self.i += 1;
                }
                Span::Scalar { start, end: self.i }
            }
        }
    }
}

/// The text's structure and indentation style.
struct Layout {
    root: Span,
    /// One level of indentation; `None` when the document is on one line.
    unit: Option<String>,
}

impl Layout {
    fn of(text: &str) -> Layout {
        let root = Scanner { text, i: 0 }.value();
        let unit = match &root {
            Span::Object { members, .. } => {
                members.first().and_then(|m| line_indent(text, m.key_start))
            }
            _ => None,
        };
        Layout { root, unit }
    }

    fn members(&self) -> &[Member] {
        match &self.root {
            Span::Object { members, .. } => members,
            _ => &[],
        }
    }

    fn member(&self, key: &str) -> Option<&Member> {
        self.members().iter().find(|m| m.key == key)
    }

    /// `value` rendered to sit at indentation `indent`.
    fn render(&self, value: &serde_json::Value, indent: Option<&str>) -> String {
        match (&self.unit, indent) {
            (Some(unit), Some(indent)) => {
                let mut out = Vec::new();
                let fmt = serde_json::ser::PrettyFormatter::with_indent(unit.as_bytes());
                let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
                value.serialize(&mut ser).expect("json serializes");
                String::from_utf8(out)
                    .expect("json is utf-8")
                    .replace('\n', &format!("\n{indent}"))
            }
            _ => value.to_string(),
        }
    }

    /// Appends `value` to the top-level array `key`, creating the key after
    /// the first present of `after` (else at the end) when absent.
    fn append(&self, text: &str, key: &str, after: &[&str], value: &serde_json::Value) -> String {
        match self.member(key) {
            Some(Member {
                key_start,
                value: Span::Array { start, end, items },
                ..
            }) => match items.last() {
                Some(last) => {
                    let insert = match line_indent(text, last.start()) {
                        Some(ind) => format!(",\n{ind}{}", self.render(value, Some(&ind))),
                        None => format!(", {}", self.render(value, None)),
                    };
                    splice(text, last.end(), last.end(), &insert)
                }
                None => {
                    let body = self.array_body(text, *key_start, value);
                    splice(text, *start, *end, &body)
                }
            },
            // Not an array: validation will refuse whatever we do; replace it.
            Some(m) => {
                let body = self.array_body(text, m.key_start, value);
                splice(text, m.value.start(), m.value.end(), &body)
            }
            None => {
                let members = self.members();
                let Some(prev) = after.iter().find_map(|k| self.member(k)).or(members.last())
                else {
                    return text.to_string();
                };
                let body = self.array_body(text, prev.key_start, value);
                let insert = match line_indent(text, prev.key_start) {
                    Some(ind) => format!(",\n{ind}\"{key}\": {body}"),
                    None => format!(", \"{key}\": {body}"),
                };
                splice(text, prev.value.end(), prev.value.end(), &insert)
            }
        }
    }

    /// `[value]` for a member whose key starts at `key_start`.
    fn array_body(&self, text: &str, key_start: usize, value: &serde_json::Value) -> String {
        match (line_indent(text, key_start), &self.unit) {
            (Some(ind), Some(unit)) => {
                let inner = format!("{ind}{unit}");
                format!("[\n{inner}{}\n{ind}]", self.render(value, Some(&inner)))
            }
            _ => format!("[{}]", self.render(value, None)),
        }
    }

    /// Removes element `index` of the top-level array `key`.
    fn remove(&self, text: &str, key: &str, index: usize) -> String {
        let Some(Member {
            value: Span::Array { start, end, items },
            ..
        }) = self.member(key)
        else {
            return text.to_string();
        };
        match (index, items.len()) {
            (_, 1) => splice(text, *start, *end, "[]"),
            (0, _) => splice(text, items[0].start(), items[1].start(), ""),
            (i, _) => splice(text, items[i - 1].end(), items[i].end(), ""),
        }
    }

    /// Replaces the value of the top-level `key`.
    fn replace_top(&self, text: &str, key: &str, value: &serde_json::Value) -> String {
        match self.member(key) {
            Some(m) => splice(text, m.value.start(), m.value.end(), &value.to_string()),
            None => text.to_string(),
        }
    }
}

/// The whitespace before `pos` on its line, when only whitespace precedes it.
fn line_indent(text: &str, pos: usize) -> Option<String> {
    let line_start = text[..pos].rfind('\n')? + 1;
    let before = &text[line_start..pos];
    before
        .bytes()
        .all(|b| b == b' ' || b == b'\t')
        .then(|| before.to_string())
}

fn splice(text: &str, from: usize, to: usize, with: &str) -> String {
    format!("{}{with}{}", &text[..from], &text[to..])
}

#[cfg(test)]
mod tests {
    use super::*;

    const FOUR: &str = "{\n    \"schema_version\": 2,\n    \"version_id\": \"v\",\n    \"comfy\": {\"repo\": \"https://h/o/ComfyUI\", \"ref\": \"v1\"},\n    \"custom_nodes\": [\n        {\n            \"repo\": \"https://h/o/a\"\n        }\n    ],\n    \"env\": {\"A\": \"1\"}\n}\n";

    fn doc(text: &str) -> SpecDocument {
        SpecDocument::parse(text.to_string(), Path::new("v.json"), Some("v")).unwrap()
    }

    fn node(repo: &str) -> CustomNode {
        CustomNode {
            repo: repo.into(),
            git_ref: Some("main".into()),
            commit: None,
            name: None,
            install_script: None,
            writable: None,
        }
    }

    #[test]
    fn add_node_keeps_indent_and_the_rest() {
        let mut d = doc(FOUR);
        d.add_node(&node("https://h/o/b")).unwrap();
        let expected = FOUR.replace(
            "        }\n    ],",
            "        },\n        {\n            \"repo\": \"https://h/o/b\",\n            \"ref\": \"main\"\n        }\n    ],",
        );
        assert_eq!(d.text(), expected);
        assert_eq!(d.spec().custom_nodes.len(), 2);
    }

    #[test]
    fn remove_then_add_round_trips() {
        let mut d = doc(FOUR);
        d.add_node(&node("https://h/o/b")).unwrap();
        d.remove_node("b").unwrap();
        assert_eq!(d.text(), FOUR);
        d.remove_node("a").unwrap();
        assert!(d.text().contains("\"custom_nodes\": [],"));
        d.add_node(&node("https://h/o/a")).unwrap();
        assert!(
            d.text().contains(
                "\"custom_nodes\": [\n        {\n            \"repo\": \"https://h/o/a\","
            )
        );
    }

    #[test]
    fn first_of_several_is_removed_cleanly() {
        let mut d = doc(FOUR);
        d.add_node(&node("https://h/o/b")).unwrap();
        d.remove_node("a").unwrap();
        assert!(d.text().starts_with(
            "{\n    \"schema_version\": 2,\n    \"version_id\": \"v\",\n    \"comfy\": {\"repo\": \"https://h/o/ComfyUI\", \"ref\": \"v1\"},\n    \"custom_nodes\": [\n        {\n            \"repo\": \"https://h/o/b\""
        ));
        assert!(
            d.text()
                .ends_with("    ],\n    \"env\": {\"A\": \"1\"}\n}\n")
        );
    }

    #[test]
    fn missing_array_is_created_after_its_neighbour() {
        let mut d = doc(FOUR);
        let m = Model {
            source: "https://files.h/m.safetensors".into(),
            name: None,
            target_subdir: Some("loras".into()),
            sha256: None,
            blake3: None,
            size: None,
        };
        d.add_model(&m).unwrap();
        let t = d.text();
        let nodes_end = t.find("    ],\n").unwrap();
        assert_eq!(
            &t[nodes_end..nodes_end + 25],
            "    ],\n    \"models\": [\n  "
        );
        assert!(t.ends_with("        }\n    ],\n    \"env\": {\"A\": \"1\"}\n}\n"));
        assert_eq!(d.spec().models[0].relative_path(), "loras/m.safetensors");
        d.remove_model("m.safetensors").unwrap();
        assert!(d.text().contains("\"models\": [],"));
    }

    #[test]
    fn compact_documents_stay_compact() {
        let text = r#"{"schema_version":2,"version_id":"v","comfy":{"repo":"/srv/c"},"custom_nodes":[{"repo":"/srv/a"}]}"#;
        let mut d = doc(text);
        d.add_node(&node("/srv/b")).unwrap();
        assert_eq!(
            d.text(),
            r#"{"schema_version":2,"version_id":"v","comfy":{"repo":"/srv/c"},"custom_nodes":[{"repo":"/srv/a"}, {"repo":"/srv/b","ref":"main"}]}"#
        );
    }

    #[test]
    fn invalid_edits_change_nothing() {
        let mut d = doc(FOUR);
        let dup = d.add_node(&node("https://h/o/a.git")).unwrap_err();
        assert!(matches!(dup, EditError::Invalid { .. }));
        let bad = d.add_node(&node("relative/path")).unwrap_err();
        assert!(matches!(bad, EditError::Invalid { .. }));
        let missing = d.remove_node("zzz").unwrap_err();
        assert!(missing.to_string().contains("its nodes: a"), "{missing}");
        assert_eq!(d.text(), FOUR);
    }

    #[test]
    fn version_id_is_replaced_in_place() {
        let mut d = doc(FOUR);
        d.set_version_id("w").unwrap();
        assert_eq!(
            d.text(),
            FOUR.replace("\"version_id\": \"v\"", "\"version_id\": \"w\"")
        );
        assert!(d.set_version_id("../x").is_err());
        assert_eq!(d.spec().version_id, "w");
    }
}
