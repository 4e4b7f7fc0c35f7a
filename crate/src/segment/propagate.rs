//! A whole structure in 3-D from one slice: each neighbour is prompted with the box of the
//! mask next to it, until the structure ends.
//!
//! A model trained for it (`train --dense-prompt-prob`) also gets the neighbour's mask as
//! its dense prompt and learnt to return an empty mask, or a low IoU estimate, where the
//! structure has ended ([`StopRules::trained`]). For other models a box prompt always
//! yields some mask, so the end has to be recognised by rules: the mask vanishes, the
//! decoder distrusts it, it grows far beyond the seed or swells a second time (the next
//! structure), it lies on tissue of another intensity than the seed's (leaking into the
//! brainstem or the neck), or it is further from the seed than subcortical structures
//! reach; and it stays within the slices that the seed's two cross sections cover
//! ([`super::across`]).

use super::{bbox, SegmentError, Session, SliceMask, SlicePrompt};
use crate::data::slicing;
use crate::model::io::Cut;
use crate::model::Sam;

/// When a propagated slice ends the structure (it is not kept).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopRules {
    /// Masks smaller than this (pixels).
    pub min_area: usize,
    /// Area more than this factor of the previous slice's (a jump into another structure).
    pub max_growth: f64,
    /// Area more than this factor of the seed's (slow leaks).
    pub max_area_vs_seed: f64,
    /// The decoder's own IoU estimate below this.
    pub min_iou: f32,
    /// Less than this share of the mask's pixels in the seed's intensity range.
    pub min_tissue_share: f64,
    /// Stop when the area grows again by this factor over its smallest value so far in this
    /// direction, after having shrunk below half the largest (a cross-section swells once
    /// along a structure; a second swell is the next structure).
    pub max_regrowth: f64,
    /// Slices each way, in multiples of the seed's larger side (subcortical structures
    /// reach at most about their in-plane size beyond their largest section; a masked
    /// section is larger than the true one, hence less than 1).
    pub max_extent: f64,
    /// Pixels added on each side of the previous slice's mask box to prompt the next slice.
    pub box_margin: f32,
    /// Give the previous slice's mask as the dense prompt too (a model trained for it).
    pub dense_prompt: bool,
    /// Also walk the other two slice axes and keep the voxels two of the three walks
    /// agree on ([`Session::propagate`]).
    pub three_planes: bool,
    /// Keep the walk within the slices the seed's two cross sections cover (`across`).
    pub across: bool,
}

impl Default for StopRules {
    fn default() -> Self {
        Self {
            min_area: 3,
            max_growth: 2.5,
            // Not lower: a seed from one click is often smaller than the box-prompted
            // masks next to it (MNI putamen: 254 px, then ~400).
            max_area_vs_seed: 2.0,
            min_iou: 0.35,
            min_tissue_share: 0.6,
            max_regrowth: 1.5,
            max_extent: 0.7,
            // None: a predicted mask is already looser than the structure, and a margin
            // compounds slice by slice (subjects 01–02: Dice 0.572 with 1 px, 0.591 without).
            box_margin: 0.0,
            dense_prompt: false,
            three_planes: false,
            // The seed's cross sections bound the walk as well (experiments/stage18:
            // held out, one click → 3-D 0.521 → 0.531, one box → 3-D 0.592 → 0.620).
            across: true,
        }
    }
}

/// Areas (pixels) seen so far in one direction.
#[derive(Debug, Clone, Copy)]
struct Walk {
    seed: f64,
    prev: f64,
    largest: f64,
    smallest: f64,
}

impl Walk {
    fn new(seed: f64) -> Self {
        Self {
            seed,
            prev: seed,
            largest: seed,
            smallest: seed,
        }
    }

    fn keep(&mut self, area: f64) {
        self.prev = area;
        self.largest = self.largest.max(area);
        self.smallest = self.smallest.min(area);
    }
}

/// Why propagation ended in one direction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StopReason {
    /// The mask vanished (under `min_area` pixels).
    Vanished,
    /// The decoder's IoU estimate was under `min_iou`.
    LowIou,
    /// The area jumped by more than `max_growth` over the previous slice.
    Jump,
    /// The area exceeded `max_area_vs_seed` times the seed's.
    LargerThanSeed,
    /// The area swelled a second time (the next structure).
    SecondSwell,
    /// Too few of the mask's pixels were in the seed's intensity range.
    OtherTissue,
    /// `max_extent` slices from the seed.
    Extent,
    /// Past the slices the seed's cross sections cover.
    Across,
    /// The edge of the volume.
    VolumeEdge,
}

