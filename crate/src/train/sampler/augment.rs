//! Geometric augmentation of a sampled slice: a random crop (zoom) and flips/transposes,
//! applied identically to the image and its label planes.

use super::SamplerConfig;
use crate::data::rng::Rng;
use crate::data::slicing::Plane;

/// Random crop (zoom) and flips/transposes applied identically to image and label planes.
pub(super) fn augment<T: Copy>(
    image: &mut Plane<T>,
    labs: &mut [Plane<i32>],
    cfg: &SamplerConfig,
    rng: &mut Rng,
) {
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

pub(super) fn crop<T: Copy>(p: &Plane<T>, r0: usize, c0: usize, h: usize, w: usize) -> Plane<T> {
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

pub(super) fn flip<T: Copy>(
    p: &Plane<T>,
    flip_rows: bool,
    flip_cols: bool,
    transpose: bool,
) -> Plane<T> {
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
