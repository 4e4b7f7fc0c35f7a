//! Embed an image once, then decode many prompts on it — as Meta's `SamPredictor`.
//!
//! Host-side geometry (resize, normalise, pad, coordinates, mask upscaling) follows Meta's
//! code exactly; only async GPU readback is used so the same code runs in a browser.

use burn::prelude::*;

use super::prompt_encoder::STRUCTURE_KINDS;
use super::sam::{Prompts, Sam, MASK_THRESHOLD, PIXEL_MEAN, PIXEL_STD};
use super::transforms::{postprocess_masks, ResizeLongestSide, TransformError};

/// Why a prediction could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PredictError {
    #[error("invalid image: {0}")]
    Image(String),
    #[error("invalid prompt: {0}")]
    Prompt(String),
    #[error("no image set: call set_image first")]
    NoImage,
    #[error("reading results back from the device failed: {0}")]
    Readback(String),
    #[error(transparent)]
    Transform(#[from] TransformError),
}

/// Prompts on the original image, in its pixel coordinates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompt {
    /// Points (x, y) with labels: 1 positive, 0 negative.
    pub points: Vec<([f32; 2], f32)>,
    /// Box (x0, y0, x1, y1).
    pub bbox: Option<[f32; 4]>,
    /// Low-resolution logits `[4E, 4E]` of an earlier prediction.
    pub mask_input: Option<Vec<f32>>,
    /// Three masks instead of one (for ambiguous single points).
    pub multimask: bool,
    /// Which kind of structure the prompt is for (`data::labels::kind`), if the user said.
    pub structure: Option<usize>,
}

/// Masks on the original image.
#[derive(Debug, Clone)]
pub struct Prediction {
    /// `[M, H, W]` row-major, 1 inside.
    pub masks: Vec<u8>,
    /// `[M]` predicted IoU per mask.
    pub iou: Vec<f32>,
    /// `[M, 4E, 4E]` logits, reusable as `mask_input`.
    pub low_res_logits: Vec<f32>,
    pub num_masks: usize,
    pub low_res_size: usize,
    pub height: usize,
    pub width: usize,
}

impl Prediction {
    /// Mask `i` as `[H, W]`.
    pub fn mask(&self, i: usize) -> Option<&[u8]> {
        let n = self.height * self.width;
        self.masks.get(i * n..(i + 1) * n)
    }

    /// Index of the mask with the highest predicted IoU.
    pub fn best(&self) -> usize {
        let mut best = 0;
        for (i, v) in self.iou.iter().enumerate() {
            if *v > self.iou[best] {
                best = i;
            }
        }
        best
    }
}

struct ImageState {
    embedding: Tensor<4>,
    original: (usize, usize),
    input: (usize, usize),
}

/// Holds one image embedding for repeated prompting.
pub struct SamPredictor<'a> {
    sam: &'a Sam,
    device: Device,
    transform: ResizeLongestSide,
    state: Option<ImageState>,
}

impl<'a> SamPredictor<'a> {
    pub fn new(sam: &'a Sam, device: Device) -> Self {
        let transform = ResizeLongestSide {
            target_length: sam.img_size(),
        };
        Self {
            sam,
            device,
            transform,
            state: None,
        }
    }

    /// Resizes, normalises and pads an RGB image `[H, W, 3]` into `[1, 3, S, S]` model input.
    pub fn preprocess(
        &self,
        rgb: &[u8],
        h: usize,
        w: usize,
    ) -> Result<(Tensor<4>, (usize, usize)), PredictError> {
        let (input, (nh, nw)) = preprocess_image(&self.transform, rgb, h, w)?;
        let s = self.sam.img_size();
        let x = Tensor::from_data(TensorData::new(input, [1, 3, s, s]), &self.device);
        Ok((x, (nh, nw)))
    }

    /// Computes and keeps the embedding of an RGB image `[H, W, 3]`.
    pub fn set_image(&mut self, rgb: &[u8], h: usize, w: usize) -> Result<(), PredictError> {
        let (x, input) = self.preprocess(rgb, h, w)?;
        self.set_embedding(self.sam.embed(x), (h, w), input);
        Ok(())
    }

    /// Uses an embedding computed elsewhere (a cache, a batch) for an image of `original`
    /// size that was resized to `input` before padding.
    pub fn set_embedding(
        &mut self,
        embedding: Tensor<4>,
        original: (usize, usize),
        input: (usize, usize),
    ) {
        self.state = Some(ImageState {
            embedding,
            original,
            input,
        });
    }

    pub fn embedding(&self) -> Option<&Tensor<4>> {
        self.state.as_ref().map(|s| &s.embedding)
    }

