//! comfyver binary.
fn main() {}
