//! Where a structure ends along a walk, seen across it. Walking slice by slice, the end
//! of a structure is a disappearance, which a 2-D model prompted with the previous box does
//! not see (it fills the box); in the two planes through the seed's interior point across
//! the walk's axis, the same end is an edge in the image, which it does see. So those two
//! slices are segmented from that point, and the run of the walk's slices their masks cover
//! bounds the walk: no thresholds, only the model's masks.

use super::{interior_point, SegmentError, Session, SliceMask, SlicePrompt};
use crate::data::slicing;
use crate::model::Sam;

/// How the two cross sections bound a walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Across {
    /// Not used: the walk ends by the other rules only.
    #[default]
    Off,
    /// From the first to the last slice either cross section covers (a curved structure
    /// may leave one of the two lines early).
    Either,
    /// Only the slices both cover.
    Both,
}

/// A cross mask's chord on one slice of the walk: its two ends as (u, v) of that slice.
pub(super) type Chord = [(usize, usize); 2];

/// The cross sections of a seed: the slices of the walk they bound and, per slice, their
/// chords on it (each a segment of the structure seen from the side).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct CrossSections {
    /// Inclusive range of slice indices along the walk's axis.
    pub range: (usize, usize),
    /// Per slice index, the chords of the cross masks that cover it within `range`.
    pub chords: Vec<Vec<Chord>>,
}

impl CrossSections {
    /// The middle of each chord on slice `i`: points inside the structure as seen from the
    /// side.
    pub fn anchors(&self, i: usize) -> Vec<(usize, usize)> {
        self.chords.get(i).map_or_else(Vec::new, |c| {
            c.iter()
                .map(|[(u0, v0), (u1, v1)]| ((u0 + u1) / 2, (v0 + v1) / 2))
                .collect()
        })
    }

    /// The box `[u0, v0, u1, v1]` around the chords on slice `i`, None if there are none.
    pub fn chord_box(&self, i: usize) -> Option<[usize; 4]> {
        let ends = self.chords.get(i)?.iter().flatten();
        ends.fold(None, |b, &(u, v)| {
            Some(match b {
                None => [u, v, u, v],
                Some([a, c, d, e]) => [a.min(u), c.min(v), d.max(u), e.max(v)],
            })
        })
    }
}

/// Per slice along `axis`, the chord that `mask` (slice `k` along `other`) has on it
/// (None where it has no pixel there), as (u, v) ends in `axis`'s plane.
fn chords(
    mask: &SliceMask,
    other: usize,
    k: usize,
    axis: usize,
    len: usize,
) -> Result<Vec<Option<Chord>>, SegmentError> {
    let mut spans: Vec<Option<([usize; 3], [usize; 3])>> = vec![None; len];
    for row in 0..mask.rows {
        for col in 0..mask.cols {
            if mask.data[row * mask.cols + col] == 0 {
                continue;
            }
            let p = slicing::slice_to_voxel(other, k, col, row)?;
            if let Some(s) = spans.get_mut(p[axis]) {
                *s = Some(match *s {
                    None => (p, p),
                    Some((lo, hi)) => (
                        std::array::from_fn(|i| lo[i].min(p[i])),
                        std::array::from_fn(|i| hi[i].max(p[i])),
                    ),
                });
            }
        }
    }
    spans
        .into_iter()
        .map(|s| {
            s.map(|(lo, hi)| {
                let (_, u0, v0) = slicing::voxel_to_slice(axis, lo)?;
                let (_, u1, v1) = slicing::voxel_to_slice(axis, hi)?;
                Ok([(u0, v0), (u1, v1)])
            })
            .transpose()
        })
        .collect()
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

/// Two cross sections' runs combined; None when neither covers the seed.
fn combine(runs: &[Option<(usize, usize)>], how: Across) -> Option<(usize, usize)> {
    let found: Vec<(usize, usize)> = runs.iter().flatten().copied().collect();
    let (first, rest) = found.split_first()?;
    Some(rest.iter().fold(*first, |(lo, hi), &(a, b)| match how {
        Across::Both => (lo.max(a), hi.min(b)),
        _ => (lo.min(a), hi.max(b)),
    }))
}

impl Session {
    /// The cross sections of `seed` (slice `index` along `axis`), or None when the seed is
    /// empty, `how` is off, or neither section covers the seed's slice.
    pub(super) async fn cross_sections(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        seed: &SliceMask,
        structure: Option<usize>,
        how: Across,
    ) -> Result<Option<CrossSections>, SegmentError> {
        if how == Across::Off {
            return Ok(None);
        }
        let Some((u, v)) = interior_point(&seed.data, seed.rows, seed.cols) else {
            return Ok(None);
        };
        let voxel = slicing::slice_to_voxel(axis, index, u, v)?;
        let len = self.dims()[axis];
        let mut runs = Vec::with_capacity(2);
        let mut chords_at = vec![Vec::new(); len];
        for other in (0..3).filter(|&b| b != axis) {
            let (k, cu, cv) = slicing::voxel_to_slice(other, voxel)?;
            let prompt = SlicePrompt {
                points: vec![[cu as f32, cv as f32, 1.0]],
                structure,
                ..Default::default()
            };
            let mask = self.predict(sam, other, k, &prompt).await?;
            let mids = chords(&mask, other, k, axis, len)?;
            let covered: Vec<bool> = mids.iter().map(Option::is_some).collect();
            let run = run_through(&covered, index);
            if let Some((lo, hi)) = run {
                for (i, m) in mids.iter().enumerate().take(hi + 1).skip(lo) {
                    chords_at[i].extend(*m);
                }
            }
            runs.push(run);
        }
        Ok(combine(&runs, how).map(|range| CrossSections {
            range,
            chords: chords_at,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{chords, combine, run_through, Across, CrossSections};
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
    fn either_spans_both_runs_both_keeps_their_overlap() {
        let runs = [Some((3, 9)), Some((5, 12))];
        assert_eq!(combine(&runs, Across::Either), Some((3, 12)));
        assert_eq!(combine(&runs, Across::Both), Some((5, 9)));
        assert_eq!(combine(&[None, Some((5, 12))], Across::Both), Some((5, 12)));
        assert_eq!(combine(&[None, None], Across::Either), None);
    }

    #[test]
    fn a_coronal_mask_gives_axial_extent_and_chord_middles() {
        // Coronal slice (axis 1) at y = 4 of a 6 × 8 × 5 volume: u = x (6 cols), v = z (5
        // rows). The mask covers x 1..=3 at z 1 and x 2..=4 at z 2.
        let (rows, cols) = (5, 6);
        let mut data = vec![0u8; rows * cols];
        for (z, xs) in [(1, 1..=3), (2, 2..=4)] {
            for x in xs {
                data[z * cols + x] = 1;
            }
        }
        let mask = SliceMask {
            rows,
            cols,
            data,
            iou: 1.0,
            low_res_logits: Vec::new(),
        };
        // Along axis 2 (axial): the axial plane's (u, v) is (x, y).
        let c = chords(&mask, 1, 4, 2, 5).unwrap();
        assert_eq!(
            c,
            vec![
                None,
                Some([(1, 4), (3, 4)]),
                Some([(2, 4), (4, 4)]),
                None,
                None
            ]
        );
        let cross = CrossSections {
            range: (1, 2),
            chords: c.into_iter().map(|c| c.into_iter().collect()).collect(),
        };
        assert_eq!(cross.anchors(1), vec![(2, 4)]);
        assert_eq!(cross.chord_box(2), Some([2, 4, 4, 4]));
        assert_eq!(cross.chord_box(0), None);
    }
}
