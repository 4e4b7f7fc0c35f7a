//! A [`Session`]: one volume reoriented to canonical RAS+ (the orientation the model was
//! trained in), its intensity normaliser and its cached image embeddings; it predicts a
//! [`SliceMask`] per prompt, on the whole slice or on a window around the prompt (a
//! [`Focus`]), and pastes masks back into the source volume's voxels.

use burn::prelude::*;

use super::cache::{CacheKey, EmbeddingCache};
use super::{Focus, SegmentError, SlicePrompt};
use crate::data::slicing::{self, Normalizer, Plane};
use crate::data::{LabelVolume, Orientation, Volume};
use crate::model::io::{Cut, MaskThresholds};
use crate::model::mask_grid::dense_prompt;
use crate::model::predictor::{PredictError, Prediction, Prompt, SamPredictor};
use crate::model::transforms::postprocess_masks;
use crate::model::Sam;

/// A predicted mask on one canonical slice (`rows × cols`, 1 inside).
#[derive(Debug, Clone)]
pub struct SliceMask {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<u8>,
    /// The decoder's own estimate of the mask's IoU.
    pub iou: f32,
    /// Low-resolution logits, reusable as the next prompt's mask input.
    pub low_res_logits: Vec<f32>,
}

impl SliceMask {
    pub fn area(&self) -> usize {
        self.data.iter().filter(|v| **v != 0).count()
    }

    /// Clears the pixels outside a box `[u0, v0, u1, v1]` (columns u, rows v, inclusive).
    pub fn keep_within(&mut self, [u0, v0, u1, v1]: [f32; 4]) {
        for (r, row) in self.data.chunks_exact_mut(self.cols.max(1)).enumerate() {
            let inside_rows = (v0..=v1).contains(&(r as f32));
            for (c, v) in row.iter_mut().enumerate() {
                if !inside_rows || !(u0..=u1).contains(&(c as f32)) {
                    *v = 0;
                }
            }
        }
    }
}

/// A prompt's mask logits on one canonical slice, before they are cut into a mask:
/// [`Session::scores`] computes them once, [`SliceScores::mask`] cuts them at any level.
#[derive(Debug, Clone)]
pub struct SliceScores {
    pub rows: usize,
    pub cols: usize,
    /// `rows × cols`; −∞ outside the window the prompt was predicted on.
    pub logits: Vec<f32>,
    pub iou: f32,
    /// Low-resolution logits of a whole-slice prediction (empty for a window).
    pub low_res_logits: Vec<f32>,
    /// The prompt's box: a box prompt's mask stays within it.
    bbox: Option<[f32; 4]>,
}

impl SliceScores {
    /// The pixels whose logit is above `threshold` (within the prompt's box, if any).
    pub fn mask(&self, threshold: f32) -> SliceMask {
        let mut m = SliceMask {
            rows: self.rows,
            cols: self.cols,
            data: self
                .logits
                .iter()
                .map(|v| u8::from(*v > threshold))
                .collect(),
            iou: self.iou,
            low_res_logits: self.low_res_logits.clone(),
        };
        if let Some(b) = self.bbox {
            m.keep_within(b);
        }
        m
    }
}

/// One volume being segmented.
pub struct Session {
    image: Volume<f32>,
    orientation: Orientation,
    normalizer: Normalizer,
    device: Device,
    cache: EmbeddingCache,
    focus: Option<Focus>,
    flip_average: bool,
    slice_gap: usize,
    mask_thresholds: Option<MaskThresholds>,
}

impl Session {
    /// Takes an image in any orientation; slices, prompts and masks are canonical (RAS+).
    pub fn new(image: &Volume<f32>, device: Device) -> Result<Self, SegmentError> {
        let (image, orientation) = crate::data::to_canonical(image)?;
        let normalizer = Normalizer::robust(&image)?;
        Ok(Self {
            image,
            orientation,
            normalizer,
            device,
            cache: EmbeddingCache::default(),
            focus: None,
            flip_average: false,
            slice_gap: 0,
            mask_thresholds: None,
        })
    }

    /// Canonical dims.
    pub fn dims(&self) -> [usize; 3] {
        self.image.dims
    }

    pub fn orientation(&self) -> &Orientation {
        &self.orientation
    }

    pub fn canonical_image(&self) -> &Volume<f32> {
        &self.image
    }

