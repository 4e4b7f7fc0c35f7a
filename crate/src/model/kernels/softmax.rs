//! Attention probabilities: `softmax(scores + bias)` in one sweep per row, the bias added
//! from its two small factors instead of materialised at the attention map's size.

use burn::prelude::*;

use super::{applies, exp, in_place};

/// SAM's decomposed relative-position bias for one block of queries: the score of query
/// `i` for key `(kh, kw)` gains `rows[.., i, kh] + cols[.., i, kw]`.
pub struct RelPosBias {
    /// `[N, Lq, h]`
    pub rows: Tensor<3>,
    /// `[N, Lq, w]`
    pub cols: Tensor<3>,
}

impl RelPosBias {
    /// The bias as a dense `[N, Lq, h * w]` tensor, the way Meta's code adds it.
    pub fn dense(self) -> Tensor<3> {
        let [n, lq, h] = self.rows.dims();
        let w = self.cols.dims()[2];
        let sum = self.rows.unsqueeze_dim::<4>(3) + self.cols.unsqueeze_dim::<4>(2);
        sum.reshape([n, lq, h * w])
    }
}

/// `softmax(scores + bias)` over the last axis of `[N, Lq, Lk]` scores.
pub fn attention_probs(scores: Tensor<3>, bias: Option<RelPosBias>) -> Tensor<3> {
    let [n, lq, lk] = scores.dims();
    let all_apply = lk > 0
        && applies(&scores)
        && bias
            .as_ref()
            .is_none_or(|b| applies(&b.rows) && applies(&b.cols));
    if !all_apply {
        return unfused(scores, bias);
    }
    let factors = bias.map(|b| (b.cols.dims()[2], b.rows.into_data(), b.cols.into_data()));
    // The factors as f32 rows matching the map (`h * w = Lk`), checked before any indexing.
    let slices = match &factors {
        None => Some(None),
        Some((w, rows, cols)) => match (rows.as_slice::<f32>(), cols.as_slice::<f32>()) {
            (Ok(r), Ok(c))
                if *w > 0
                    && lk % w == 0
                    && r.len() == n * lq * (lk / w)
                    && c.len() == n * lq * w =>
            {
                Some(Some((r, c, *w)))
            }
            _ => None,
        },
    };
    let restore = |factors: Option<(usize, TensorData, TensorData)>, device: &Device| {
        factors.map(|(_, rows, cols)| RelPosBias {
            rows: Tensor::from_data(rows, device),
            cols: Tensor::from_data(cols, device),
        })
    };
    let device = scores.device();
    match slices {
        // f32 throughout, as `applies` checked: the fallback is never taken.
        Some(bias) => in_place(
            scores,
            |s| rows_softmax(s, lk, bias),
            |s| unfused(s, restore(factors.clone(), &device)),
        ),
        None => unfused(scores, restore(factors, &device)),
    }
}

/// Meta's order of operations in burn's ops: the dense bias added, then softmax.
fn unfused(scores: Tensor<3>, bias: Option<RelPosBias>) -> Tensor<3> {
    let scores = match bias {
        Some(b) => scores + b.dense(),
        None => scores,
    };
    burn::tensor::activation::softmax(scores, 2)
}

/// Softmax of each `lk`-long row of `s` in place; with `bias = (rows, cols, w)`, row `r`
/// first gains `rows[r * h + kh] + cols[r * w + kw]` at `kh * w + kw`.
fn rows_softmax(s: &mut [f32], lk: usize, bias: Option<(&[f32], &[f32], usize)>) {
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        // Enough rows per task to amortise the task, few enough to balance two cores.
        const ROWS_PER_TASK: usize = 64;
        s.par_chunks_mut(ROWS_PER_TASK * lk)
            .enumerate()
            .for_each(|(i, chunk)| sweep(chunk, lk, i * ROWS_PER_TASK, bias));
    }
    #[cfg(target_family = "wasm")]
    sweep(s, lk, 0, bias);
}

/// Rows `first..` of the map, compiled for the widest vector unit this CPU has.
fn sweep(chunk: &mut [f32], lk: usize, first: usize, bias: Option<(&[f32], &[f32], usize)>) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just seen to support AVX2.
        return unsafe { sweep_avx2(chunk, lk, first, bias) };
    }
    sweep_generic(chunk, lk, first, bias)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sweep_avx2(
    chunk: &mut [f32],
    lk: usize,
    first: usize,
    bias: Option<(&[f32], &[f32], usize)>,
) {
    sweep_generic(chunk, lk, first, bias)
}

#[inline(always)]
fn sweep_generic(
    chunk: &mut [f32],
    lk: usize,
    first: usize,
    bias: Option<(&[f32], &[f32], usize)>,
) {
    for (i, row) in chunk.chunks_exact_mut(lk).enumerate() {
        if let Some((rows, cols, w)) = bias {
            let h = lk / w;
            let r = first + i;
            add_bias(row, &rows[r * h..][..h], &cols[r * w..][..w]);
        }
        softmax_row(row);
    }
}

