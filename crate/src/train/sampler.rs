//! Training samples: 2-D slices through the structures of (synthetic or real) volumes, with
//! SAM-style prompts sampled from the labels. Plain Rust; tensors are made in `batch`.

use crate::data::rng::Rng;
use crate::data::slicing::{self, Normalizer, Plane};
use crate::data::{LabelVolume, Volume};
use crate::segment::{bbox, interior_point, Focus, SlicePrompt};

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
}

/// Draws of a voxel (and so of a slice) made to find a fragmented slice.
pub const FRAGMENT_TRIES: usize = 16;
/// Box area of all pieces over that of the largest piece for a slice to count as fragmented.
pub const FRAGMENT_SPREAD: f64 = 1.5;

impl SamplerConfig {
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
            focus_prob: 0.0,
            focus_context: default_focus_context(),
            focus_min_side: default_focus_min_side(),
            prompt_variants: default_prompt_variants(),
            fragment_prob: 0.0,
        }
    }
}

/// One slice with its prompted structures, in slice pixel coordinates.
#[derive(Debug, Clone)]
pub struct SliceSample {
    /// Grey levels `[rows, cols]` after the volume's robust windowing.
    pub image: Plane<u8>,
    /// Per structure: label and mask `[rows, cols]`.
    pub targets: Vec<(i32, Vec<u8>)>,
    /// Per structure: `[u0, v0, u1, v1]` (only for box steps).
    pub boxes: Vec<[f32; 4]>,
    /// Per structure: points `[u, v, 1 | 0]`, the same count for every structure.
    pub points: Vec<Vec<[f32; 3]>>,
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
    let img = slicing::slice(image, axis, index).ok()?;
    let mut image = Plane {
        rows: img.rows,
        cols: img.cols,
        data: img.data.iter().map(|v| norm.to_u8(*v)).collect(),
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
        mask_input: None,
        structure: None,
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
    };
    for (k, (l, mask)) in s.targets.into_iter().enumerate() {
        let b = s.boxes.get(k).copied();
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
        out.targets.push((l, cut.data));
    }
    Some(out)
}

/// Random crop (zoom) and flips/transposes applied identically to image and label planes.
fn augment(image: &mut Plane<u8>, labs: &mut [Plane<i32>], cfg: &SamplerConfig, rng: &mut Rng) {
    if rng.uniform() < cfg.crop_prob {
        let f = 0.6 + 0.4 * rng.uniform();
        let (h, w) = (
            ((image.rows as f64 * f) as usize).max(8),
            ((image.cols as f64 * f) as usize).max(8),
        );
        let r0 = rng.below(image.rows - h.min(image.rows) + 1);
        let c0 = rng.below(image.cols - w.min(image.cols) + 1);
        *image = crop(image, r0, c0, h, w);
        labs.iter_mut().for_each(|l| *l = crop(l, r0, c0, h, w));
    }
    if rng.uniform() < cfg.flip_prob {
        let (fr, fc, tr) = (
            rng.uniform() < 0.5,
            rng.uniform() < 0.5,
            rng.uniform() < 0.5,
        );
        *image = flip(image, fr, fc, tr);
        labs.iter_mut().for_each(|l| *l = flip(l, fr, fc, tr));
    }
}

fn crop<T: Copy>(p: &Plane<T>, r0: usize, c0: usize, h: usize, w: usize) -> Plane<T> {
    let (h, w) = (h.min(p.rows - r0), w.min(p.cols - c0));
    let mut data = Vec::with_capacity(h * w);
    for r in r0..r0 + h {
        data.extend_from_slice(&p.data[r * p.cols + c0..r * p.cols + c0 + w]);
    }
    Plane {
        rows: h,
        cols: w,
        data,
    }
}

fn flip<T: Copy>(p: &Plane<T>, flip_rows: bool, flip_cols: bool, transpose: bool) -> Plane<T> {
    let (rows, cols) = if transpose {
        (p.cols, p.rows)
    } else {
        (p.rows, p.cols)
    };
    let mut data = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let (sr, sc) = if transpose { (c, r) } else { (r, c) };
            let sr = if flip_rows { p.rows - 1 - sr } else { sr };
            let sc = if flip_cols { p.cols - 1 - sc } else { sc };
            data.push(p.data[sr * p.cols + sc]);
        }
    }
    Plane { rows, cols, data }
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

