//! Segmenting an MRI volume slice by slice with SAM: what the CLI (`segment`, `evaluate`)
//! and the browser share.
//!
//! A [`Session`] holds one volume reoriented to canonical RAS+ (the orientation the model
//! was trained in), its intensity normaliser, and the image embeddings of the slices
//! encoded so far (`cache`), so that many prompts on one slice cost one encoder pass. A
//! [`Focus`] predicts on a window around each prompt instead of the whole slice; prompts
//! come from files ([`prompts`]), and a mask grows through the volume by propagation.

mod across;
mod cache;
mod error;
mod focus;
mod planes;
pub mod prompts;
mod propagate;
mod session;

pub use error::SegmentError;
pub use focus::Focus;
pub use prompts::{bbox, interior_point, PromptFile, SlicePrompt};
pub use propagate::{End, Propagation, StopReason, StopRules};
pub use session::{Session, SliceMask, SliceScores};

#[cfg(all(test, feature = "cpu"))]
mod tests;
