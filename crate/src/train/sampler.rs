//! Training samples: 2-D slices through the structures of (synthetic or real) volumes, with
//! SAM-style prompts sampled from the labels. Plain Rust; tensors are made in `batch`.

mod augment;

use crate::data::rng::Rng;
use crate::data::slicing::{self, Normalizer, Plane};
use crate::data::{LabelVolume, Volume};
pub use crate::model::mask_grid::low_res_mask as low_res_target;
use crate::segment::{bbox, interior_point, Focus, SlicePrompt};
use augment::{augment, crop};

/// How prompts and slices are drawn.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct SamplerConfig {
    /// Canonical axes to slice along (0 sagittal, 1 coronal, 2 axial).
    pub axes: Vec<usize>,
    /// Structures prompted per slice (one mask each; they share the slice's encoding).
    pub prompts_per_slice: usize,
    /// Probability that a step uses point prompts instead of boxes.
    pub point_prob: f64,
    /// Up to this many positive and this many negative points.
    pub max_points: usize,
    /// Box jitter: sd of each side's shift as a fraction of the box side (SAM: 0.1).
    pub box_jitter: f64,
    /// Probability of cropping the slice to a random window (scale augmentation).
    pub crop_prob: f64,
    /// Probability of flipping / transposing the slice (orientation robustness).
    pub flip_prob: f64,
    /// Share of box prompts taken from a neighbouring slice's mask (1–3 slices away), as
    /// 3-D propagation prompts: the target may be smaller, shifted or empty where the
    /// structure ends, which teaches the model that a box alone is not a structure.
    #[serde(default)]
    pub neighbour_prob: f64,
    /// Share of those neighbour prompts that also give the structure's mask on the source
    /// slice as SAM's dense prompt (one pixel grown or shrunk at random, as a predicted mask
    /// errs): how a model trained for it propagates, learning to return nothing where the
    /// structure has ended.
    #[serde(default)]
    pub dense_prompt_prob: f64,
    /// Share of slices cut to a window around their first prompt (as `Session` does for a
    /// focused model), the window drawn as [`Focus`] with a context and minimum side
    /// uniform in these ranges.
    #[serde(default)]
    pub focus_prob: f64,
    #[serde(default = "default_focus_context")]
    pub focus_context: [f32; 2],
    #[serde(default = "default_focus_min_side")]
    pub focus_min_side: [usize; 2],
    /// Prompts drawn for the slice's first structure (other jitters or point sets, same
    /// target). They share the encoder pass, which costs far more than the decoder, so
    /// each encoding teaches the decoder several prompts, as SAM's training does.
    #[serde(default = "default_prompt_variants")]
    pub prompt_variants: usize,
    /// Share of box steps whose slice is searched (up to [`FRAGMENT_TRIES`] draws) for one
    /// where the structure lies in pieces spread over a box [`FRAGMENT_SPREAD`] times its
    /// largest piece's (a caudate with its tail, a putamen with a stray island). On such
    /// slices the truth box holds much tissue that is not the structure; they are a small
    /// share of slices but held a third of the bundled stage-10 model's box errors.
    #[serde(default)]
    pub fragment_prob: f64,
    /// The input's three channels are slices k − gap, k, k + gap (2.5-D: the neighbours tell
    /// a structure's edge from a look-alike); 0 gives three copies of slice k, as SAM's
    /// grey-level input. Recorded in the model file for inference.
    #[serde(default)]
    pub slice_gap: usize,
}

/// Draws of a voxel (and so of a slice) made to find a fragmented slice.
pub const FRAGMENT_TRIES: usize = 16;
/// Box area of all pieces over that of the largest piece for a slice to count as fragmented.
pub const FRAGMENT_SPREAD: f64 = 1.5;

impl SamplerConfig {
    /// Whether these samples teach propagation with dense prompts.
    pub fn trains_propagation(&self) -> bool {
        self.neighbour_prob > 0.0 && self.dense_prompt_prob > 0.0
    }

    /// The focus a model trained with these samples should be used with: the centre of the
    /// drawn ranges when most samples were focused, else None (whole slices).
    pub fn inference_focus(&self) -> Option<Focus> {
        (self.focus_prob >= 0.5).then(|| Focus {
            context: (self.focus_context[0] + self.focus_context[1]) / 2.0,
            min_side: (self.focus_min_side[0] + self.focus_min_side[1]) / 2,
        })
    }
}

