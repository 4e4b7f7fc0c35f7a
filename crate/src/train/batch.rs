//! A sampled slice → model tensors, through the same preprocessing as inference.

use burn::prelude::*;

use super::sampler::{low_res_target, SliceSample};
use super::Batch;
use crate::model::predictor::{preprocess_image, PredictError};
use crate::model::transforms::ResizeLongestSide;

/// Builds the batch of one slice for a model of input side `s` and logit side `l`.
pub fn to_batch(
    sample: &SliceSample,
    s: usize,
    l: usize,
    correction: Option<u64>,
    device: &Device,
) -> Result<Batch, PredictError> {
    let (rows, cols) = (sample.image.rows, sample.image.cols);
    let t = ResizeLongestSide { target_length: s };
    let rgb: Vec<u8> = sample.image.data.iter().flat_map(|g| [*g; 3]).collect();
    let (input, _) = preprocess_image(&t, &rgb, rows, cols)?;
    let images = Tensor::<4>::from_data(TensorData::new(input, [1, 3, s, s]), device);
    let k = sample.targets.len();
    let mut targets = Vec::with_capacity(k * l * l);
    for (_, mask) in &sample.targets {
        targets.extend(low_res_target(mask, rows, cols, s, l));
    }
    let targets = Tensor::<4>::from_data(TensorData::new(targets, [k, 1, l, l]), device);
    let boxes = (!sample.boxes.is_empty()).then(|| {
        let flat: Vec<f32> = sample
            .boxes
            .iter()
            .flat_map(|b| t.apply_box(*b, (rows, cols)))
            .collect();
        Tensor::<2>::from_data(TensorData::new(flat, [k, 4]), device)
    });
    let points = (!sample.points.is_empty()).then(|| {
        let p = sample.points[0].len();
        let mut xy = Vec::with_capacity(k * p * 2);
        let mut labels = Vec::with_capacity(k * p);
        for pts in &sample.points {
            let c: Vec<[f32; 2]> = pts.iter().map(|q| [q[0], q[1]]).collect();
            xy.extend(t.apply_coords(&c, (rows, cols)).into_iter().flatten());
            labels.extend(pts.iter().map(|q| q[2]));
        }
        (
            Tensor::<3>::from_data(TensorData::new(xy, [k, p, 2]), device),
            Tensor::<2>::from_data(TensorData::new(labels, [k, p]), device),
        )
    });
    Ok(Batch {
        images,
        boxes,
        points,
        targets,
        correction,
    })
}
