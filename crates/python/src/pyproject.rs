//! Reads `[project].dependencies` from a `pyproject.toml`.
//!
//! A deliberately tiny parser for that one array (TOML basic and literal
//! strings, comments, newlines, trailing commas) instead of a TOML crate:
//! nothing else of the file is needed, and anything it does not understand
//! is an error rather than a guess.

/// What a pyproject says about its dependencies.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Dependencies {
    /// `dependencies = [...]`.
    Listed(Vec<String>),
    /// `dependencies` is named in `dynamic` (computed by the build backend).
    Dynamic,
    /// No `[project]` table or no `dependencies` key.
    None,
}

/// Parses `[project].dependencies` out of a pyproject text.
pub(crate) fn project_dependencies(text: &str) -> Result<Dependencies, String> {
    let mut in_project = false;
    let mut dynamic = false;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_project = trimmed.split('#').next().unwrap_or("").trim() == "[project]";
            continue;
        }
        if !in_project {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            continue;
        };
        let key = key.trim().trim_matches('"');
        if key != "dependencies" && key != "dynamic" {
            continue;
        }
        // Gather the array, possibly over several lines.
        let mut array = value.trim().to_string();
        while !array_closed(&array)? {
            match lines.next() {
                Some(next) => {
                    array.push('\n');
                    array.push_str(next);
                }
                None => return Err(format!("unterminated `{key}` array")),
            }
        }
        let items = parse_array(&array)?;
        if key == "dynamic" {
            dynamic = items.iter().any(|i| i == "dependencies");
        } else {
            return Ok(Dependencies::Listed(items));
        }
    }
    Ok(if dynamic {
        Dependencies::Dynamic
    } else {
        Dependencies::None
    })
}

/// Whether the text starting with `[` has its closing `]` (outside strings and comments).
fn array_closed(text: &str) -> Result<bool, String> {
    match scan(text) {
        Ok(_) => Ok(true),
        Err(Scan::Incomplete) => Ok(false),
        Err(Scan::Invalid(m)) => Err(m),
    }
}

fn parse_array(text: &str) -> Result<Vec<String>, String> {
    scan(text).map_err(|e| match e {
        Scan::Incomplete => "unterminated array".to_string(),
        Scan::Invalid(m) => m,
    })
}

enum Scan {
    Incomplete,
    Invalid(String),
}

fn scan(text: &str) -> Result<Vec<String>, Scan> {
    let mut chars = text.chars().peekable();
    if chars.next() != Some('[') {
        return Err(Scan::Invalid("expected an array `[...]`".into()));
    }
    let mut items = Vec::new();
    let mut expect_value = true;
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\r' | '\n' => {}
            '#' => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            ',' if !expect_value => expect_value = true,
            ']' => return Ok(items),
            '"' | '\'' if expect_value => {
                if chars.peek() == Some(&c) {
                    chars.next();
                    if chars.peek() == Some(&c) {
                        return Err(Scan::Invalid("multi-line strings are not supported".into()));
                    }
                    items.push(String::new());
                } else {
                    items.push(read_string(&mut chars, c)?);
                }
                expect_value = false;
            }
            other => {
                return Err(Scan::Invalid(format!(
                    "unexpected `{other}` in the array (only strings are allowed)"
                )));
            }
        }
    }
    Err(Scan::Incomplete)
}

fn read_string(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    quote: char,
) -> Result<String, Scan> {
    let mut s = String::new();
    while let Some(c) = chars.next() {
        if c == quote {
            return Ok(s);
        }
        if c == '\n' {
            return Err(Scan::Invalid("newline inside a string".into()));
        }
        if c == '\\' && quote == '"' {
            match chars.next() {
                Some('"') => s.push('"'),
                Some('\\') => s.push('\\'),
                Some('n') => s.push('\n'),
                Some('t') => s.push('\t'),
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let ch = u32::from_str_radix(&hex, 16)
                        .ok()
                        .and_then(char::from_u32)
                        .ok_or_else(|| Scan::Invalid(format!("bad escape \\u{hex}")))?;
                    s.push(ch);
                }
                Some(other) => return Err(Scan::Invalid(format!("unsupported escape \\{other}"))),
                None => return Err(Scan::Incomplete),
            }
        } else {
            s.push(c);
        }
    }
    Err(Scan::Incomplete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_multiline_array_with_comments() {
        let text = r#"
[build-system]
requires = ["setuptools"]

[project]
name = "pack"
dependencies = [
    "pyprojdep>=1.0",  # a comment, with ] inside
    'literal[extra]; python_version >= "3.8"',
    "esc\"aped",
]

[tool.comfy]
dependencies = ["not-this"]
"#;
        assert_eq!(
            project_dependencies(text).unwrap(),
            Dependencies::Listed(vec![
                "pyprojdep>=1.0".into(),
                "literal[extra]; python_version >= \"3.8\"".into(),
                "esc\"aped".into(),
            ])
        );
    }

    #[test]
    fn dynamic_and_absent() {
        assert_eq!(
            project_dependencies("[project]\ndynamic = [\"dependencies\"]\n").unwrap(),
            Dependencies::Dynamic
        );
        assert_eq!(
            project_dependencies("[tool.x]\ndependencies = [\"a\"]\n").unwrap(),
            Dependencies::None
        );
        assert_eq!(
            project_dependencies("[project]\ndependencies = []\n").unwrap(),
            Dependencies::Listed(vec![])
        );
    }

    #[test]
    fn garbage_is_an_error() {
        let err = |text: &str| project_dependencies(text).unwrap_err();
        assert_eq!(
            err("[project]\ndependencies = [1, 2]\n"),
            "unexpected `1` in the array (only strings are allowed)"
        );
        assert_eq!(
            err("[project]\ndependencies = [\"a\"\n"),
            "unterminated `dependencies` array"
        );
        assert_eq!(
            err("[project]\ndependencies = [\"\"\"a\"\"\"]\n"),
            "multi-line strings are not supported"
        );
        assert_eq!(
            err("[project]\ndependencies = \"a\"\n"),
            "expected an array `[...]`"
        );
    }
}
