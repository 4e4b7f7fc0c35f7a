//! `brainsam train`: LoRA fine-tuning (the paper's recipe) or full training, from label maps
//! with synthetic contrasts and/or real image+label pairs.

use std::path::PathBuf;

use brainsam::data::synth::Contrast;
use brainsam::model::io::adapter::{adapter_bytes, adapter_params, AdapterMeta};
use brainsam::model::io::{model_bytes, ModelMeta};
use brainsam::model::lora::{LoraConfig, LoraTarget};
use brainsam::model::{Geometry, Sam};
use brainsam::train::plot::curve_png;
use brainsam::train::sampler::SamplerConfig;
use brainsam::train::schedule::Decay;
use brainsam::train::trainer::{train, StepLog, TrainConfig, TrainVolume, Trained};
use brainsam::train::LossWeights;
use burn::prelude::Device;
use indicatif::{ProgressBar, ProgressStyle};

use super::choices::{Axis, Backend};
use super::common::{
    label_maps, load_label_map, load_model, load_pairs, parse_pairs, parse_structures, read,
    sha256_hex, PairsSpec, Res, Structures,
};
use super::train_log::TrainLog;

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Output folder: adapter.safetensors (LoRA) or model.safetensors (full), config.json,
    /// log.csv, curve.png and checkpoint/.
    #[arg(long)]
    pub out: PathBuf,
    /// Base checkpoint (.pth / .safetensors). Omit with --from-scratch.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Train a new model of this geometry (JSON, as in weights/manifest.json) from random
    /// weights, every parameter trainable.
    #[arg(long, conflicts_with = "model", value_parser = parse_geometry)]
    pub from_scratch: Option<Geometry>,
    /// Train every weight of --model instead of adapters.
    #[arg(long)]
    pub full: bool,
    /// Folder of FreeSurfer-convention label maps to synthesise images from.
    #[arg(long)]
    pub label_maps: Option<PathBuf>,
    /// Only these label maps (file stems, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub subjects: Vec<String>,
    /// Real image+label pairs: DATASET:FOLDER (ibsr, malc, lpba40, hammers, candi).
    #[arg(long, value_parser = parse_pairs)]
    pub pairs: Vec<PairsSpec>,
    /// Synthetic contrasts, comma-separated (each volume draws one).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "t1,t2",
        ignore_case = true
    )]
    pub contrasts: Vec<Contrast>,
    /// Structures (common ids 1..=16, comma-separated) or "all".
    #[arg(long, default_value = "all", value_parser = parse_structures)]
    pub labels: Structures,
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Slices per optimiser step (gradient accumulation).
    #[arg(long, default_value_t = 2)]
    pub slices_per_step: usize,
    /// Structures prompted per slice (sharing one encoder pass).
    #[arg(long, default_value_t = 6)]
    pub prompts_per_slice: usize,
    #[arg(long, default_value_t = 24)]
    pub slices_per_volume: usize,
    /// Slice directions, comma-separated (0, 1, 2 name them too).
    #[arg(long, value_delimiter = ',', default_value = "sagittal,coronal,axial")]
    pub axes: Vec<Axis>,
    /// Share of steps with point prompts (the rest use boxes).
    #[arg(long, default_value_t = 0.4)]
    pub point_prob: f64,
    /// Share of box prompts aimed at a neighbouring slice (1-3 away) with the box of the
    /// structure's mask here, as 3-D propagation prompts; the target may be empty.
    #[arg(long, default_value_t = 0.2)]
    pub neighbour_prob: f64,
    /// Share of those neighbour prompts that also carry the structure's mask here as SAM's
    /// dense prompt: trains the model to propagate a structure slice by slice and to end
    /// it itself (the model file then says so, and "whole structure" uses it).
    #[arg(long, default_value_t = 0.0)]
    pub dense_prompt_prob: f64,
    /// Share of slices cut to a window around their first prompt and enlarged to the model
    /// input (train a model for focused inference, `--focus` of segment and evaluate).
    #[arg(long, default_value_t = 0.0)]
    pub focus_prob: f64,
    /// Prompts drawn for each slice's first structure (other box jitters or point sets):
    /// they share the slice's encoder pass, the costly part of a step.
    #[arg(long, default_value_t = 1)]
    pub prompt_variants: usize,
    /// Share of box steps that look (16 draws) for a slice where the structure lies in
    /// pieces spread over 1.5× its largest piece's box: the box prompts most often failed.
    #[arg(long, default_value_t = 0.0)]
    pub fragment_prob: f64,
    /// The input's channels are slices k − GAP, k, k + GAP (2.5-D); 0: three copies of k.
    /// Default: the base model's (0 for Meta's checkpoints and from scratch).
    #[arg(long)]
    pub slice_gap: Option<usize>,
    /// Share of slices given a second, corrective round: a point from the first
    /// prediction's error region plus its logits as mask input (SAM's interactive training).
    #[arg(long, default_value_t = 0.25)]
    pub correction_prob: f64,
    /// Share of slices whose prompts name the structure (its kind: thalamus, caudate, ...)
    /// through the prompt encoder's structure embeddings, added to the model if it has none.
    /// 0 trains SAM's prompts alone.
    #[arg(long, default_value_t = 0.0)]
    pub structure_prob: f64,
    /// Give the model a fine-feature path (two convolutions from the pixels to the mask
    /// logits' grid, mixed into the decoder; `model::fine_features`) if it has none. It
    /// starts at zero, so training starts from what the base model predicts.
    #[arg(long)]
    pub fine_features: bool,
    /// Also keep an exponential moving average of the weights with this decay (e.g. 0.999:
    /// about the last 1000 steps) and write it as `model_average.safetensors` beside
    /// `model.safetensors`: the average of a run's late weights, as the soups of stages 9–10
    /// averaged two runs. Full fine-tunes only.
    #[arg(long)]
    pub average_decay: Option<f64>,
    #[arg(long, default_value_t = 3e-4)]
    pub lr: f64,
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// cosine or poly:POWER
    #[arg(long, default_value = "cosine", value_parser = parse_decay)]
    pub decay: Decay,
    #[arg(long, default_value_t = 0.05)]
    pub lr_floor: f64,
    #[arg(long, default_value_t = 0.01)]
    pub weight_decay: f64,
    /// Dice share of the mask loss (rest: cross-entropy).
    #[arg(long, default_value_t = 0.8)]
    pub dice_weight: f64,
    #[arg(long, default_value_t = 4)]
    pub lora_rank: usize,
    #[arg(long, default_value_t = 4.0)]
    pub lora_alpha: f64,
    /// Adapted layers, comma-separated: q, k, v, proj (attention), mlp (both MLP layers).
    #[arg(long, value_delimiter = ',', default_value = "q,v")]
    pub lora_targets: Vec<LoraTarget>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Continue from the checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    #[arg(long, default_value = "cpu")]
    pub backend: Backend,
    /// Volumes synthesised ahead in parallel; 0: all cores but two (at least 1).
    #[arg(long, default_value_t = 0)]
    pub data_threads: usize,
    /// Stop after this many minutes as if killed at the end of a step: the checkpoint and
    /// the model or adapter file are written (for fixed-length GPU sessions).
    #[arg(long)]
    pub max_minutes: Option<f64>,
}

