//! Rules for names that become paths, so nothing is written outside its directory.

/// Why a name cannot be used as a single path component, or `None` when it can.
///
/// A safe name is non-empty, at most 255 bytes, not `.` or `..`, does not start
/// with `.` or `-`, and holds only letters, digits and `._-+@ ()[],=`
/// (no slashes, backslashes, control characters or NUL).
pub fn unsafe_component_reason(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("must not be empty".into());
    }
    if name.len() > 255 {
        return Some("must be at most 255 bytes long".into());
    }
    if name == "." || name == ".." {
        return Some(format!("`{name}` would point outside its directory"));
    }
    if name.contains('/') || name.contains('\\') {
        return Some(format!(
            "`{name}` contains a path separator; it must be a single file or directory name"
        ));
    }
    if name.starts_with('.') {
        return Some(format!("`{name}` must not start with `.` (hidden entry)"));
    }
    if name.starts_with('-') {
        return Some(format!("`{name}` must not start with `-`"));
    }
    if let Some(c) = name.chars().find(|c| !is_allowed(*c)) {
        return Some(format!(
            "`{}` contains the character {c:?}; use letters, digits and ._-+@ ()[],=",
            name.escape_debug()
        ));
    }
    None
}

/// Whether `name` is safe as a single path component.
pub fn is_safe_component(name: &str) -> bool {
    unsafe_component_reason(name).is_none()
}

/// Why a relative path (`a/b/c`) is unsafe, or `None` when every component is safe.
pub fn unsafe_relative_path_reason(path: &str) -> Option<String> {
    if path.starts_with('/') || path.starts_with('\\') {
        return Some(format!(
            "`{path}` is absolute; it must be relative to the store"
        ));
    }
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return Some("must not be empty".into());
    }
    for part in trimmed.split('/') {
        if let Some(reason) = unsafe_component_reason(part) {
            return Some(format!("path component {reason}"));
        }
    }
    None
}

/// Whether a version id is safe: a safe component of at most 128 bytes.
pub fn version_id_reason(id: &str) -> Option<String> {
    if id.len() > 128 {
        return Some("must be at most 128 bytes long".into());
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        if c == '/' || c == '\\' {
            return Some(format!("`{id}` contains a path separator"));
        }
        return Some(format!(
            "`{}` contains {c:?}; use ASCII letters, digits, `.`, `_` and `-`",
            id.escape_debug()
        ));
    }
    unsafe_component_reason(id)
}

fn is_allowed(c: char) -> bool {
    (c.is_alphanumeric() && !c.is_control())
        || matches!(
            c,
            '.' | '_' | '-' | '+' | '@' | ' ' | '(' | ')' | '[' | ']' | ',' | '='
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components() {
        for ok in [
            "ComfyUI-Manager",
            "model.safetensors",
            "a b (1).ckpt",
            "été",
        ] {
            assert!(is_safe_component(ok), "{ok}");
        }
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", ".hidden", "-rf", "a\0b", "a\nb",
        ] {
            assert!(!is_safe_component(bad), "{bad:?}");
        }
    }

    #[test]
    fn relative_paths() {
        assert!(unsafe_relative_path_reason("loras/sdxl").is_none());
        assert!(unsafe_relative_path_reason("/abs").is_some());
        assert!(unsafe_relative_path_reason("a/../b").is_some());
        assert!(unsafe_relative_path_reason("").is_some());
    }

    #[test]
    fn version_ids() {
        assert!(version_id_reason("sdxl-2024.10_a").is_none());
        assert!(version_id_reason("a b").is_some());
        assert!(version_id_reason("../x").is_some());
    }
}
