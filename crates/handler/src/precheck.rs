//! The pre-check: a job's workflow checked against the version's
//! [`NodeIndex`] before ComfyUI starts, so a workflow that cannot run fails
//! in milliseconds instead of after a start.
//!
//! It follows ComfyUI's own `validate_prompt` and refuses only what ComfyUI
//! would refuse: an unknown class (ComfyUI rejects the prompt), or a
//! workflow none of whose outputs validates (ComfyUI runs the outputs that
//! validate, so one broken branch is left to it). Within a node it checks
//! missing required inputs, links to missing nodes or output slots, linked
//! types that share nothing, values that do not convert to `INT`/`FLOAT`,
//! and combo values outside recorded choices. What it cannot know (a node's
//! own `VALIDATE_INPUTS`, file lists, ranges) stays with ComfyUI.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::error::{HandlerError, NodeInputError};
use crate::node_index::NodeIndex;

/// Checks `workflow` (API format) against `index`; `Err` is the error
/// ComfyUI would give, in its shape (`missing_node` or `validation`).
pub(crate) fn precheck(
    index: &NodeIndex,
    workflow: &Value,
    version_id: &str,
) -> Result<(), HandlerError> {
    let Some(nodes) = workflow.as_object() else {
        return Ok(());
    };
    let mut outputs = Vec::new();
    for (id, node) in nodes {
        let Some(class_type) = node.get("class_type").and_then(Value::as_str) else {
            return Ok(());
        };
        let Some(class) = index.class(class_type) else {
            return Err(HandlerError::MissingNode {
                class_type: class_type.to_string(),
                node_id: id.clone(),
                version_id: version_id.to_string(),
                failed_packs: Vec::new(),
                provided_by: None,
            });
        };
        if class.output_node {
            outputs.push(id.as_str());
        }
    }
    if outputs.is_empty() {
        return Err(HandlerError::Validation {
            message: "Prompt has no outputs (checked against the version's node index)".into(),
            node_errors: Vec::new(),
        });
    }
    let mut check = Check {
        index,
        nodes: workflow,
        done: BTreeMap::new(),
        active: Vec::new(),
    };
    let mut any_good = false;
    for o in &outputs {
        any_good |= check.node(o, true);
    }
    if any_good {
        return Ok(());
    }
    let node_errors = check
        .done
        .into_iter()
        .flat_map(|(_, (_, errors))| errors)
        .collect();
    Err(HandlerError::Validation {
        message: "Prompt outputs failed validation (checked against the version's node index, before starting ComfyUI)".into(),
        node_errors,
    })
}

/// One run of the check: each node validated once.
struct Check<'a> {
    index: &'a NodeIndex,
    nodes: &'a Value,
    /// node id → (valid, its own errors).
    done: BTreeMap<String, (bool, Vec<NodeInputError>)>,
    /// Nodes being validated (a link back to one is a cycle).
    active: Vec<String>,
}

