//! One training slice as model tensors ([`SliceBatch`]: its image and the batch of prompts
//! on it), built from a sampled slice through the same preprocessing as inference.

use burn::prelude::*;

use super::sampler::{low_res_target, SliceSample};
use crate::data::labels::kind;
use crate::model::mask_grid::dense_prompt;
use crate::model::predictor::{preprocess_image, PredictError};
use crate::model::transforms::ResizeLongestSide;

/// One slice and the prompts on it: image `[1, 3, S, S]` (normalised, padded), per
/// prompted structure a box `[K, 4]` or points `[K, P, 2]` + labels `[K, P]` in model-input
/// pixels, and its target `[K, 1, L, L]` in [0, 1] on the decoder's logit grid.
#[derive(Clone)]
pub struct SliceBatch {
    pub images: Tensor<4>,
    pub boxes: Option<Tensor<2>>,
    pub points: Option<(Tensor<3>, Tensor<2>)>,
    pub targets: Tensor<4>,
    /// Dense prompts `[K, 1, L, L]` (logits), when the prompts carry a neighbour's mask.
    pub mask_input: Option<Tensor<4>>,
    /// A second, corrective round (as SAM was trained): one more point from the first
    /// prediction's error region, with its logits as mask input. The seed draws the point.
    pub correction: Option<u64>,
    /// Structure kinds `[K]` when the prompts name them.
    pub structures: Option<Tensor<1, Int>>,
}

/// Builds the batch of one slice for a model of input side `s` and logit side `l`; `named`:
/// the prompts say their structure's kind.
pub fn to_batch(
    sample: &SliceSample,
    s: usize,
    l: usize,
    correction: Option<u64>,
    named: bool,
    device: &Device,
) -> Result<SliceBatch, PredictError> {
    let (rows, cols) = (sample.image.rows, sample.image.cols);
    let t = ResizeLongestSide { target_length: s };
    let rgb: Vec<u8> = sample.image.data.iter().flatten().copied().collect();
    let (input, _) = preprocess_image(&t, &rgb, rows, cols)?;
    let images = Tensor::<4>::from_data(TensorData::new(input, [1, 3, s, s]), device);
    let k = sample.targets.len();
    let mut targets = Vec::with_capacity(k * l * l);
    for (_, mask) in &sample.targets {
        targets.extend(low_res_target(mask, rows, cols, s, l));
    }
    let targets = Tensor::<4>::from_data(TensorData::new(targets, [k, 1, l, l]), device);
    let mask_input = (!sample.dense.is_empty() && sample.dense.len() == k).then(|| {
        let flat: Vec<f32> = sample
            .dense
            .iter()
            .flat_map(|d| dense_prompt(d, rows, cols, s, l))
            .collect();
        Tensor::<4>::from_data(TensorData::new(flat, [k, 1, l, l]), device)
    });
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
    let structures = named
        .then(|| {
            let kinds = sample
                .targets
                .iter()
                .map(|(id, _)| kind(*id).map(|k| k as i64))
                .collect::<Option<Vec<_>>>()?;
            Some(Tensor::<1, Int>::from_data(
                TensorData::new(kinds, [k]),
                device,
            ))
        })
        .flatten();
    Ok(SliceBatch {
        images,
        boxes,
        points,
        targets,
        mask_input,
        correction,
        structures,
    })
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::data::slicing::Plane;

    #[test]
    fn named_prompts_carry_the_kind_of_each_target() {
        let (rows, cols) = (20, 30);
        let mask = |u0: usize| -> Vec<u8> {
            (0..rows * cols)
                .map(|i| u8::from(i % cols >= u0 && i % cols < u0 + 4 && i / cols > 5))
                .collect()
        };
        let mut sample = SliceSample {
            image: Plane {
                rows,
                cols,
                data: vec![[100; 3]; rows * cols],
            },
            // Left caudate (common id 3) and right accumbens (14).
            targets: vec![(3, mask(2)), (14, mask(20))],
            boxes: vec![[2.0, 6.0, 5.0, 19.0], [20.0, 6.0, 23.0, 19.0]],
            points: Vec::new(),
            dense: Vec::new(),
        };
        let device = crate::backend::cpu();
        let kinds = |b: SliceBatch| {
            b.structures
                .map(|t| t.into_data().convert::<i64>().try_to_vec::<i64>().unwrap())
        };
        let named = to_batch(&sample, 64, 16, None, true, &device).unwrap();
        assert_eq!(kinds(named), Some(vec![1, 6]));
        let plain = to_batch(&sample, 64, 16, None, false, &device).unwrap();
        assert_eq!(kinds(plain), None);
        // A label outside the common set names nothing rather than a wrong kind.
        sample.targets[1].0 = 99;
        let odd = to_batch(&sample, 64, 16, None, true, &device).unwrap();
        assert_eq!(kinds(odd), None);
    }
}
