//! Where a structure ends along a walk, seen across it. Walking slice by slice, the end
//! of a structure is a disappearance, which a 2-D model prompted with the previous box does
//! not see (it fills the box); in the two planes through the seed's interior point across
//! the walk's axis, the same end is an edge in the image, which it does see. So those two
//! slices are segmented from that point, and the run of the walk's slices either mask
//! covers bounds the walk: no thresholds, only the model's masks.

use super::{interior_point, SegmentError, Session, SliceMask, SlicePrompt};
use crate::data::slicing;
use crate::model::io::Cut;
use crate::model::Sam;

/// Per index along `axis`, whether `mask` (slice `k` along `other`) has a pixel there.
fn covered(
    mask: &SliceMask,
    other: usize,
    k: usize,
    axis: usize,
    len: usize,
) -> Result<Vec<bool>, SegmentError> {
    let mut covered = vec![false; len];
    for (i, _) in mask.data.iter().enumerate().filter(|(_, m)| **m != 0) {
        let p = slicing::slice_to_voxel(other, k, i % mask.cols, i / mask.cols)?;
        if let Some(c) = covered.get_mut(p[axis]) {
            *c = true;
        }
    }
    Ok(covered)
}

/// The contiguous run of covered indices that holds `index`, None if `index` is not covered.
fn run_through(covered: &[bool], index: usize) -> Option<(usize, usize)> {
    if !covered.get(index).copied().unwrap_or(false) {
        return None;
    }
    let lo = (0..index)
        .rev()
        .take_while(|&i| covered[i])
        .last()
        .unwrap_or(index);
    let hi = (index + 1..covered.len())
        .take_while(|&i| covered[i])
        .last()
        .unwrap_or(index);
    Some((lo, hi))
}

/// The span of the runs found; None when neither covers the seed.
fn span(runs: &[Option<(usize, usize)>]) -> Option<(usize, usize)> {
    runs.iter()
        .flatten()
        .copied()
        .reduce(|(lo, hi), (a, b)| (lo.min(a), hi.max(b)))
}

impl Session {
    /// The inclusive range of slices along `axis` that the cross sections of `seed` (slice
    /// `index`) cover, or None when the seed is empty or neither section covers its slice.
    pub(super) async fn extent_across(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        seed: &SliceMask,
        structure: Option<usize>,
    ) -> Result<Option<(usize, usize)>, SegmentError> {
        let Some((u, v)) = interior_point(&seed.data, seed.rows, seed.cols) else {
            return Ok(None);
        };
        let voxel = slicing::slice_to_voxel(axis, index, u, v)?;
        let len = self.dims()[axis];
        let mut runs = Vec::with_capacity(2);
        for other in (0..3).filter(|&b| b != axis) {
            let (k, cu, cv) = slicing::voxel_to_slice(other, voxel)?;
            let prompt = SlicePrompt {
                points: vec![[cu as f32, cv as f32, 1.0]],
                structure,
                ..Default::default()
            };
            let mask = self.predict_cut(sam, other, k, &prompt, Cut::Walk).await?;
            runs.push(run_through(&covered(&mask, other, k, axis, len)?, index));
        }
        Ok(span(&runs))
    }
}

#[cfg(test)]
mod tests {
    use super::{covered, run_through, span};
    use crate::segment::SliceMask;

    #[test]
    fn the_run_through_the_seed_ignores_covered_slices_beyond_a_gap() {
        let c = [true, false, true, true, true, false, true];
        assert_eq!(run_through(&c, 3), Some((2, 4)));
        assert_eq!(run_through(&c, 2), Some((2, 4)));
        assert_eq!(run_through(&c, 0), Some((0, 0)));
        assert_eq!(run_through(&c, 1), None);
        assert_eq!(run_through(&c, 9), None);
    }

    #[test]
    fn the_bound_spans_both_runs_or_the_one_found() {
        assert_eq!(span(&[Some((3, 9)), Some((5, 12))]), Some((3, 12)));
        assert_eq!(span(&[None, Some((5, 12))]), Some((5, 12)));
        assert_eq!(span(&[None, None]), None);
    }

    #[test]
    fn a_coronal_mask_covers_the_axial_slices_of_its_rows() {
        // Coronal slice (axis 1) of a 6 × 8 × 5 volume: u = x (6 cols), v = z (5 rows).
        // The mask has pixels at z 1 and z 2 only.
        let (rows, cols) = (5, 6);
        let mut data = vec![0u8; rows * cols];
        data[cols + 1] = 1;
        data[2 * cols + 4] = 1;
        let mask = SliceMask {
            rows,
            cols,
            data,
            iou: 1.0,
            low_res_logits: Vec::new(),
        };
        // Along axis 2 (axial): indices are z.
        let c = covered(&mask, 1, 4, 2, 5).unwrap();
        assert_eq!(c, vec![false, true, true, false, false]);
        // Along axis 0 (sagittal): indices are x.
        let c = covered(&mask, 1, 4, 0, 6).unwrap();
        assert_eq!(c, vec![false, true, false, false, true, false]);
    }
}
