//! The optimisation step of the paper's recipe: the model made ready for LoRA, one slice's
//! forward pass and loss (with its corrective round), and one optimiser step over the
//! slices of a step.

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use super::batch::SliceBatch;
use super::correction::correction_points;
use super::grouped_decode;
use super::loss::{self, LossWeights};
use crate::model::lora::LoraConfig;
use crate::model::{Prompts, Sam};

/// Freezes the image encoder's base weights and adds fresh adapters; the prompt encoder
/// and mask decoder stay trainable.
pub fn prepare_lora(mut sam: Sam, config: &LoraConfig, device: &Device) -> Sam {
    sam.image_encoder = sam.image_encoder.no_grad();
    sam.image_encoder.add_lora(config, device);
    sam
}

/// Forward pass and loss of one slice (what [`step`] computes for each of its slices); the
/// mask loss alone is returned second (for logs).
pub fn forward_loss(sam: &Sam, batch: &SliceBatch, w: LossWeights) -> (Tensor<1>, Tensor<1>) {
    decode_loss(sam, sam.embed(batch.images.clone()), batch, w)
}

/// The decoder's rounds and their losses for one slice, given its image embedding.
fn decode_loss(
    sam: &Sam,
    embedding: Tensor<4>,
    batch: &SliceBatch,
    w: LossWeights,
) -> (Tensor<1>, Tensor<1>) {
    let round = |points: Option<(Tensor<3>, Tensor<2>)>, mask_input: Option<Tensor<4>>| {
        let prompts = Prompts {
            points,
            boxes: batch.boxes.clone(),
            mask_input,
            structures: batch.structures.clone(),
        };
        let (logits, iou) = sam.decode(embedding.clone(), prompts, false);
        let mask = loss::dice_bce(logits.clone(), batch.targets.clone(), w.dice);
        let total =
            mask.clone() + loss::iou_mse(logits.clone(), iou, batch.targets.clone()) * w.iou;
        (total, mask, logits)
    };
    let (total, mask, logits) = round(batch.points.clone(), batch.mask_input.clone());
    let Some(seed) = batch.correction else {
        return (total, mask);
    };
    let Some(points) = correction_points(
        &logits,
        &batch.targets,
        batch.points.clone(),
        sam.img_size(),
        seed,
    ) else {
        return (total, mask);
    };
    let (total2, mask2, _) = round(Some(points), Some(logits.detach()));
    ((total + total2) / 2.0, (mask + mask2) / 2.0)
}

/// One optimiser step on the mean loss of `batches` (the slices of one step): their images
/// go through the encoder as one batch, their prompts through the decoder in as few calls
/// as their shapes allow, and the loss is differentiated once, which keeps a GPU busy where
/// one slice at a time would leave it waiting on launches and readbacks.
/// Returns the updated model and the mean mask loss.
pub fn step(
    sam: Sam,
    optim: &mut ModuleOptimizer,
    batches: &[SliceBatch],
    lr: f64,
    w: LossWeights,
) -> (Sam, f32) {
    if batches.is_empty() {
        return (sam, 0.0);
    }
    let n = batches.len() as f64;
    let images = Tensor::cat(batches.iter().map(|b| b.images.clone()).collect(), 0);
    let embeddings = sam.embed(images);
    let Some((total, masks)) = grouped_decode::slices_loss(&sam, &embeddings, batches, w) else {
        return (sam, 0.0);
    };
    let grads = GradientsParams::from_grads((total / n).backward(), &sam);
    let sam = optim.step(lr, sam, grads);
    (sam, masks.detach().into_scalar::<f32>() / n as f32)
}
