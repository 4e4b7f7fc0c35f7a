//! The mask decoder over all slices of a step at once. Slices whose prompts have the same
//! shape (box, or the same number of points) go through the decoder in one call, each
//! prompt with its own slice's image embedding, so a GPU runs a few large kernels per step
//! instead of a round of small ones per slice. The loss is the one `forward_loss` gives
//! each slice alone (tested), summed over slices.

use std::collections::BTreeMap;

use burn::prelude::*;

use super::batch::SliceBatch;
use super::correction::{append_points, error_points};
use super::loss::{self, LossWeights};
use crate::model::Sam;

/// Σ over `batches` of each slice's loss and mask loss; `embeddings` `[n, C, E, E]` holds
/// the slices' image embeddings in order.
pub(super) fn slices_loss(
    sam: &Sam,
    embeddings: &Tensor<4>,
    batches: &[SliceBatch],
    w: LossWeights,
) -> Option<(Tensor<1>, Tensor<1>)> {
    let mut groups: BTreeMap<(Option<usize>, bool, bool, bool), Vec<usize>> = BTreeMap::new();
    for (i, b) in batches.iter().enumerate() {
        let points = b.points.as_ref().map(|(c, _)| c.dims()[1]);
        let kind = (
            points,
            b.boxes.is_some(),
            b.structures.is_some(),
            b.mask_input.is_some(),
        );
        groups.entry(kind).or_default().push(i);
    }
    let mut sums: Option<(Tensor<1>, Tensor<1>)> = None;
    for slices in groups.values() {
        let (t, m) = group_loss(sam, embeddings, batches, slices, w)?;
        sums = Some(match sums {
            Some((st, sm)) => (st + t, sm + m),
            None => (t, m),
        });
    }
    sums
}

/// The prompts of some slices, concatenated, each with its slice's embedding.
struct PromptGroup {
    embeddings: Tensor<4>,
    points: Option<(Tensor<3>, Tensor<2>)>,
    boxes: Option<Tensor<2>>,
    structures: Option<Tensor<1, Int>>,
    mask_input: Option<Tensor<4>>,
    targets: Tensor<4>,
}

impl PromptGroup {
    fn gather(embeddings: &Tensor<4>, batches: &[&SliceBatch], slices: &[usize]) -> Option<Self> {
        let device = embeddings.device();
        let index: Vec<i64> = slices
            .iter()
            .zip(batches)
            .flat_map(|(s, b)| std::iter::repeat_n(*s as i64, b.targets.dims()[0]))
            .collect();
        let n = index.len();
        let index = Tensor::<1, Int>::from_data(TensorData::new(index, [n]), &device);
        let all = |f: &dyn Fn(&SliceBatch) -> Option<Tensor<2>>| -> Option<Tensor<2>> {
            batches
                .iter()
                .map(|b| f(b))
                .collect::<Option<Vec<_>>>()
                .map(|v| Tensor::cat(v, 0))
        };
        let points = match batches.first()?.points {
            Some(_) => Some((
                Tensor::cat(
                    batches
                        .iter()
                        .map(|b| b.points.as_ref().map(|p| p.0.clone()))
                        .collect::<Option<Vec<_>>>()?,
                    0,
                ),
                all(&|b: &SliceBatch| b.points.as_ref().map(|p| p.1.clone()))?,
            )),
            None => None,
        };
        let boxes = match batches.first()?.boxes {
            Some(_) => Some(all(&|b: &SliceBatch| b.boxes.clone())?),
            None => None,
        };
        let structures = match batches.first()?.structures {
            Some(_) => Some(Tensor::cat(
                batches
                    .iter()
                    .map(|b| b.structures.clone())
                    .collect::<Option<Vec<_>>>()?,
                0,
            )),
            None => None,
        };
        let mask_input = match batches.first()?.mask_input {
            Some(_) => Some(Tensor::cat(
                batches
                    .iter()
                    .map(|b| b.mask_input.clone())
                    .collect::<Option<Vec<_>>>()?,
                0,
            )),
            None => None,
        };
        Some(PromptGroup {
            embeddings: embeddings.clone().select(0, index),
            points,
            boxes,
            structures,
            mask_input,
            targets: Tensor::cat(batches.iter().map(|b| b.targets.clone()).collect(), 0),
        })
    }

    fn select(&self, rows: &[usize], device: &Device) -> Self {
        let n = rows.len();
        let rows: Vec<i64> = rows.iter().map(|r| *r as i64).collect();
        let i = Tensor::<1, Int>::from_data(TensorData::new(rows, [n]), device);
        PromptGroup {
            embeddings: self.embeddings.clone().select(0, i.clone()),
            points: self
                .points
                .clone()
                .map(|(c, l)| (c.select(0, i.clone()), l.select(0, i.clone()))),
            boxes: self.boxes.clone().map(|b| b.select(0, i.clone())),
            structures: self.structures.clone().map(|s| s.select(0, i.clone())),
            mask_input: self.mask_input.clone().map(|m| m.select(0, i.clone())),
            targets: self.targets.clone().select(0, i),
        }
    }

