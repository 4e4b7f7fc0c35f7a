//! Image-encoder forward and decoder-per-prompt timings, per backend and geometry.
//!
//! `cargo bench --bench sam [--features wgpu] -- [cpu|ndarray|wgpu] [small|vit_b] [sizes..]`
//! Random weights (timings do not depend on values). Prints one line per measurement.
//! `brainsam bench` runs the same measurements (and a LoRA training step) from the CLI.

use brainsam::bench::inference;
use brainsam::model::Geometry;
use burn::prelude::Device;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let backend = args.first().map(String::as_str).unwrap_or("cpu");
    let which = args.get(1).map(String::as_str).unwrap_or("all");
    let sizes: Vec<usize> = args.iter().skip(2).filter_map(|s| s.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![256, 512, 1024]
    } else {
        sizes
    };
    let device: Device = match backend {
        #[cfg(feature = "wgpu")]
        "wgpu" => pollster::block_on(brainsam::backend::gpu()).expect("wgpu device"),
        #[cfg(feature = "cpu")]
        "cpu" => brainsam::backend::cpu(),
        #[cfg(feature = "ndarray")]
        "ndarray" => brainsam::backend::ndarray(),
        other => panic!("backend `{other}` not compiled in"),
    };
    let small = Geometry {
        embed_dim: 256,
        depth: 6,
        num_heads: 8,
        global_attn_indexes: vec![2, 5],
        image_size: 256,
        patch_size: 16,
        window_size: 14,
    };
    for &s in &sizes {
        for (name, g) in [
            ("small", &small),
            ("vit_b", &Geometry::preset("vit_b").expect("preset")),
        ] {
            if which != "all" && which != name {
                continue;
            }
            let g = Geometry {
                image_size: s,
                ..g.clone()
            };
            let reps = if s >= 1024 && backend != "wgpu" { 1 } else { 3 };
            let (enc, dec) =
                inference(&device, &g, 1, reps).expect("a random model saves and loads");
            println!(
                "{backend:<8} {name:<6} encoder {s:>4}px  first {:>9.1?}  median {:>9.1?}  ({reps} runs)",
                enc.first, enc.median
            );
            println!(
                "{backend:<8} {name:<6} decoder {s:>4}px  per prompt {:>9.2?}",
                dec.median
            );
        }
    }
}