fn default_focus_context() -> [f32; 2] {
    [1.5, 2.5]
}

fn default_focus_min_side() -> [usize; 2] {
    [48, 80]
}

fn default_prompt_variants() -> usize {
    1
}

impl Default for SamplerConfig {
    fn default() -> Self {
        Self {
            axes: vec![0, 1, 2],
            prompts_per_slice: 6,
            point_prob: 0.4,
            max_points: 3,
            box_jitter: 0.1,
            crop_prob: 0.3,
            flip_prob: 0.5,
            neighbour_prob: 0.2,
            dense_prompt_prob: 0.0,
            focus_prob: 0.0,
            focus_context: default_focus_context(),
            focus_min_side: default_focus_min_side(),
            prompt_variants: default_prompt_variants(),
            fragment_prob: 0.0,
            slice_gap: 0,
        }
    }
}

/// One slice with its prompted structures, in slice pixel coordinates.
#[derive(Debug, Clone)]
pub struct SliceSample {
    /// Grey levels `[rows, cols]` after the volume's robust windowing, per pixel those of
    /// slices k − gap, k, k + gap (the model's three input channels).
    pub image: Plane<[u8; 3]>,
    /// Per structure: label and mask `[rows, cols]`.
    pub targets: Vec<(i32, Vec<u8>)>,
    /// Per structure: `[u0, v0, u1, v1]` (only for box steps).
    pub boxes: Vec<[f32; 4]>,
    /// Per structure: points `[u, v, 1 | 0]`, the same count for every structure.
    pub points: Vec<Vec<[f32; 3]>>,
    /// Per structure: its mask on the prompt's source slice `[rows, cols]`, SAM's dense
    /// prompt (only for dense propagation prompts).
    pub dense: Vec<Vec<u8>>,
}

