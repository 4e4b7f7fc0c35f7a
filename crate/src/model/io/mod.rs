//! The file side of the model: checkpoints read and written by SAM's key names, position
//! embeddings resampled to another input size, the geometry a checkpoint's shapes imply,
//! adapter files, grown encoders, and the model file every caller loads through.
//!
//! It depends on the architecture and never the other way: `model/` outside `io/` knows
//! nothing about files (as Meta's `modeling/` leaves loading to `load_state_dict`).

pub mod adapter;
pub mod centre_input;
pub mod checkpoint;
#[cfg(not(target_family = "wasm"))]
pub mod grow;
mod header;
pub mod model_file;
mod resample;

pub use adapter::AdapterMeta;
pub use model_file::{
    load_model, model_bytes, state_dict_bytes, with_mask_thresholds, Cut, Focus, LoadedModel,
    MaskThresholds, ModelFileError, ModelMeta,
};
