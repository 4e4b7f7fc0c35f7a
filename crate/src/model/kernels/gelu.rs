//! GELU, `x Φ(x) = x (1 + erf(x / √2)) / 2`, the exact form PyTorch's `nn.GELU` computes.

use burn::prelude::*;

use super::{applies, exp, in_place};

/// GELU of every element.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if !applies(&x) {
        return burn::tensor::activation::gelu(x);
    }
    in_place(x, gelu_all, burn::tensor::activation::gelu)
}

fn gelu_all(s: &mut [f32]) {
    #[cfg(not(target_family = "wasm"))]
    {
        use rayon::prelude::*;
        const PER_TASK: usize = 1 << 14;
        s.par_chunks_mut(PER_TASK).for_each(sweep);
    }
    #[cfg(target_family = "wasm")]
    sweep(s);
}

/// Compiled for the widest vector unit this CPU has.
fn sweep(s: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU was just seen to support AVX2.
        return unsafe { sweep_avx2(s) };
    }
    sweep_generic(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn sweep_avx2(s: &mut [f32]) {
    sweep_generic(s)
}

#[inline(always)]
fn sweep_generic(s: &mut [f32]) {
    for x in s.iter_mut() {
        *x = gelu_one(*x);
    }
}

/// `x Φ(x)` with `erf` from Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7):
/// for `z >= 0`, `erf z = 1 - t (a1 + t (a2 + ...)) e^(-z²)` with `t = 1 / (1 + p z)`.
#[inline(always)]
fn gelu_one(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        0.254_829_6,
        -0.284_496_74,
        1.421_413_8,
        -1.453_152,
        1.061_405_4,
    ];
    let z = x.abs() * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (A[0] + t * (A[1] + t * (A[2] + t * (A[3] + t * A[4]))));
    let erf_abs = 1.0 - poly * exp(-z * z);
    let erf = if x < 0.0 { -erf_abs } else { erf_abs };
    0.5 * x * (1.0 + erf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Maclaurin series (|z| < 3) and its asymptotic continued fraction beyond,
    /// in f64: a reference independent of the approximation under test.
    fn erf_f64(z: f64) -> f64 {
        let a = z.abs();
        let e = if a < 3.0 {
            let (mut term, mut sum, mut k) = (a, a, 0.0);
            while term.abs() > 1e-17 * sum.abs() {
                k += 1.0;
                term *= -a * a / k;
                sum += term / (2.0 * k + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        } else {
            let mut f = 0.0;
            for k in (1..60).rev() {
                f = (k as f64 / 2.0) / (a + f);
            }
            1.0 - (-a * a).exp() / (std::f64::consts::PI.sqrt() * (a + f))
        };
        e.copysign(z)
    }

    #[test]
    fn gelu_matches_f64_reference() {
        let mut worst = 0.0f64;
        for i in 0..=200_000 {
            let x = -12.0 + 24.0 * i as f32 / 200_000.0;
            let xd = x as f64;
            let want = 0.5 * xd * (1.0 + erf_f64(xd / std::f64::consts::SQRT_2));
            worst = worst.max((gelu_one(x) as f64 - want).abs() / xd.abs().max(1.0));
        }
        assert!(worst < 2.5e-7, "worst error {worst:e}");
        assert!(gelu_one(f32::NAN).is_nan());
        assert_eq!(gelu_one(0.0), 0.0);
    }

    #[cfg(feature = "cpu")]
    #[test]
    fn gelu_equals_burns_on_flex_and_leaves_autodiff_to_burn() {
        use burn::tensor::Distribution;
        let device = crate::backend::flex();
        let x = Tensor::<3>::random([4, 33, 50], Distribution::Normal(0.0, 3.0), &device);
        assert!(applies(&x));
        let want = burn::tensor::activation::gelu(x.clone());
        let err: f32 = (gelu(x.clone()) - want).abs().max().into_scalar();
        assert!(err < 1e-6, "max error {err}");
        let tracked = x.autodiff().require_grad();
        assert!(!applies(&tracked));
        let grads = gelu(tracked.clone()).sum().backward();
        assert!(tracked.grad(&grads).is_some());
    }
}
