//! The file side of the model: checkpoints read and written by SAM's key names, position
//! embeddings resampled to another input size, the geometry a checkpoint's shapes imply,
//! adapter files and grown encoders.
//!
//! It depends on the architecture and never the other way: `model/` outside `io/` knows
//! nothing about files (as Meta's `modeling/` leaves loading to `load_state_dict`).

pub mod adapter;
pub mod checkpoint;
#[cfg(not(target_family = "wasm"))]
pub mod grow;
mod resample;

pub use adapter::AdapterMeta;
