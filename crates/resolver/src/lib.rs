//! comfyver-resolver (being built).