/// Draws one slice through at least one of `labels_of_interest` and prompts up to
/// `prompts_per_slice` of the structures it shows (for propagation-style box prompts, the
/// neighbouring slice those boxes are aimed at). None if no slice shows any.
pub fn sample_slice(
    image: &Volume<f32>,
    norm: &Normalizer,
    labels: &LabelVolume,
    labels_of_interest: &[i32],
    cfg: &SamplerConfig,
    use_points: bool,
    rng: &mut Rng,
) -> Option<SliceSample> {
    let axis = *cfg.axes.get(rng.below(cfg.axes.len().max(1)))?;
    // Slices through the structures: pick a random voxel of a random structure.
    let label = labels_of_interest[rng.below(labels_of_interest.len())];
    let voxels: Vec<usize> = labels
        .data
        .iter()
        .enumerate()
        .filter_map(|(i, l)| (*l == label).then_some(i))
        .collect();
    if voxels.is_empty() {
        return None;
    }
    let [nx, ny, _] = labels.dims;
    let at = |i: usize| [i % nx, (i / nx) % ny, i / (nx * ny)];
    let mut p = at(voxels[rng.below(voxels.len())]);
    if !use_points && cfg.fragment_prob > 0.0 && rng.uniform() < cfg.fragment_prob {
        for _ in 1..FRAGMENT_TRIES {
            if spread_on_slice(labels, axis, p[axis], label) > FRAGMENT_SPREAD {
                break;
            }
            p = at(voxels[rng.below(voxels.len())]);
        }
    }
    // Propagation-style prompts: the box comes from this slice through the structure and
    // the target is a neighbour up to 3 slices away, where the structure may have ended.
    let source_index = p[axis];
    let mut index = source_index;
    if !use_points && cfg.neighbour_prob > 0.0 && rng.uniform() < cfg.neighbour_prob {
        let d = 1 + rng.below(3);
        let n = if rng.uniform() < 0.5 {
            source_index.checked_sub(d)
        } else {
            Some(source_index + d)
        };
        index = n.filter(|n| *n < labels.dims[axis]).unwrap_or(source_index);
    }
    let neighbour = index != source_index;
    let dense = neighbour && cfg.dense_prompt_prob > 0.0 && rng.uniform() < cfg.dense_prompt_prob;
    let img = slicing::slab(image, axis, index, cfg.slice_gap).ok()?;
    let mut image = Plane {
        rows: img.rows,
        cols: img.cols,
        data: img.data.iter().map(|p| p.map(|v| norm.to_u8(v))).collect(),
    };
    let mut planes = vec![slicing::slice(labels, axis, index).ok()?];
    if neighbour {
        planes.push(slicing::slice(labels, axis, source_index).ok()?);
    }
    augment(&mut image, &mut planes, cfg, rng);
    let source = planes.pop()?;
    let lab = planes.pop().unwrap_or_else(|| source.clone());

    // Structures in the prompt source, the sampled one first, then random others.
    let mut present: Vec<i32> = labels_of_interest
        .iter()
        .copied()
        .filter(|l| *l != label && source.data.contains(l))
        .collect();
    for i in (1..present.len()).rev() {
        present.swap(i, rng.below(i + 1));
    }
    if source.data.contains(&label) {
        present.insert(0, label);
    }
    present.truncate(cfg.prompts_per_slice.max(1));
    if present.is_empty() {
        return None;
    }
    let (rows, cols) = (image.rows, image.cols);
    let n_pos = 1 + rng.below(cfg.max_points.max(1));
    let n_neg = rng.below(cfg.max_points.max(1));
    let mut sample = SliceSample {
        image,
        targets: Vec::new(),
        boxes: Vec::new(),
        points: Vec::new(),
        dense: Vec::new(),
    };
    for l in present {
        let mask: Vec<u8> = lab.data.iter().map(|v| u8::from(*v == l)).collect();
        if use_points {
            let b = bbox(&mask, rows, cols)?;
            sample
                .points
                .push(sample_points(&mask, rows, cols, b, n_pos, n_neg, rng));
        } else if neighbour {
            // The neighbour's box with propagation's 1-pixel margin; the target may be empty.
            let src: Vec<u8> = source.data.iter().map(|v| u8::from(*v == l)).collect();
            let [u0, v0, u1, v1] = bbox(&src, rows, cols)?;
            sample.boxes.push([
                u0.saturating_sub(1) as f32,
                v0.saturating_sub(1) as f32,
                (u1 + 1).min(cols - 1) as f32,
                (v1 + 1).min(rows - 1) as f32,
            ]);
            if dense {
                sample.dense.push(perturb(&src, rows, cols, rng));
            }
        } else {
            let b = bbox(&mask, rows, cols)?;
            sample
                .boxes
                .push(jitter_box(b, rows, cols, cfg.box_jitter, rng));
        }
        sample.targets.push((l, mask));
    }
    if cfg.focus_prob > 0.0 && rng.uniform() < cfg.focus_prob {
        sample = focus(sample, cfg, rng)?;
    }
    // Not for propagation boxes: their target may be empty.
    if !neighbour {
        add_variants(&mut sample, cfg, use_points, (n_pos, n_neg), rng);
    }
    Some(sample)
}

/// How much larger the box of all of `label`'s pixels on a slice is than the box of its
/// largest 4-connected piece (1.0 for one piece; 0.0 when absent).
fn spread_on_slice(labels: &LabelVolume, axis: usize, index: usize, label: i32) -> f64 {
    let Ok(plane) = slicing::slice(labels, axis, index) else {
        return 0.0;
    };
    let mask: Vec<u8> = plane.data.iter().map(|v| u8::from(*v == label)).collect();
    spread(&mask, plane.rows, plane.cols)
}

