//! Fine-tuning, apart from the model: losses and the optimisation step of the paper's
//! recipe (frozen image encoder, LoRA adapters, prompt encoder and mask decoder trained).

pub mod batch;
mod batched;
pub mod checkpoint;
pub mod loss;
pub mod plot;
pub mod sampler;
pub mod schedule;
pub mod trainer;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::model::lora::LoraConfig;
use crate::model::{Prompts, Sam};

/// Why training could not run or continue.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Config(String),
    #[error("checkpoint: {0}")]
    Checkpoint(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Weights(#[from] crate::weights::WeightsError),
    #[error(transparent)]
    Predict(#[from] crate::model::PredictError),
}

impl TrainError {
    pub fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Freezes the image encoder's base weights and adds fresh adapters; the prompt encoder
/// and mask decoder stay trainable.
pub fn prepare_lora(mut sam: Sam, config: &LoraConfig, device: &Device) -> Sam {
    sam.image_encoder = sam.image_encoder.no_grad();
    sam.image_encoder.add_lora(config, device);
    sam
}

/// One slice and the prompts on it: image `[1, 3, S, S]` (normalised, padded), per
/// prompted structure a box `[K, 4]` or points `[K, P, 2]` + labels `[K, P]` in model-input
/// pixels, and its target `[K, 1, L, L]` in [0, 1] on the decoder's logit grid.
#[derive(Clone)]
pub struct Batch {
    pub images: Tensor<4>,
    pub boxes: Option<Tensor<2>>,
    pub points: Option<(Tensor<3>, Tensor<2>)>,
    pub targets: Tensor<4>,
    /// A second, corrective round (as SAM was trained): one more point from the first
    /// prediction's error region, with its logits as mask input. The seed draws the point.
    pub correction: Option<u64>,
    /// Structure kinds `[K]` when the prompts name them.
    pub structures: Option<Tensor<1, Int>>,
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

/// Forward pass and loss of one batch; the mask loss alone is returned second (for logs).
pub fn forward_loss(sam: &Sam, batch: &Batch, w: LossWeights) -> (Tensor<1>, Tensor<1>) {
    decode_loss(sam, sam.embed(batch.images.clone()), batch, w)
}

/// The decoder's rounds and their losses for one slice, given its image embedding.
fn decode_loss(
    sam: &Sam,
    embedding: Tensor<4>,
    batch: &Batch,
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
    let (total, mask, logits) = round(batch.points.clone(), None);
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

/// Appends to each prompt one point from its prediction's larger error: positive in a
/// missed region, negative in a false one (native readback: training runs natively).
fn correction_points(
    logits: &Tensor<4>,
    targets: &Tensor<4>,
    points: Option<(Tensor<3>, Tensor<2>)>,
    img_size: usize,
    seed: u64,
) -> Option<(Tensor<3>, Tensor<2>)> {
    let [k, _, l, _] = logits.dims();
    let device = logits.device();
    let pred = logits
        .clone()
        .detach()
        .into_data()
        .try_to_vec::<f32>()
        .ok()?;
    let truth = targets.clone().into_data().try_to_vec::<f32>().ok()?;
    let (xy, lab) = error_points(&pred, &truth, k, l, img_size, seed);
    Some(append_points(points, xy, lab, k, &device))
}

/// Per mask (`k` masks of `l × l` logits and targets, on the host), one point in model-input
/// pixels from the larger error region and its label; `[0, 0]` and -1 ("not a point") for
/// a perfect mask, which keeps shapes equal.
fn error_points(
    pred: &[f32],
    truth: &[f32],
    k: usize,
    l: usize,
    img_size: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let mut rng = crate::data::rng::Rng::new(seed);
    let cell = img_size as f32 / l as f32;
    let (mut xy, mut lab) = (Vec::with_capacity(k * 2), Vec::with_capacity(k));
    for (p, t) in pred
        .chunks_exact(l * l)
        .zip(truth.chunks_exact(l * l))
        .take(k)
    {
        let missed: Vec<usize> = (0..l * l).filter(|&i| t[i] > 0.5 && p[i] <= 0.0).collect();
        let false_: Vec<usize> = (0..l * l).filter(|&i| t[i] <= 0.5 && p[i] > 0.0).collect();
        let (pool, label) = if missed.len() >= false_.len() {
            (missed, 1.0)
        } else {
            (false_, 0.0)
        };
        match pool.get(rng.below(pool.len())) {
            Some(&i) if !pool.is_empty() => {
                xy.extend([((i % l) as f32 + 0.5) * cell, ((i / l) as f32 + 0.5) * cell]);
                lab.push(label);
            }
            _ => {
                xy.extend([0.0, 0.0]);
                lab.push(-1.0);
            }
        }
    }
    (xy, lab)
}

/// `points` with one more point per prompt (`xy` `[k, 2]`, `labels` `[k]`) at the end.
fn append_points(
    points: Option<(Tensor<3>, Tensor<2>)>,
    xy: Vec<f32>,
    labels: Vec<f32>,
    k: usize,
    device: &Device,
) -> (Tensor<3>, Tensor<2>) {
    let new_xy = Tensor::<3>::from_data(TensorData::new(xy, [k, 1, 2]), device);
    let new_lab = Tensor::<2>::from_data(TensorData::new(labels, [k, 1]), device);
    match points {
        Some((c, l)) => (
            Tensor::cat(vec![c, new_xy], 1),
            Tensor::cat(vec![l, new_lab], 1),
        ),
        None => (new_xy, new_lab),
    }
}

/// One optimiser step on the mean loss of `batches` (the slices of one step): their images
/// go through the encoder as one batch, their prompts through the decoder in as few calls
/// as their shapes allow, and the loss is differentiated once, which keeps a GPU busy where
/// one slice at a time would leave it waiting on launches and readbacks.
/// Returns the updated model and the mean mask loss.
pub fn step(
    sam: Sam,
    optim: &mut ModuleOptimizer,
    batches: &[Batch],
    lr: f64,
    w: LossWeights,
) -> (Sam, f32) {
    if batches.is_empty() {
        return (sam, 0.0);
    }
    let n = batches.len() as f64;
    let images = Tensor::cat(batches.iter().map(|b| b.images.clone()).collect(), 0);
    let embeddings = sam.embed(images);
    let Some((total, masks)) = batched::slices_loss(&sam, &embeddings, batches, w) else {
        return (sam, 0.0);
    };
    let grads = GradientsParams::from_grads((total / n).backward(), &sam);
    let sam = optim.step(lr, sam, grads);
    (sam, masks.detach().into_scalar::<f32>() / n as f32)
}

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;
    use crate::model::io::checkpoint::{lora_state_dict, state_dict};
    use crate::model::prompt_encoder::STRUCTURE_KINDS;
    use crate::model::Geometry;
    use burn::optim::AdamWConfig;
    use burn::tensor::Distribution;

    fn setup() -> (Sam, Batch, Device) {
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
        let batch = Batch {
            images: Tensor::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
            boxes: Some(Tensor::from_data(
                TensorData::new(vec![20.0f32, 16.0, 44.0, 48.0], [1, 4]),
                &device,
            )),
            points: None,
            targets: Tensor::from_data(TensorData::new(target, [1, 1, 16, 16]), &device),
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
        let second = Batch {
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
            correction: None,
            structures: None,
        };
        // Four slices in two decoder groups (boxes; two points each), one corrected slice
        // in each group, so the batched decoder, its per-slice weights and the batched
        // corrective round are all compared with each slice decoded alone.
        let third = Batch {
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
            correction: Some(5),
            structures: None,
        };
        let fourth = Batch {
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
            correction: None,
            structures: None,
        };
        // The same boxes naming their structures (kinds 2 and 5), corrected: a third
        // decoder group, whose corrective round selects the kinds with its rows.
        let fifth = Batch {
            images: Tensor::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device),
            correction: Some(11),
            structures: Some(Tensor::from_data(
                TensorData::new(vec![2i64, 5], [2]),
                &device,
            )),
            ..fourth.clone()
        };
        let batches = [first, second, third, fourth, fifth];
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
}

/// The same training step on wgpu (software Vulkan in CI) as on NdArray.
#[cfg(all(test, feature = "ndarray", feature = "wgpu"))]
mod wgpu_tests {
    use super::*;
    use crate::model::io::checkpoint::{load_sam, state_dict};
    use crate::model::Geometry;
    use burn::optim::AdamWConfig;

    #[test]
    fn a_step_on_wgpu_matches_ndarray() {
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
            let batch = Batch {
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