    /// The slice as the model sees it (grey levels after the volume's robust windowing).
    pub fn slice_gray(&self, axis: usize, index: usize) -> Result<Plane<u8>, SegmentError> {
        let p = slicing::slice(&self.image, axis, index)?;
        Ok(Plane {
            rows: p.rows,
            cols: p.cols,
            data: p.data.iter().map(|v| self.normalizer.to_u8(*v)).collect(),
        })
    }

    /// Predicts every later prompt in a window around it (None: on the whole slice).
    pub fn set_focus(&mut self, focus: Option<Focus>) {
        self.focus = focus;
    }

    pub fn focus(&self) -> Option<Focus> {
        self.focus
    }

    /// With a focus, also predicts on the left-right mirror of each window and averages
    /// the two logit maps (twice the encoder time; smooths an under-trained model's errors).
    pub fn set_flip_average(&mut self, on: bool) {
        self.flip_average = on;
    }

    pub fn flip_average(&self) -> bool {
        self.flip_average
    }

    /// The model's input channels are slices k − gap, k, k + gap (0: three copies of k), as
    /// the model was trained; a change drops the cached embeddings.
    pub fn set_slice_gap(&mut self, gap: usize) {
        if gap != self.slice_gap {
            self.cache.clear();
        }
        self.slice_gap = gap;
    }

    pub fn slice_gap(&self) -> usize {
        self.slice_gap
    }

    /// Cuts each later mask at its structure kind's logit threshold (None: SAM's 0).
    pub fn set_mask_thresholds(&mut self, t: Option<MaskThresholds>) {
        self.mask_thresholds = t;
    }

    pub fn mask_thresholds(&self) -> Option<MaskThresholds> {
        self.mask_thresholds
    }

    fn threshold(&self, cut: Cut, prompt: &SlicePrompt) -> f32 {
        MaskThresholds::of_or_sam(self.mask_thresholds.as_ref(), cut, prompt.structure)
    }

    pub fn is_encoded(&self, axis: usize, index: usize) -> bool {
        self.cache.contains(&(axis, index, None, false))
    }

    /// Runs the image encoder on a slice (no-op when cached).
    pub async fn encode(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
    ) -> Result<(), SegmentError> {
        self.encode_window(sam, axis, index, None, false)
    }

    /// Encodes a slice or a square window of it, left-right mirrored if asked (no-op when
    /// cached); the window's pixels are enlarged to the model input by the encoder's resize.
    fn encode_window(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        window: Option<[usize; 3]>,
        mirrored: bool,
    ) -> Result<(), SegmentError> {
        let key = (axis, index, window, mirrored);
        if self.cache.touch(&key) {
            return Ok(());
        }
        let mut plane = slicing::slab(&self.image, axis, index, self.slice_gap)?;
        if let Some([r0, c0, side]) = window {
            if r0 + side > plane.rows || c0 + side > plane.cols {
                return Err(SegmentError::Prompt("window outside the slice".into()));
            }
            plane = Plane {
                rows: side,
                cols: side,
                data: (r0..r0 + side)
                    .flat_map(|r| plane.data[r * plane.cols + c0..][..side].iter().copied())
                    .collect(),
            };
        }
        if mirrored {
            plane
                .data
                .chunks_exact_mut(plane.cols)
                .for_each(<[[f32; 3]]>::reverse);
        }
        let rgb = self.normalizer.slab_to_rgb(&plane);
        let predictor = SamPredictor::new(sam, self.device.clone());
        let (x, input) = predictor.preprocess(&rgb, plane.rows, plane.cols)?;
        let embedding = sam.embed(x);
        self.cache
            .insert(key, embedding, (plane.rows, plane.cols), input);
        Ok(())
    }

