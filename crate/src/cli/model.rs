//! `info`, `convert` and `init`: SAM checkpoints on the command line.

use std::error::Error;
use std::path::{Path, PathBuf};

use brainsam::backend;
use brainsam::model::io::centre_input::seat_on_centre_channel;
use brainsam::model::io::checkpoint::{geometry_of, load_sam};
use brainsam::model::io::grow::insert_encoder_blocks;
use brainsam::model::io::{model_bytes, state_dict_bytes, ModelMeta};
use brainsam::model::{Geometry, Sam};
use brainsam::weights::StateDict;

use super::choices::name;
use super::common::{parse_focus, FocusChoice};

type Res = Result<(), Box<dyn Error>>;

#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    /// Checkpoint file (.pth or .safetensors).
    pub checkpoint: PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Input checkpoint (.pth or .safetensors).
    pub input: PathBuf,
    /// Output .safetensors file.
    pub output: PathBuf,
    /// Store fp16 (half the size; fp32 in memory after loading).
    #[arg(long)]
    pub half: bool,
    /// The focus the model was trained for (`train --focus-prob`), as CONTEXT,MIN_SIDE, or
    /// `off`; by default the input's own is kept.
    #[arg(long, value_parser = parse_focus)]
    pub focus: Option<FocusChoice>,
    /// Average the input with these checkpoints (same geometry), e.g. runs fine-tuned from
    /// one model with different seeds ("model soup"); repeatable.
    #[arg(long)]
    pub average: Vec<PathBuf>,
    /// Deepen the image encoder: insert new windowed-attention blocks at these positions of
    /// the grown block list (e.g. 2,5 turns depth 4 into 6). Each starts as an identity
    /// (zeroed output projections), so the model computes what it did; train it with `--full`.
    #[arg(long, value_delimiter = ',')]
    pub insert_blocks: Vec<usize>,
    /// Seed of the new blocks' other weights.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Record a 2.5-D input, slices k − GAP, k, k + GAP. From a model of copies (gap 0) the
    /// patch embedding is first seated on the centre slice, so the model computes what it
    /// did on copies; train it with `--full` to use the neighbours.
    #[arg(long)]
    pub slice_gap: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct InitArgs {
    /// Output .safetensors file.
    #[arg(long)]
    pub out: PathBuf,
    /// Meta's geometry of this name; otherwise the custom geometry flags apply.
    #[arg(long)]
    pub preset: Option<Preset>,
    #[arg(long, default_value_t = 64)]
    pub embed_dim: usize,
    #[arg(long, default_value_t = 4)]
    pub depth: usize,
    #[arg(long, default_value_t = 4)]
    pub num_heads: usize,
    /// Blocks with global attention.
    #[arg(long, value_delimiter = ',', default_value = "1,3")]
    pub global_attn_indexes: Vec<usize>,
    #[arg(long, default_value_t = 256)]
    pub image_size: usize,
    /// Patch side in pixels (Meta: 16); mask logits are 4 / patch of the input resolution.
    #[arg(long, default_value_t = 16)]
    pub patch_size: usize,
    /// Attention window side in tokens (Meta: 14).
    #[arg(long, default_value_t = 14)]
    pub window_size: usize,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long)]
    pub half: bool,
}

/// `--preset` of init: SAM's image encoders.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    #[value(name = "vit_b")]
    VitB,
    #[value(name = "vit_l")]
    VitL,
    #[value(name = "vit_h")]
    VitH,
}

fn read(path: &Path) -> Result<Vec<u8>, Box<dyn Error>> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()).into())
}

/// Reads a checkpoint and checks it builds a model: every tensor used, every shape right.
fn load(path: &Path) -> Result<(StateDict, Geometry, Sam), Box<dyn Error>> {
    let sd = StateDict::from_bytes(&read(path)?).map_err(|e| format!("{}: {e}", path.display()))?;
    let geometry = geometry_of(&sd)?;
    let sam = load_sam(&geometry.config(), sd.clone(), &backend::cpu())?;
    Ok((sd, geometry, sam))
}

