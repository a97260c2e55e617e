//! comfyver-testkit (being built).