    /// Decodes one prompt and returns masks at the original image size.
    pub async fn predict(&self, prompt: &Prompt) -> Result<Prediction, PredictError> {
        let state = self.state.as_ref().ok_or(PredictError::NoImage)?;
        let (oh, ow) = state.original;
        let device = &self.device;
        validate_prompt(prompt, self.low_res_size())?;

        let points = if prompt.points.is_empty() {
            None
        } else {
            let xy: Vec<[f32; 2]> = prompt.points.iter().map(|(p, _)| *p).collect();
            let xy = self.transform.apply_coords(&xy, (oh, ow));
            let n = xy.len();
            let flat: Vec<f32> = xy.into_iter().flatten().collect();
            let labels: Vec<f32> = prompt.points.iter().map(|(_, l)| *l).collect();
            Some((
                Tensor::<3>::from_data(TensorData::new(flat, [1, n, 2]), device),
                Tensor::<2>::from_data(TensorData::new(labels, [1, n]), device),
            ))
        };
        let boxes = prompt.bbox.map(|b| {
            let b = self.transform.apply_box(b, (oh, ow));
            Tensor::<2>::from_data(TensorData::new(b.to_vec(), [1, 4]), device)
        });
        let l = self.low_res_size();
        let mask_input = prompt
            .mask_input
            .as_ref()
            .map(|m| Tensor::<4>::from_data(TensorData::new(m.clone(), [1, 1, l, l]), device));

        let structures = prompt
            .structure
            .map(|k| Tensor::<1, Int>::from_data(TensorData::new(vec![k as i64], [1]), device));
        let prompts = Prompts {
            points,
            boxes,
            mask_input,
            structures,
        };
        let (logits, iou) = self
            .sam
            .decode(state.embedding.clone(), prompts, prompt.multimask);
        let num_masks = iou.dims()[1];
        let low_res_logits = read_f32(logits).await?;
        let iou = read_f32(iou).await?;

        let mut masks = Vec::with_capacity(num_masks * oh * ow);
        for plane in low_res_logits.chunks_exact(l * l) {
            let up = postprocess_masks(
                plane,
                l,
                l,
                self.sam.img_size(),
                state.input,
                state.original,
            )?;
            masks.extend(up.into_iter().map(|v| u8::from(v > MASK_THRESHOLD)));
        }
        Ok(Prediction {
            masks,
            iou,
            low_res_logits,
            num_masks,
            low_res_size: l,
            height: oh,
            width: ow,
        })
    }

    /// Side of the low-resolution logits (and of a `mask_input`).
    pub fn low_res_size(&self) -> usize {
        4 * self.sam.prompt_encoder.image_embedding_size
    }
}

/// Reads a float tensor back to the host (async: the only readback a browser allows).
pub async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, PredictError> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| PredictError::Readback(format!("{e:?}")))?;
    data.try_into_vec::<f32>()
        .map_err(|e| PredictError::Readback(format!("{e:?}")))
}

/// SAM's input: resize the longest side to `S` (Pillow's bilinear), normalise with
/// [`PIXEL_MEAN`]/[`PIXEL_STD`], zero-pad bottom and right to `S x S`. Returns `[3, S, S]`
/// and the resized size.
pub fn preprocess_image(
    transform: &ResizeLongestSide,
    rgb: &[u8],
    h: usize,
    w: usize,
) -> Result<(Vec<f32>, (usize, usize)), PredictError> {
    if h == 0 || w == 0 || h.checked_mul(w).and_then(|n| n.checked_mul(3)) != Some(rgb.len()) {
        return Err(PredictError::Image(format!(
            "expected {h} x {w} x 3 = {} bytes of RGB, got {}",
            h.saturating_mul(w).saturating_mul(3),
            rgb.len()
        )));
    }
    let s = transform.target_length;
    let (resized, nh, nw) = transform.apply_image(rgb, h, w)?;
    let mut out = vec![0.0f32; 3 * s * s];
    for y in 0..nh {
        for x in 0..nw {
            for c in 0..3 {
                let v = resized[(y * nw + x) * 3 + c] as f32;
                out[c * s * s + y * s + x] = (v - PIXEL_MEAN[c]) / PIXEL_STD[c];
            }
        }
    }
    Ok((out, (nh, nw)))
}

fn validate_prompt(p: &Prompt, low_res: usize) -> Result<(), PredictError> {
    let bad = |m: String| Err(PredictError::Prompt(m));
    if p.points.is_empty() && p.bbox.is_none() && p.mask_input.is_none() {
        return bad("give at least one point, a box or a mask".into());
    }
    for ([x, y], l) in &p.points {
        if !x.is_finite() || !y.is_finite() {
            return bad(format!("point ({x}, {y}) is not finite"));
        }
        if *l != 0.0 && *l != 1.0 {
            return bad(format!(
                "point label {l} must be 1 (positive) or 0 (negative)"
            ));
        }
    }
    if let Some([x0, y0, x1, y1]) = p.bbox {
        if [x0, y0, x1, y1].iter().any(|v| !v.is_finite()) || x1 < x0 || y1 < y0 {
            return bad(format!(
                "box ({x0}, {y0}, {x1}, {y1}) must be finite with x0 <= x1 and y0 <= y1"
            ));
        }
    }
    if let Some(k) = p.structure {
        if k >= STRUCTURE_KINDS {
            return bad(format!("structure kind {k} is not below {STRUCTURE_KINDS}"));
        }
    }
    if let Some(m) = &p.mask_input {
        if m.len() != low_res * low_res {
            return bad(format!(
                "mask input has {} values, expected {low_res} x {low_res}",
                m.len()
            ));
        }
    }
    Ok(())
}