/// Box area of a mask's pixels over the box area of its largest 4-connected piece (0.0 for
/// an empty mask or one that is not `rows × cols`).
fn spread(mask: &[u8], rows: usize, cols: usize) -> f64 {
    let area = |[u0, v0, u1, v1]: [usize; 4]| ((u1 - u0 + 1) * (v1 - v0 + 1)) as f64;
    if mask.len() != rows * cols {
        return 0.0;
    }
    let Some(all) = bbox(mask, rows, cols) else {
        return 0.0;
    };
    let mut seen = vec![false; mask.len()];
    let (mut best, mut best_box) = (0usize, all);
    let mut stack = Vec::new();
    for start in 0..mask.len() {
        if mask[start] == 0 || seen[start] {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut n, mut b) = (0usize, [cols, rows, 0, 0]);
        while let Some(i) = stack.pop() {
            let (v, u) = (i / cols, i % cols);
            n += 1;
            b = [b[0].min(u), b[1].min(v), b[2].max(u), b[3].max(v)];
            let up = v.checked_sub(1).map(|v| v * cols + u);
            let left = u.checked_sub(1).map(|u| v * cols + u);
            let down = (v + 1 < rows).then(|| (v + 1) * cols + u);
            let right = (u + 1 < cols).then(|| v * cols + u + 1);
            for j in [up, left, down, right].into_iter().flatten() {
                if mask[j] != 0 && !seen[j] {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        if n > best {
            (best, best_box) = (n, b);
        }
    }
    area(all) / area(best_box)
}

/// Appends `prompt_variants - 1` more prompts of the same kind for the first structure,
/// drawn from its mask as the sample now holds it (after any window cut).
fn add_variants(
    s: &mut SliceSample,
    cfg: &SamplerConfig,
    use_points: bool,
    (n_pos, n_neg): (usize, usize),
    rng: &mut Rng,
) {
    let Some((l, mask)) = s.targets.first().cloned() else {
        return;
    };
    let (rows, cols) = (s.image.rows, s.image.cols);
    let Some(b) = bbox(&mask, rows, cols) else {
        return;
    };
    for _ in 1..cfg.prompt_variants {
        if use_points {
            s.points
                .push(sample_points(&mask, rows, cols, b, n_pos, n_neg, rng));
        } else {
            s.boxes.push(jitter_box(b, rows, cols, cfg.box_jitter, rng));
        }
        s.targets.push((l, mask.clone()));
    }
}

/// Cuts the sample to a window around its first prompt, drawn as inference draws it; other
/// structures stay only where they and their prompts lie wholly inside.
fn focus(s: SliceSample, cfg: &SamplerConfig, rng: &mut Rng) -> Option<SliceSample> {
    let [c0, c1] = cfg.focus_context;
    let [m0, m1] = cfg.focus_min_side;
    let f = Focus {
        context: c0 + (c1 - c0).max(0.0) * rng.uniform() as f32,
        min_side: m0 + rng.below(m1.saturating_sub(m0) + 1),
    };
    let real = |p: &Vec<[f32; 3]>| p.iter().filter(|q| q[2] >= 0.0).copied().collect();
    let first = SlicePrompt {
        points: s.points.first().map(real).unwrap_or_default(),
        bbox: s.boxes.first().copied(),
        ..Default::default()
    };
    let (rows, cols) = (s.image.rows, s.image.cols);
    let [r0, c0, side] = f.window(&first, rows, cols).ok()?;
    let inside_uv = |u: f32, v: f32| {
        u >= c0 as f32 && v >= r0 as f32 && u < (c0 + side) as f32 && v < (r0 + side) as f32
    };
    let shift = |[u, v, l]: [f32; 3]| {
        if l < 0.0 {
            [0.0, 0.0, l]
        } else {
            [u - c0 as f32, v - r0 as f32, l]
        }
    };
    let image = crop(&s.image, r0, c0, side, side);
    let mut out = SliceSample {
        image,
        targets: Vec::new(),
        boxes: Vec::new(),
        points: Vec::new(),
        dense: Vec::new(),
    };
    for (k, (l, mask)) in s.targets.into_iter().enumerate() {
        let b = s.boxes.get(k).copied();
        let dense = s.dense.get(k).map(|d| {
            let plane = Plane {
                rows,
                cols,
                data: d.clone(),
            };
            crop(&plane, r0, c0, side, side).data
        });
        let pts = s.points.get(k).cloned();
        let plane = Plane {
            rows,
            cols,
            data: mask,
        };
        let cut = crop(&plane, r0, c0, side, side);
        if k > 0 {
            let whole = cut.data.iter().filter(|v| **v != 0).count()
                == plane.data.iter().filter(|v| **v != 0).count();
            let prompt_in = b.is_none_or(|[u0, v0, u1, v1]| inside_uv(u0, v0) && inside_uv(u1, v1))
                && pts
                    .as_ref()
                    .is_none_or(|p| p.iter().all(|q| q[2] < 0.0 || inside_uv(q[0], q[1])));
            if !whole || !prompt_in {
                continue;
            }
        }
        if let Some([u0, v0, u1, v1]) = b {
            let m = (side - 1) as f32;
            let (du, dv) = (c0 as f32, r0 as f32);
            out.boxes.push([
                (u0 - du).clamp(0.0, m),
                (v0 - dv).clamp(0.0, m),
                (u1 - du).clamp(0.0, m),
                (v1 - dv).clamp(0.0, m),
            ]);
        }
        if let Some(p) = pts {
            out.points.push(p.into_iter().map(shift).collect());
        }
        out.dense.extend(dense);
        out.targets.push((l, cut.data));
    }
    Some(out)
}

/// A source mask as a prediction might have it: a third of the time one pixel grown
/// (4-neighbours), a third shrunk (unless that empties it), else as it is.
fn perturb(mask: &[u8], rows: usize, cols: usize, rng: &mut Rng) -> Vec<u8> {
    let grow = match rng.below(3) {
        0 => true,
        1 => false,
        _ => return mask.to_vec(),
    };
    let at = |r: isize, c: isize| -> u8 {
        if r < 0 || c < 0 || r >= rows as isize || c >= cols as isize {
            0
        } else {
            mask[r as usize * cols + c as usize]
        }
    };
    let out: Vec<u8> = (0..rows * cols)
        .map(|i| {
            let (r, c) = ((i / cols) as isize, (i % cols) as isize);
            let near =
                [(0, 0), (-1, 0), (1, 0), (0, -1), (0, 1)].map(|(dr, dc)| at(r + dr, c + dc));
            u8::from(if grow {
                near.iter().any(|m| *m != 0)
            } else {
                near.iter().all(|m| *m != 0)
            })
        })
        .collect();
    if out.iter().any(|m| *m != 0) {
        out
    } else {
        mask.to_vec()
    }
}

/// SAM's box noise: each side moves by N(0, jitter · side), at most 20 px; stays inside.
fn jitter_box(b: [usize; 4], rows: usize, cols: usize, jitter: f64, rng: &mut Rng) -> [f32; 4] {
    let (w, h) = ((b[2] - b[0] + 1) as f64, (b[3] - b[1] + 1) as f64);
    let mut j = |side: f64| (rng.normal() * jitter * side).clamp(-20.0, 20.0);
    let u0 = (b[0] as f64 + j(w)).clamp(0.0, cols as f64 - 1.0);
    let v0 = (b[1] as f64 + j(h)).clamp(0.0, rows as f64 - 1.0);
    let u1 = (b[2] as f64 + j(w)).clamp(u0, cols as f64 - 1.0);
    let v1 = (b[3] as f64 + j(h)).clamp(v0, rows as f64 - 1.0);
    [u0 as f32, v0 as f32, u1 as f32, v1 as f32]
}

/// Positive points inside the mask (the first one at its interior-most pixel half of the
/// time, as users click), negatives in the background near the structure.
fn sample_points(
    mask: &[u8],
    rows: usize,
    cols: usize,
    b: [usize; 4],
    n_pos: usize,
    n_neg: usize,
    rng: &mut Rng,
) -> Vec<[f32; 3]> {
    let inside: Vec<usize> = (0..mask.len()).filter(|i| mask[*i] != 0).collect();
    let m = 6;
    let near: Vec<usize> = (b[1].saturating_sub(m)..(b[3] + m + 1).min(rows))
        .flat_map(|v| (b[0].saturating_sub(m)..(b[2] + m + 1).min(cols)).map(move |u| v * cols + u))
        .filter(|i| mask[*i] == 0)
        .collect();
    let mut pts = Vec::with_capacity(n_pos + n_neg);
    for k in 0..n_pos {
        let (u, v) = match (k, rng.uniform() < 0.5) {
            (0, true) => interior_point(mask, rows, cols).unwrap_or((0, 0)),
            _ => {
                let i = inside[rng.below(inside.len())];
                (i % cols, i / cols)
            }
        };
        pts.push([u as f32, v as f32, 1.0]);
    }
    for _ in 0..n_neg {
        // A negative point where there is no background nearby repeats a positive one's
        // position as padding (label -1: SAM's "not a point").
        match near.get(rng.below(near.len().max(1))) {
            Some(i) if !near.is_empty() => pts.push([(i % cols) as f32, (i / cols) as f32, 0.0]),
            _ => pts.push([0.0, 0.0, -1.0]),
        }
    }
    pts
}

#[cfg(test)]
mod tests;