/// `cosine` or `poly:POWER` (clap's value parser for `--decay`).
pub fn parse_decay(s: &str) -> Result<Decay, String> {
    match s.split_once(':') {
        None if s == "cosine" => Ok(Decay::Cosine),
        Some(("poly", p)) => p
            .parse()
            .map(Decay::Poly)
            .map_err(|_| format!("bad power in `{s}`")),
        _ => Err("expected cosine or poly:POWER".into()),
    }
}

/// A geometry as JSON, as in weights/manifest.json (clap's value parser).
pub fn parse_geometry(s: &str) -> Result<Geometry, String> {
    let g: Geometry = serde_json::from_str(s).map_err(|e| e.to_string())?;
    g.validate().map_err(|e| e.to_string())?;
    Ok(g)
}

/// The model to train (`--model`, or a fresh one of the `--from-scratch` geometry), its
/// geometry, its file's sha256 (empty from scratch) and its slice gap.
fn base_model(a: &TrainArgs, device: &Device) -> Res<(Sam, Geometry, String, ModelMeta)> {
    match (&a.model, &a.from_scratch) {
        (Some(m), _) => {
            let (sam, g, meta) = load_model(Some(m), None, device)?;
            Ok((sam, g, sha256_hex(&read(m)?), meta))
        }
        (None, Some(g)) => Ok((
            g.config().init(device),
            g.clone(),
            String::new(),
            ModelMeta::default(),
        )),
        (None, None) => Err("give --model (fine-tuning) or --from-scratch GEOMETRY_JSON".into()),
    }
}

