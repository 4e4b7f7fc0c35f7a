//! Segmentation losses on mask logits, the IoU head's regression target, and the weights
//! the recipe gives them.

use burn::prelude::*;
use burn::tensor::activation::{log_sigmoid, sigmoid};

/// `w · Dice + (1 - w) · BCE` on logits `[B, M, H, W]` against targets in [0, 1] (the
/// paper's 0.8 / 0.2). Dice is soft, per mask, averaged; BCE is averaged over pixels.
pub fn dice_bce(logits: Tensor<4>, targets: Tensor<4>, dice_weight: f64) -> Tensor<1> {
    dice_bce_each(logits, targets, dice_weight).mean()
}

/// [`dice_bce`] of each mask, `[B · M]` (their mean is `dice_bce`: masks are equal-sized).
pub fn dice_bce_each(logits: Tensor<4>, targets: Tensor<4>, dice_weight: f64) -> Tensor<1> {
    let [b, m, h, w] = logits.dims();
    let p = sigmoid(logits.clone()).reshape([b * m, h * w]);
    let t = targets.clone().reshape([b * m, h * w]);
    let inter = (p.clone() * t.clone()).sum_dim(1);
    let dice = (inter * 2.0 + 1.0) / (p.sum_dim(1) + t.sum_dim(1) + 1.0);
    let dice_loss = dice.neg().add_scalar(1.0).reshape([b * m]);
    let bce = (targets.clone() * log_sigmoid(logits.clone())
        + targets.neg().add_scalar(1.0) * log_sigmoid(logits.neg()))
    .neg()
    .reshape([b * m, h * w])
    .mean_dim(1)
    .reshape([b * m]);
    dice_loss * dice_weight + bce * (1.0 - dice_weight)
}

/// Mean squared error of the IoU head `[B, M]` against the IoU its masks actually reach
/// (thresholded at 0, as at inference; no gradient flows into the masks from here).
pub fn iou_mse(logits: Tensor<4>, iou_pred: Tensor<2>, targets: Tensor<4>) -> Tensor<1> {
    iou_mse_each(logits, iou_pred, targets).mean()
}

/// [`iou_mse`] of each mask, `[B · M]`.
pub fn iou_mse_each(logits: Tensor<4>, iou_pred: Tensor<2>, targets: Tensor<4>) -> Tensor<1> {
    let [b, m, h, w] = logits.dims();
    let pred = logits
        .detach()
        .greater_elem(0.0)
        .float()
        .reshape([b * m, h * w]);
    let t = targets.greater_elem(0.5).float().reshape([b * m, h * w]);
    let inter = (pred.clone() * t.clone()).sum_dim(1);
    let union = (pred + t).sum_dim(1) - inter.clone();
    let iou = (inter / union.clamp_min(1.0)).reshape([b * m]);
    (iou_pred.reshape([b * m]) - iou).powi_scalar(2)
}

/// Loss weights of the recipe.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct LossWeights {
    /// Dice share of the mask loss (the paper: 0.8 Dice + 0.2 cross-entropy).
    pub dice: f64,
    /// Weight of the IoU head's regression (SAM trains it alongside the masks).
    pub iou: f64,
}

impl Default for LossWeights {
    fn default() -> Self {
        Self {
            dice: 0.8,
            iou: 1.0,
        }
    }
}

#[cfg(all(test, feature = "cpu"))]
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

    #[test]
    fn iou_target_is_the_thresholded_masks_iou() {
        let device = crate::backend::cpu();
        let t = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 0.0, 0.0], [1, 1, 2, 2]),
            &device,
        );
        // Prediction covers pixels 0 and 2: IoU 1/3.
        let logits = Tensor::<4>::from_data(
            TensorData::new(vec![5.0f32, -5.0, 5.0, -5.0], [1, 1, 2, 2]),
            &device,
        );
        let exact = Tensor::<2>::from_data(TensorData::new(vec![1.0f32 / 3.0], [1, 1]), &device);
        let off = Tensor::<2>::from_data(TensorData::new(vec![1.0f32], [1, 1]), &device);
        let l0: f32 = iou_mse(logits.clone(), exact, t.clone()).into_scalar();
        let l1: f32 = iou_mse(logits, off, t).into_scalar();
        assert!(l0 < 1e-10, "{l0}");
        assert!((l1 - 4.0 / 9.0).abs() < 1e-6, "{l1}");
    }
}
