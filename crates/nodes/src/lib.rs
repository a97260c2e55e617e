//! comfyver-nodes (being built).
