use crate::VersionSpec;

/// The JSON Schema of a version spec, pretty-printed with a trailing newline
/// (the text of `docs/version.schema.json`).
pub fn spec_json_schema() -> String {
    let schema = schemars::schema_for!(VersionSpec);
    let mut text = serde_json::to_string_pretty(&schema).expect("schema serializes");
    text.push('\n');
    text
}
