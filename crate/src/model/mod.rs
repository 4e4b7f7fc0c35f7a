//! Segment Anything, one module per component as in Meta's `modeling/`.
//!
//! Layers from the bottom: CPU inference kernels ([`kernels`]), shared layers ([`common`])
//! and LoRA adapters ([`lora`]); the three components ([`image_encoder`],
//! [`prompt_encoder`], [`mask_decoder`] with its [`transformer`]); the whole model
//! ([`sam`]) with our optional [`fine_features`]; presets ([`build`]) and the predictor ([`predictor`], [`transforms`],
//! [`mask_grid`]). Every module is a burn `Module` built from a `Config` and runs on any
//! device (Flex or LibTorch on the CPU, wgpu natively or WebGPU in a browser).
//!
//! Files are [`io`]'s business alone: weights load by the official checkpoint key names
//! (so `sam_vit_b_01ec64.pth` loads unchanged), and [`io::load_model`] is the one way to
//! load a model file with its adapter and metadata.

pub mod build;
pub mod common;
pub mod fine_features;
pub mod image_encoder;
pub mod io;
pub mod kernels;
pub mod lora;
pub mod mask_decoder;
pub mod mask_grid;
pub mod predictor;
pub mod prompt_encoder;
pub mod sam;
pub mod transformer;
pub mod transforms;

pub use build::Geometry;
pub use predictor::{PredictError, Prediction, Prompt, SamPredictor};
pub use sam::{Prompts, Sam, SamConfig};