impl StopReason {
    /// A one-word name (logs, tables).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Vanished => "vanished",
            Self::LowIou => "iou",
            Self::Jump => "jump",
            Self::LargerThanSeed => "seed-area",
            Self::SecondSwell => "swell",
            Self::OtherTissue => "tissue",
            Self::Extent => "extent",
            Self::Across => "across",
            Self::VolumeEdge => "edge",
        }
    }

    /// A short phrase for people (CLI output, the page's status line).
    pub fn describe(&self) -> &'static str {
        match self {
            Self::Vanished => "the mask vanished",
            Self::LowIou => "the model's confidence fell",
            Self::Jump => "the mask jumped in size",
            Self::LargerThanSeed => "the mask outgrew the seed",
            Self::SecondSwell => "a second structure began",
            Self::OtherTissue => "the mask left the seed's tissue",
            Self::Extent => "the structure's expected extent was reached",
            Self::Across => "the structure ended in the planes across it",
            Self::VolumeEdge => "the volume ended",
        }
    }
}

/// Where and why one direction of a propagation ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct End {
    /// The last slice kept (the seed's when the first neighbour was refused).
    pub last: usize,
    pub reason: StopReason,
}

/// A propagated structure: the canonical 3-D mask (1 inside) and how each direction
/// (increasing, then decreasing slice index) ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Propagation {
    pub mask: Vec<u8>,
    pub ends: [End; 2],
}

impl StopRules {
    /// Whether a slice's mask (its area, the decoder's IoU estimate, its share of pixels in
    /// the seed's intensity range) ends the structure, and why.
    fn ends(&self, walk: &Walk, area: usize, iou: f32, tissue_share: f64) -> Option<StopReason> {
        let a = area as f64;
        if area < self.min_area {
            Some(StopReason::Vanished)
        } else if iou < self.min_iou {
            Some(StopReason::LowIou)
        } else if a > self.max_growth * walk.prev {
            Some(StopReason::Jump)
        } else if a > self.max_area_vs_seed * walk.seed {
            Some(StopReason::LargerThanSeed)
        } else if walk.smallest < 0.5 * walk.largest && a > self.max_regrowth * walk.smallest {
            Some(StopReason::SecondSwell)
        } else if tissue_share < self.min_tissue_share {
            Some(StopReason::OtherTissue)
        } else {
            None
        }
    }

    /// For a model trained to propagate (the neighbour's mask as dense prompt, empty
    /// targets past a structure's end): the model alone decides where the structure ends,
    /// by an empty mask or its IoU estimate. Box margin as in its training prompts.
    pub fn trained() -> Self {
        Self {
            min_area: 3,
            max_growth: f64::INFINITY,
            max_area_vs_seed: f64::INFINITY,
            min_iou: 0.5,
            min_tissue_share: 0.0,
            max_regrowth: f64::INFINITY,
            max_extent: f64::INFINITY,
            box_margin: 1.0,
            dense_prompt: true,
            three_planes: false,
            across: false,
        }
    }

    /// The walk bounded by the seed's cross sections alone: it ends where they end or
    /// where the mask vanishes, no other rule.
    pub fn across() -> Self {
        Self {
            min_iou: 0.0,
            box_margin: 0.0,
            dense_prompt: false,
            across: true,
            ..Self::trained()
        }
    }

    /// The rules for a model: [`Self::trained`] if it was trained to propagate, else the
    /// hand-set [`Self::default`].
    pub fn for_model(trained_to_propagate: bool) -> Self {
        if trained_to_propagate {
            Self::trained()
        } else {
            Self::default()
        }
    }

    /// The rules of the first release: no seed-area, intensity, regrowth, extent or
    /// cross-section checks (for comparison).
    pub fn legacy() -> Self {
        Self {
            across: false,
            max_area_vs_seed: f64::INFINITY,
            min_tissue_share: 0.0,
            max_regrowth: f64::INFINITY,
            max_extent: f64::INFINITY,
            box_margin: 1.0,
            ..Self::default()
        }
    }
}

/// The seed's intensity range: its 10th–90th percentile widened by half that width on
/// each side (partial volume at the edges, bias field along the structure).
#[derive(Debug, Clone, Copy)]
struct Tissue {
    lo: f32,
    hi: f32,
}

