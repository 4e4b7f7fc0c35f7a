//! The training loop: synthetic (or real) volumes → slices with sampled prompts → LoRA or
//! full fine-tuning with warm-up, gradient accumulation, checkpoints and resume.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use burn::optim::{AdamWConfig, ModuleOptimizer};
use burn::prelude::*;

use super::averaging::WeightAverage;
use super::batch::to_batch;
use super::sampler::{sample_slice, SamplerConfig};
use super::schedule::{Decay, Schedule};
use super::{prepare_lora, resume, step, LossWeights, TrainError};
use crate::data::labels::{to_common, Convention};
use crate::data::rng::Rng;
use crate::data::slicing::Normalizer;
use crate::data::synth::{synthesize, Contrast, SynthConfig};
use crate::data::{LabelVolume, Volume};
use crate::model::lora::LoraConfig;
use crate::model::prompt_encoder::STRUCTURE_KINDS;
use crate::model::{Geometry, Sam};

/// The recipe; saved next to the results.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TrainConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Slices per optimiser step (gradient accumulation).
    pub slices_per_step: usize,
    pub lr: f64,
    pub warmup_steps: usize,
    pub decay: Decay,
    pub lr_floor: f64,
    pub weight_decay: f64,
    pub loss: LossWeights,
    pub sampler: SamplerConfig,
    /// Contrasts synthesised from label maps (`random`: domain randomisation). Stored as
    /// their names, `"t1"`, `"t2"`, ...; read in any case, as configs written before the
    /// contrasts were typed hold them as the user spelled them.
    #[serde(deserialize_with = "contrasts_any_case")]
    pub contrasts: Vec<Contrast>,
    /// Slices drawn from each synthesised volume before the next is made.
    pub slices_per_volume: usize,
    /// Structures trained on (common ids, see `data::labels`).
    pub labels: Vec<i32>,
    pub seed: u64,
    pub checkpoint_every: usize,
    /// Adapters on the frozen encoder; None trains every weight (from scratch or not).
    pub lora: Option<LoraConfig>,
    /// Share of slices with a second, corrective prompting round.
    #[serde(default)]
    pub correction_prob: f64,
    /// Volumes synthesised ahead in parallel (at least 1): a GPU consumes slices faster
    /// than one thread synthesises volumes. Data do not depend on it.
    #[serde(default)]
    pub data_threads: usize,
    /// Share of slices whose prompts name their structure's kind (a token of the prompt
    /// encoder's structure embeddings, added to the model when this is positive); the others
    /// are prompted without it, so the model works both ways.
    #[serde(default)]
    pub structure_prob: f64,
    /// Add a fine-feature path to a model that has none (`model::fine_features`).
    #[serde(default)]
    pub fine_features: bool,
    /// Also keep an exponential moving average of the weights with this decay
    /// (`train::averaging`); a full fine-tune only.
    #[serde(default)]
    pub average_decay: Option<f64>,
}

/// What a run returns: the model as trained, and its weight average when one was kept.
pub struct Trained {
    pub sam: Sam,
    pub average: Option<Sam>,
}

/// `TrainConfig::contrasts` from names in any case (`Contrast::parse`).
fn contrasts_any_case<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Contrast>, D::Error> {
    let names: Vec<String> = serde::Deserialize::deserialize(d)?;
    names
        .iter()
        .map(|n| Contrast::parse(n).map_err(serde::de::Error::custom))
        .collect()
}

/// A training volume: a FreeSurfer label map to synthesise images from (every label kept:
/// the image needs the whole anatomy; targets become common ids after synthesis), or a
/// real image with its labels in common ids. Both canonical.
#[derive(Clone)]
pub struct TrainVolume {
    pub name: String,
    pub labels: LabelVolume,
    pub image: Option<Volume<f32>>,
}

/// One line of the log.
#[derive(Debug, Clone, Copy)]
pub struct StepLog {
    pub step: usize,
    pub loss: f32,
    pub lr: f64,
    pub slices_per_s: f64,
}