    /// Drops every cached embedding (e.g. after the model changed).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// A prompt's logits, predicted on a square window around the prompt that is enlarged
    /// to the model input, then pasted back into the whole slice.
    async fn scores_focused(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        prompt: &SlicePrompt,
        focus: Focus,
    ) -> Result<SliceScores, SegmentError> {
        let dims = self.image.dims;
        let (rows, cols) = self.plane_size(axis)?;
        if index >= dims[axis] {
            return Err(SegmentError::Prompt(format!(
                "slice {index} is outside the volume's {} slices along axis {axis}",
                dims[axis]
            )));
        }
        prompt.check(rows, cols)?;
        let window @ [r0, c0, side] = focus.window(prompt, rows, cols)?;
        // Prompt coordinates inside the window.
        let local = SlicePrompt {
            points: prompt
                .points
                .iter()
                .map(|[u, v, l]| [*u - c0 as f32, *v - r0 as f32, *l])
                .collect(),
            bbox: prompt.bbox.map(|[u0, v0, u1, v1]| {
                [
                    u0 - c0 as f32,
                    v0 - r0 as f32,
                    u1 - c0 as f32,
                    v1 - r0 as f32,
                ]
            }),
            mask_input: None,
            dense: prompt.dense.as_ref().map(|d| {
                (r0..r0 + side)
                    .flat_map(|r| d[r * cols + c0..][..side].iter().copied())
                    .collect()
            }),
            structure: prompt.structure,
        };
        let (mut logits, mut iou, input) = self
            .decode_window(sam, axis, index, window, &local, false)
            .await?;
        let l = (logits.len() as f64).sqrt() as usize; // square low-res mask
        if self.flip_average {
            let last = side as f32 - 1.0;
            let mirror = SlicePrompt {
                points: local
                    .points
                    .iter()
                    .map(|[u, v, l]| [last - u, *v, *l])
                    .collect(),
                bbox: local
                    .bbox
                    .map(|[u0, v0, u1, v1]| [last - u1, v0, last - u0, v1]),
                mask_input: None,
                dense: local.dense.as_ref().map(|d| {
                    d.chunks_exact(side)
                        .flat_map(|row| row.iter().rev().copied())
                        .collect()
                }),
                structure: local.structure,
            };
            let (m, m_iou, _) = self
                .decode_window(sam, axis, index, window, &mirror, true)
                .await?;
            for (row, m_row) in logits.chunks_exact_mut(l).zip(m.chunks_exact(l)) {
                for (a, b) in row.iter_mut().zip(m_row.iter().rev()) {
                    *a = 0.5 * (*a + *b);
                }
            }
            iou = 0.5 * (iou + m_iou);
        }
        let up = postprocess_masks(&logits, l, l, sam.img_size(), input, (side, side))
            .map_err(PredictError::from)?;
        if up.len() != side * side {
            return Err(SegmentError::Prompt(
                "the model's mask does not fit its window".into(),
            ));
        }
        let mut whole = vec![f32::NEG_INFINITY; rows * cols];
        for (r, row) in up.chunks_exact(side).enumerate() {
            whole[(r0 + r) * cols + c0..][..side].copy_from_slice(row);
        }
        Ok(SliceScores {
            rows,
            cols,
            logits: whole,
            iou,
            low_res_logits: Vec::new(),
            bbox: prompt.bbox,
        })
    }

    /// Low-resolution logits, IoU estimate and model-input size of one prompt (in window
    /// coordinates) on a window, encoded mirrored or not.
    async fn decode_window(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        window: [usize; 3],
        prompt: &SlicePrompt,
        mirrored: bool,
    ) -> Result<(Vec<f32>, f32, (usize, usize)), SegmentError> {
        self.encode_window(sam, axis, index, Some(window), mirrored)?;
        let (pred, input) = self
            .decode(sam, &(axis, index, Some(window), mirrored), prompt)
            .await?;
        let l = pred.low_res_size;
        let logits = pred
            .low_res_logits
            .get(..l * l)
            .ok_or_else(|| SegmentError::Prompt("the model returned no mask".into()))?
            .to_vec();
        Ok((logits, pred.iou.first().copied().unwrap_or(0.0), input))
    }

    /// (rows, cols) of a canonical slice along `axis`.
    fn plane_size(&self, axis: usize) -> Result<(usize, usize), SegmentError> {
        let (ua, va) = slicing::plane_axes(axis)?;
        Ok((self.image.dims[va], self.image.dims[ua]))
    }