impl Tissue {
    fn of(plane: &[f32], mask: &[u8]) -> Option<Self> {
        let mut v: Vec<f32> = plane
            .iter()
            .zip(mask)
            .filter(|(_, m)| **m != 0)
            .map(|(p, _)| *p)
            .collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f32::total_cmp);
        let (p10, p90) = (v[v.len() / 10], v[(v.len() * 9) / 10]);
        let w = (p90 - p10).max(f32::EPSILON);
        Some(Self {
            lo: p10 - 0.5 * w,
            hi: p90 + 0.5 * w,
        })
    }

    fn share_inside(&self, plane: &[f32], mask: &[u8]) -> f64 {
        let (mut n, mut inside) = (0usize, 0usize);
        for (p, m) in plane.iter().zip(mask) {
            if *m != 0 {
                n += 1;
                inside += usize::from(*p >= self.lo && *p <= self.hi);
            }
        }
        inside as f64 / n.max(1) as f64
    }
}

impl Session {
    /// Propagates `seed` (the mask on slice `index` along `axis`) in both directions,
    /// stopping each way by `rules`; each slice's box prompt names `structure` (a kind), if
    /// given. `progress(done, total)` is called per slice. With `rules.three_planes` the
    /// result is reconciled with walks along the other two axes (`planes`).
    #[allow(clippy::too_many_arguments)] // one walk's distinct inputs; a struct would only rename them
    pub async fn propagate(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        seed: &SliceMask,
        structure: Option<usize>,
        rules: &StopRules,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Propagation, SegmentError> {
        let first = self
            .walk(sam, axis, index, seed, structure, rules, progress)
            .await?;
        if !rules.three_planes {
            return Ok(first);
        }
        self.reconcile_planes(sam, axis, first, structure, rules, progress)
            .await
    }

    /// One walk along `axis` from `seed`, both directions.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn walk(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        seed: &SliceMask,
        structure: Option<usize>,
        rules: &StopRules,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Propagation, SegmentError> {
        let dims = self.dims();
        if axis > 2 || index >= dims[axis] {
            return Err(SegmentError::Prompt(format!(
                "slice {index} on axis {axis} is outside the volume"
            )));
        }
        let bound = if rules.across {
            self.extent_across(sam, axis, index, seed, structure)
                .await?
        } else {
            None
        };
        let mut out = vec![0i32; dims.iter().product()];
        self.paste(&mut out, axis, index, seed, 1)?;
        let plane = slicing::slice(self.canonical_image(), axis, index)?;
        let tissue = Tissue::of(&plane.data, &seed.data);
        let reach = bbox(&seed.data, seed.rows, seed.cols).map_or(0.0, |[u0, v0, u1, v1]| {
            rules.max_extent * (u1 - u0 + 1).max(v1 - v0 + 1) as f64
        });
        let total = dims[axis];
        let mut done = 1;
        let mut ends = [End {
            last: index,
            reason: StopReason::VolumeEdge,
        }; 2];
        for (end, dir) in ends.iter_mut().zip([1isize, -1]) {
            let mut prev = seed.clone();
            let mut walk = Walk::new(seed.area().max(1) as f64);
            let mut i = index as isize + dir;
            loop {
                if i < 0 || i as usize >= dims[axis] {
                    break;
                }
                if let Some((lo, hi)) = bound {
                    if (i as usize) < lo || i as usize > hi {
                        end.reason = StopReason::Across;
                        break;
                    }
                }
                if (i - index as isize).abs() as f64 > reach {
                    end.reason = StopReason::Extent;
                    break;
                }
                let Some([u0, v0, u1, v1]) = bbox(&prev.data, prev.rows, prev.cols) else {
                    end.reason = StopReason::Vanished;
                    break;
                };
                let m = rules.box_margin;
                let b = [
                    (u0 as f32 - m).max(0.0),
                    (v0 as f32 - m).max(0.0),
                    (u1 as f32 + m).min(prev.cols as f32 - 1.0),
                    (v1 as f32 + m).min(prev.rows as f32 - 1.0),
                ];
                let prompt = SlicePrompt {
                    bbox: Some(b),
                    dense: rules.dense_prompt.then(|| prev.data.clone()),
                    structure,
                    ..Default::default()
                };
                let mask = self
                    .predict_cut(sam, axis, i as usize, &prompt, Cut::Walk)
                    .await?;
                done += 1;
                progress(done, total);
                let plane = slicing::slice(self.canonical_image(), axis, i as usize)?;
                let share = tissue.map_or(1.0, |t| t.share_inside(&plane.data, &mask.data));
                let area = mask.area();
                if let Some(reason) = rules.ends(&walk, area, mask.iou, share) {
                    end.reason = reason;
                    break;
                }
                self.paste(&mut out, axis, i as usize, &mask, 1)?;
                end.last = i as usize;
                walk.keep(area as f64);
                prev = mask;
                i += dir;
            }
        }
        progress(total, total);
        Ok(Propagation {
            mask: out.into_iter().map(|v| v as u8).collect(),
            ends,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::{StopReason, StopRules, Tissue, Walk};

    /// Areas along a structure and past its end into the next one: 100 (seed) … 40 … 70.
    fn walk_until_end(rules: &StopRules, areas: &[usize]) -> usize {
        stop_of(rules, areas).0
    }

    /// The index of the slice that ends the walk, and why (None: it ran through).
    fn stop_of(rules: &StopRules, areas: &[usize]) -> (usize, Option<StopReason>) {
        let mut walk = Walk::new(100.0);
        for (k, &a) in areas.iter().enumerate() {
            if let Some(r) = rules.ends(&walk, a, 0.9, 1.0) {
                return (k, Some(r));
            }
            walk.keep(a as f64);
        }
        (areas.len(), None)
    }

    #[test]
    fn a_second_swell_ends_the_structure_a_first_does_not() {
        let r = StopRules::default();
        // Growing first (the seed was not the largest section), then shrinking: kept.
        assert_eq!(walk_until_end(&r, &[130, 150, 120, 80, 50, 20]), 6);
        // Shrunk below half the largest (40 < 75), then swelling to 70 > 1.5 × 40: stop there.
        assert_eq!(walk_until_end(&r, &[150, 120, 80, 40, 50, 70, 90]), 5);
        // The legacy rules let it run.
        assert_eq!(
            walk_until_end(&StopRules::legacy(), &[150, 120, 80, 40, 50, 70, 90]),
            7
        );
        // Twice the seed's area, a jump, an empty mask: each ends it.
        assert_eq!(walk_until_end(&r, &[150, 190, 210]), 2);
        assert_eq!(walk_until_end(&r, &[100, 30, 90]), 2);
        assert_eq!(walk_until_end(&r, &[100, 2]), 1);
    }

    #[test]
    fn each_rule_names_itself_as_the_reason() {
        let r = StopRules::default();
        assert_eq!(stop_of(&r, &[100, 2]), (1, Some(StopReason::Vanished)));
        assert_eq!(stop_of(&r, &[100, 30, 90]), (2, Some(StopReason::Jump)));
        assert_eq!(
            stop_of(&r, &[150, 190, 210]),
            (2, Some(StopReason::LargerThanSeed))
        );
        assert_eq!(
            stop_of(&r, &[150, 120, 80, 40, 50, 70, 90]),
            (5, Some(StopReason::SecondSwell))
        );
        assert_eq!(stop_of(&r, &[100, 90, 80]), (3, None));
        let walk = Walk::new(100.0);
        assert_eq!(r.ends(&walk, 100, 0.2, 1.0), Some(StopReason::LowIou));
        assert_eq!(r.ends(&walk, 100, 0.9, 0.3), Some(StopReason::OtherTissue));
    }

    #[test]
    fn the_seed_tissue_range_separates_other_tissue() {
        // Seed: grey values 40..=60 under the mask; background 100 (e.g. white matter).
        let plane: Vec<f32> = (0..21).map(|i| 40.0 + i as f32).chain([100.0; 9]).collect();
        let seed: Vec<u8> = (0..30).map(|i| u8::from(i < 21)).collect();
        let t = Tissue::of(&plane, &seed).unwrap();
        assert!(t.lo <= 40.0 && t.hi >= 60.0 && t.hi < 100.0, "{t:?}");
        assert_eq!(t.share_inside(&plane, &seed), 1.0);
        // A mask spilling over every bright pixel: 21 of 30 inside.
        let all = vec![1u8; 30];
        assert!((t.share_inside(&plane, &all) - 0.7).abs() < 1e-9);
        assert!(Tissue::of(&plane, &[0u8; 30]).is_none());
    }
}
