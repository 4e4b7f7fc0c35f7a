//! Tests of the training step: what it trains and leaves frozen, the grouped decoder
//! against slices one at a time, and a loss that falls.

use super::*;
use crate::model::io::checkpoint::{lora_state_dict, state_dict};
use crate::model::lora::LoraConfig;
use crate::model::prompt_encoder::STRUCTURE_KINDS;
use crate::model::{Geometry, Sam};
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use burn::tensor::Distribution;

fn setup() -> (Sam, SliceBatch, Device) {
    let device = crate::backend::cpu().autodiff();
    device.seed(3);
    let g = Geometry::tiny(16, 14);
    let sam = prepare_lora(g.config().init(&device), &LoraConfig::new(), &device);
    // A square target under its box: a task the decoder can learn.
    let mut target = vec![0.0f32; 16 * 16];
    for y in 4..12 {
        for x in 5..11 {
            target[y * 16 + x] = 1.0;
        }
    }
    let batch = SliceBatch {
        images: Tensor::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
        boxes: Some(Tensor::from_data(
            TensorData::new(vec![20.0f32, 16.0, 44.0, 48.0], [1, 4]),
            &device,
        )),
        points: None,
        targets: Tensor::from_data(TensorData::new(target, [1, 1, 16, 16]), &device),
        mask_input: None,
        correction: Some(9),
        structures: None,
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
    let (sam, _) = step(
        sam,
        &mut optim,
        std::slice::from_ref(&batch),
        1e-3,
        LossWeights::default(),
    );

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

/// The batched step (one encoder pass over the step's slices, one backward) against
/// gradient accumulation over separate slices. SGD, so that the update is the gradient
/// itself (Adam's first step would hide a wrongly scaled gradient).
#[test]
fn a_step_over_several_slices_equals_accumulated_single_slice_gradients() {
    use burn::optim::{GradientsAccumulator, SgdConfig};
    let (mut sam, first, device) = setup();
    sam.prompt_encoder.add_structures(STRUCTURE_KINDS, &device);
    let image2 = Tensor::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
    let second = SliceBatch {
        images: image2,
        boxes: None,
        points: Some((
            Tensor::from_data(
                TensorData::new(
                    vec![30.0f32, 30.0, 10.0, 50.0, 40.0, 20.0, 0.0, 0.0],
                    [2, 2, 2],
                ),
                &device,
            ),
            Tensor::from_data(
                TensorData::new(vec![1.0f32, 0.0, 1.0, -1.0], [2, 2]),
                &device,
            ),
        )),
        targets: Tensor::random([2, 1, 16, 16], Distribution::Bernoulli(0.3), &device),
        mask_input: None,
        correction: None,
        structures: None,
    };
    // Four slices in two decoder groups (boxes; two points each), one corrected slice
    // in each group, so the batched decoder, its per-slice weights and the batched
    // corrective round are all compared with each slice decoded alone.
    let third = SliceBatch {
        images: Tensor::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
        boxes: None,
        points: Some((
            Tensor::from_data(
                TensorData::new(vec![12.0f32, 40.0, 30.0, 8.0], [1, 2, 2]),
                &device,
            ),
            Tensor::from_data(TensorData::new(vec![1.0f32, 1.0], [1, 2]), &device),
        )),
        targets: Tensor::random([1, 1, 16, 16], Distribution::Bernoulli(0.4), &device),
        mask_input: None,
        correction: Some(5),
        structures: None,
    };
    let fourth = SliceBatch {
        images: Tensor::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
        boxes: Some(Tensor::from_data(
            TensorData::new(
                vec![4.0f32, 8.0, 30.0, 40.0, 10.0, 12.0, 60.0, 50.0],
                [2, 4],
            ),
            &device,
        )),
        points: None,
        targets: Tensor::random([2, 1, 16, 16], Distribution::Bernoulli(0.2), &device),
        mask_input: None,
        correction: None,
        structures: None,
    };
    // The same boxes naming their structures (kinds 2 and 5), corrected: a third
    // decoder group, whose corrective round selects the kinds with its rows.
    let fifth = SliceBatch {
        images: Tensor::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
        correction: Some(11),
        structures: Some(Tensor::from_data(
            TensorData::new(vec![2i64, 5], [2]),
            &device,
        )),
        ..fourth.clone()
    };
    // Boxes with dense prompts (propagation), corrected: a fourth group, whose corrective
    // round replaces the dense prompt by the first round's logits.
    let sixth = SliceBatch {
        images: Tensor::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
        mask_input: Some(Tensor::random(
            [2, 1, 16, 16],
            Distribution::Normal(0.0, 8.0),
            &device,
        )),
        correction: Some(13),
        ..fourth.clone()
    };
    let batches = [first, second, third, fourth, fifth, sixth];
    let w = LossWeights::default();
    let mut optim = SgdConfig::new().init();
    let (batched, _) = step(sam.clone(), &mut optim, &batches, 0.1, w);

    let mut acc = GradientsAccumulator::<Sam>::new();
    for b in &batches {
        let (total, _) = forward_loss(&sam, b, w);
        acc.accumulate(
            &sam,
            GradientsParams::from_grads((total / batches.len() as f64).backward(), &sam),
        );
    }
    let mut optim = SgdConfig::new().init();
    let separate = optim.step(0.1, sam.clone(), acc.grads());

    let before = pollster::block_on(state_dict(&sam)).unwrap();
    let (x, y) = (
        pollster::block_on(state_dict(&batched)).unwrap(),
        pollster::block_on(state_dict(&separate)).unwrap(),
    );
    let mut moved = 0.0f32;
    for (k, t) in x.iter() {
        let u = &y.get(k).unwrap().data;
        let d = t
            .data
            .iter()
            .zip(u)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(d < 1e-5, "{k}: batched and accumulated steps differ by {d}");
        let b0 = &before.get(k).unwrap().data;
        moved = t
            .data
            .iter()
            .zip(b0)
            .map(|(a, b)| (a - b).abs())
            .fold(moved, f32::max);
    }
    assert!(
        moved > 1e-4,
        "the step moved nothing: the comparison is vacuous"
    );
    // Only the named kinds' rows of the structure embeddings learn.
    let key = "prompt_encoder.structure_embeddings.weight";
    let (b0, b1) = (&before.get(key).unwrap().data, &x.get(key).unwrap().data);
    let c = b0.len() / STRUCTURE_KINDS;
    for k in 0..STRUCTURE_KINDS {
        let changed = b0[k * c..(k + 1) * c] != b1[k * c..(k + 1) * c];
        assert_eq!(changed, k == 2 || k == 5, "structure row {k}");
    }
}

#[test]
fn loss_decreases_on_a_small_synthetic_task() {
    let (mut sam, batch, _) = setup();
    let mut optim = AdamWConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..30 {
        let (next, loss) = step(
            sam,
            &mut optim,
            std::slice::from_ref(&batch),
            3e-3,
            LossWeights::default(),
        );
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

/// The same training step on wgpu (software Vulkan in CI) as on NdArray.
#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use crate::model::io::checkpoint::{load_sam, state_dict};
    use crate::model::Geometry;
    use burn::optim::AdamWConfig;

    #[test]
    fn a_step_on_wgpu_matches_cpu() {
        // Another test may already have created the default wgpu device lazily (burn puts
        // loaded optimiser state on the default device): then use that one.
        let gpu = match pollster::block_on(crate::backend::gpu()) {
            Ok(d) => d,
            Err(e) if e.contains("already initialized") => {
                Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)
            }
            Err(e) => {
                panic!("no wgpu adapter ({e}): install mesa-vulkan-drivers (scripts/setup.sh)")
            }
        };
        let cpu = crate::backend::cpu();
        cpu.seed(4);
        let g = Geometry::tiny(8, 4);
        let sd = pollster::block_on(state_dict(&g.config().init(&cpu))).unwrap();
        let mut target = vec![0.0f32; 32 * 32];
        for y in 8..20 {
            for x in 10..24 {
                target[y * 32 + x] = 1.0;
            }
        }
        let image: Vec<f32> = (0..3 * 64 * 64)
            .map(|i| ((i * 37 % 101) as f32 / 50.0) - 1.0)
            .collect();
        let run = |device: Device| -> (f32, Vec<f32>) {
            let sam = load_sam(&g.config(), sd.clone(), &device).unwrap();
            let batch = SliceBatch {
                images: Tensor::from_data(TensorData::new(image.clone(), [1, 3, 64, 64]), &device),
                boxes: Some(Tensor::from_data(
                    TensorData::new(vec![20.0f32, 16.0, 48.0, 40.0], [1, 4]),
                    &device,
                )),
                points: None,
                targets: Tensor::from_data(
                    TensorData::new(target.clone(), [1, 1, 32, 32]),
                    &device,
                ),
                mask_input: None,
                correction: None,
                structures: None,
            };
            let mut optim = AdamWConfig::new().init();
            let (sam, loss) = step(sam, &mut optim, &[batch], 1e-3, LossWeights::default());
            let after = pollster::block_on(state_dict(&sam)).unwrap();
            let w = after
                .get("mask_decoder.output_upscaling.0.weight")
                .unwrap()
                .data
                .clone();
            (loss, w)
        };
        let (l_cpu, w_cpu) = run(cpu.autodiff());
        let (l_gpu, w_gpu) = run(gpu.autodiff());
        assert!((l_cpu - l_gpu).abs() < 1e-4, "loss {l_cpu} vs {l_gpu}");
        let d = w_cpu
            .iter()
            .zip(&w_gpu)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(d < 1e-4, "updated weights differ by {d}");
        let w0 = &sd
            .get("mask_decoder.output_upscaling.0.weight")
            .unwrap()
            .data;
        let moved = w0
            .iter()
            .zip(&w_cpu)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(
            moved > 1e-4,
            "the step did not move the weights: the comparison is vacuous"
        );
    }
}
