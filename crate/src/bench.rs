//! Timings on random weights, saved and loaded as a checkpoint is (timings do not depend on
//! values, but on layouts): image-encoder forward,
//! decoder per prompt, and a LoRA training step shaped like the PyTorch anchor's
//! (frozen encoder, rank 4 on q and v, one box per image, AdamW). Used by
//! `cargo bench --bench sam` and `brainsam bench`.

use std::time::{Duration, Instant};

use burn::prelude::*;
use burn::tensor::Distribution;

use crate::model::io::checkpoint::{load_sam, state_dict};
use crate::model::predictor::read_f32;
use crate::model::{Geometry, Sam};
use crate::weights::WeightsError;

/// Time to the first result (kernel compilation and autotuning included) and the median of
/// the following runs.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub first: Duration,
    pub median: Duration,
}

fn timed(reps: usize, mut f: impl FnMut()) -> Timing {
    let start = Instant::now();
    f();
    let first = start.elapsed();
    let mut times: Vec<Duration> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    Timing {
        first,
        median: times[times.len() / 2],
    }
}

/// Reading one value back forces the queued work to finish.
fn sync(t: Tensor<4>) {
    let _ = pollster::block_on(read_f32(t.slice([0..1, 0..1, 0..1, 0..1])));
}

/// Random weights that went through a checkpoint's save and load, so that their layouts
/// are those of a model a user loads (a loaded linear weight once was a strided view,
/// copied on every forward: a freshly initialised model would not have shown it).
pub fn random_model(device: &Device, g: &Geometry) -> Result<Sam, WeightsError> {
    let config = g.config();
    let sd = pollster::block_on(state_dict(&config.init(device)))?;
    load_sam(&config, sd, device)
}

/// Encoder forward on `batch` images, and the decoder for one point prompt.
pub fn inference(
    device: &Device,
    g: &Geometry,
    batch: usize,
    reps: usize,
) -> Result<(Timing, Timing), WeightsError> {
    let sam = random_model(device, g)?;
    let s = g.image_size;
    let x = Tensor::<4>::random([batch, 3, s, s], Distribution::Normal(0.0, 1.0), device);
    let encoder = timed(reps, || sync(sam.embed(x.clone())));
    let emb = sam.embed(x.slice(s![0..1]));
    let coords = Tensor::<3>::from_data(
        TensorData::new(vec![s as f32 * 0.4, s as f32 * 0.6], [1, 1, 2]),
        device,
    );
    let labels = Tensor::<2>::from_data(TensorData::new(vec![1.0f32], [1, 1]), device);
    let decoder = timed(reps.max(10), || {
        let prompts = crate::model::Prompts {
            points: Some((coords.clone(), labels.clone())),
            ..Default::default()
        };
        let (m, _) = sam.decode(emb.clone(), prompts, true);
        sync(m);
    });
    Ok((encoder, decoder))
}

/// One LoRA training step (our trainer's `step`) on `batch` images of the geometry's size,
/// each with one box prompt and a random target. `device` must be an autodiff device.
#[cfg(feature = "train")]
pub fn lora_step(
    device: &Device,
    g: &Geometry,
    batch: usize,
    reps: usize,
) -> Result<Timing, WeightsError> {
    use crate::model::lora::LoraConfig;
    use crate::train::{prepare_lora, step, LossWeights, SliceBatch};
    use burn::optim::{AdamWConfig, ModuleOptimizer};

    let s = g.image_size;
    let l = s / g.patch_size * 4;
    let mut sam = Some(prepare_lora(
        random_model(device, g)?,
        &LoraConfig::new(),
        device,
    ));
    let mut optim: ModuleOptimizer = AdamWConfig::new().init();
    let c = s as f32;
    let batches: Vec<SliceBatch> = (0..batch)
        .map(|_| SliceBatch {
            images: Tensor::random([1, 3, s, s], Distribution::Normal(0.0, 1.0), device),
            boxes: Some(Tensor::from_data(
                TensorData::new(vec![0.1 * c, 0.1 * c, 0.3 * c, 0.3 * c], [1, 4]),
                device,
            )),
            points: None,
            targets: Tensor::<4>::random([1, 1, l, l], Distribution::Bernoulli(0.5), device),
            mask_input: None,
            correction: None,
            structures: None,
        })
        .collect();
    Ok(timed(reps, || {
        if let Some(m) = sam.take() {
            let (next, _) = step(m, &mut optim, &batches, 1e-4, LossWeights::default());
            sam = Some(next);
        }
    }))
}