/// The label maps of `--label-maps` and the real pairs of `--pairs`.
fn training_volumes(a: &TrainArgs) -> Res<Vec<TrainVolume>> {
    let mut volumes = Vec::new();
    if let Some(dir) = &a.label_maps {
        for (name, path) in label_maps(dir, &a.subjects)? {
            volumes.push(TrainVolume {
                name,
                labels: load_label_map(&path)?,
                image: None,
            });
        }
    }
    for spec in &a.pairs {
        for (name, image, labels) in load_pairs(spec)? {
            volumes.push(TrainVolume {
                name,
                labels,
                image: Some(image),
            });
        }
    }
    if volumes.is_empty() {
        return Err("no training data: give --label-maps and/or --pairs".into());
    }
    Ok(volumes)
}

/// The recipe of the flags.
fn train_config(a: &TrainArgs, lora: Option<LoraConfig>, base_gap: usize) -> TrainConfig {
    TrainConfig {
        steps: a.steps,
        slices_per_step: a.slices_per_step,
        lr: a.lr,
        warmup_steps: a.warmup,
        decay: a.decay,
        lr_floor: a.lr_floor,
        weight_decay: a.weight_decay,
        loss: LossWeights {
            dice: a.dice_weight,
            ..Default::default()
        },
        sampler: SamplerConfig {
            axes: a.axes.iter().map(|x| x.index()).collect(),
            prompts_per_slice: a.prompts_per_slice,
            point_prob: a.point_prob,
            neighbour_prob: a.neighbour_prob,
            dense_prompt_prob: a.dense_prompt_prob,
            focus_prob: a.focus_prob,
            prompt_variants: a.prompt_variants,
            fragment_prob: a.fragment_prob,
            slice_gap: a.slice_gap.unwrap_or(base_gap),
            ..Default::default()
        },
        contrasts: a.contrasts.clone(),
        slices_per_volume: a.slices_per_volume,
        labels: a.labels.0.clone(),
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        lora,
        correction_prob: a.correction_prob,
        structure_prob: a.structure_prob,
        fine_features: a.fine_features,
        average_decay: a.average_decay,
        data_threads: match a.data_threads {
            0 => std::thread::available_parallelism()
                .map_or(1, |n| n.get().saturating_sub(2))
                .max(1),
            n => n,
        },
    }
}

/// `config.json` in `--out` (recipe, geometry, subjects, base hash, pairs) and the first line.
fn record_run(
    a: &TrainArgs,
    cfg: &TrainConfig,
    geometry: &Geometry,
    volumes: &[TrainVolume],
    base_hash: &str,
) -> Res {
    std::fs::create_dir_all(&a.out)
        .map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    let names: Vec<&str> = volumes.iter().map(|v| v.name.as_str()).collect();
    let pairs: Vec<&str> = a.pairs.iter().map(|p| p.text.as_str()).collect();
    let record = serde_json::json!({
        "config": cfg, "geometry": geometry, "subjects": names,
        "base_sha256": base_hash, "pairs": pairs,
    });
    std::fs::write(
        a.out.join("config.json"),
        serde_json::to_string_pretty(&record)?,
    )?;
    println!(
        "training on {} volumes ({}), {} steps × {} slices, {}",
        volumes.len(),
        names.join(","),
        a.steps,
        a.slices_per_step,
        if cfg.lora.is_some() {
            "LoRA adapters + prompt encoder + mask decoder"
        } else {
            "all weights"
        }
    );
    Ok(())
}