/// Mask `[rows, cols]` → soft target on the decoder's `l × l` logit grid, which covers the
/// resized-and-padded model input of side `s` (the slice scaled by `s / max(rows, cols)`).
pub fn low_res_target(mask: &[u8], rows: usize, cols: usize, s: usize, l: usize) -> Vec<f32> {
    let scale = s as f64 / rows.max(cols) as f64;
    let cell = s as f64 / l as f64; // input pixels per logit
    const SUB: usize = 4;
    let mut out = vec![0.0f32; l * l];
    for gy in 0..l {
        for gx in 0..l {
            let mut hit = 0;
            for sy in 0..SUB {
                for sx in 0..SUB {
                    let y = (gy as f64 + (sy as f64 + 0.5) / SUB as f64) * cell / scale;
                    let x = (gx as f64 + (sx as f64 + 0.5) / SUB as f64) * cell / scale;
                    let (r, c) = (y as usize, x as usize);
                    if r < rows && c < cols && mask[r * cols + c] != 0 {
                        hit += 1;
                    }
                }
            }
            out[gy * l + gx] = hit as f32 / (SUB * SUB) as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn low_res_target_covers_the_mask_at_the_models_scale() {
        // 8×16 slice, square input 32, logits 8: one logit = 4 input px = 2 slice px.
        let (rows, cols) = (8, 16);
        let mut m = vec![0u8; rows * cols];
        for v in 0..4 {
            for u in 0..4 {
                m[v * cols + u] = 1;
            }
        }
        let t = low_res_target(&m, rows, cols, 32, 8);
        assert_eq!(t[0], 1.0);
        assert_eq!(t[1], 1.0);
        assert_eq!(t[2], 0.0);
        assert_eq!(t[8 + 1], 1.0);
        assert_eq!(t[2 * 8], 0.0);
        // Rows below the resized slice (padding) are empty.
        assert!(t[4 * 8..].iter().all(|v| *v == 0.0));
    }

    #[test]
    fn neighbour_boxes_come_from_the_structure_and_targets_may_be_empty_where_it_ends() {
        // A 6×6-voxel structure on axial slices 6 and 7 of a 16³ volume.
        let n = 16;
        let mut lab = vec![0i32; n * n * n];
        for z in 6..=7 {
            for y in 4..=9 {
                for x in 4..=9 {
                    lab[(z * n + y) * n + x] = 5;
                }
            }
        }
        let eye = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let image = Volume::new([n; 3], lab.iter().map(|l| *l as f32).collect(), eye).unwrap();
        let labels = Volume::new([n; 3], lab, eye).unwrap();
        let norm = Normalizer::robust(&image).unwrap();
        let cfg = SamplerConfig {
            axes: vec![2],
            crop_prob: 0.0,
            flip_prob: 0.0,
            neighbour_prob: 1.0,
            ..SamplerConfig::default()
        };
        let mut rng = Rng::new(7);
        let (mut empty, mut full) = (0, 0);
        for _ in 0..40 {
            let s = sample_slice(&image, &norm, &labels, &[5], &cfg, false, &mut rng).unwrap();
            assert_eq!(
                s.boxes,
                vec![[3.0, 3.0, 10.0, 10.0]],
                "the source mask's box + 1 px"
            );
            match s.targets[0].1.iter().filter(|v| **v != 0).count() {
                0 => empty += 1,
                36 => full += 1,
                k => panic!("a slice holds 0 or 36 voxels of the structure, not {k}"),
            }
        }
        // Neighbours 1–3 slices away: slice 7 from 6 (and back) is full, the rest empty.
        assert!(empty > 0 && full > 0, "{empty} empty, {full} full");
    }

    /// Boxes of structures 5 (6 × 10 px) and 6 far apart in a 64-wide axial plane; the
    /// image holds the label values, so a misaligned cut shows as a mismatch.
    fn two_structures() -> (Volume<f32>, LabelVolume, Normalizer) {
        let n = 64;
        let mut lab = vec![0i32; n * n * 4];
        for z in 0..4 {
            for y in 10..20 {
                for x in 8..14 {
                    lab[(z * n + y) * n + x] = 5;
                }
                for x in 50..56 {
                    lab[(z * n + y) * n + x] = 6;
                }
            }
        }
        volumes(lab, n)
    }

    /// An `n × n × 4` label volume and an image holding its label values, on a 1 mm grid.
    fn volumes(lab: Vec<i32>, n: usize) -> (Volume<f32>, LabelVolume, Normalizer) {
        let mut eye = [[0.0; 4]; 4];
        (0..4).for_each(|i| eye[i][i] = 1.0);
        let dims = [n, n, 4];
        let image = Volume::new(dims, lab.iter().map(|l| *l as f32 * 10.0).collect(), eye).unwrap();
        let labels = Volume::new(dims, lab, eye).unwrap();
        let norm = Normalizer::robust(&image).unwrap();
        (image, labels, norm)
    }

    /// Axial slices, no augmentation or propagation boxes, every slice cut to a 2× window.
    fn focused_axial() -> SamplerConfig {
        SamplerConfig {
            axes: vec![2],
            crop_prob: 0.0,
            flip_prob: 0.0,
            neighbour_prob: 0.0,
            focus_prob: 1.0,
            focus_context: [2.0, 2.0],
            focus_min_side: [16, 16],
            ..SamplerConfig::default()
        }
    }

    #[test]
    fn prompt_variants_add_prompts_of_the_same_kind_for_the_first_structure() {
        let (image, labels, norm) = two_structures();
        let cfg = SamplerConfig {
            prompt_variants: 3,
            ..focused_axial()
        };
        let mut rng = Rng::new(5);
        for use_points in [false, true] {
            for _ in 0..10 {
                let s = sample_slice(&image, &norm, &labels, &[5, 6], &cfg, use_points, &mut rng)
                    .unwrap();
                let side = s.image.rows;
                assert_eq!(s.targets.len(), 3, "one structure, three prompts");
                assert!(s.targets.iter().all(|t| t == &s.targets[0]));
                let mask = &s.targets[0].1;
                if use_points {
                    assert_eq!((s.points.len(), s.boxes.len()), (3, 0));
                    let n = s.points[0].len();
                    assert!(s.points.iter().all(|p| p.len() == n), "equal point counts");
                    for [u, v, lb] in s.points.iter().flatten() {
                        let inside = mask[*v as usize * side + *u as usize] == 1;
                        assert!(*lb != 1.0 || inside, "a positive point off the structure");
                        assert!(*lb != 0.0 || !inside, "a negative point on the structure");
                    }
                } else {
                    assert_eq!((s.boxes.len(), s.points.len()), (3, 0));
                    let b = bbox(mask, side, side).unwrap().map(|x| x as f32);
                    for [u0, v0, u1, v1] in &s.boxes {
                        // Jittered by at most a few pixels around the structure, in the window.
                        assert!(*u1 < side as f32 && *v1 < side as f32);
                        assert!(u0 <= u1 && v0 <= v1);
                        let d = [u0 - b[0], v0 - b[1], u1 - b[2], v1 - b[3]];
                        assert!(d.iter().all(|x| x.abs() <= 6.0), "{d:?}");
                    }
                    assert!(s.boxes.windows(2).any(|w| w[0] != w[1]), "jitters differ");
                }
            }
        }
        // Propagation boxes keep one prompt: their target may be empty.
        let cfg = SamplerConfig {
            neighbour_prob: 1.0,
            focus_prob: 0.0,
            ..cfg
        };
        // (A neighbour outside the volume falls back to the slice itself, with variants.)
        let mut propagation = 0;
        for _ in 0..20 {
            let s = sample_slice(&image, &norm, &labels, &[5], &cfg, false, &mut rng).unwrap();
            if s.boxes == vec![[7.0, 9.0, 14.0, 20.0]] {
                propagation += 1;
            } else {
                assert_eq!(s.targets.len(), 3);
            }
        }
        assert!(propagation > 0);
    }

    #[test]
    fn spread_compares_the_box_of_all_pieces_with_the_largest_pieces_box() {
        let (rows, cols) = (10, 20);
        let mut m = vec![0u8; rows * cols];
        assert_eq!(spread(&m, rows, cols), 0.0);
        // A 3 × 4 block (rows 2-4, cols 3-6): one piece.
        for v in 2..5 {
            m[v * cols + 3..v * cols + 7].fill(1);
        }
        assert_eq!(spread(&m, rows, cols), 1.0);
        // A diagonal neighbour is another piece under 4-connectivity: box 4 × 5 = 20 px.
        m[5 * cols + 7] = 1;
        assert_eq!(spread(&m, rows, cols), 20.0 / 12.0);
        // A lone pixel at (row 9, col 19): box rows 2-9, cols 3-19 = 8 × 17.
        m[9 * cols + 19] = 1;
        assert_eq!(spread(&m, rows, cols), 136.0 / 12.0);
        // A mask of the wrong size is refused, not indexed past its end.
        assert_eq!(spread(&m[..rows * cols - 1], rows, cols), 0.0);
    }

    #[test]
    fn fragment_prob_prefers_slices_where_the_structure_lies_in_pieces() {
        // Structure 5 is a 10 × 6 block on 4 axial slices; on slice 3 only, a 2-px island far
        // to its right stretches its box to column 57.
        let n = 64;
        let mut lab = vec![0i32; n * n * 4];
        for z in 0..4 {
            for y in 10..20 {
                for x in 8..14 {
                    lab[(z * n + y) * n + x] = 5;
                }
            }
        }
        lab[(3 * n + 30) * n + 56] = 5;
        lab[(3 * n + 30) * n + 57] = 5;
        let (image, labels, norm) = volumes(lab, n);
        let fragmented_share = |fragment_prob: f64, use_points: bool| {
            let cfg = SamplerConfig {
                axes: vec![2],
                crop_prob: 0.0,
                flip_prob: 0.0,
                neighbour_prob: 0.0,
                box_jitter: 0.0,
                max_points: 1,
                fragment_prob,
                ..SamplerConfig::default()
            };
            let mut rng = Rng::new(11);
            let mut hits = 0;
            for _ in 0..40 {
                let s =
                    sample_slice(&image, &norm, &labels, &[5], &cfg, use_points, &mut rng).unwrap();
                // The island is in the target (and so in the box) only on slice 3.
                hits += usize::from(s.targets[0].1[30 * n + 57] == 1);
                if !use_points {
                    let wide = s.boxes[0][2] == 57.0;
                    assert_eq!(
                        wide,
                        s.targets[0].1[30 * n + 57] == 1,
                        "box from the target"
                    );
                }
            }
            hits
        };
        // 1 slice in 4 holds the island; 16 draws find it nearly always.
        let (plain, preferred) = (fragmented_share(0.0, false), fragmented_share(1.0, false));
        assert!(plain < 20, "{plain} of 40 without the preference");
        assert!(preferred >= 36, "{preferred} of 40 with fragment_prob 1");
        // Point steps keep the plain distribution.
        assert!(fragmented_share(1.0, true) < 20);
    }

    #[test]
    fn focused_samples_cut_image_masks_and_prompts_to_one_window_around_the_first_prompt() {
        let (image, labels, norm) = two_structures();
        let cfg = SamplerConfig {
            box_jitter: 0.0,
            ..focused_axial()
        };
        let mut rng = Rng::new(3);
        for use_points in [false, true] {
            for _ in 0..10 {
                let s = sample_slice(&image, &norm, &labels, &[5, 6], &cfg, use_points, &mut rng)
                    .unwrap();
                // Box 6 × 10 → window side 20; the other structure is 36 px away: dropped.
                let side = if use_points { s.image.rows } else { 20 };
                assert_eq!((s.image.rows, s.image.cols), (side, side));
                assert_eq!(s.targets.len(), 1);
                let (l, mask) = &s.targets[0];
                let fg = norm.to_u8(*l as f32 * 10.0);
                for (m, g) in mask.iter().zip(&s.image.data) {
                    assert_eq!(*m != 0, *g == fg, "image and mask disagree");
                }
                assert_eq!(mask.iter().filter(|v| **v != 0).count(), 60);
                if use_points {
                    for [u, v, lb] in &s.points[0] {
                        if *lb == 1.0 {
                            assert_eq!(mask[*v as usize * side + *u as usize], 1);
                        }
                    }
                } else {
                    let [u0, v0, u1, v1] = s.boxes[0];
                    let b = bbox(mask, side, side).unwrap();
                    assert_eq!([u0, v0, u1, v1], b.map(|x| x as f32));
                }
            }
        }
    }

    #[test]
    fn flips_and_crops_keep_image_and_labels_aligned() {
        let p = Plane {
            rows: 2,
            cols: 3,
            data: vec![1, 2, 3, 4, 5, 6],
        };
        assert_eq!(flip(&p, false, false, true).data, vec![1, 4, 2, 5, 3, 6]);
        assert_eq!(flip(&p, true, true, false).data, vec![6, 5, 4, 3, 2, 1]);
        assert_eq!(crop(&p, 1, 1, 1, 2).data, vec![5, 6]);
    }
}
