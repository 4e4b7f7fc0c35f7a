//! A propagated structure checked from the other two sides. One walk along one axis
//! compounds its errors along that axis only: past a structure's end it keeps finding
//! something like the previous mask, while a walk across it sees that end in-plane. So the
//! first walk's largest section across each other axis, re-segmented there with its box,
//! seeds a walk along that axis, and a voxel is kept where two of the three walks agree.

use super::{bbox, propagate::Propagation, SegmentError, Session, SlicePrompt, StopRules};
use crate::data::slicing;
use crate::model::io::Cut;
use crate::model::Sam;

/// Per index along `axis`, the voxels of `mask` (1 inside) on that slice.
fn section_areas(mask: &[u8], dims: [usize; 3], axis: usize) -> Vec<usize> {
    let mut areas = vec![0usize; dims[axis]];
    for (i, &m) in mask.iter().enumerate() {
        if m != 0 {
            let at = [
                i % dims[0],
                (i / dims[0]) % dims[1],
                i / (dims[0] * dims[1]),
            ];
            areas[at[axis]] += 1;
        }
    }
    areas
}

/// The index of the largest value (the first of equals), None when all are zero.
fn largest(areas: &[usize]) -> Option<usize> {
    let (k, &a) = areas.iter().enumerate().rev().max_by_key(|(_, a)| **a)?;
    (a > 0).then_some(k)
}

/// Voxels on which at least `quorum` of the masks agree.
fn vote(masks: &[Vec<u8>], quorum: usize) -> Vec<u8> {
    (0..masks[0].len())
        .map(|i| u8::from(masks.iter().filter(|m| m[i] != 0).count() >= quorum))
        .collect()
}

impl Session {
    /// `first` (a walk along `axis`) reconciled with one walk along each other axis; the
    /// ends reported stay the first walk's.
    pub(super) async fn reconcile_planes(
        &mut self,
        sam: &Sam,
        axis: usize,
        first: Propagation,
        structure: Option<usize>,
        rules: &StopRules,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Propagation, SegmentError> {
        let dims = self.dims();
        let as_labels = self
            .canonical_image()
            .with_data(first.mask.iter().map(|&m| i32::from(m)).collect())?;
        let mut masks = vec![first.mask.clone()];
        for other in (0..3).filter(|&b| b != axis) {
            let Some(k) = largest(&section_areas(&first.mask, dims, other)) else {
                continue;
            };
            let plane = slicing::slice(&as_labels, other, k)?;
            let section: Vec<u8> = plane.data.iter().map(|&v| u8::from(v != 0)).collect();
            let Some([u0, v0, u1, v1]) = bbox(&section, plane.rows, plane.cols) else {
                continue;
            };
            let prompt = SlicePrompt {
                bbox: Some([u0 as f32, v0 as f32, u1 as f32, v1 as f32]),
                structure,
                ..Default::default()
            };
            let seed = self.predict_cut(sam, other, k, &prompt, Cut::Walk).await?;
            let walk = self
                .walk(sam, other, k, &seed, structure, rules, progress)
                .await?;
            masks.push(walk.mask);
        }
        // Without both cross walks there is nothing to outvote the first.
        let mask = if masks.len() == 3 {
            vote(&masks, 2)
        } else {
            first.mask
        };
        Ok(Propagation {
            mask,
            ends: first.ends,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{largest, section_areas, vote};

    #[test]
    fn sections_are_counted_per_axis_and_the_largest_found() {
        // 3 × 2 × 2, x fastest: voxels (0,0,0), (1,0,0), (1,1,1) set.
        let dims = [3, 2, 2];
        let mut mask = vec![0u8; 12];
        for [x, y, z] in [[0, 0, 0], [1, 0, 0], [1, 1, 1]] {
            mask[x + 3 * (y + 2 * z)] = 1;
        }
        assert_eq!(section_areas(&mask, dims, 0), vec![1, 2, 0]);
        assert_eq!(section_areas(&mask, dims, 1), vec![2, 1]);
        assert_eq!(section_areas(&mask, dims, 2), vec![2, 1]);
        assert_eq!(largest(&[0, 3, 1, 3]), Some(1));
        assert_eq!(largest(&[0, 0]), None);
    }

    #[test]
    fn two_of_three_walks_keep_a_voxel() {
        let masks = vec![vec![1, 1, 0, 1], vec![1, 0, 0, 0], vec![0, 1, 1, 0]];
        assert_eq!(vote(&masks, 2), vec![1, 1, 0, 0]);
        assert_eq!(vote(&masks, 1), vec![1, 1, 1, 1]);
    }
}