    /// Per-prompt loss and mask loss of one decoder round, and its logits.
    fn round(
        &self,
        sam: &Sam,
        mask_input: Option<Tensor<4>>,
        w: LossWeights,
    ) -> (Tensor<1>, Tensor<1>, Tensor<4>) {
        let prompts = crate::model::Prompts {
            points: self.points.clone(),
            boxes: self.boxes.clone(),
            mask_input,
            structures: self.structures.clone(),
        };
        let (logits, iou) = sam.decode(self.embeddings.clone(), prompts, false);
        let mask = loss::dice_bce_each(logits.clone(), self.targets.clone(), w.dice);
        let total =
            mask.clone() + loss::iou_mse_each(logits.clone(), iou, self.targets.clone()) * w.iou;
        (total, mask, logits)
    }
}

fn group_loss(
    sam: &Sam,
    embeddings: &Tensor<4>,
    batches: &[SliceBatch],
    slices: &[usize],
    w: LossWeights,
) -> Option<(Tensor<1>, Tensor<1>)> {
    let device = embeddings.device();
    let members: Vec<&SliceBatch> = slices.iter().filter_map(|s| batches.get(*s)).collect();
    let prompts = PromptGroup::gather(embeddings, &members, slices)?;
    let (total, mask, logits) = prompts.round(sam, prompts.mask_input.clone(), w);

    // The corrective round of the slices that have one: a point from each prompt's error
    // region (one readback for the group), the first round's logits as mask input.
    let counts: Vec<usize> = members.iter().map(|b| b.targets.dims()[0]).collect();
    let mut offsets = Vec::with_capacity(counts.len());
    let mut o = 0;
    for k in &counts {
        offsets.push(o);
        o += k;
    }
    let want = members.iter().any(|b| b.correction.is_some());
    let host = want
        .then(|| {
            let pred = logits
                .clone()
                .detach()
                .into_data()
                .try_to_vec::<f32>()
                .ok()?;
            let truth = prompts
                .targets
                .clone()
                .into_data()
                .try_to_vec::<f32>()
                .ok()?;
            Some((pred, truth))
        })
        .flatten();
    let l = logits.dims()[2];
    let (mut rows, mut xy, mut labels) = (Vec::new(), Vec::new(), Vec::new());
    let mut corrected = vec![false; members.len()];
    if let Some((pred, truth)) = &host {
        for (j, b) in members.iter().enumerate() {
            let Some(seed) = b.correction else { continue };
            let (o, k) = (offsets[j], counts[j]);
            let span = o * l * l..(o + k) * l * l;
            let (p, t) = (pred.get(span.clone())?, truth.get(span)?);
            let (x, lb) = error_points(p, t, k, l, sam.img_size(), seed);
            xy.extend(x);
            labels.extend(lb);
            rows.extend(o..o + k);
            corrected[j] = true;
        }
    }
    // Each slice's loss is the mean over its prompts, halved between the two rounds of a
    // corrected slice.
    let weights = |second: bool| -> Vec<f32> {
        counts
            .iter()
            .zip(&corrected)
            .flat_map(|(k, c)| {
                let w = match (c, second) {
                    (true, _) => 0.5 / *k as f32,
                    (false, false) => 1.0 / *k as f32,
                    (false, true) => 0.0,
                };
                std::iter::repeat_n(w, if second && !c { 0 } else { *k })
            })
            .collect()
    };
    let w1 = weights(false);
    let w1 = Tensor::<1>::from_data(TensorData::new(w1.clone(), [w1.len()]), &device);
    let mut sum_total = (total * w1.clone()).sum();
    let mut sum_mask = (mask * w1).sum();
    if !rows.is_empty() {
        let n = rows.len();
        let mut second = prompts.select(&rows, &device);
        second.points = Some(append_points(second.points, xy, labels, n, &device));
        let rows_i: Vec<i64> = rows.iter().map(|r| *r as i64).collect();
        let ri = Tensor::<1, Int>::from_data(TensorData::new(rows_i, [n]), &device);
        let mask_input = logits.detach().select(0, ri);
        let (t2, m2, _) = second.round(sam, Some(mask_input), w);
        let w2 = weights(true);
        let w2 = Tensor::<1>::from_data(TensorData::new(w2, [n]), &device);
        sum_total = sum_total + (t2 * w2.clone()).sum();
        sum_mask = sum_mask + (m2 * w2).sum();
    }
    Some((sum_total, sum_mask))
}
