//! SAM pre/post-processing geometry, matching Meta's `segment_anything`
//! (`ResizeLongestSide`, `SamPredictor`, `Sam.postprocess_masks`) exactly.
//!
//! * Image resize: `SamPredictor.set_image` goes through torchvision's `resize`
//!   on a PIL image, i.e. Pillow's `Image.resize(size, BILINEAR)`; reproduced
//!   here bit for bit (fixed-point, separable, antialiased when shrinking).
//! * Mask upsampling: `F.interpolate(mode="bilinear", align_corners=False)` on
//!   CPU, with source positions and weights computed in `f32` as torch does.

use thiserror::Error;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum TransformError {
    #[error("buffer has {got} values, expected {expected} for a {h}x{w}x{channels} image")]
    BufferSize {
        got: usize,
        expected: usize,
        h: usize,
        w: usize,
        channels: usize,
    },
    #[error("empty size {h}x{w} ({what})")]
    EmptySize {
        what: &'static str,
        h: usize,
        w: usize,
    },
    #[error("crop {crop_h}x{crop_w} exceeds the {size}x{size} model input")]
    CropTooLarge {
        crop_h: usize,
        crop_w: usize,
        size: usize,
    },
}

/// Resizes images so that the longest side equals `target_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResizeLongestSide {
    pub target_length: usize,
}

impl ResizeLongestSide {
    pub fn new(target_length: usize) -> Self {
        Self { target_length }
    }

    /// `get_preprocess_shape`: `int(x * scale + 0.5)` computed in f64 like Python.
    pub fn preprocess_shape(&self, h: usize, w: usize) -> (usize, usize) {
        let long = h.max(w);
        if long == 0 {
            return (0, 0);
        }
        let scale = self.target_length as f64 / long as f64;
        let nh = (h as f64 * scale + 0.5) as usize;
        let nw = (w as f64 * scale + 0.5) as usize;
        (nh, nw)
    }

    /// Resizes an HWC RGB `u8` image as `ResizeLongestSide.apply_image` does.
    /// Returns the resized image and its (height, width).
    pub fn apply_image(
        &self,
        rgb: &[u8],
        h: usize,
        w: usize,
    ) -> Result<(Vec<u8>, usize, usize), TransformError> {
        let (nh, nw) = self.preprocess_shape(h, w);
        let out = pil_resize_bilinear_u8(rgb, h, w, 3, nh, nw)?;
        Ok((out, nh, nw))
    }

    /// Maps (x, y) points from the original image to the resized one. Python
    /// scales in f64 and the predictor then casts to f32; so do we.
    pub fn apply_coords(&self, coords: &[[f32; 2]], original: (usize, usize)) -> Vec<[f32; 2]> {
        let (old_h, old_w) = original;
        let (new_h, new_w) = self.preprocess_shape(old_h, old_w);
        let sx = new_w as f64 / old_w as f64;
        let sy = new_h as f64 / old_h as f64;
        coords
            .iter()
            .map(|&[x, y]| [(x as f64 * sx) as f32, (y as f64 * sy) as f32])
            .collect()
    }

    /// Maps an (x0, y0, x1, y1) box like `apply_boxes`.
    pub fn apply_box(&self, b: [f32; 4], original: (usize, usize)) -> [f32; 4] {
        let p = self.apply_coords(&[[b[0], b[1]], [b[2], b[3]]], original);
        match p.as_slice() {
            [a, c] => [a[0], a[1], c[0], c[1]],
            _ => b, // unreachable: two points in, two out
        }
    }
}

fn check_len(
    len: usize,
    h: usize,
    w: usize,
    channels: usize,
    out_h: usize,
    out_w: usize,
) -> Result<(), TransformError> {
    if h == 0 || w == 0 || channels == 0 {
        return Err(TransformError::EmptySize {
            what: "input",
            h,
            w,
        });
    }
    if out_h == 0 || out_w == 0 {
        return Err(TransformError::EmptySize {
            what: "output",
            h: out_h,
            w: out_w,
        });
    }
    let expected = h
        .checked_mul(w)
        .and_then(|v| v.checked_mul(channels))
        .unwrap_or(usize::MAX);
    if len != expected {
        return Err(TransformError::BufferSize {
            got: len,
            expected,
            h,
            w,
            channels,
        });
    }
    Ok(())
}

/// Pillow's 8-bit coefficient precision: 32 bits minus 8 for the value and 2
/// for overshoot headroom.
const PRECISION_BITS: u32 = 22;

