// Model type folders (ComfyUI's folder_paths names, as library/layout.py MODEL_TYPES).
// Exports only (see ../common/dom.js).

export const MODEL_TYPES = [
  "checkpoints",
  "loras",
  "vae",
  "text_encoders",
  "diffusion_models",
  "clip_vision",
  "style_models",
  "embeddings",
  "diffusers",
  "vae_approx",
  "controlnet",
  "gligen",
  "upscale_models",
  "latent_upscale_models",
  "hypernetworks",
  "photomaker",
  "classifiers",
  "model_patches",
  "audio_encoders",
];

export const STATUS_LABELS = {
  verified: "verified",
  unverified: "unverified",
  corrupted: "corrupted",
  missing: "missing",
  pickle: "pickle",
};