pub fn info(a: &InfoArgs) -> Res {
    let (_, g, sam) = load(&a.checkpoint)?;
    println!("checkpoint   {}", a.checkpoint.display());
    println!(
        "geometry     embed_dim {} | depth {} | heads {} | global blocks {:?} | window {} | image {} px | patch {} | embedding {e}x{e} | mask logits {m}x{m}",
        g.embed_dim, g.depth, g.num_heads, g.global_attn_indexes, g.window_size, g.image_size, g.patch_size,
        e = g.image_size / g.patch_size,
        m = 4 * g.image_size / g.patch_size,
    );
    let meta = ModelMeta::read(&read(&a.checkpoint)?);
    match meta.mask_thresholds {
        Some(t) => println!(
            "thresholds   masks cut per structure kind (thalamus … ventricle): slice {:?}, walk {:?}",
            t.slice, t.walk
        ),
        None => println!("thresholds   none (masks cut at logit 0)"),
    }
    match meta.focus {
        Some(f) => println!(
            "focus        predicts on a window around each prompt: {}× its larger side, at least {} px",
            f.context, f.min_side
        ),
        None => println!("focus        none (predicts on whole slices)"),
    }
    let counts = sam.param_counts();
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    for (name, n) in counts.into_iter().filter(|(_, n)| *n > 0) {
        println!(
            "{name:<14} {n:>12} parameters ({:.2} %)",
            100.0 * n as f64 / total as f64
        );
    }
    println!(
        "{:<14} {total:>12} parameters ({:.1} MB as fp32)",
        "total",
        total as f64 * 4.0 / 1e6
    );
    Ok(())
}

pub fn convert(a: &ConvertArgs) -> Res {
    let (mut sd, mut g, _) = load(&a.input)?;
    if !a.average.is_empty() {
        let mut dicts = vec![sd];
        for p in &a.average {
            let (other, og, _) = load(p)?;
            if og != g {
                return Err(format!(
                    "{} has another geometry than {}",
                    p.display(),
                    a.input.display()
                )
                .into());
            }
            dicts.push(other);
        }
        sd = StateDict::average(&dicts)?;
        println!("averaged {} checkpoints", dicts.len());
    }
    if !a.insert_blocks.is_empty() {
        let device = backend::cpu();
        device.seed(a.seed);
        let (grown_sd, grown) = insert_encoder_blocks(&sd, &g, &a.insert_blocks, &device)?;
        // The grown file must load as the grown geometry before it is written.
        load_sam(&grown.config(), grown_sd.clone(), &device)?;
        println!(
            "image encoder: depth {} -> {}, global blocks {:?} -> {:?}",
            g.depth, grown.depth, g.global_attn_indexes, grown.global_attn_indexes
        );
        (sd, g) = (grown_sd, grown);
    }
    let of_input = ModelMeta::read(&read(&a.input)?);
    let slice_gap = a.slice_gap.unwrap_or(of_input.slice_gap);
    if of_input.slice_gap == 0 && slice_gap > 0 {
        sd = seat_on_centre_channel(&sd)?;
        println!("patch embedding seated on the centre slice: input slices k-{slice_gap}, k, k+{slice_gap}");
    }
    let meta = ModelMeta {
        focus: match &a.focus {
            Some(f) => f.resolve(None),
            None => of_input.focus,
        },
        slice_gap,
        dense_propagation: of_input.dense_propagation,
        // Thresholds were chosen for the input's weights: changed weights need choosing again.
        mask_thresholds: of_input.mask_thresholds.filter(|_| {
            a.average.is_empty() && a.insert_blocks.is_empty() && slice_gap == of_input.slice_gap
        }),
    };
    let bytes = state_dict_bytes(&sd, &g, &meta, a.half)?;
    std::fs::write(&a.output, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", a.output.display()))?;
    println!(
        "wrote {} ({} tensors, {:.1} MB, {})",
        a.output.display(),
        sd.len(),
        bytes.len() as f64 / 1e6,
        if a.half { "fp16" } else { "fp32" }
    );
    Ok(())
}

pub fn init(a: &InitArgs) -> Res {
    let g = match &a.preset {
        Some(p) => {
            Geometry::preset(&name(p)).ok_or_else(|| format!("unknown preset `{}`", name(p)))?
        }
        None => Geometry {
            embed_dim: a.embed_dim,
            depth: a.depth,
            num_heads: a.num_heads,
            global_attn_indexes: a.global_attn_indexes.clone(),
            image_size: a.image_size,
            patch_size: a.patch_size,
            window_size: a.window_size,
        },
    };
    g.validate()?;
    let device = backend::cpu();
    device.seed(a.seed);
    let sam = g.config().init(&device);
    let bytes = pollster::block_on(model_bytes(&sam, &g, &ModelMeta::default(), a.half))?;
    std::fs::write(&a.out, &bytes).map_err(|e| format!("cannot write {}: {e}", a.out.display()))?;
    println!(
        "wrote {} ({:.1} MB, random weights, seed {})",
        a.out.display(),
        bytes.len() as f64 / 1e6,
        a.seed
    );
    Ok(())
}