struct Prepared {
    image: Volume<f32>,
    labels: LabelVolume,
    norm: Normalizer,
}

fn mix(a: u64, b: u64) -> u64 {
    let mut r = Rng::new(a ^ b.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    r.next_u64()
}

/// Volume `v` of the run: which subject, which contrast, which synthesis seed — a pure
/// function of the seed, so a resumed run sees the same data.
fn prepare(
    volumes: &[TrainVolume],
    contrasts: &[Contrast],
    seed: u64,
    v: usize,
) -> Result<Prepared, TrainError> {
    let mut rng = Rng::new(mix(seed, v as u64));
    let tv = &volumes[rng.below(volumes.len())];
    let (image, labels) = match &tv.image {
        Some(img) => (img.clone(), tv.labels.clone()),
        None => {
            let cfg = match contrasts[rng.below(contrasts.len())] {
                Contrast::Random => SynthConfig::randomized(),
                k => SynthConfig::preset(k),
            };
            let (image, deformed) = synthesize(&tv.labels, &cfg, rng.next_u64())?;
            (image, to_common(&deformed, Convention::FreeSurfer, false))
        }
    };
    let norm = Normalizer::robust(&image)?;
    Ok(Prepared {
        image,
        labels,
        norm,
    })
}

fn spawn_prepare(
    volumes: &Arc<Vec<TrainVolume>>,
    cfg: &TrainConfig,
    v: usize,
) -> JoinHandle<Result<Prepared, TrainError>> {
    let (vols, contrasts, seed) = (volumes.clone(), cfg.contrasts.clone(), cfg.seed);
    std::thread::spawn(move || prepare(&vols, &contrasts, seed, v))
}

/// Trains `sam` (a fresh or pretrained model of `geometry`) and returns it. With `resume`,
/// continues from the checkpoint in `out` when there is one. `report` sees every step and
/// returns false to stop early (a checkpoint is written first).
#[allow(clippy::too_many_arguments)]
pub fn train(
    cfg: &TrainConfig,
    sam: Sam,
    geometry: &Geometry,
    volumes: Vec<TrainVolume>,
    out: &Path,
    device: &Device,
    resume: bool,
    report: &mut dyn FnMut(&StepLog) -> bool,
) -> Result<Trained, TrainError> {
    if volumes.is_empty() || cfg.contrasts.is_empty() || cfg.labels.is_empty() {
        return Err(TrainError::Config(
            "no training volumes, contrasts or labels".into(),
        ));
    }
    if !device.is_autodiff() {
        return Err(TrainError::Config(
            "training needs an autodiff device (Device::autodiff)".into(),
        ));
    }
    if cfg.slices_per_step == 0 || cfg.slices_per_volume == 0 {
        return Err(TrainError::Config(
            "slices per step and per volume must be positive".into(),
        ));
    }
    match cfg.average_decay {
        Some(d) if !(d > 0.0 && d < 1.0) => {
            return Err(TrainError::Config(format!(
                "the weight average's decay must lie between 0 and 1, not {d}"
            )))
        }
        Some(_) if cfg.lora.is_some() => {
            return Err(TrainError::Config(
                "a weight average is kept for full fine-tunes only, not for adapters".into(),
            ))
        }
        _ => {}
    }
    let optim: ModuleOptimizer = AdamWConfig::new()
        .with_weight_decay(cfg.weight_decay as f32)
        .init();
    let (mut sam, mut optim, start) = if resume && resume::exists(out) {
        let (sam, optim, state) = resume::load(out, optim, device)?;
        if state.geometry != *geometry || state.lora != cfg.lora {
            return Err(TrainError::Config(
                "the checkpoint in the output folder was made with another geometry or adapter"
                    .into(),
            ));
        }
        (sam, optim, state.step)
    } else {
        let mut sam = sam;
        if cfg.structure_prob > 0.0 {
            sam.prompt_encoder.add_structures(STRUCTURE_KINDS, device);
        }
        if cfg.fine_features && !sam.add_fine_features(device) {
            return Err(TrainError::Config(
                "fine features need a patch size that is a multiple of 4".into(),
            ));
        }
        let sam = match &cfg.lora {
            // A model that already carries adapters (frozen encoder) continues with them.
            Some(_) if sam.image_encoder.has_lora() => sam,
            Some(l) => prepare_lora(sam, l, device),
            None => sam,
        };
        (sam, optim, 0)
    };
    let mut average = match cfg.average_decay {
        Some(d) => {
            let saved = match start {
                0 => None,
                _ => resume::load_average(out, &sam, device)?,
            };
            Some(match saved {
                Some(mut avg) => WeightAverage::new(&mut avg, d, start)?,
                None => WeightAverage::new(&mut sam, d, start)?,
            })
        }
        None => None,
    };
    let schedule = Schedule {
        peak: cfg.lr,
        warmup_steps: cfg.warmup_steps,
        total_steps: cfg.steps,
        decay: cfg.decay,
        floor: cfg.lr_floor,
    };
    let s = sam.img_size();
    let l = 4 * sam.prompt_encoder.image_embedding_size;
    let volumes = Arc::new(volumes);
    let mut current: Option<(usize, Prepared)> = None;
    // Volumes being synthesised ahead, in order.
    let mut ahead: VecDeque<(usize, JoinHandle<Result<Prepared, TrainError>>)> = VecDeque::new();
    let threads = cfg.data_threads.max(1);
    let t0 = Instant::now();
    let mut slices_done = 0usize;
    for k in start..cfg.steps {
        let mut batches = Vec::with_capacity(cfg.slices_per_step);
        for j in 0..cfg.slices_per_step {
            let g = k * cfg.slices_per_step + j; // global slice number
            let v = g / cfg.slices_per_volume;
            if current.as_ref().map(|c| c.0) != Some(v) {
                let prepared = match ahead.pop_front() {
                    Some((nv, h)) if nv == v => h
                        .join()
                        .map_err(|_| TrainError::Config("data thread panicked".into()))??,
                    _ => {
                        ahead.clear();
                        prepare(&volumes, &cfg.contrasts, cfg.seed, v)?
                    }
                };
                current = Some((v, prepared));
                let mut last = ahead.back().map_or(v, |(nv, _)| *nv);
                while ahead.len() < threads {
                    last += 1;
                    ahead.push_back((last, spawn_prepare(&volumes, cfg, last)));
                }
            }
            let Some((_, p)) = current.as_ref() else {
                continue;
            };
            let mut rng = Rng::new(mix(cfg.seed ^ 0x5eed, g as u64));
            let use_points = rng.uniform() < cfg.sampler.point_prob;
            // A slice through a structure always exists; retry a few draws on odd data.
            let sample = (0..8).find_map(|_| {
                sample_slice(
                    &p.image,
                    &p.norm,
                    &p.labels,
                    &cfg.labels,
                    &cfg.sampler,
                    use_points,
                    &mut rng,
                )
            });
            if let Some(sample) = sample {
                let correction = (rng.uniform() < cfg.correction_prob).then(|| rng.next_u64());
                // Its own stream, so that runs without it draw the same data as before.
                let named =
                    Rng::new(mix(cfg.seed ^ 0x57c7, g as u64)).uniform() < cfg.structure_prob;
                batches.push(to_batch(&sample, s, l, correction, named, device)?);
            }
        }
        if batches.is_empty() {
            continue;
        }
        let lr = schedule.lr(k);
        let (next_sam, loss) = step(sam, &mut optim, &batches, lr, cfg.loss);
        sam = next_sam;
        if let Some(avg) = average.as_mut() {
            avg.update(&mut sam)?;
        }
        slices_done += batches.len();
        let go_on = report(&StepLog {
            step: k + 1,
            loss,
            lr,
            slices_per_s: slices_done as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        });
        let due = cfg.checkpoint_every > 0 && (k + 1) % cfg.checkpoint_every == 0;
        if due || k + 1 == cfg.steps || !go_on {
            let avg = average.as_ref().map(|a| a.model(&sam)).transpose()?;
            resume::save(
                out,
                &mut sam,
                avg.as_ref(),
                &optim,
                k + 1,
                geometry,
                cfg.lora.as_ref(),
            )?;
        }
        if !go_on {
            break;
        }
    }
    let average = average.map(|a| a.model(&sam)).transpose()?;
    Ok(Trained { sam, average })
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::model::io::checkpoint::state_dict;

    fn toy_labels() -> LabelVolume {
        let n = 24;
        let mut data = vec![2i32; n * n * n]; // white matter around the structures
        for z in 6..18 {
            for y in 5..12 {
                for x in 4..11 {
                    data[x + n * (y + n * z)] = 10; // FreeSurfer left thalamus
                }
            }
            for y in 9..19 {
                for x in 13..20 {
                    data[x + n * (y + n * z)] = 11; // left caudate
                }
            }
        }
        let id = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        LabelVolume::new([n, n, n], data, id).unwrap()
    }

    fn config(steps: usize, lora: Option<LoraConfig>) -> TrainConfig {
        TrainConfig {
            steps,
            slices_per_step: 2,
            lr: 1e-3,
            warmup_steps: 1,
            decay: Decay::Cosine,
            lr_floor: 0.1,
            weight_decay: 0.01,
            loss: LossWeights::default(),
            sampler: SamplerConfig::default(),
            contrasts: vec![Contrast::T1, Contrast::T2],
            slices_per_volume: 3,
            labels: vec![1, 3],
            seed: 5,
            checkpoint_every: 0,
            lora,
            correction_prob: 0.5,
            data_threads: 2,
            structure_prob: 0.0,
            fine_features: false,
            average_decay: None,
        }
    }

    /// A recipe as `brainsam train` wrote it before contrasts were typed: the bundled
    /// model's (weights/manifest.json copies its config.json), and one spelled in capitals.
    /// Both still read, and contrasts are written with the names they had.
    #[test]
    fn configs_written_with_string_contrasts_still_read() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../weights/manifest.json");
        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut recipe = manifest["recipe"].clone();
        let cfg: TrainConfig = serde_json::from_value(recipe.clone()).unwrap();
        use Contrast::{Random, T1, T2};
        assert_eq!(cfg.contrasts, [T1, T2, Random, Random]);
        assert_eq!(
            serde_json::to_value(&cfg).unwrap()["contrasts"],
            serde_json::json!(["t1", "t2", "random", "random"])
        );
        recipe["contrasts"] = serde_json::json!(["T1", "Flair", "PD"]);
        let cfg: TrainConfig = serde_json::from_value(recipe.clone()).unwrap();
        assert_eq!(cfg.contrasts, [T1, Contrast::Flair, Contrast::Pd]);
        recipe["contrasts"] = serde_json::json!(["t3"]);
        assert!(serde_json::from_value::<TrainConfig>(recipe).is_err());
    }

    fn geometry() -> Geometry {
        Geometry {
            embed_dim: 16,
            depth: 2,
            num_heads: 2,
            global_attn_indexes: vec![1],
            image_size: 32,
            patch_size: 8,
            window_size: 2,
        }
    }

    fn weights(sam: &Sam) -> Vec<(String, Vec<f32>)> {
        let mut v: Vec<_> = pollster::block_on(state_dict(sam))
            .unwrap()
            .iter()
            .map(|(k, t)| (k.clone(), t.data.clone()))
            .collect();
        let l = pollster::block_on(crate::model::io::checkpoint::lora_state_dict(sam)).unwrap();
        v.extend(l.iter().map(|(k, t)| (k.clone(), t.data.clone())));
        v
    }

    fn run_resume_case(lora: Option<LoraConfig>) {
        let device = crate::backend::cpu().autodiff();
        device.seed(1);
        let g = geometry();
        let mut base = g.config().init(&device);
        if let Some(l) = &lora {
            base = prepare_lora(base, l, &device);
        }
        let vols = vec![TrainVolume {
            name: "toy".into(),
            labels: toy_labels(),
            image: None,
        }];
        let dir = std::env::temp_dir().join(format!(
            "brainsam-resume-{}-{}",
            std::process::id(),
            lora.is_some()
        ));
        let (a, b) = (dir.join("a"), dir.join("b"));
        let _ = std::fs::remove_dir_all(&dir);
        // The full fine-tune also keeps a weight average, which must resume exactly too.
        let cfg = TrainConfig {
            average_decay: lora.is_none().then_some(0.5),
            ..config(4, lora)
        };

        let whole = train(
            &cfg,
            base.clone(),
            &g,
            vols.clone(),
            &a,
            &device,
            false,
            &mut |_| true,
        )
        .unwrap();
        // Killed after step 3 (the checkpoint is all that survives), then resumed.
        let stopped = train(
            &cfg,
            base.clone(),
            &g,
            vols.clone(),
            &b,
            &device,
            false,
            &mut |s| s.step < 3,
        )
        .unwrap()
        .sam;
        {
            let (loaded, _, st) = resume::load(&b, AdamWConfig::new().init(), &device).unwrap();
            assert_eq!(st.step, 3);
            let (x, y) = (weights(&stopped), weights(&loaded));
            for ((k, p), (k2, q)) in x.iter().zip(&y) {
                assert_eq!(k, k2);
                assert_eq!(p, q, "{k} not restored");
            }
        }
        let resumed = train(&cfg, base, &g, vols, &b, &device, true, &mut |s| {
            assert_eq!(s.step, 4, "resume must continue with step 4");
            true
        })
        .unwrap();
        let (w, s, r) = (
            weights(&whole.sam),
            weights(&stopped),
            weights(&resumed.sam),
        );
        assert_ne!(
            w, s,
            "the fourth step changed nothing: the test would be vacuous"
        );
        let close = |x: &[(String, Vec<f32>)], y: &[(String, Vec<f32>)], what: &str| {
            assert_eq!(x.len(), y.len());
            for ((k, x), (_, y)) in x.iter().zip(y) {
                let d = x
                    .iter()
                    .zip(y)
                    .map(|(p, q)| (p - q).abs())
                    .fold(0.0f32, f32::max);
                assert!(d <= 1e-6, "{what} {k}: resumed differs by {d}");
            }
        };
        close(&w, &r, "model");
        match (&whole.average, &resumed.average) {
            (Some(x), Some(y)) => {
                let (x, y) = (weights(x), weights(y));
                assert_ne!(x, w, "the average is the model itself");
                close(&x, &y, "average");
            }
            (None, None) => assert!(cfg.average_decay.is_none()),
            _ => panic!("one run kept an average, the other not"),
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Volumes synthesised ahead in parallel are the ones a single thread would make.
    #[test]
    fn data_threads_do_not_change_the_data() {
        let device = crate::backend::cpu().autodiff();
        let g = geometry();
        let vols = vec![TrainVolume {
            name: "toy".into(),
            labels: toy_labels(),
            image: None,
        }];
        let dir = std::env::temp_dir().join(format!("brainsam-threads-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // One set of initial weights for both runs (other tests share the device RNG).
        let base = g.config().init(&device);
        let mut losses = Vec::new();
        for threads in [1, 3] {
            let cfg = TrainConfig {
                data_threads: threads,
                lr: 0.0, // the model stays put: the losses see only the data
                ..config(4, None)
            };
            let mut seen = Vec::new();
            train(
                &cfg,
                base.clone(),
                &g,
                vols.clone(),
                &dir.join(threads.to_string()),
                &device,
                false,
                &mut |s| {
                    seen.push(s.loss);
                    true
                },
            )
            .unwrap();
            losses.push(seen);
        }
        assert_eq!(losses[0].len(), 4);
        assert_eq!(
            losses[0], losses[1],
            "1 and 3 data threads saw different slices"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    // One test: the device RNG is global, and a parallel test drawing from it would make
    // the two runs' adapter initialisations differ.
    #[test]
    fn resume_after_a_kill_reproduces_the_next_step_full_and_lora() {
        run_resume_case(None);
        run_resume_case(Some(LoraConfig::new()));
    }
}
