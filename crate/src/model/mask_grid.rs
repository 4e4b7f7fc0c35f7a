//! Masks on the mask decoder's low-resolution logit grid: the trainer's targets, and a
//! binary mask given to SAM as its dense prompt (the neighbouring slice's mask when a
//! structure is propagated through the volume).

/// The logit a dense prompt gives a pixel wholly inside (minus: wholly outside). About the
/// size of a confident prediction's logits, which the corrective round also feeds back.
pub const DENSE_LOGIT: f32 = 8.0;

/// Mask `[rows, cols]` → the share of each cell of the decoder's `l × l` logit grid it
/// covers; the grid spans the resized-and-padded model input of side `s` (the slice scaled
/// by `s / max(rows, cols)`, padding empty).
pub fn low_res_mask(mask: &[u8], rows: usize, cols: usize, s: usize, l: usize) -> Vec<f32> {
    let scale = s as f64 / rows.max(cols).max(1) as f64;
    let cell = s as f64 / l.max(1) as f64; // input pixels per logit
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
                    if r < rows && c < cols && mask.get(r * cols + c).is_some_and(|m| *m != 0) {
                        hit += 1;
                    }
                }
            }
            out[gy * l + gx] = hit as f32 / (SUB * SUB) as f32;
        }
    }
    out
}

/// A binary mask `[rows, cols]` as SAM's dense prompt: logits on the `l × l` grid of a
/// model input of side `s`, `±DENSE_LOGIT` where the mask covers a cell wholly or not at
/// all, in between at its edge.
pub fn dense_prompt(mask: &[u8], rows: usize, cols: usize, s: usize, l: usize) -> Vec<f32> {
    low_res_mask(mask, rows, cols, s, l)
        .into_iter()
        .map(|f| (2.0 * f - 1.0) * DENSE_LOGIT)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dense_prompt_is_positive_on_the_mask_negative_off_it_and_on_the_padding() {
        // 4×8 slice into a 16-px input (scale 2), 4×4 logits: one logit = 2×2 slice px.
        let (rows, cols) = (4, 8);
        let mut m = vec![0u8; rows * cols];
        m[0] = 1;
        m[1] = 1;
        m[cols] = 1;
        m[cols + 1] = 1; // the top-left 2×2: cell (0, 0)
        m[3] = 1; // one of cell (0, 1)'s four pixels
        let d = dense_prompt(&m, rows, cols, 16, 4);
        assert_eq!(d[0], DENSE_LOGIT);
        assert_eq!(d[1], -0.5 * DENSE_LOGIT);
        assert_eq!(d[2], -DENSE_LOGIT);
        // Rows 2–3 of the grid lie below the 4-row slice (padding).
        assert!(d[8..].iter().all(|v| *v == -DENSE_LOGIT));
    }
}
