//! brainsam: Segment Anything for subcortical brain structures in MRI.
//!
//! One crate, two builds: natively a command-line tool (fine-tuning, batch segmentation),
//! in wasm the engine of a browser app running on WebGPU. Model code is backend-agnostic;
//! the device is chosen at run time (see [`backend`]).

pub mod backend;
#[cfg(not(target_family = "wasm"))]
pub mod bench;
pub mod data;
pub mod model;
pub mod segment;
#[cfg(feature = "train")]
pub mod train;
// The browser surface; its pure helpers also build natively for their tests.
#[cfg(any(target_family = "wasm", test))]
pub mod wasm;
pub mod weights;
