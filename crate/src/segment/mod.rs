//! Segmenting an MRI volume slice by slice with SAM: what the CLI (`segment`, `evaluate`)
//! and the browser share.
//!
//! A [`Session`] holds one volume reoriented to canonical RAS+ (the orientation the model
//! was trained in), its intensity normaliser, and the image embeddings of the slices
//! encoded so far, so that many prompts on one slice cost one encoder pass.

pub mod prompts;
mod propagate;

use std::collections::HashMap;

use burn::prelude::*;

use crate::data::slicing::{self, Normalizer, Plane};
use crate::data::{DataError, LabelVolume, Orientation, Volume};
use crate::model::predictor::{PredictError, Prediction, Prompt, SamPredictor};
use crate::model::sam::MASK_THRESHOLD;
use crate::model::transforms::postprocess_masks;
use crate::model::Sam;

pub use crate::model::io::Focus;
pub use prompts::{bbox, interior_point, PromptFile, SlicePrompt};
pub use propagate::{End, Propagation, StopReason, StopRules};

/// Why a segmentation could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Predict(#[from] PredictError),
    #[error("invalid prompt: {0}")]
    Prompt(String),
}

/// Where a focused model predicts: defined with the model file's metadata, placed here.
impl Focus {
    /// `[row0, col0, side]` of the window for `prompt` on a `rows × cols` slice: around its
    /// box, or else its first point, and grown to hold every point. Refining clicks inside
    /// the window thus keep it, and its encoding.
    pub fn window(
        &self,
        prompt: &SlicePrompt,
        rows: usize,
        cols: usize,
    ) -> Result<[usize; 3], SegmentError> {
        let first = prompt.points.first().map(|[u, v, _]| [*u, *v, *u, *v]);
        let anchor = prompt
            .bbox
            .or(first)
            .ok_or_else(|| SegmentError::Prompt("give a point or a box".into()))?;
        let w = self.around(anchor, rows, cols);
        let inside = |u: f32, v: f32| {
            u >= w[1] as f32
                && v >= w[0] as f32
                && u < (w[1] + w[2]) as f32
                && v < (w[0] + w[2]) as f32
        };
        if prompt.points.iter().all(|[u, v, _]| inside(*u, *v)) {
            return Ok(w);
        }
        let all = prompt
            .points
            .iter()
            .fold(anchor, |[a, b, c, d], [u, v, _]| {
                [a.min(*u), b.min(*v), c.max(*u), d.max(*v)]
            });
        Ok(self.around(all, rows, cols))
    }

    fn around(&self, [u0, v0, u1, v1]: [f32; 4], rows: usize, cols: usize) -> [usize; 3] {
        let need = (self.context * (u1 - u0 + 1.0).max(v1 - v0 + 1.0)).ceil() as usize;
        let side = need.max(self.min_side).min(rows).min(cols).max(1);
        let start = |lo: f32, hi: f32, n: usize| {
            let c = (lo + hi + 1.0) / 2.0;
            ((c - side as f32 / 2.0).round().max(0.0) as usize).min(n - side)
        };
        [start(v0, v1, rows), start(u0, u1, cols), side]
    }
}

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
}

struct Encoded {
    embedding: Tensor<4>,
    original: (usize, usize),
    input: (usize, usize),
    last_use: u64,
}

/// Embeddings kept per session: one slice is `256 × g × g` floats (1 MiB at g = 32).
const MAX_CACHED_SLICES: usize = 96;

/// Axis, slice index, window (`[row0, col0, side]`; None: the whole slice), mirrored.
type CacheKey = (usize, usize, Option<[usize; 3]>, bool);

/// One volume being segmented.
pub struct Session {
    image: Volume<f32>,
    orientation: Orientation,
    normalizer: Normalizer,
    device: Device,
    cache: HashMap<CacheKey, Encoded>,
    clock: u64,
    focus: Option<Focus>,
    flip_average: bool,
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
            cache: HashMap::new(),
            clock: 0,
            focus: None,
            flip_average: false,
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

