//! comfyver-realize (being built).
