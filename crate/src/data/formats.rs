//! Volumes by their bytes, whatever the format: NIfTI-1/-2 or FreeSurfer MGH, each raw or
//! gzip-compressed, or NRRD. What the CLI, the trainer and the page read images and label maps with.

use super::error::Result;
use super::volume::Loaded;
use super::{mgh, nifti, nrrd};

/// An image (`.nii`, `.nii.gz`, `.mgh`, `.mgz`, `.nrrd`) as f32.
pub fn read_image(bytes: &[u8]) -> Result<Loaded<f32>> {
    if nrrd::is_nrrd(bytes) {
        nrrd::read_image(bytes)
    } else if mgh::is_mgh(bytes) {
        mgh::read_image(bytes)
    } else {
        nifti::read_image(bytes)
    }
}

/// A label map (`.nii`, `.nii.gz`, `.mgh`, `.mgz`, `.nrrd`; e.g. FreeSurfer's `aseg.mgz`).
pub fn read_labels(bytes: &[u8]) -> Result<Loaded<i32>> {
    if nrrd::is_nrrd(bytes) {
        nrrd::read_labels(bytes)
    } else if mgh::is_mgh(bytes) {
        mgh::read_labels(bytes)
    } else {
        nifti::read_labels(bytes)
    }
}
