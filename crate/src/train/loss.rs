//! Segmentation losses on mask logits.

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid};

/// `w · Dice + (1 - w) · BCE` on logits `[B, M, H, W]` against {0, 1} targets (the paper's
/// 0.8 / 0.2). Dice is soft, per mask, averaged; BCE is averaged over pixels.
pub fn dice_bce(logits: Tensor<4>, targets: Tensor<4>, dice_weight: f64) -> Tensor<1> {
    let [b, m, h, w] = logits.dims();
    let p = sigmoid(logits.clone()).reshape([b * m, h * w]);
    let t = targets.clone().reshape([b * m, h * w]);
    let inter = (p.clone() * t.clone()).sum_dim(1);
    let dice = (inter * 2.0 + 1.0) / (p.sum_dim(1) + t.sum_dim(1) + 1.0);
    let dice_loss = dice.neg().add_scalar(1.0).mean();
    let bce = (targets.clone() * log_sigmoid(logits.clone())
        + targets.neg().add_scalar(1.0) * log_sigmoid(logits.neg()))
    .neg()
    .mean();
    dice_loss * dice_weight + bce * (1.0 - dice_weight)
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;

    #[test]
    fn confident_correct_logits_have_near_zero_loss_and_wrong_ones_high() {
        let device = crate::backend::cpu();
        let t = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 1.0, 0.0], [1, 1, 2, 2]),
            &device,
        );
        let good = t.clone() * 40.0 - 20.0;
        let bad = good.clone().neg();
        let lg: f32 = dice_bce(good, t.clone(), 0.8).into_scalar();
        let lb: f32 = dice_bce(bad, t, 0.8).into_scalar();
        assert!(lg < 1e-3, "{lg}");
        assert!(lb > 0.8, "{lb}");
    }
}