    /// Decodes a prompt (in the encoded image's pixels) on a cached encoding; also returns
    /// the model-input size it was resized to.
    async fn decode(
        &self,
        sam: &Sam,
        key: &CacheKey,
        prompt: &SlicePrompt,
    ) -> Result<(Prediction, (usize, usize)), SegmentError> {
        let e = self
            .cache
            .get(key)
            .ok_or_else(|| SegmentError::Prompt("slice not encoded".into()))?;
        let mut predictor = SamPredictor::new(sam, self.device.clone());
        predictor.set_embedding(e.embedding.clone(), e.original, e.input);
        let (rows, cols) = e.original;
        let dense =
            |d: &Vec<u8>| dense_prompt(d, rows, cols, sam.img_size(), predictor.low_res_size());
        let p = Prompt {
            points: prompt
                .points
                .iter()
                .map(|[u, v, l]| ([*u, *v], *l))
                .collect(),
            bbox: prompt.bbox,
            mask_input: prompt
                .mask_input
                .clone()
                .or_else(|| prompt.dense.as_ref().map(dense)),
            multimask: false,
            structure: prompt.structure,
        };
        Ok((predictor.predict(&p).await?, e.input))
    }

    /// One mask for a prompt on a canonical slice (encodes the slice, or with a focus the
    /// window around the prompt, first if needed), cut at its structure's slice threshold
    /// ([`Self::set_mask_thresholds`]). A box prompt's mask stays within its box:
    /// SAM's masks can reach past it into a neighbouring structure (the pallidum into the
    /// putamen beside it); clearing that gained 0.004–0.011 held-out Dice on box prompts
    /// and 0.018 on a box walked in 3-D, whose boxes then never grow (experiments/stage20/).
    pub async fn predict(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        prompt: &SlicePrompt,
    ) -> Result<SliceMask, SegmentError> {
        self.predict_cut(sam, axis, index, prompt, Cut::Slice).await
    }

    /// As [`Self::predict`], cut at the structure's slice or walk threshold.
    pub(super) async fn predict_cut(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        prompt: &SlicePrompt,
        cut: Cut,
    ) -> Result<SliceMask, SegmentError> {
        let t = self.threshold(cut, prompt);
        Ok(self.scores(sam, axis, index, prompt).await?.mask(t))
    }

    /// A prompt's logits on a canonical slice, before they are cut into a mask.
    pub async fn scores(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        prompt: &SlicePrompt,
    ) -> Result<SliceScores, SegmentError> {
        match self.focus {
            Some(f) => self.scores_focused(sam, axis, index, prompt, f).await,
            None => self.scores_whole(sam, axis, index, prompt).await,
        }
    }

    async fn scores_whole(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        prompt: &SlicePrompt,
    ) -> Result<SliceScores, SegmentError> {
        self.encode(sam, axis, index).await?;
        let (rows, cols) = self.plane_size(axis)?;
        prompt.check(rows, cols)?;
        let key = (axis, index, None, false);
        let (pred, input) = self.decode(sam, &key, prompt).await?;
        let l = pred.low_res_size;
        let low_res_logits = pred
            .low_res_logits
            .get(..l * l)
            .ok_or_else(|| SegmentError::Prompt("the model returned no mask".into()))?
            .to_vec();
        // The predictor's own masks are cut at 0: upscale its logits again to cut elsewhere.
        let logits = postprocess_masks(&low_res_logits, l, l, sam.img_size(), input, (rows, cols))
            .map_err(PredictError::from)?;
        if logits.len() != rows * cols {
            return Err(SegmentError::Prompt(
                "the model's mask does not fit its slice".into(),
            ));
        }
        Ok(SliceScores {
            rows,
            cols,
            logits,
            iou: pred.iou.first().copied().unwrap_or(0.0),
            low_res_logits,
            bbox: prompt.bbox,
        })
    }

    /// Writes a slice mask into a canonical label volume with `label`.
    pub fn paste(
        &self,
        canonical: &mut [i32],
        axis: usize,
        index: usize,
        mask: &SliceMask,
        label: i32,
    ) -> Result<(), SegmentError> {
        let dims = self.image.dims;
        if canonical.len() != dims.iter().product::<usize>() {
            return Err(SegmentError::Prompt(
                "label volume does not match the image".into(),
            ));
        }
        for row in 0..mask.rows {
            for col in 0..mask.cols {
                if mask.data[row * mask.cols + col] != 0 {
                    let [x, y, z] = slicing::slice_to_voxel(axis, index, col, row)?;
                    canonical[x + dims[0] * (y + dims[1] * z)] = label;
                }
            }
        }
        Ok(())
    }

    /// A canonical label volume back in the source's voxel order, affine and header.
    pub fn to_source(&self, canonical: Vec<i32>) -> Result<LabelVolume, SegmentError> {
        let vol = self.image.with_data(canonical)?;
        Ok(self.orientation.from_canonical(&vol)?)
    }
}
