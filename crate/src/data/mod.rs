//! Brain MRI data pipeline: NIfTI I/O, MGH and NRRD input, canonical reorientation, slicing, subcortical label
//! sets, dataset adapters, synthetic multi-contrast images, metrics and montages.
//!
//! Plain Rust (no tensor framework) and wasm-compatible: readers take `&[u8]`, writers
//! return `Vec<u8>`; the few path helpers are thin wrappers.

pub mod datasets;
pub mod error;
pub mod formats;
pub mod labels;
pub mod metrics;
pub mod mgh;
pub mod montage;
pub mod nifti;
pub mod nrrd;
pub mod orient;
pub mod rng;
pub mod slicing;
pub mod synth;
pub mod volume;

#[cfg(test)]
mod testutil;

pub use error::{DataError, Result};
pub use formats::{read_image, read_labels};
pub use labels::{Convention, Structure, LATERAL_VENTRICLES, SUBCORTICAL};
pub use nifti::header::{NiftiHeader, NiftiVersion};
pub use nifti::{write_image, write_labels, OutType};
pub use orient::{to_canonical, Orientation};
pub use volume::{LabelVolume, Loaded, Volume};