/// Trains with a progress bar, `log.csv` and `curve.png` kept up to date; stops early
/// after `--max-minutes`.
fn train_with_progress(
    a: &TrainArgs,
    cfg: &TrainConfig,
    sam: Sam,
    geometry: &Geometry,
    volumes: Vec<TrainVolume>,
    device: &Device,
) -> Res<Trained> {
    let mut log = TrainLog::open(&a.out.join("log.csv"), a.resume)
        .map_err(|e| format!("{}: {e}", a.out.join("log.csv").display()))?;
    let bar = ProgressBar::new(a.steps as u64);
    bar.set_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
    )?);
    let mut ema: Option<f32> = None;
    let started = std::time::Instant::now();
    let mut report = |s: &StepLog| {
        let e = ema.map_or(s.loss, |e| 0.98 * e + 0.02 * s.loss);
        ema = Some(e);
        let _ = log.record(s.step, s.loss, s.lr, s.slices_per_s);
        bar.set_position(s.step as u64);
        bar.set_message(format!(
            "loss {e:.4} lr {:.2e} {:.2} slices/s",
            s.lr, s.slices_per_s
        ));
        if s.step % 25 == 0 {
            let _ = log.flush();
            if let Ok(png) = curve_png(&log.points()) {
                let _ = std::fs::write(a.out.join("curve.png"), png);
            }
        }
        a.max_minutes
            .is_none_or(|m| started.elapsed().as_secs_f64() < m * 60.0)
    };
    let trained = train(
        cfg,
        sam,
        geometry,
        volumes,
        &a.out,
        device,
        a.resume,
        &mut report,
    )?;
    bar.finish();
    std::fs::write(a.out.join("curve.png"), curve_png(&log.points())?)?;
    Ok(trained)
}

pub fn run(a: &TrainArgs) -> Res {
    let device = a.backend.device()?.autodiff();
    // Random initial weights (from scratch, adapters' A) follow --seed.
    device.seed(a.seed);
    let labels = a.labels.0.clone();
    let (sam, geometry, base_hash, base_meta) = base_model(a, &device)?;
    let base_gap = base_meta.slice_gap;
    let lora = (a.model.is_some() && !a.full).then(|| {
        LoraConfig::new()
            .with_rank(a.lora_rank)
            .with_alpha(a.lora_alpha)
            .with_targets(a.lora_targets.clone())
    });
    let volumes = training_volumes(a)?;
    let cfg = train_config(a, lora.clone(), base_gap);
    record_run(a, &cfg, &geometry, &volumes, &base_hash)?;
    let Trained { sam, average } = train_with_progress(a, &cfg, sam, &geometry, volumes, &device)?;

    // Trained to propagate once any run of its lineage was.
    let dense_propagation = base_meta.dense_propagation || cfg.sampler.trains_propagation();
    let (name, bytes, n) = match &lora {
        Some(l) => {
            let meta = AdapterMeta {
                base_sha256: base_hash,
                geometry: geometry.clone(),
                lora: l.clone(),
                labels,
                slice_gap: Some(cfg.sampler.slice_gap),
                dense_propagation: Some(dense_propagation),
            };
            (
                "adapter.safetensors",
                pollster::block_on(adapter_bytes(&sam, &meta))?,
                adapter_params(&sam),
            )
        }
        None => {
            // Every parameter trained (the state dict also holds buffers, e.g. the prompt
            // encoder's fixed Fourier features).
            let n = sam.param_counts().iter().map(|p| p.1).sum();
            let meta = ModelMeta {
                focus: cfg.sampler.inference_focus(),
                slice_gap: cfg.sampler.slice_gap,
                dense_propagation,
                // Chosen afterwards, on other subjects (`brainsam calibrate`).
                mask_thresholds: None,
            };
            if let Some(avg) = &average {
                let path = a.out.join("model_average.safetensors");
                std::fs::write(
                    &path,
                    pollster::block_on(model_bytes(avg, &geometry, &meta, false))?,
                )?;
                println!("wrote {} (the weight average)", path.display());
            }
            (
                "model.safetensors",
                pollster::block_on(model_bytes(&sam, &geometry, &meta, false))?,
                n,
            )
        }
    };
    std::fs::write(a.out.join(name), &bytes)?;
    let total: usize = sam.param_counts().iter().map(|p| p.1).sum();
    println!(
        "wrote {} ({:.2} MB): {n} trained parameters = {:.2} % of the model's {total}",
        a.out.join(name).display(),
        bytes.len() as f64 / 1e6,
        100.0 * n as f64 / total as f64
    );
    Ok(())
}
