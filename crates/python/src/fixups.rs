//! ComfyUI-Manager's pip fix-ups, done once at resolution instead of after
//! every install: a pack may not pull torch below the core's set, opencv
//! variants (which overwrite each other's `cv2`) are aligned to one, and the
//! frontend package stays the core's pin.

use super::error::PythonError;
use super::requirements::{CORE_ORIGIN, Requirement, Requirements};

/// The packages a pack may not downgrade below the core's requirement.
const TORCH_FAMILY: &[&str] = &["torch", "torchvision", "torchaudio"];
/// The opencv distributions that all install the `cv2` module.
const OPENCV: &[&str] = &[
    "opencv-python",
    "opencv-python-headless",
    "opencv-contrib-python",
    "opencv-contrib-python-headless",
];
/// ComfyUI's frontend: the core pins it, packs do not move it.
const FRONTEND: &str = "comfyui-frontend-package";

/// Applies the fix-ups to collected requirements (warnings go to
/// `reqs.warnings`); a pack that would downgrade the torch family is an error.
pub(crate) fn apply(reqs: &mut Requirements) -> Result<(), PythonError> {
    check_torch(reqs)?;
    align_opencv(reqs);
    keep_core_frontend(reqs);
    Ok(())
}

fn from_core(r: &Requirement) -> bool {
    r.origin == CORE_ORIGIN
}