/// Fixed-point filter taps for one axis: for each output index, the first
/// input index and its integer weights.
struct PilTaps {
    starts: Vec<usize>,
    ksize: usize,
    /// `out_size * ksize` weights; only the first `counts[i]` of a row are used.
    weights: Vec<i32>,
    counts: Vec<usize>,
}

fn pil_bilinear(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 {
        1.0 - x
    } else {
        0.0
    }
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for the bilinear
/// filter over the full box `[0, in_size)`; all arithmetic in f64 as in C.
fn pil_taps(in_size: usize, out_size: usize) -> PilTaps {
    // The box edge is a C float, promoted to double before dividing.
    let scale = (in_size as f32) as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support is 1.0
    let ksize = support.ceil() as usize * 2 + 1;
    let inv_filterscale = 1.0 / filterscale;
    let mut starts = Vec::with_capacity(out_size);
    let mut counts = Vec::with_capacity(out_size);
    let mut weights = vec![0i32; out_size * ksize];
    let mut row = vec![0f64; ksize];
    for (xx, wrow) in weights.chunks_exact_mut(ksize).enumerate() {
        let center = (xx as f64 + 0.5) * scale;
        // C truncates toward zero, then clamps.
        let xmin = ((center - support + 0.5) as i64).max(0);
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64);
        let count = ((xmax - xmin).max(0) as usize).min(ksize);
        let mut ww = 0.0;
        for (x, k) in row.iter_mut().enumerate().take(count) {
            let w = pil_bilinear(((x as i64 + xmin) as f64 - center + 0.5) * inv_filterscale);
            *k = w;
            ww += w;
        }
        for (k, out) in row.iter().zip(wrow.iter_mut()).take(count) {
            let k = if ww != 0.0 { k / ww } else { *k };
            let scaled = k * (1u32 << PRECISION_BITS) as f64;
            *out = if k < 0.0 {
                (-0.5 + scaled) as i32
            } else {
                (0.5 + scaled) as i32
            };
        }
        starts.push(xmin as usize);
        counts.push(count);
    }
    PilTaps {
        starts,
        ksize,
        weights,
        counts,
    }
}

