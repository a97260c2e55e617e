//! comfyver-handler (being built).