fn check_torch(reqs: &Requirements) -> Result<(), PythonError> {
    for name in TORCH_FAMILY {
        let Some(core_version) = reqs
            .requirements
            .iter()
            .filter(|r| from_core(r) && r.name.as_deref() == Some(name))
            .find_map(|r| lower_bound(&r.line))
        else {
            continue;
        };
        for r in reqs
            .requirements
            .iter()
            .filter(|r| !from_core(r) && r.name.as_deref() == Some(name))
        {
            if !allows(&r.line, &core_version) {
                return Err(PythonError::TorchDowngrade {
                    origin: r.origin.clone(),
                    line_no: r.line_no,
                    line: r.line.clone(),
                    package: (*name).to_string(),
                    core: core_version.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Several opencv variants become the one that covers them all: contrib when
/// any pack wants contrib, headless when any wants headless (a worker has no
/// display).
fn align_opencv(reqs: &mut Requirements) {
    let named: Vec<&str> = OPENCV
        .iter()
        .copied()
        .filter(|v| {
            reqs.requirements
                .iter()
                .any(|r| r.name.as_deref() == Some(v))
        })
        .collect();
    if named.len() < 2 {
        return;
    }
    let contrib = named.iter().any(|n| n.contains("contrib"));
    let headless = named.iter().any(|n| n.ends_with("headless"));
    let chosen = match (contrib, headless) {
        (true, true) => "opencv-contrib-python-headless",
        (true, false) => "opencv-contrib-python",
        (false, _) => "opencv-python-headless",
    };
    for r in &mut reqs.requirements {
        let Some(name) = r.name.clone() else { continue };
        if name == chosen || !OPENCV.contains(&name.as_str()) {
            continue;
        }
        let rest = r.line[name_len(&r.line)..].to_string();
        let old = std::mem::replace(&mut r.line, format!("{chosen}{rest}"));
        r.name = Some(chosen.to_string());
        reqs.warnings.push(format!(
            "{} line {}: `{old}` installed as {chosen}: opencv variants overwrite each \
             other's cv2, so one variant serves every pack",
            r.origin, r.line_no
        ));
    }
}

fn keep_core_frontend(reqs: &mut Requirements) {
    if !reqs
        .requirements
        .iter()
        .any(|r| from_core(r) && r.name.as_deref() == Some(FRONTEND))
    {
        return;
    }
    let mut warnings = Vec::new();
    reqs.requirements.retain(|r| {
        let pack_line = !from_core(r) && r.name.as_deref() == Some(FRONTEND);
        if pack_line {
            warnings.push(format!(
                "{} line {}: `{}` ignored: the frontend package stays at the core's pin",
                r.origin, r.line_no, r.line
            ));
        }
        !pack_line
    });
    reqs.warnings.extend(warnings);
}

/// Length of the distribution name at the start of a requirement line.
fn name_len(line: &str) -> usize {
    line.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        .unwrap_or(line.len())
}

/// The specifier clauses of a line: `torch>=2.0,<3 ; marker` → [(">=","2.0"), ("<","3")].
fn clauses(line: &str) -> Vec<(String, String)> {
    let spec = line[name_len(line)..].split(';').next().unwrap_or("");
    let spec = spec.trim().trim_start_matches('[').trim();
    let spec = match spec.find(']') {
        Some(i) if spec[..i].chars().all(|c| c != '<' && c != '>' && c != '=') => &spec[i + 1..],
        _ => spec,
    };
    spec.split(',')
        .filter_map(|c| {
            let c = c.trim();
            let op_len = c
                .find(|ch: char| !matches!(ch, '<' | '>' | '=' | '~' | '!'))
                .unwrap_or(c.len());
            (op_len > 0 && op_len < c.len())
                .then(|| (c[..op_len].to_string(), c[op_len..].trim().to_string()))
        })
        .collect()
}

/// The version the core asks for at least (`==V`, `>=V`, `~=V`).
fn lower_bound(line: &str) -> Option<String> {
    clauses(line)
        .into_iter()
        .find(|(op, _)| matches!(op.as_str(), "==" | ">=" | "~=" | "==="))
        .map(|(_, v)| v.trim_end_matches(".*").to_string())
}

/// Whether every clause of `line` admits `version` (release segments only).
fn allows(line: &str, version: &str) -> bool {
    use std::cmp::Ordering::*;
    let v = release(version);
    clauses(line).iter().all(|(op, bound)| {
        let wildcard = bound.ends_with(".*");
        let b = release(bound.trim_end_matches(".*"));
        let ord = compare(&v, &b);
        match op.as_str() {
            "<" => ord == Less,
            "<=" => ord != Greater,
            ">" => ord == Greater,
            ">=" => ord != Less,
            "==" | "===" if wildcard => v.starts_with(&b),
            "==" | "===" => ord == Equal,
            "!=" if wildcard => !v.starts_with(&b),
            "!=" => ord != Equal,
            "~=" => {
                let prefix = &b[..b.len().saturating_sub(1)];
                ord != Less && v.starts_with(prefix)
            }
            _ => true,
        }
    })
}

/// `2.5.1+cu128` → [2, 5, 1].
fn release(version: &str) -> Vec<u64> {
    version
        .split(['+', '-'])
        .next()
        .unwrap_or("")
        .split('.')
        .map_while(|p| {
            let digits: String = p.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

fn compare(a: &[u64], b: &[u64]) -> std::cmp::Ordering {
    let n = a.len().max(b.len());
    (0..n)
        .map(|i| a.get(i).unwrap_or(&0).cmp(b.get(i).unwrap_or(&0)))
        .find(|o| o.is_ne())
        .unwrap_or(std::cmp::Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(line: &str, origin: &str) -> Requirement {
        Requirement {
            line: line.into(),
            name: Some(super::super::requirements::normalize_name(
                &line[..name_len(line)],
            )),
            origin: origin.into(),
            line_no: 1,
        }
    }

    #[test]
    fn the_core_keeps_its_frontend_pin_and_contrib_headless_covers_all_opencvs() {
        let mut reqs = Requirements {
            requirements: vec![
                req("comfyui-frontend-package==1.28.7", CORE_ORIGIN),
                req(
                    "comfyui-frontend-package>=1.30",
                    "custom_nodes/a/requirements.txt",
                ),
                req(
                    "opencv-contrib-python>=4.8",
                    "custom_nodes/a/requirements.txt",
                ),
                req("opencv-python-headless", "custom_nodes/b/requirements.txt"),
            ],
            ..Requirements::default()
        };
        apply(&mut reqs).unwrap();
        let lines: Vec<&str> = reqs.requirements.iter().map(|r| r.line.as_str()).collect();
        assert_eq!(
            lines,
            [
                "comfyui-frontend-package==1.28.7",
                "opencv-contrib-python-headless>=4.8",
                "opencv-contrib-python-headless",
            ]
        );
        assert_eq!(reqs.warnings.len(), 3, "{:?}", reqs.warnings);
        assert!(
            reqs.warnings
                .iter()
                .any(|w| w.contains("frontend package stays"))
        );
    }

    #[test]
    fn specifiers_are_evaluated_on_release_segments() {
        assert!(allows("torch>=2.0,<3", "2.5.1"));
        assert!(!allows("torch<2", "2.1.0"));
        assert!(!allows("torch==1.13.1", "2.1"));
        assert!(allows("torch==2.*", "2.1"));
        assert!(allows("torch~=2.1", "2.4"));
        assert!(!allows("torch~=1.13", "2.4"));
        assert!(allows("torch", "2.4"));
        assert!(allows("torch[cuda]>=2 ; python_version>'3'", "2.4"));
        assert_eq!(
            lower_bound("torch==2.5.1+cu128").as_deref(),
            Some("2.5.1+cu128")
        );
        assert!(allows("torch>=2.5", "2.5.1+cu128"));
    }
}
