//! comfyver-models (being built).