impl Check<'_> {
    /// Whether node `id` and everything it links to validates.
    fn node(&mut self, id: &str, is_output: bool) -> bool {
        if let Some((valid, _)) = self.done.get(id) {
            return *valid;
        }
        self.active.push(id.to_string());
        let (valid, errors) = match self.inputs(id) {
            Ok(r) => r,
            Err((input, details)) => {
                let kind = if is_output {
                    "exception_during_validation"
                } else {
                    "exception_during_inner_validation"
                };
                let message = if is_output {
                    "Exception when validating node"
                } else {
                    "Exception when validating inner node"
                };
                let error = self.error(id, Some(input), kind, message, details);
                (false, vec![error])
            }
        };
        self.active.pop();
        self.done.insert(id.to_string(), (valid, errors));
        valid
    }

    /// Validates node `id`'s inputs: `Ok((valid, errors))`, or `Err((input,
    /// why))` where ComfyUI's validation raises (a link to a missing node or
    /// slot, a cycle).
    #[allow(clippy::type_complexity)]
    fn inputs(&mut self, id: &str) -> Result<(bool, Vec<NodeInputError>), (String, String)> {
        let node = &self.nodes[id];
        let class_type = node["class_type"].as_str().unwrap_or("");
        let Some(class) = self.index.class(class_type) else {
            return Ok((false, Vec::new()));
        };
        let empty = serde_json::Map::new();
        let given = node
            .get("inputs")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mut errors = Vec::new();
        let mut valid = true;
        let declared = class
            .required
            .iter()
            .map(|(n, s)| (n, s, true))
            .chain(class.optional.iter().map(|(n, s)| (n, s, false)));
        for (name, spec, required) in declared {
            let Some(value) = given.get(name) else {
                if required {
                    errors.push(self.error(
                        id,
                        Some(name.clone()),
                        "required_input_missing",
                        "Required input is missing",
                        name.clone(),
                    ));
                }
                continue;
            };
            if let Value::Array(link) = value {
                if link.len() != 2 {
                    errors.push(self.error(
                        id,
                        Some(name.clone()),
                        "bad_linked_input",
                        "Bad linked input, must be a length-2 list of [node_id, slot_index]",
                        name.clone(),
                    ));
                    continue;
                }
                let from = match link[0].as_str() {
                    Some(from) if self.nodes.get(from).is_some() => from,
                    _ => {
                        return Err((
                            name.clone(),
                            format!(
                                "input `{name}` links to node {}, which is not in the workflow",
                                link[0]
                            ),
                        ));
                    }
                };
                let from_class = self.nodes[from]["class_type"].as_str().unwrap_or("");
                let outputs = self
                    .index
                    .class(from_class)
                    .map(|c| c.outputs.clone())
                    .unwrap_or_default();
                let Some(received) = slot(&link[1], outputs.len()).map(|i| &outputs[i]) else {
                    return Err((
                        name.clone(),
                        format!(
                            "input `{name}` links to output {} of node {from} ({from_class}), which has {} output(s)",
                            link[1],
                            outputs.len()
                        ),
                    ));
                };
                if types_disjoint(received, &spec.kind) {
                    errors.push(self.error(
                        id,
                        Some(name.clone()),
                        "return_type_mismatch",
                        "Return type mismatch between linked nodes",
                        format!(
                            "{name}, received_type({received}) mismatch input_type({})",
                            spec.kind
                        ),
                    ));
                    continue;
                }
                if self.active.iter().any(|a| a == from) {
                    return Err((
                        name.clone(),
                        format!("input `{name}` closes a cycle through node {from}"),
                    ));
                }
                if !self.node(from, false) {
                    valid = false;
                }
                continue;
            }
            let value = match value {
                Value::Object(o) if o.contains_key("__value__") => &o["__value__"],
                v => v,
            };
            if !converts(value, &spec.kind) {
                errors.push(self.error(
                    id,
                    Some(name.clone()),
                    "invalid_input_type",
                    &format!("Failed to convert an input value to a {} value", spec.kind),
                    format!("{name}, {value}: expected {}", spec.kind),
                ));
                continue;
            }
            if let Some(options) = &spec.options
                && !options.iter().any(|o| same_value(o, value))
            {
                errors.push(self.error(
                    id,
                    Some(name.clone()),
                    "value_not_in_list",
                    "Value not in list",
                    format!("{name}: {value} not in {}", Value::Array(options.clone())),
                ));
            }
        }
        Ok((valid && errors.is_empty(), errors))
    }

    fn error(
        &self,
        id: &str,
        input: Option<String>,
        kind: &str,
        message: &str,
        details: String,
    ) -> NodeInputError {
        NodeInputError {
            node_id: id.to_string(),
            class_type: self.nodes[id]["class_type"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            input,
            kind: kind.to_string(),
            message: message.to_string(),
            details,
        }
    }
}

/// The output slot a link names, as Python indexes a tuple (negative from the end).
fn slot(v: &Value, len: usize) -> Option<usize> {
    let i = v.as_i64()?;
    let len = i64::try_from(len).ok()?;
    let i = if i < 0 { i + len } else { i };
    usize::try_from(i)
        .ok()
        .filter(|&i| i64::try_from(i).is_ok_and(|i| i < len))
}

/// Whether a linked output type can never feed the input: both plain type
/// names (comma-separated unions), no `*`, no combo, and nothing in common
/// (ComfyUI's non-strict comparison accepts any overlap).
fn types_disjoint(received: &str, wanted: &str) -> bool {
    if received == wanted
        || [received, wanted]
            .iter()
            .any(|t| t.contains('*') || *t == "COMBO")
    {
        return false;
    }
    let split = |t: &str| -> Vec<String> { t.split(',').map(|p| p.trim().to_string()).collect() };
    let (r, w) = (split(received), split(wanted));
    !r.iter().any(|t| w.contains(t))
}

/// Whether ComfyUI's conversion (`int(v)`, `float(v)`) of a literal succeeds;
/// other types are not converted (`str()` and `bool()` accept anything).
fn converts(v: &Value, kind: &str) -> bool {
    match kind {
        "INT" => match v {
            Value::Number(_) | Value::Bool(_) => true,
            Value::String(s) => python_int(s),
            _ => false,
        },
        "FLOAT" => match v {
            Value::Number(_) | Value::Bool(_) => true,
            Value::String(s) => python_float(s),
            _ => false,
        },
        _ => true,
    }
}

