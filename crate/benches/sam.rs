//! Image-encoder forward and decoder-per-prompt timings, per backend and geometry.
//!
//! `cargo bench --bench sam [--features wgpu] -- [ndarray|wgpu] [small|vit_b] [sizes..]`
//! Random weights (timings do not depend on values). Prints one line per measurement.

use std::time::{Duration, Instant};

use brainsam::model::predictor::read_f32;
use brainsam::model::Geometry;
use burn::prelude::*;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sync(t: Tensor<4>) {
    // Reading one value back forces the queued work to finish.
    let _ = pollster::block_on(read_f32(t.slice([0..1, 0..1, 0..1, 0..1])));
}

fn bench(device: &Device, backend: &str, name: &str, g: &Geometry, reps: usize) {
    let sam = g.config().init(device);
    let s = g.image_size;
    let x = Tensor::<4>::random(
        [1, 3, s, s],
        burn::tensor::Distribution::Normal(0.0, 1.0),
        device,
    );
    let start = Instant::now();
    let emb = sam.embed(x.clone());
    sync(emb.clone());
    let first = start.elapsed();
    let times: Vec<Duration> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            sync(sam.embed(x.clone()));
            start.elapsed()
        })
        .collect();
    println!(
        "{backend:<8} {name:<6} encoder {s:>4}px  first {:>9.1?}  median {:>9.1?}  ({reps} runs)",
        first,
        median(times)
    );
    let coords = Tensor::<3>::from_data(
        TensorData::new(vec![s as f32 * 0.4, s as f32 * 0.6], [1, 1, 2]),
        device,
    );
    let labels = Tensor::<2>::from_data(TensorData::new(vec![1.0f32], [1, 1]), device);
    let decode = || {
        let (m, _) = sam.decode(
            emb.clone(),
            Some((coords.clone(), labels.clone())),
            None,
            None,
            true,
        );
        sync(m);
    };
    decode();
    let times: Vec<Duration> = (0..10)
        .map(|_| {
            let start = Instant::now();
            decode();
            start.elapsed()
        })
        .collect();
    println!(
        "{backend:<8} {name:<6} decoder {s:>4}px  per prompt {:>9.2?}",
        median(times)
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let backend = args.first().map(String::as_str).unwrap_or("ndarray");
    let which = args.get(1).map(String::as_str).unwrap_or("all");
    let sizes: Vec<usize> = args.iter().skip(2).filter_map(|s| s.parse().ok()).collect();
    let sizes = if sizes.is_empty() {
        vec![256, 512, 1024]
    } else {
        sizes
    };
    let device = match backend {
        #[cfg(feature = "wgpu")]
        "wgpu" => pollster::block_on(brainsam::backend::gpu()).expect("wgpu device"),
        #[cfg(feature = "ndarray")]
        "ndarray" => brainsam::backend::cpu(),
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
            ("vit_b", &Geometry::preset("vit_b").unwrap()),
        ] {
            if which != "all" && which != name {
                continue;
            }
            let g = Geometry {
                image_size: s,
                ..g.clone()
            };
            let reps = if s >= 1024 && backend == "ndarray" {
                1
            } else {
                3
            };
            bench(&device, backend, name, &g, reps);
        }
    }
}
