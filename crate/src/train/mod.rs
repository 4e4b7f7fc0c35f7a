//! Fine-tuning, apart from the model: losses and the optimisation step of the paper's
//! recipe (frozen image encoder, LoRA adapters, prompt encoder and mask decoder trained).
//!
//! A sampled slice ([`sampler`]) becomes a [`SliceBatch`] ([`batch`]); [`step()`] takes the
//! slices of one optimiser step, decoding their prompts grouped by shape
//! (`grouped_decode`), with a corrective round (`correction`) where asked. [`trainer`] is
//! the loop around it, [`resume`] its checkpoint for resuming a killed run.

pub mod averaging;
pub mod batch;
mod correction;
mod error;
mod grouped_decode;
pub mod loss;
pub mod plot;
pub mod resume;
pub mod sampler;
pub mod schedule;
mod step;
pub mod trainer;

pub use batch::SliceBatch;
pub use error::TrainError;
pub use loss::LossWeights;
pub use step::{forward_loss, prepare_lora, step};

#[cfg(all(test, feature = "cpu"))]
mod tests;