/// Whether Python's `int(s)` parses `s` (decimal, `_` between digits, sign,
/// surrounding whitespace). Non-ASCII text is given the benefit of the doubt.
fn python_int(s: &str) -> bool {
    if !s.is_ascii() {
        return true;
    }
    let t = s.trim();
    let t = t.strip_prefix(['+', '-']).unwrap_or(t);
    !t.is_empty()
        && !t.starts_with('_')
        && !t.ends_with('_')
        && !t.contains("__")
        && t.chars().all(|c| c.is_ascii_digit() || c == '_')
}

/// Whether Python's `float(s)` parses `s` (leniently: a string it might
/// accept is never refused).
fn python_float(s: &str) -> bool {
    !s.is_ascii() || s.trim().replace('_', "").parse::<f64>().is_ok()
}

/// Python's `==` for a combo choice and a value (`1 == 1.0 == True`).
fn same_value(a: &Value, b: &Value) -> bool {
    let num = |v: &Value| match v {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    };
    match (num(a), num(b)) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn index() -> NodeIndex {
        let info = json!({
            "Num": {"python_module": "nodes", "input": {"required": {"n": ["INT"], "f": ["FLOAT", {}]}},
                    "output": ["INT"]},
            "Img": {"python_module": "nodes", "input": {"required": {"w": ["INT"]},
                    "optional": {"mode": [["a", "b"]]}}, "output": ["IMAGE"]},
            "Save": {"python_module": "nodes", "output_node": true,
                     "input": {"required": {"images": ["IMAGE"]}}, "output": []},
        });
        NodeIndex::from_object_info(&info, "k", std::path::Path::new("/nonexistent"))
    }

    fn errs(wf: Value) -> Vec<(String, String, Option<String>)> {
        match precheck(&index(), &wf, "v") {
            Ok(()) => Vec::new(),
            Err(HandlerError::Validation { node_errors, .. }) => node_errors
                .into_iter()
                .map(|e| (e.node_id, e.kind, e.input))
                .collect(),
            Err(HandlerError::MissingNode {
                class_type,
                node_id,
                ..
            }) => {
                vec![(node_id, "missing_node".into(), Some(class_type))]
            }
            Err(e) => vec![("?".into(), e.to_string(), None)],
        }
    }

    #[test]
    fn a_valid_workflow_passes_with_python_like_conversions() {
        let wf = json!({"1": {"class_type": "Img", "inputs": {"w": " 1_024 ", "mode": "b"}},
                        "2": {"class_type": "Save", "inputs": {"images": ["1", -1]}},
                        "3": {"class_type": "Num", "inputs": {"n": 2.5, "f": "1e3"}}});
        assert_eq!(errs(wf), vec![]);
    }

    #[test]
    fn unknown_classes_missing_inputs_bad_values_and_links_are_named() {
        let unknown = json!({"1": {"class_type": "Nope", "inputs": {}}});
        assert_eq!(
            errs(unknown),
            vec![("1".into(), "missing_node".into(), Some("Nope".into()))]
        );
        let bad = json!({"1": {"class_type": "Img", "inputs": {"w": "wide", "mode": "c"}},
                         "2": {"class_type": "Save", "inputs": {"images": ["1", 0]}}});
        assert_eq!(
            errs(bad),
            vec![
                ("1".into(), "invalid_input_type".into(), Some("w".into())),
                ("1".into(), "value_not_in_list".into(), Some("mode".into()))
            ]
        );
        let missing = json!({"2": {"class_type": "Save", "inputs": {}}});
        assert_eq!(
            errs(missing),
            vec![(
                "2".into(),
                "required_input_missing".into(),
                Some("images".into())
            )]
        );
        let dangling = json!({"2": {"class_type": "Save", "inputs": {"images": ["9", 0]}}});
        assert_eq!(
            errs(dangling),
            vec![(
                "2".into(),
                "exception_during_validation".into(),
                Some("images".into())
            )]
        );
        let slot = json!({"1": {"class_type": "Img", "inputs": {"w": 1}},
                          "2": {"class_type": "Save", "inputs": {"images": ["1", 1]}}});
        assert_eq!(
            errs(slot),
            vec![(
                "2".into(),
                "exception_during_validation".into(),
                Some("images".into())
            )]
        );
        let typed = json!({"1": {"class_type": "Num", "inputs": {"n": 1, "f": 1}},
                           "2": {"class_type": "Save", "inputs": {"images": ["1", 0]}}});
        assert_eq!(
            errs(typed),
            vec![(
                "2".into(),
                "return_type_mismatch".into(),
                Some("images".into())
            )]
        );
    }

    #[test]
    fn one_good_output_is_enough_as_in_comfyui() {
        let wf = json!({"1": {"class_type": "Img", "inputs": {"w": 8}},
                        "2": {"class_type": "Save", "inputs": {"images": ["1", 0]}},
                        "3": {"class_type": "Save", "inputs": {}}});
        assert_eq!(errs(wf), vec![]);
    }
}
