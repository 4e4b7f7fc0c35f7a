//! The corrective round's prompts: one more point per prompt, drawn from its first
//! prediction's larger error region (as SAM was trained: clicks where the mask is wrong).

use burn::prelude::*;

/// Appends to each prompt one point from its prediction's larger error: positive in a
/// missed region, negative in a false one (native readback: training runs natively).
pub(super) fn correction_points(
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
pub(super) fn error_points(
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
pub(super) fn append_points(
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
