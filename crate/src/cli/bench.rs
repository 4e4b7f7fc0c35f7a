//! `brainsam bench`: encoder, decoder and LoRA-training-step timings on random weights,
//! one JSON line each, for comparison with the PyTorch anchor on the same device.

use brainsam::bench;
use brainsam::model::Geometry;

use super::choices::{name, Backend};
use super::common::Res;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value = "cpu")]
    pub backend: Backend,
    /// vit_b, vit_l, vit_h or a geometry as JSON (as in weights/manifest.json).
    #[arg(long, default_value = "vit_b", value_parser = parse_geometry)]
    pub geometry: Geometry,
    /// Encoder input sizes (batch 1).
    #[arg(long, value_delimiter = ',', default_value = "1024,512,256")]
    pub sizes: Vec<usize>,
    /// LoRA training steps, SIZExBATCH (e.g. 256x16); empty for none.
    #[arg(long, value_delimiter = ',', default_value = "512x8,256x16")]
    pub train: Vec<String>,
    /// Timed runs after the first (which includes compilation and autotuning).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e5).round() / 100.0
}

/// A preset's name or a geometry as JSON (clap's value parser for `--geometry`).
fn parse_geometry(s: &str) -> Result<Geometry, String> {
    match Geometry::preset(s) {
        Some(g) => Ok(g),
        None => serde_json::from_str(s)
            .map_err(|e| format!("expected vit_b, vit_l, vit_h or JSON: {e}")),
    }
}

pub fn run(a: &BenchArgs) -> Res {
    let base = &a.geometry;
    let backend = name(&a.backend);
    let dev = a.backend.device()?;
    for &size in &a.sizes {
        let g = Geometry {
            image_size: size,
            ..base.clone()
        };
        g.validate()?;
        let (enc, dec) = bench::inference(&dev, &g, 1, a.reps)?;
        println!(
            "{}",
            serde_json::json!({"what": "encoder_fwd_b1", "backend": backend, "size": size,
                "first_ms": ms(enc.first), "ms": ms(enc.median)})
        );
        println!(
            "{}",
            serde_json::json!({"what": "decoder_per_prompt", "backend": backend, "size": size,
                "ms": ms(dec.median)})
        );
    }
    #[cfg(feature = "train")]
    for spec in a.train.iter().filter(|s| !s.is_empty()) {
        let (size, batch) = spec
            .split_once('x')
            .and_then(|(s, b)| Some((s.parse::<usize>().ok()?, b.parse::<usize>().ok()?)))
            .ok_or_else(|| format!("--train takes SIZExBATCH, got `{spec}`"))?;
        let g = Geometry {
            image_size: size,
            ..base.clone()
        };
        g.validate()?;
        let t = bench::lora_step(&dev.clone().autodiff(), &g, batch, a.reps)?;
        println!(
            "{}",
            serde_json::json!({"what": "lora_train_step", "backend": backend, "size": size,
                "batch": batch, "first_ms": ms(t.first), "ms": ms(t.median),
                "img_per_s": (batch as f64 / t.median.as_secs_f64() * 10.0).round() / 10.0})
        );
    }
    Ok(())
}
