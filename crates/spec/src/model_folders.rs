//! ComfyUI's model folders (`folder_paths.py`) and their legacy aliases.

/// The folder a model lands in when the spec names none.
pub const DEFAULT_FOLDER: &str = "checkpoints";

/// Every model folder ComfyUI knows, with its default directories under
/// `<base>/models/`. The list covers v0.3.64 and the folders added later.
pub const MODEL_FOLDERS: &[(&str, &[&str])] = &[
    ("checkpoints", &["checkpoints"]),
    ("configs", &["configs"]),
    ("loras", &["loras"]),
    ("vae", &["vae"]),
    ("text_encoders", &["text_encoders", "clip"]),
    ("diffusion_models", &["unet", "diffusion_models"]),
    ("clip_vision", &["clip_vision"]),
    ("style_models", &["style_models"]),
    ("embeddings", &["embeddings"]),
    ("diffusers", &["diffusers"]),
    ("vae_approx", &["vae_approx"]),
    ("controlnet", &["controlnet", "t2i_adapter"]),
    ("gligen", &["gligen"]),
    ("upscale_models", &["upscale_models"]),
    ("hypernetworks", &["hypernetworks"]),
    ("photomaker", &["photomaker"]),
    ("classifiers", &["classifiers"]),
    ("model_patches", &["model_patches"]),
    ("audio_encoders", &["audio_encoders"]),
    ("latent_upscale_models", &["latent_upscale_models"]),
    ("background_removal", &["background_removal"]),
    ("frame_interpolation", &["frame_interpolation"]),
    ("geometry_estimation", &["geometry_estimation"]),
    ("optical_flow", &["optical_flow"]),
    ("detection", &["detection"]),
];

/// Maps ComfyUI's legacy folder names: `clip` → `text_encoders`,
/// `unet` → `diffusion_models`; any other name is returned unchanged.
pub fn map_legacy(name: &str) -> &str {
    match name {
        "clip" => "text_encoders",
        "unet" => "diffusion_models",
        other => other,
    }
}

/// Whether `name` (after legacy mapping) is one of ComfyUI's model folders,
/// or one of their default directories (`t2i_adapter` is a directory of
/// `controlnet`).
pub fn is_known(name: &str) -> bool {
    let name = map_legacy(name);
    MODEL_FOLDERS
        .iter()
        .any(|(k, dirs)| *k == name || dirs.contains(&name))
}

/// Keys of an `extra_model_paths.yaml` section that are not model folders:
/// `base_path` and `is_default` are settings, and `custom_nodes` adds a
/// directory ComfyUI imports node packs from. A `target_subdir` may not use
/// them (nor flatten to them: `custom/nodes` would be `custom_nodes`).
pub const RESERVED_YAML_KEYS: &[&str] = &["base_path", "is_default", "custom_nodes"];

/// The `extra_model_paths.yaml` key comfyver registers a nested custom folder
/// under, as packs name them: `ultralytics/bbox` → `ultralytics_bbox`.
pub fn nested_key(subdir: &str) -> String {
    subdir.trim_matches('/').replace('/', "_")
}

/// Folders that packs register over a core folder's directories, with the
/// folder to use instead (ComfyUI-GGUF lists `.gguf` files of `unet_gguf`
/// from the `diffusion_models` directories, `clip_gguf` from `text_encoders`).
pub fn registered_over(name: &str) -> Option<&'static str> {
    match name {
        "unet_gguf" => Some("diffusion_models"),
        "clip_gguf" => Some("text_encoders"),
        _ => None,
    }
}

/// The names of every known folder (for "did you mean" suggestions).
pub fn names() -> Vec<&'static str> {
    MODEL_FOLDERS.iter().map(|(k, _)| *k).collect()
}
