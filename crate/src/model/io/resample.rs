//! Position embeddings of a checkpoint made for another input size, resampled to the
//! model's: absolute positions over the token grid, relative positions along their span.

use crate::weights::{HostTensor, WeightsError};

/// Linear resampling of `len` samples to `out` samples (PyTorch's `interpolate(mode="linear",
/// align_corners=False)`): returns, per output index, the two source indices and weight.
fn linear_taps(len: usize, out: usize) -> Vec<(usize, usize, f32)> {
    let scale = len as f32 / out as f32;
    (0..out)
        .map(|i| {
            let src = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(len - 1);
            let i1 = (i0 + 1).min(len - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Relative positions of a checkpoint made for another input size are resampled linearly
/// along their length, as Meta's `get_rel_pos` does at run time.
pub(crate) fn resize_rel_pos(
    key: &str,
    t: HostTensor,
    shape: [usize; 2],
) -> Result<HostTensor, WeightsError> {
    let [len, hd] = shape;
    match *t.shape.as_slice() {
        [l, d] if l == len && d == hd => Ok(t),
        [l, d] if d == hd && l > 0 => {
            let taps = linear_taps(l, len);
            let mut data = Vec::with_capacity(len * hd);
            for (i0, i1, f) in taps {
                for c in 0..hd {
                    data.push(t.data[i0 * hd + c] * (1.0 - f) + t.data[i1 * hd + c] * f);
                }
            }
            Ok(HostTensor::new(shape.to_vec(), data))
        }
        _ => Err(WeightsError::Shape {
            key: key.to_string(),
            expected: shape.to_vec(),
            found: t.shape,
        }),
    }
}

/// Absolute positions of a checkpoint made for another input size are resampled
/// bilinearly over the token grid (so a 1024-px checkpoint can run at 256 px).
pub(crate) fn resize_pos_embed(
    key: &str,
    t: HostTensor,
    shape: [usize; 4],
) -> Result<HostTensor, WeightsError> {
    let [_, gh, gw, c] = shape;
    let (sh, sw) = match t.shape.as_slice() {
        &[1, sh, sw, sc] if sc == c && sh > 0 && sw > 0 => (sh, sw),
        _ => {
            return Err(WeightsError::Shape {
                key: key.to_string(),
                expected: shape.to_vec(),
                found: t.shape,
            })
        }
    };
    if (sh, sw) == (gh, gw) {
        return Ok(t);
    }
    let (ty, tx) = (linear_taps(sh, gh), linear_taps(sw, gw));
    let at = |y: usize, x: usize, ch: usize| t.data[(y * sw + x) * c + ch];
    let mut data = Vec::with_capacity(gh * gw * c);
    for &(y0, y1, fy) in &ty {
        for &(x0, x1, fx) in &tx {
            for ch in 0..c {
                let top = at(y0, x0, ch) * (1.0 - fx) + at(y0, x1, ch) * fx;
                let bottom = at(y1, x0, ch) * (1.0 - fx) + at(y1, x1, ch) * fx;
                data.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    Ok(HostTensor::new(shape.to_vec(), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pos_embed_resize_keeps_a_constant_field_constant() {
        let t = HostTensor::new(vec![1, 4, 4, 2], vec![3.5; 32]);
        let r = resize_pos_embed("k", t, [1, 7, 7, 2]).unwrap();
        assert_eq!(r.shape, vec![1, 7, 7, 2]);
        assert!(r.data.iter().all(|v| (v - 3.5).abs() < 1e-6));
    }

    #[test]
    fn pos_embed_resize_halves_a_linear_ramp_at_pixel_centres() {
        // 4 -> 2 samples: output centres fall at source positions 0.5 and 2.5.
        let data: Vec<f32> = (0..4).flat_map(|_| (0..4).map(|x| x as f32)).collect();
        let r =
            resize_pos_embed("k", HostTensor::new(vec![1, 4, 4, 1], data), [1, 2, 2, 1]).unwrap();
        assert_eq!(r.data, vec![0.5, 2.5, 0.5, 2.5]);
    }

    #[test]
    fn rel_pos_of_wrong_width_is_a_shape_error() {
        let t = HostTensor::new(vec![27, 8], vec![0.0; 27 * 8]);
        let err = resize_rel_pos("blocks.0.attn.rel_pos_h", t, [27, 16]).unwrap_err();
        assert!(err.to_string().contains("[27, 8]"));
    }
}