/// Fixed-point accumulate with rounding, then clip to `u8` (Pillow's `clip8`).
#[inline]
fn pil_clip8(acc: i64) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Pillow's `Image.resize((out_w, out_h), Image.BILINEAR)` for 8-bit images
/// with `channels` interleaved bands (HWC). Bit-exact with Pillow 13: two
/// separable passes, each rounded and clipped to `u8`; a pass whose size is
/// unchanged is skipped. The horizontal pass runs first unless the height
/// shrinks by more than twice what the width loses (Pillow 13 then resizes
/// vertically first; older Pillow always went horizontal first).
pub fn pil_resize_bilinear_u8(
    src: &[u8],
    h: usize,
    w: usize,
    channels: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Vec<u8>, TransformError> {
    check_len(src.len(), h, w, channels, out_h, out_w)?;
    let vertical_first = out_h < h && (h - out_h) as i64 > 2 * (w as i64 - out_w as i64);
    let out = match (out_w != w, out_h != h) {
        (false, false) => src.to_vec(),
        (true, false) => pil_horizontal(src, h, w, channels, out_w),
        (false, true) => pil_vertical(src, h, w, channels, out_h),
        (true, true) if vertical_first => {
            let mid = pil_vertical(src, h, w, channels, out_h);
            pil_horizontal(&mid, out_h, w, channels, out_w)
        }
        (true, true) => {
            let mid = pil_horizontal(src, h, w, channels, out_w);
            pil_vertical(&mid, h, out_w, channels, out_h)
        }
    };
    Ok(out)
}

/// One horizontal pass: `h x w` to `h x out_w`. Sizes are pre-validated.
fn pil_horizontal(src: &[u8], h: usize, w: usize, channels: usize, out_w: usize) -> Vec<u8> {
    let taps = pil_taps(w, out_w);
    let half = 1i64 << (PRECISION_BITS - 1);
    let mut out = vec![0u8; h * out_w * channels];
    for (src_row, out_row) in src
        .chunks_exact(w * channels)
        .zip(out.chunks_exact_mut(out_w * channels))
    {
        for (xx, px) in out_row.chunks_exact_mut(channels).enumerate() {
            let start = taps.starts[xx];
            let k = &taps.weights[xx * taps.ksize..xx * taps.ksize + taps.counts[xx]];
            for (c, p) in px.iter_mut().enumerate() {
                let mut acc = half;
                for (i, &kw) in k.iter().enumerate() {
                    acc += src_row[(start + i) * channels + c] as i64 * kw as i64;
                }
                *p = pil_clip8(acc);
            }
        }
    }
    out
}

/// One vertical pass: `h x w` to `out_h x w`. Sizes are pre-validated.
fn pil_vertical(src: &[u8], h: usize, w: usize, channels: usize, out_h: usize) -> Vec<u8> {
    let taps = pil_taps(h, out_h);
    let half = 1i64 << (PRECISION_BITS - 1);
    let stride = w * channels;
    let mut out = vec![0u8; out_h * stride];
    for (yy, out_row) in out.chunks_exact_mut(stride).enumerate() {
        let start = taps.starts[yy];
        let k = &taps.weights[yy * taps.ksize..yy * taps.ksize + taps.counts[yy]];
        for (i, p) in out_row.iter_mut().enumerate() {
            let mut acc = half;
            for (j, &kw) in k.iter().enumerate() {
                acc += src[(start + j) * stride + i] as i64 * kw as i64;
            }
            *p = pil_clip8(acc);
        }
    }
    out
}

/// Per output index: the two source indices and their weights, as ATen's
/// `compute_source_index_and_lambda` computes them (f32, align_corners=False).
fn torch_linear_taps(in_size: usize, out_size: usize) -> Vec<(usize, usize, f32, f32)> {
    if in_size == out_size {
        return (0..out_size).map(|i| (i, i, 1.0, 0.0)).collect();
    }
    let scale = in_size as f32 / out_size as f32;
    (0..out_size)
        .map(|i| {
            // ATen's x86 build fuses `scale * (i + 0.5) - 0.5` into one FMA;
            // rounding it twice shifts weights by an ulp of the source index.
            let src = scale.mul_add(i as f32 + 0.5, -0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_size - 1);
            let l1 = (src - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < in_size - 1 { i0 + 1 } else { i0 };
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

/// `F.interpolate(x, (out_h, out_w), mode="bilinear", align_corners=False)` on
/// one row-major `h x w` plane.
pub fn resize_bilinear_f32(
    src: &[f32],
    h: usize,
    w: usize,
    out_h: usize,
    out_w: usize,
) -> Result<Vec<f32>, TransformError> {
    check_len(src.len(), h, w, 1, out_h, out_w)?;
    let ty = torch_linear_taps(h, out_h);
    let tx = torch_linear_taps(w, out_w);
    let mut out = Vec::with_capacity(out_h * out_w);
    for &(y0, y1, wy0, wy1) in &ty {
        let r0 = &src[y0 * w..(y0 + 1) * w];
        let r1 = &src[y1 * w..(y1 + 1) * w];
        for &(x0, x1, wx0, wx1) in &tx {
            let t0 = r0[x0] * wx0 + r0[x1] * wx1;
            let t1 = r1[x0] * wx0 + r1[x1] * wx1;
            out.push(t0 * wy0 + t1 * wy1);
        }
    }
    Ok(out)
}

/// `Sam.postprocess_masks` for one low-resolution mask plane of logits:
/// upsample to `img_size`², crop the un-padded `input_hw`, upsample to
/// `original_hw`. Threshold the result at 0 for a binary mask.
pub fn postprocess_masks(
    low_res: &[f32],
    lh: usize,
    lw: usize,
    img_size: usize,
    input_hw: (usize, usize),
    original_hw: (usize, usize),
) -> Result<Vec<f32>, TransformError> {
    let (ih, iw) = input_hw;
    if ih > img_size || iw > img_size {
        return Err(TransformError::CropTooLarge {
            crop_h: ih,
            crop_w: iw,
            size: img_size,
        });
    }
    if ih == 0 || iw == 0 {
        return Err(TransformError::EmptySize {
            what: "crop",
            h: ih,
            w: iw,
        });
    }
    let full = resize_bilinear_f32(low_res, lh, lw, img_size, img_size)?;
    let mut cropped = Vec::with_capacity(ih * iw);
    for row in full.chunks_exact(img_size).take(ih) {
        cropped.extend_from_slice(&row[..iw]);
    }
    resize_bilinear_f32(&cropped, ih, iw, original_hw.0, original_hw.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use safetensors::SafeTensors;
    use std::path::PathBuf;

    /// Fixtures written by `tests/weights/gen_*_fixtures.py`.
    fn data_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/transforms")
    }

    fn load(name: &str) -> Vec<u8> {
        let p = data_dir().join(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn i64s(st: &SafeTensors, name: &str) -> Vec<i64> {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::I64, "{name}");
        t.data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    fn f32s(st: &SafeTensors, name: &str) -> Vec<f32> {
        let t = st.tensor(name).unwrap();
        assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
        t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// Same counter hash as the Python generator.
    fn hash_u32(n: usize, seed: u64) -> Vec<u32> {
        (0..n as u64)
            .map(|i| {
                let mut x = (i.wrapping_add(seed.wrapping_mul(0x0100_0193)))
                    .wrapping_mul(0x9E37_79B1)
                    & 0xFFFF_FFFF;
                x ^= x >> 15;
                x = x.wrapping_mul(0x85EB_CA77) & 0xFFFF_FFFF;
                x ^= x >> 13;
                x as u32
            })
            .collect()
    }

    fn rand_u8(n: usize, seed: u64) -> Vec<u8> {
        hash_u32(n, seed)
            .into_iter()
            .map(|x| (x >> 24) as u8)
            .collect()
    }

    fn rand_f32(n: usize, seed: u64) -> Vec<f32> {
        hash_u32(n, seed)
            .into_iter()
            .map(|x| ((x >> 16) as f32 - 32768.0) / 1024.0)
            .collect()
    }

    fn checksum(b: &[u8]) -> u64 {
        b.iter().enumerate().fold(0u64, |acc, (i, &v)| {
            let mut m = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            m ^= m >> 29;
            m |= 1;
            acc.wrapping_add((v as u64).wrapping_mul(m))
        })
    }

    /// Compares with a stored u8 case: checksum over the whole output plus
    /// the strided sample. Returns the number of sampled mismatches.
    fn check_u8_case(st: &SafeTensors, name: &str, got: &[u8], stride: usize, sum: u64) -> usize {
        let expected = st.tensor(&format!("{name}.expected")).unwrap();
        let sampled: Vec<u8> = got.iter().step_by(stride).copied().collect();
        assert_eq!(sampled.len(), expected.data().len(), "{name}: sample count");
        let mismatches = sampled
            .iter()
            .zip(expected.data())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(mismatches, 0, "{name}: {mismatches} sampled bytes differ");
        assert_eq!(checksum(got), sum, "{name}: checksum differs");
        mismatches
    }

    fn stored_sum(p: &[i64]) -> u64 {
        (p[p.len() - 2] as u64) | ((p[p.len() - 1] as u64) << 32)
    }

    #[test]
    fn pil_resize_matches_pillow_byte_for_byte() {
        let bytes = load("pil_resize.safetensors");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let mut cases = 0;
        for k in 0.. {
            let name = format!("pil{k:02}");
            let Ok(p) = st.tensor(&format!("{name}.params")) else {
                break;
            };
            let _ = p;
            let p = i64s(&st, &format!("{name}.params"));
            let [h, w, c, oh, ow, seed, stride] = [p[0], p[1], p[2], p[3], p[4], p[5], p[6]];
            let img = rand_u8((h * w * c) as usize, seed as u64);
            let got = pil_resize_bilinear_u8(
                &img,
                h as usize,
                w as usize,
                c as usize,
                oh as usize,
                ow as usize,
            )
            .unwrap();
            assert_eq!(got.len(), (oh * ow * c) as usize);
            check_u8_case(&st, &name, &got, stride as usize, stored_sum(&p));
            cases += 1;
        }
        assert_eq!(cases, 24);
    }

    #[test]
    fn apply_image_matches_segment_anything() {
        let bytes = load("resize_longest_side.safetensors");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        for k in 0..4 {
            let name = format!("apply{k}");
            let p = i64s(&st, &format!("{name}.params"));
            let [h, w, _c, oh, ow, seed, target, stride] =
                [p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]];
            let img = rand_u8((h * w * 3) as usize, seed as u64);
            let rls = ResizeLongestSide::new(target as usize);
            let (got, gh, gw) = rls.apply_image(&img, h as usize, w as usize).unwrap();
            assert_eq!((gh as i64, gw as i64), (oh, ow), "{name}: shape");
            check_u8_case(&st, &name, &got, stride as usize, stored_sum(&p));
        }
    }

    #[test]
    fn preprocess_shape_matches_get_preprocess_shape() {
        let bytes = load("resize_longest_side.safetensors");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let rows = i64s(&st, "rls.shapes");
        assert!(!rows.is_empty());
        for r in rows.chunks_exact(5) {
            let rls = ResizeLongestSide::new(r[0] as usize);
            let got = rls.preprocess_shape(r[1] as usize, r[2] as usize);
            assert_eq!((got.0 as i64, got.1 as i64), (r[3], r[4]), "row {r:?}");
        }
    }

    #[test]
    fn coords_and_boxes_match_segment_anything() {
        let bytes = load("resize_longest_side.safetensors");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let rls = ResizeLongestSide::new(1024);
        let coords = f32s(&st, "rls.coords");
        assert!(!coords.is_empty());
        for r in coords.chunks_exact(6) {
            let orig = (r[0] as usize, r[1] as usize);
            let got = rls.apply_coords(&[[r[2], r[3]]], orig);
            assert_eq!(got, vec![[r[4], r[5]]], "coords row {r:?}");
        }
        let boxes = f32s(&st, "rls.boxes");
        assert!(!boxes.is_empty());
        for r in boxes.chunks_exact(10) {
            let orig = (r[0] as usize, r[1] as usize);
            let got = rls.apply_box([r[2], r[3], r[4], r[5]], orig);
            assert_eq!(got, [r[6], r[7], r[8], r[9]], "box row {r:?}");
        }
    }

    /// Max |got - want| relative to the data's magnitude (max |want|): ATen's
    /// compiled kernel fuses some multiply-adds, so single values near zero
    /// can differ by an ulp of the neighbouring inputs, not of themselves.
    fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
        assert_eq!(got.len(), want.len());
        let scale = want.iter().fold(f32::MIN_POSITIVE, |m, w| m.max(w.abs()));
        got.iter()
            .zip(want)
            .map(|(g, w)| (g - w).abs() / scale)
            .fold(0.0, f32::max)
    }

    /// Elements not bit-identical to torch (reported, not asserted).
    fn inexact(got: &[f32], want: &[f32]) -> usize {
        got.iter().zip(want).filter(|(g, w)| g != w).count()
    }

    #[test]
    fn resize_bilinear_f32_matches_torch_interpolate() {
        let bytes = load("interpolate.safetensors");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (mut worst, mut differ, mut total) = (0f32, 0, 0);
        for k in 0..9 {
            let name = format!("interp{k}");
            let p = i64s(&st, &format!("{name}.params"));
            let [h, w, oh, ow, seed] = [p[0], p[1], p[2], p[3], p[4]].map(|v| v as usize);
            let x = rand_f32(h * w, seed as u64);
            let got = resize_bilinear_f32(&x, h, w, oh, ow).unwrap();
            let want = f32s(&st, &format!("{name}.expected"));
            let err = max_rel_err(&got, &want);
            assert!(err <= 1e-6, "{name}: max rel err {err}");
            worst = worst.max(err);
            differ += inexact(&got, &want);
            total += want.len();
        }
        eprintln!("resize_bilinear_f32 vs torch: worst rel err {worst:e}, {differ}/{total} not bit-identical");
    }

    #[test]
    fn postprocess_masks_matches_sam() {
        let bytes = load("interpolate.safetensors");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let (mut worst, mut differ, mut total) = (0f32, 0, 0);
        for k in 0..4 {
            let name = format!("post{k}");
            let p = i64s(&st, &format!("{name}.params"));
            let [lh, lw, img, ih, iw, oh, ow, seed, stride] =
                [p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8]].map(|v| v as usize);
            let x = rand_f32(lh * lw, seed as u64);
            let got = postprocess_masks(&x, lh, lw, img, (ih, iw), (oh, ow)).unwrap();
            assert_eq!(got.len(), oh * ow);
            let got: Vec<f32> = got.into_iter().step_by(stride).collect();
            let want = f32s(&st, &format!("{name}.expected"));
            let err = max_rel_err(&got, &want);
            assert!(err <= 1e-5, "{name}: max rel err {err}");
            worst = worst.max(err);
            differ += inexact(&got, &want);
            total += want.len();
        }
        eprintln!("postprocess_masks vs torch: worst rel err {worst:e}, {differ}/{total} not bit-identical");
    }

    #[test]
    fn bad_sizes_are_errors_not_panics() {
        assert!(matches!(
            pil_resize_bilinear_u8(&[0; 5], 2, 2, 1, 3, 3),
            Err(TransformError::BufferSize { .. })
        ));
        assert!(pil_resize_bilinear_u8(&[], 0, 2, 3, 3, 3).is_err());
        assert!(pil_resize_bilinear_u8(&[0; 12], 2, 2, 3, 0, 3).is_err());
        assert!(resize_bilinear_f32(&[0.0; 3], 2, 2, 4, 4).is_err());
        assert!(postprocess_masks(&[0.0; 4], 2, 2, 8, (9, 8), (4, 4)).is_err());
        // A 1x3000 image rounds to height 0 at target 256.
        let rls = ResizeLongestSide::new(256);
        assert!(rls.apply_image(&vec![0; 3000 * 3], 1, 3000).is_err());
    }
}
