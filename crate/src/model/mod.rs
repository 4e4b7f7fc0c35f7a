//! Segment Anything, one module per component as in Meta's `modeling/`.
//!
//! Every module is a burn `Module` built from a `Config` and runs on any device (NdArray on
//! the CPU, wgpu natively or WebGPU in a browser). Weights load by the official checkpoint
//! key names, so `sam_vit_b_01ec64.pth` loads unchanged.

pub mod adapter;
pub mod build;
pub mod checkpoint;
pub mod common;
#[cfg(not(target_family = "wasm"))]
pub mod grow;
pub mod image_encoder;
pub mod lora;
pub mod mask_decoder;
pub mod predictor;
pub mod prompt_encoder;
pub mod sam;
pub mod transformer;
pub mod transforms;

pub use build::Geometry;
pub use predictor::{PredictError, Prediction, Prompt, SamPredictor};
pub use sam::{Prompts, Sam, SamConfig};
