//! A whole structure in 3-D from one slice: each neighbour is prompted with the box of the
//! mask next to it, until the structure ends.

use super::{bbox, SegmentError, Session, SliceMask, SlicePrompt};
use crate::model::Sam;

/// Masks smaller than this (pixels) end the structure.
const MIN_AREA: usize = 3;
/// A neighbour whose area jumps by more than this factor has leaked into another structure.
const MAX_GROWTH: f64 = 2.5;
/// The decoder's own IoU estimate below which a slice is not trusted.
const MIN_IOU: f32 = 0.35;

impl Session {
    /// Propagates `seed` (the mask on slice `index` along `axis`) in both directions and
    /// returns the canonical 3-D mask (1 inside). `progress(done, total)` is called per slice.
    pub async fn propagate(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        seed: &SliceMask,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<u8>, SegmentError> {
        let dims = self.dims();
        if axis > 2 || index >= dims[axis] {
            return Err(SegmentError::Prompt(format!(
                "slice {index} on axis {axis} is outside the volume"
            )));
        }
        let mut out = vec![0i32; dims.iter().product()];
        self.paste(&mut out, axis, index, seed, 1)?;
        let total = dims[axis];
        let mut done = 1;
        for dir in [1isize, -1] {
            let mut prev = seed.clone();
            let mut i = index as isize + dir;
            while i >= 0 && (i as usize) < dims[axis] {
                let Some([u0, v0, u1, v1]) = bbox(&prev.data, prev.rows, prev.cols) else {
                    break;
                };
                let m = 1.0;
                let b = [
                    (u0 as f32 - m).max(0.0),
                    (v0 as f32 - m).max(0.0),
                    (u1 as f32 + m).min(prev.cols as f32 - 1.0),
                    (v1 as f32 + m).min(prev.rows as f32 - 1.0),
                ];
                let prompt = SlicePrompt {
                    bbox: Some(b),
                    ..Default::default()
                };
                let mask = self.predict(sam, axis, i as usize, &prompt).await?;
                let area = mask.area();
                done += 1;
                progress(done, total);
                if area < MIN_AREA
                    || mask.iou < MIN_IOU
                    || area as f64 > MAX_GROWTH * prev.area() as f64
                {
                    break;
                }
                self.paste(&mut out, axis, i as usize, &mask, 1)?;
                prev = mask;
                i += dir;
            }
        }
        progress(total, total);
        Ok(out.into_iter().map(|v| v as u8).collect())
    }
}
