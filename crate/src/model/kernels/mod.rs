//! CPU inference kernels for the element-wise work Flex leaves scalar.
//!
//! Flex computes `exp` and `erf` one element at a time through libm: in Chromium's profiler
//! the attention softmax's `exp` alone was 16 % of a browser encode. These kernels compute
//! them as polynomials the compiler vectorises (SIMD128 in wasm, AVX2 natively) and fuse
//! the image encoder's relative-position bias into the softmax sweep; the neck's 3 × 3
//! convolution takes 2.25× fewer multiplies by Winograd's transform. They work on the
//! tensor's buffer, for f32 Flex tensors that autodiff does not track; anything else takes
//! burn's ops, which know their gradients.

mod gelu;
mod softmax;
mod winograd;

pub use gelu::gelu;
pub use softmax::{attention_probs, RelPosBias};
pub use winograd::conv3x3;

use burn::prelude::*;
use burn::tensor::DType;

/// Whether a kernel here applies: f32 on Flex, not tracked by autodiff.
fn applies<const D: usize>(t: &Tensor<D>) -> bool {
    t.dtype() == DType::F32 && !t.is_autodiff() && crate::backend::is_flex(&t.device())
}

/// Runs `f` on `t`'s elements in place (row-major); `otherwise(t)` where the buffer is not
/// f32 (never the case where [`applies`] holds).
fn in_place<const D: usize>(
    t: Tensor<D>,
    f: impl FnOnce(&mut [f32]),
    otherwise: impl FnOnce(Tensor<D>) -> Tensor<D>,
) -> Tensor<D> {
    let device = t.device();
    // A fresh op output: Flex hands its buffer over without a copy.
    let mut data = t.into_data();
    match data.as_mut_slice::<f32>() {
        Ok(s) => {
            f(s);
            Tensor::from_data(data, &device)
        }
        Err(_) => otherwise(Tensor::from_data(data, &device)),
    }
}

/// `e^x` to about 2 ulp for `x` in [-87.3, 88.3], clamped outside (below, `e^x` is under
/// 1.2e-38, which every use here adds to at least 1); NaN stays NaN. `e^x = 2^n e^r` with
/// `n` the integer nearest `x / ln 2`, so `|r| <= ln 2 / 2`, where the Taylor series to
/// degree 7 is within 1e-8. Plain multiplies and adds: the same bits on every target.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const MIN: f32 = -87.336_54; // -126 ln 2: 2^n stays a normal float
    const MAX: f32 = 88.376_26; // 127.5 ln 2
                                // Adding 1.5 * 2^23 rounds to an integer (to nearest) and leaves it in the low bits.
    const ROUND: f32 = 12_582_912.0;
    // ln 2 split so that `n * LN2_HI` is exact for |n| < 2^15 (Cody and Waite).
    const LN2_HI: f32 = f32::from_bits(0x3f31_8000); // 0.693359375
    const LN2_LO: f32 = -2.121_944_4e-4;
    let x = x.clamp(MIN, MAX); // NaN stays NaN
    let t = x * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (1.0 / 2.0
                + r * (1.0 / 6.0
                    + r * (1.0 / 24.0
                        + r * (1.0 / 120.0 + r * (1.0 / 720.0 + r * (1.0 / 5040.0)))))));
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    p * f32::from_bits(((n_bits + 127) << 23) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_f64_over_its_range() {
        let mut worst = 0.0f64;
        for i in 0..=400_000 {
            let x = -87.0 + 175.0 * i as f32 / 400_000.0;
            let want = (x as f64).exp();
            worst = worst.max(((exp(x) as f64 - want) / want).abs());
        }
        assert!(worst < 3.0e-7, "worst relative error {worst:e}");
        assert!(exp(f32::NAN).is_nan());
        let tiny = exp(f32::NEG_INFINITY);
        assert!((0.0..1.2e-38).contains(&tiny), "{tiny}");
        assert_eq!(exp(0.0), 1.0);
    }
}
