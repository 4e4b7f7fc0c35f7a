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
use crate::model::predictor::{PredictError, Prompt, SamPredictor};
use crate::model::Sam;

pub use prompts::{bbox, interior_point, PromptFile, SlicePrompt};

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

/// One volume being segmented.
pub struct Session {
    image: Volume<f32>,
    orientation: Orientation,
    normalizer: Normalizer,
    device: Device,
    cache: HashMap<(usize, usize), Encoded>,
    clock: u64,
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

    pub fn is_encoded(&self, axis: usize, index: usize) -> bool {
        self.cache.contains_key(&(axis, index))
    }

    /// Runs the image encoder on a slice (no-op when cached).
    pub async fn encode(&mut self, sam: &Sam, axis: usize, index: usize) -> Result<(), SegmentError> {
        self.clock += 1;
        if let Some(e) = self.cache.get_mut(&(axis, index)) {
            e.last_use = self.clock;
            return Ok(());
        }
        let plane = slicing::slice(&self.image, axis, index)?;
        let rgb = self.normalizer.to_rgb(&plane);
        let predictor = SamPredictor::new(sam, self.device.clone());
        let (x, input) = predictor.preprocess(&rgb, plane.rows, plane.cols)?;
        let embedding = sam.embed(x);
        if self.cache.len() >= MAX_CACHED_SLICES {
            if let Some(oldest) = self.cache.iter().min_by_key(|(_, e)| e.last_use).map(|(k, _)| *k) {
                self.cache.remove(&oldest);
            }
        }
        self.cache.insert(
            (axis, index),
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

    /// One mask for a prompt on a canonical slice (encodes the slice first if needed).
    pub async fn predict(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
        prompt: &SlicePrompt,
    ) -> Result<SliceMask, SegmentError> {
        self.encode(sam, axis, index).await?;
        let e = self
            .cache
            .get(&(axis, index))
            .ok_or_else(|| SegmentError::Prompt("slice not encoded".into()))?;
        let mut predictor = SamPredictor::new(sam, self.device.clone());
        predictor.set_embedding(e.embedding.clone(), e.original, e.input);
        let (rows, cols) = e.original;
        prompt.check(rows, cols)?;
        let p = Prompt {
            points: prompt
                .points
                .iter()
                .map(|[u, v, l]| ([*u, *v], *l))
                .collect(),
            bbox: prompt.bbox,
            mask_input: prompt.mask_input.clone(),
            multimask: false,
        };
        let pred = predictor.predict(&p).await?;
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
            return Err(SegmentError::Prompt("label volume does not match the image".into()));
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
