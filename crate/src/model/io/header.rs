//! The safetensors header entries of brainsam's files: every key in one place, and the
//! reader of a file's header. [`super::model_file::ModelMeta`] and the adapter file parse
//! and write the values.

use std::collections::HashMap;

/// Model files: "segment-anything" (informative).
pub const FORMAT_KEY: &str = "format";
pub const FORMAT: &str = "segment-anything";
/// Model files: the geometry as JSON (informative: the geometry is read off the shapes).
pub const GEOMETRY_KEY: &str = "geometry";
/// Model files: the focus the model was trained for, as JSON.
pub const FOCUS_KEY: &str = "brainsam.focus";
/// Model files: the slice gap of the model's 2.5-D input (absent: 0, three copies of a slice).
pub const SLICE_GAP_KEY: &str = "brainsam.slice_gap";
/// Model files: "dense" when the model was trained to propagate a structure through the
/// volume with the neighbouring slice's mask as its dense prompt (absent: not).
pub const PROPAGATION_KEY: &str = "brainsam.propagation";
pub const DENSE_PROPAGATION: &str = "dense";
/// Model files: the logit threshold of each structure kind's masks, on slices and in
/// walks, as JSON `{"slice": [..], "walk": [..]}` (absent: SAM's 0 for every kind).
pub const MASK_THRESHOLDS_KEY: &str = "brainsam.mask_thresholds";
/// Adapter files: their metadata, as JSON.
pub const ADAPTER_KEY: &str = "brainsam_adapter";

/// The header's metadata, if the bytes are a safetensors file that has one.
pub fn header_of(bytes: &[u8]) -> Option<HashMap<String, String>> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    meta.metadata().clone()
}
