//! Fine-tuning, apart from the model: losses and the optimisation step of the paper's
//! recipe (frozen image encoder, LoRA adapters, prompt encoder and mask decoder trained).

pub mod loss;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::model::lora::LoraConfig;
use crate::model::Sam;

/// Freezes the image encoder's base weights and adds fresh adapters; the prompt encoder
/// and mask decoder stay trainable.
pub fn prepare_lora(mut sam: Sam, config: &LoraConfig, device: &Device) -> Sam {
    sam.image_encoder = sam.image_encoder.no_grad();
    sam.image_encoder.add_lora(config, device);
    sam
}

/// One batch: images `[B, 3, S, S]` (normalised, padded), one box per image `[B, 4]` in
/// model-input pixels, target masks `[B, 1, 4E, 4E]` in {0, 1}.
pub struct Batch {
    pub images: Tensor<4>,
    pub boxes: Tensor<2>,
    pub targets: Tensor<4>,
}

/// Forward, loss, backward and one optimiser step; returns the updated model and the loss.
pub fn step(
    sam: Sam,
    optim: &mut ModuleOptimizer,
    batch: &Batch,
    lr: f64,
    dice_weight: f64,
) -> (Sam, f32) {
    let embedding = sam.embed(batch.images.clone());
    let (logits, _) = sam.decode(embedding, None, Some(batch.boxes.clone()), None, false);
    let loss = loss::dice_bce(logits, batch.targets.clone(), dice_weight);
    let value = loss.clone().into_scalar();
    let grads = GradientsParams::from_grads(loss.backward(), &sam);
    (optim.step(lr, sam, grads), value)
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use crate::model::checkpoint::{lora_state_dict, state_dict};
    use crate::model::Geometry;
    use burn::optim::AdamWConfig;
    use burn::tensor::Distribution;

    fn setup() -> (Sam, Batch, Device) {
        let device = crate::backend::cpu().autodiff();
        device.seed(3);
        let g = Geometry {
            embed_dim: 32,
            depth: 2,
            num_heads: 2,
            global_attn_indexes: vec![1],
            image_size: 64,
        };
        let sam = prepare_lora(g.config().init(&device), &LoraConfig::new(), &device);
        // A square target under its box: a task the decoder can learn.
        let mut target = vec![0.0f32; 16 * 16];
        for y in 4..12 {
            for x in 5..11 {
                target[y * 16 + x] = 1.0;
            }
        }
        let batch = Batch {
            images: Tensor::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
            boxes: Tensor::from_data(
                TensorData::new(vec![20.0f32, 16.0, 44.0, 48.0], [1, 4]),
                &device,
            ),
            targets: Tensor::from_data(TensorData::new(target, [1, 1, 16, 16]), &device),
        };
        (sam, batch, device)
    }

    fn base_encoder(sam: &Sam) -> Vec<(String, Vec<f32>)> {
        let sd = pollster::block_on(state_dict(sam)).unwrap();
        sd.iter()
            .filter(|(k, _)| k.starts_with("image_encoder."))
            .map(|(k, t)| (k.clone(), t.data.clone()))
            .collect()
    }

    #[test]
    fn one_step_changes_only_trainable_tensors_and_the_frozen_encoder_is_bit_identical() {
        let (sam, batch, _) = setup();
        let encoder_before = base_encoder(&sam);
        let decoder_before = pollster::block_on(state_dict(&sam)).unwrap();
        let lora_before = pollster::block_on(lora_state_dict(&sam)).unwrap();
        let mut optim = AdamWConfig::new().init();
        let (sam, _) = step(sam, &mut optim, &batch, 1e-3, 0.8);

        assert_eq!(base_encoder(&sam), encoder_before, "frozen encoder changed");
        let lora_after = pollster::block_on(lora_state_dict(&sam)).unwrap();
        let b_key = "image_encoder.blocks.0.attn.lora_q.b";
        assert!(lora_before
            .get(b_key)
            .unwrap()
            .data
            .iter()
            .all(|v| *v == 0.0));
        assert!(
            lora_after
                .get(b_key)
                .unwrap()
                .data
                .iter()
                .any(|v| *v != 0.0),
            "adapter B not trained"
        );
        let after = pollster::block_on(state_dict(&sam)).unwrap();
        // Single-mask output: the first hypernetwork MLP is in the loss's graph.
        let key = "mask_decoder.output_hypernetworks_mlps.0.layers.0.weight";
        assert!(
            after.get(key) != decoder_before.get(key),
            "decoder not trained"
        );
        let key = "prompt_encoder.point_embeddings.2.weight"; // box corner
        assert!(
            after.get(key) != decoder_before.get(key),
            "prompt encoder not trained"
        );
    }

    #[test]
    fn loss_decreases_on_a_small_synthetic_task() {
        let (mut sam, batch, _) = setup();
        let mut optim = AdamWConfig::new().init();
        let mut losses = Vec::new();
        for _ in 0..30 {
            let (next, loss) = step(sam, &mut optim, &batch, 3e-3, 0.8);
            sam = next;
            losses.push(loss);
        }
        assert!(
            losses[29] < 0.5 * losses[0],
            "loss {:.3} -> {:.3}",
            losses[0],
            losses[29]
        );
    }
}
