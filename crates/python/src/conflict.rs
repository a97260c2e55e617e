//! Turning a resolver failure into one error that names the clashing packs.

use std::collections::BTreeSet;

use super::error::{PythonError, ToolOutput};
use super::requirements::{Requirement, normalize_name};

/// Whether a failed uv/pip run is a resolution failure (rather than, say, a
/// network error), judged from its output.
pub(crate) fn is_resolution_failure(output: &str) -> bool {
    output.contains("No solution found")
        || output.contains("ResolutionImpossible")
        || output.contains("conflicting dependencies")
        || output.contains("Could not find a version that satisfies")
}

/// Builds [`PythonError::Conflict`] from the resolver's output: every
/// requirement whose package uv or pip mentions (or whose line of the
/// combined file pip cites as `(line N)`) is named with its origin.
pub(crate) fn attribute(requirements: &[Requirement], output: ToolOutput) -> PythonError {
    let explanation = explanation(&output.0);
    let text = relevant_part(&explanation);
    let words: BTreeSet<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .map(|w| normalize_name(w.trim_end_matches('.')))
        .filter(|w| !w.is_empty())
        .collect();
    let cited_lines = cited_line_numbers(text);
    let involved: Vec<&Requirement> = requirements
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            // The combined file has a header line, so requirement i is on line i + 2.
            cited_lines.contains(&(i + 2)) || r.name.as_ref().is_some_and(|n| words.contains(n))
        })
        .map(|(_, r)| r)
        .collect();
    let named: Vec<String> = involved
        .iter()
        .map(|r| {
            format!(
                "`{}` (from {})",
                super::error::redact_text(&r.line),
                r.origin
            )
        })
        .collect();
    let summary = match named.len() {
        0 => "the Python requirements cannot be resolved".to_string(),
        1 => format!("the Python requirement {} cannot be resolved", named[0]),
        _ => {
            let (last, rest) = named.split_last().expect("at least two");
            format!(
                "requirements conflict: {} and {last} cannot both be installed",
                rest.join(", ")
            )
        }
    };
    PythonError::Conflict { summary, output }
}

/// The output without pip's progress lines (`Processing x.whl (from -r
/// requirements.in (line 2))` mentions every package, clashing or not).
fn explanation(output: &str) -> String {
    const PROGRESS: &[&str] = &[
        "Processing ",
        "Looking in ",
        "Collecting ",
        "Downloading ",
        "Requirement already",
        "Using cached",
        "Obtaining ",
        "INFO:",
    ];
    output
        .lines()
        .filter(|l| !PROGRESS.iter().any(|p| l.trim_start().starts_with(p)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// uv explains from `No solution found`; pip from its first `ERROR:` (its
/// earlier `Processing ...` lines mention every package).
fn relevant_part(output: &str) -> &str {
    for marker in ["No solution found", "ERROR:"] {
        if let Some(i) = output.find(marker) {
            return &output[i..];
        }
    }
    output
}

/// Line numbers pip cites as `requirements.in (line N)`.
fn cited_line_numbers(text: &str) -> BTreeSet<usize> {
    text.match_indices("(line ")
        .filter_map(|(i, m)| {
            let rest = &text[i + m.len()..];
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str, origin: &str) -> Requirement {
        Requirement {
            line: line.into(),
            name: Some(normalize_name(line.split(['=', '>', '<']).next().unwrap())),
            origin: origin.into(),
            line_no: 1,
        }
    }

    #[test]
    fn names_both_packs_from_uvs_message() {
        let reqs = [
            req("fakecomfydep>=1.0", "ComfyUI requirements.txt"),
            req("conflictpkg==1.0", "custom_nodes/pack_a/requirements.txt"),
            req("conflictpkg==2.0", "custom_nodes/pack_b/requirements.txt"),
        ];
        let out = "error: No solution found when resolving dependencies\n  cause: Because you \
                   require conflictpkg==1.0 and conflictpkg==2.0, we can conclude that your \
                   requirements are unsatisfiable.";
        let err = attribute(&reqs, ToolOutput(out.into())).to_string();
        assert!(
            err.starts_with(
                "requirements conflict: `conflictpkg==1.0` (from custom_nodes/pack_a/requirements.txt) \
                 and `conflictpkg==2.0` (from custom_nodes/pack_b/requirements.txt) cannot both"
            ),
            "{err}"
        );
        assert!(!err.contains("fakecomfydep"), "{err}");
    }

    #[test]
    fn pip_line_citations_count() {
        let reqs = [
            req("trans", "custom_nodes/a/requirements.txt"),
            req("other", "spec"),
        ];
        let out = "ERROR: Cannot install -r requirements.in (line 2) and x\n\
                   Processing ./other.whl (from -r requirements.in (line 3))";
        let err = attribute(&reqs, ToolOutput(out.into())).to_string();
        assert!(
            err.contains("`trans` (from custom_nodes/a/requirements.txt)"),
            "{err}"
        );
        assert!(!err.contains("other"), "{err}");
    }
}