    pub fn is_encoded(&self, axis: usize, index: usize) -> bool {
        self.cache.contains_key(&(axis, index, None, false))
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
        self.clock += 1;
        let key = (axis, index, window, mirrored);
        if let Some(e) = self.cache.get_mut(&key) {
            e.last_use = self.clock;
            return Ok(());
        }
        let mut plane = slicing::slice(&self.image, axis, index)?;
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
                .for_each(<[f32]>::reverse);
        }
        let rgb = self.normalizer.to_rgb(&plane);
        let predictor = SamPredictor::new(sam, self.device.clone());
        let (x, input) = predictor.preprocess(&rgb, plane.rows, plane.cols)?;
        let embedding = sam.embed(x);
        if self.cache.len() >= MAX_CACHED_SLICES {
            if let Some(oldest) = self
                .cache
                .iter()
                .min_by_key(|(_, e)| e.last_use)
                .map(|(k, _)| *k)
            {
                self.cache.remove(&oldest);
            }
        }
        self.cache.insert(
            key,
            Encoded {
                embedding,
                original: (plane.rows, plane.cols),
                input,
                last_use: self.clock,
            },
        );
        Ok(())
    }

    /// Drops every cached embedding (e.g. after the model changed).
    pub fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// One mask for a prompt, predicted on a square window around the prompt that is
    /// enlarged to the model input, then pasted back into the whole slice.
    async fn predict_focused(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        prompt: &SlicePrompt,
        focus: Focus,
    ) -> Result<SliceMask, SegmentError> {
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
        let m: Vec<u8> = postprocess_masks(&logits, l, l, sam.img_size(), input, (side, side))
            .map_err(PredictError::from)?
            .into_iter()
            .map(|v| u8::from(v > MASK_THRESHOLD))
            .collect();
        if m.len() != side * side {
            return Err(SegmentError::Prompt(
                "the model's mask does not fit its window".into(),
            ));
        }
        let mut data = vec![0u8; rows * cols];
        for (r, row) in m.chunks_exact(side).enumerate() {
            data[(r0 + r) * cols + c0..][..side].copy_from_slice(row);
        }
        Ok(SliceMask {
            rows,
            cols,
            data,
            iou,
            low_res_logits: Vec::new(),
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
        let p = Prompt {
            points: prompt
                .points
                .iter()
                .map(|[u, v, l]| ([*u, *v], *l))
                .collect(),
            bbox: prompt.bbox,
            mask_input: prompt.mask_input.clone(),
            multimask: false,
            structure: prompt.structure,
        };
        Ok((predictor.predict(&p).await?, e.input))
    }

    /// One mask for a prompt on a canonical slice (encodes the slice, or with a focus the
    /// window around the prompt, first if needed).
    pub async fn predict(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        prompt: &SlicePrompt,
    ) -> Result<SliceMask, SegmentError> {
        if let Some(f) = self.focus {
            return self.predict_focused(sam, axis, index, prompt, f).await;
        }
        self.encode(sam, axis, index).await?;
        let (rows, cols) = self.plane_size(axis)?;
        prompt.check(rows, cols)?;
        let (pred, _) = self
            .decode(sam, &(axis, index, None, false), prompt)
            .await?;
        let data = pred
            .mask(0)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| SegmentError::Prompt("the model returned no mask".into()))?;
        let l = pred.low_res_size;
        Ok(SliceMask {
            rows,
            cols,
            data,
            iou: pred.iou.first().copied().unwrap_or(0.0),
            low_res_logits: pred.low_res_logits[..l * l].to_vec(),
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

#[cfg(all(test, feature = "ndarray"))]
mod tests {
    use super::*;

    fn oblique_volume() -> Volume<f32> {
        // Stored axes: 0 = superior→inferior, 1 = right→left, 2 = posterior→anterior.
        let dims = [6, 7, 5];
        let affine = [
            [0.0, -1.0, 0.0, 3.0],
            [0.0, 0.0, 1.0, -2.0],
            [-1.0, 0.0, 0.0, 4.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let data = (0..dims.iter().product::<usize>())
            .map(|i| i as f32)
            .collect();
        Volume::new(dims, data, affine).unwrap()
    }

    #[test]
    fn pasted_masks_land_on_the_same_world_position_in_the_source() {
        let src = oblique_volume();
        let s = Session::new(&src, crate::backend::cpu()).unwrap();
        let d = s.dims();
        let (axis, index, row, col) = (2, 1, 3, 4);
        let mut data = vec![0u8; d[1] * d[0]];
        let (rows, cols) = (d[1], d[0]);
        data[row * cols + col] = 1;
        let mask = SliceMask {
            rows,
            cols,
            data,
            iou: 1.0,
            low_res_logits: vec![],
        };
        let mut canon = vec![0i32; d.iter().product()];
        s.paste(&mut canon, axis, index, &mask, 7).unwrap();
        let out = s.to_source(canon).unwrap();
        assert_eq!(out.dims, src.dims);
        assert_eq!(out.affine, src.affine);
        let hits: Vec<usize> = (0..out.data.len()).filter(|i| out.data[*i] == 7).collect();
        assert_eq!(hits.len(), 1);
        let i = hits[0];
        let sv = [
            i % src.dims[0],
            (i / src.dims[0]) % src.dims[1],
            i / (src.dims[0] * src.dims[1]),
        ];
        let cv = slicing::slice_to_voxel(axis, index, col, row).unwrap();
        let to_f = |v: [usize; 3]| [v[0] as f64, v[1] as f64, v[2] as f64];
        let w_src = src.voxel_to_world(to_f(sv));
        let w_can = s.canonical_image().voxel_to_world(to_f(cv));
        for k in 0..3 {
            assert!((w_src[k] - w_can[k]).abs() < 1e-9, "{w_src:?} vs {w_can:?}");
        }
        // The image itself went through the same mapping.
        assert_eq!(
            s.canonical_image().get(cv[0], cv[1], cv[2]),
            src.get(sv[0], sv[1], sv[2])
        );
    }

    #[test]
    fn focus_windows_hold_the_prompt_and_stay_inside_the_slice() {
        let f = Focus {
            context: 2.0,
            min_side: 8,
        };
        let boxed = |b| SlicePrompt {
            bbox: Some(b),
            ..Default::default()
        };
        // A 10 × 6 box: side 20, centred on the box.
        assert_eq!(
            f.window(&boxed([20.0, 30.0, 29.0, 35.0]), 64, 64).unwrap(),
            [23, 15, 20]
        );
        // Near the border the window shifts inside; it never exceeds the slice.
        assert_eq!(
            f.window(&boxed([0.0, 0.0, 3.0, 3.0]), 64, 64).unwrap(),
            [0, 0, 8]
        );
        assert_eq!(
            f.window(&boxed([0.0, 0.0, 40.0, 9.0]), 64, 30).unwrap(),
            [0, 0, 30]
        );
        // One click: the minimum side around it; a second click inside keeps the window,
        // one outside grows it to hold both.
        let click = |pts: Vec<[f32; 3]>| SlicePrompt {
            points: pts,
            ..Default::default()
        };
        let one = f.window(&click(vec![[32.0, 32.0, 1.0]]), 64, 64).unwrap();
        assert_eq!(one, [29, 29, 8]);
        let near = click(vec![[32.0, 32.0, 1.0], [34.0, 30.0, 0.0]]);
        assert_eq!(f.window(&near, 64, 64).unwrap(), one);
        let far = click(vec![[32.0, 32.0, 1.0], [50.0, 32.0, 0.0]]);
        let [r0, c0, side] = f.window(&far, 64, 64).unwrap();
        assert!(
            c0 <= 32 && c0 + side > 50 && r0 <= 32 && r0 + side > 32,
            "{r0} {c0} {side}"
        );
        assert!(f.window(&SlicePrompt::default(), 64, 64).is_err());
    }

    /// A random SAM small enough for unit tests (32-px input).
    fn tiny_sam(device: &Device) -> Sam {
        let g = crate::model::Geometry {
            embed_dim: 16,
            depth: 1,
            num_heads: 1,
            global_attn_indexes: vec![0],
            image_size: 32,
            patch_size: 8,
            window_size: 4,
        };
        g.config().init(device)
    }

    /// Averaging with the mirrored window makes predictions mirror-symmetric: the mirrored
    /// image with the mirrored prompt gives the mirrored mask (a lone pass need not).
    #[test]
    fn flip_averaged_predictions_commute_with_mirroring() {
        let device = crate::backend::cpu();
        let sam = tiny_sam(&device);
        let n = 12;
        let mut eye = [[0.0; 4]; 4];
        (0..4).for_each(|i| eye[i][i] = 1.0);
        let at = |x: usize, y: usize, z: usize| ((x * 37 + y * 11 + z * 5) % 101) as f32;
        let image = |mirror: bool| {
            let data = (0..n * n * 3)
                .map(|i| {
                    let (x, y, z) = (i % n, (i / n) % n, i / (n * n));
                    at(if mirror { n - 1 - x } else { x }, y, z)
                })
                .collect();
            Volume::new([n, n, 3], data, eye).unwrap()
        };
        let last = (n - 1) as f32;
        let prompt = SlicePrompt {
            points: vec![[4.0, 6.0, 1.0], [8.0, 3.0, 0.0]],
            bbox: Some([2.0, 2.0, 7.0, 9.0]),
            ..Default::default()
        };
        let mirrored = SlicePrompt {
            points: vec![[last - 4.0, 6.0, 1.0], [last - 8.0, 3.0, 0.0]],
            bbox: Some([last - 7.0, 2.0, last - 2.0, 9.0]),
            ..Default::default()
        };
        let predict = |vol: &Volume<f32>, p: &SlicePrompt| {
            let mut s = Session::new(vol, device.clone()).unwrap();
            // The window is the whole (square) slice either way.
            s.set_focus(Some(Focus {
                context: 100.0,
                min_side: n,
            }));
            s.set_flip_average(true);
            pollster::block_on(s.predict(&sam, 2, 1, p)).unwrap()
        };
        let a = predict(&image(false), &prompt);
        let b = predict(&image(true), &mirrored);
        let flipped: Vec<u8> = b
            .data
            .chunks_exact(n)
            .flat_map(|row| row.iter().rev().copied())
            .collect();
        assert_eq!(a.data, flipped);
        assert!((a.iou - b.iou).abs() < 1e-4, "{} vs {}", a.iou, b.iou);
        eprintln!("mask area {} of {}", a.area(), n * n);
    }

    #[test]
    fn a_focused_prediction_on_a_window_of_the_whole_slice_is_the_plain_prediction() {
        let device = crate::backend::cpu();
        let sam = tiny_sam(&device);
        let n = 12;
        let mut eye = [[0.0; 4]; 4];
        (0..4).for_each(|i| eye[i][i] = 1.0);
        let data = (0..n * n * 3).map(|i| ((i * 37) % 101) as f32).collect();
        let vol = Volume::new([n, n, 3], data, eye).unwrap();
        let prompt = SlicePrompt {
            points: vec![[5.0, 6.0, 1.0]],
            bbox: Some([3.0, 2.0, 8.0, 9.0]),
            ..Default::default()
        };
        let mut plain = Session::new(&vol, device.clone()).unwrap();
        let a = pollster::block_on(plain.predict(&sam, 2, 1, &prompt)).unwrap();
        let mut focused = Session::new(&vol, device.clone()).unwrap();
        focused.set_focus(Some(Focus {
            context: 10.0,
            min_side: 1,
        }));
        let b = pollster::block_on(focused.predict(&sam, 2, 1, &prompt)).unwrap();
        assert_eq!(a.data, b.data);
        assert!((a.iou - b.iou).abs() < 1e-6);
        // A smaller window: the mask is the window's, zero outside it.
        focused.set_focus(Some(Focus {
            context: 1.0,
            min_side: 1,
        }));
        let c = pollster::block_on(focused.predict(&sam, 2, 1, &prompt)).unwrap();
        assert_eq!((c.rows, c.cols), (n, n));
        let [r0, c0, side] = Focus {
            context: 1.0,
            min_side: 1,
        }
        .window(&prompt, n, n)
        .unwrap();
        for r in 0..n {
            for col in 0..n {
                let inside = (r0..r0 + side).contains(&r) && (c0..c0 + side).contains(&col);
                assert!(
                    inside || c.data[r * n + col] == 0,
                    "({r}, {col}) outside the window"
                );
            }
        }
    }

    #[test]
    fn prompts_outside_the_slice_are_errors_not_panics() {
        let device = crate::backend::cpu();
        let sam = tiny_sam(&device);
        let mut s = Session::new(&oblique_volume(), device).unwrap();
        for p in [
            SlicePrompt {
                points: vec![[99.0, 1.0, 1.0]],
                ..Default::default()
            },
            SlicePrompt {
                points: vec![[1.0, 1.0, 3.0]],
                ..Default::default()
            },
            SlicePrompt {
                bbox: Some([3.0, 1.0, 1.0, 2.0]),
                ..Default::default()
            },
            SlicePrompt::default(),
        ] {
            assert!(
                pollster::block_on(s.predict(&sam, 2, 1, &p)).is_err(),
                "{p:?}"
            );
        }
        assert!(pollster::block_on(s.predict(
            &sam,
            2,
            99,
            &SlicePrompt {
                points: vec![[1.0, 1.0, 1.0]],
                ..Default::default()
            }
        ))
        .is_err());
        assert!(pollster::block_on(s.predict(
            &sam,
            5,
            0,
            &SlicePrompt {
                points: vec![[1.0, 1.0, 1.0]],
                ..Default::default()
            }
        ))
        .is_err());
        let ok = pollster::block_on(s.predict(
            &sam,
            2,
            1,
            &SlicePrompt {
                points: vec![[1.0, 1.0, 1.0]],
                ..Default::default()
            },
        ))
        .unwrap();
        assert_eq!((ok.rows, ok.cols), (s.dims()[1], s.dims()[0]));
        let vol = pollster::block_on(s.propagate(
            &sam,
            2,
            1,
            &ok,
            None,
            &StopRules::default(),
            &mut |_, _| {},
        ))
        .unwrap();
        assert_eq!(vol.mask.len(), s.dims().iter().product::<usize>());
        // Each direction ends on a slice it kept, at or beyond the seed's.
        assert!(
            vol.ends[0].last >= 1 && vol.ends[1].last <= 1,
            "{:?}",
            vol.ends
        );
    }
}