/// Adds `rows[kh] + cols[kw]` at `kh * w + kw`, summed in the order of the dense form.
#[inline(always)]
fn add_bias(row: &mut [f32], rows: &[f32], cols: &[f32]) {
    for (line, &rh) in row.chunks_exact_mut(cols.len()).zip(rows) {
        for (x, &rw) in line.iter_mut().zip(cols) {
            *x += rh + rw;
        }
    }
}

/// Lanes of the independent accumulators: the reductions vectorise without reassociating
/// a single running sum (which the compiler may not do for floats).
const LANES: usize = 16;

#[inline(always)]
fn softmax_row(row: &mut [f32]) {
    let max = row_max(row);
    for x in row.iter_mut() {
        *x = exp(*x - max);
    }
    let inv = 1.0 / row_sum(row);
    for x in row.iter_mut() {
        *x *= inv;
    }
}

#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            // A compare-and-select, not `f32::max`: it maps to one vector instruction on
            // SIMD128 as well as on x86.
            *a = if x > *a { x } else { *a };
        }
    }
    let mut m = tail
        .iter()
        .fold(f32::NEG_INFINITY, |m, &x| if x > m { x } else { m });
    for a in acc {
        m = if a > m { a } else { m };
    }
    m
}

#[inline(always)]
fn row_sum(row: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
}

/// `e^x` to about 2 ulp for `x` in [-87.3, 88.3] (clamped outside: softmax's arguments are
/// at most 0, and below the clamp `e^x` is under 1.2e-38 of the row's largest term); NaN
/// stays NaN. `e^x = 2^n e^r` with `n` the integer nearest `x / ln 2`, so `|r| <= ln 2 / 2`,
/// where the Taylor series to degree 7 is within 1e-8.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_softmax_with_bias_matches_f64_reference() {
        let (rows_n, h, w) = (70, 3, 5); // 70 rows: a partial task, a tail beyond the lanes
        let lk = h * w;
        let val = |i: usize, m: usize| ((i * 7919 + m * 104_729) % 1000) as f32 / 50.0 - 10.0;
        let scores: Vec<f32> = (0..rows_n * lk).map(|i| val(i, 1)).collect();
        let rows: Vec<f32> = (0..rows_n * h).map(|i| val(i, 2) / 3.0).collect();
        let cols: Vec<f32> = (0..rows_n * w).map(|i| val(i, 3) / 3.0).collect();
        let mut got = scores.clone();
        rows_softmax(&mut got, lk, Some((&rows, &cols, w)));
        for r in 0..rows_n {
            let z: Vec<f64> = (0..lk)
                .map(|j| {
                    let (kh, kw) = (j / w, j % w);
                    (scores[r * lk + j] + (rows[r * h + kh] + cols[r * w + kw])) as f64
                })
                .collect();
            let m = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = z.iter().map(|v| (v - m).exp()).sum();
            for j in 0..lk {
                let want = (z[j] - m).exp() / sum;
                let err = (got[r * lk + j] as f64 - want).abs();
                assert!(err < 1e-6, "row {r} col {j}: {} vs {want}", got[r * lk + j]);
            }
        }
    }

    #[cfg(feature = "cpu")]
    #[test]
    fn fused_sweep_equals_burns_ops_on_flex() {
        use burn::tensor::Distribution;
        let device = crate::backend::flex();
        let normal = Distribution::Normal(0.0, 3.0);
        let (n, lq, h, w) = (3, 40, 6, 7);
        let scores = Tensor::<3>::random([n, lq, h * w], normal, &device);
        let rows = Tensor::<3>::random([n, lq, h], normal, &device);
        let cols = Tensor::<3>::random([n, lq, w], normal, &device);
        assert!(applies(&scores));
        let bias = || RelPosBias {
            rows: rows.clone(),
            cols: cols.clone(),
        };
        let want = burn::tensor::activation::softmax(scores.clone() + bias().dense(), 2);
        let got = attention_probs(scores.clone(), Some(bias()));
        let err: f32 = (got - want).abs().max().into_scalar();
        assert!(err < 1e-6, "with bias: max error {err}");
        let want = burn::tensor::activation::softmax(scores.clone(), 2);
        let err: f32 = (attention_probs(scores.clone(), None) - want)
            .abs()
            .max()
            .into_scalar();
        assert!(err < 1e-6, "without bias: max error {err}");
        // Tracked by autodiff: burn's ops, and the gradient flows.
        let tracked = scores.clone().autodiff().require_grad();
        assert!(!applies(&tracked));
        let probs = attention_probs(tracked.clone(), None);
        let grads = (probs.clone() * probs).sum().backward();
        assert!(tracked.grad(&grads).is_some());
    }
}
