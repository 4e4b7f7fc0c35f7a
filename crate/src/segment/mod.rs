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
pub use propagate::StopRules;

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
    pub async fn encode(
        &mut self,
        sam: &Sam,
        axis: usize,
        index: usize,
    ) -> Result<(), SegmentError> {
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
    fn prompts_outside_the_slice_are_errors_not_panics() {
        let device = crate::backend::cpu();
        let g = crate::model::Geometry {
            embed_dim: 16,
            depth: 1,
            num_heads: 1,
            global_attn_indexes: vec![0],
            image_size: 32,
            patch_size: 8,
            window_size: 4,
        };
        let sam = g.config().init(&device);
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
        let vol =
            pollster::block_on(s.propagate(&sam, 2, 1, &ok, &StopRules::default(), &mut |_, _| {}))
                .unwrap();
        assert_eq!(vol.len(), s.dims().iter().product::<usize>());
    }
}
