//! Prompt encoder: points and box corners as random-Fourier positions plus learned type
//! embeddings (sparse), and a mask prompt or the no-mask embedding (dense).

use std::f64::consts::PI;
use std::sync::{Arc, Mutex};

use super::kernels::gelu;
use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::prelude::*;
use burn::tensor::Distribution;

use super::common::{LayerNorm2d, NamedParams, ParamRef, Visitor};
use crate::weights::WeightsError;

/// Rows of the structure embedding: the eight subcortical kinds (thalamus, caudate, putamen,
/// pallidum, hippocampus, amygdala, accumbens, ventral DC) and the lateral ventricle. Kinds,
/// not sides: the box or point already says where, and a mirrored slice keeps its kind.
pub const STRUCTURE_KINDS: usize = 9;

/// Key of the structure embeddings under the prompt encoder's prefix.
pub const STRUCTURE_KEY: &str = "structure_embeddings.weight";

/// Point label meaning "padding, not a point" (Meta's `-1`).
pub const LABEL_PAD: f32 = -1.0;
pub const LABEL_NEGATIVE: f32 = 0.0;
pub const LABEL_POSITIVE: f32 = 1.0;

/// Geometry of the prompt encoder.
#[derive(Config, Debug, PartialEq)]
pub struct PromptEncoderConfig {
    /// Prompt embedding width. Default: 256.
    #[config(default = 256)]
    pub embed_dim: usize,
    /// Side of the image embedding in tokens. Default: 64.
    #[config(default = 64)]
    pub image_embedding_size: usize,
    /// Side of the (padded, square) model input in pixels. Default: 1024.
    #[config(default = 1024)]
    pub input_image_size: usize,
    /// Hidden channels of the mask downscaling path. Default: 16.
    #[config(default = 16)]
    pub mask_in_chans: usize,
}

impl PromptEncoderConfig {
    pub fn init(&self, device: &Device) -> PromptEncoder {
        let d = self.embed_dim;
        let m = self.mask_in_chans;
        let embedding = || {
            Param::from_tensor(Tensor::random(
                [1, d],
                Distribution::Normal(0.0, 1.0),
                device,
            ))
        };
        PromptEncoder {
            gaussian_matrix: Tensor::random([2, d / 2], Distribution::Normal(0.0, 1.0), device),
            point_embeddings: (0..4).map(|_| embedding()).collect(),
            not_a_point_embed: embedding(),
            mask_conv1: Conv2dConfig::new([1, m / 4], [2, 2])
                .with_stride([2, 2])
                .init(device),
            mask_ln1: LayerNorm2d::new(m / 4, device),
            mask_conv2: Conv2dConfig::new([m / 4, m], [2, 2])
                .with_stride([2, 2])
                .init(device),
            mask_ln2: LayerNorm2d::new(m, device),
            mask_conv3: Conv2dConfig::new([m, d], [1, 1]).init(device),
            no_mask_embed: embedding(),
            structure_embeddings: None,
            image_embedding_size: self.image_embedding_size,
            input_image_size: self.input_image_size,
            dense_pe_cache: DensePeCache::default(),
        }
    }
}

/// The dense positional encoding last computed, with the grid side and device it is for:
/// it depends only on the fixed Fourier matrix, so every decode of a model can share it.
#[derive(Clone, Debug, Default)]
pub struct DensePeCache(Arc<Mutex<Option<(usize, Device, Tensor<3>)>>>);

/// SAM's prompt encoder (`prompt_encoder.*` in the checkpoints).
#[derive(Module, Debug)]
pub struct PromptEncoder {
    /// Random Fourier feature matrix `[2, embed_dim / 2]` (a fixed buffer, not trained).
    pub gaussian_matrix: Tensor<2>,
    /// Positive point, negative point, box top-left, box bottom-right; each `[1, embed_dim]`.
    pub point_embeddings: Vec<Param<Tensor<2>>>,
    pub not_a_point_embed: Param<Tensor<2>>,
    pub mask_conv1: Conv2d,
    pub mask_ln1: LayerNorm2d,
    pub mask_conv2: Conv2d,
    pub mask_ln2: LayerNorm2d,
    pub mask_conv3: Conv2d,
    pub no_mask_embed: Param<Tensor<2>>,
    /// Our extension, absent from Meta's checkpoints: one token per structure kind
    /// `[STRUCTURE_KINDS, embed_dim]`, appended to the sparse prompt when the user says which
    /// structure a prompt is for. Without it (or without a kind) the model is SAM as is.
    pub structure_embeddings: Option<Param<Tensor<2>>>,
    pub image_embedding_size: usize,
    pub input_image_size: usize,
    /// Emptied whenever the Fourier matrix is (re)loaded.
    #[module(skip)]
    pub dense_pe_cache: DensePeCache,
}

impl PromptEncoder {
    pub fn embed_dim(&self) -> usize {
        self.no_mask_embed.dims()[1]
    }

    /// Gives the encoder fresh structure embeddings (random, as SAM's other prompt
    /// embeddings) of `rows` kinds, unless it has some.
    pub fn add_structures(&mut self, rows: usize, device: &Device) {
        if self.structure_embeddings.is_none() {
            let c = self.embed_dim();
            self.structure_embeddings = Some(Param::from_tensor(Tensor::random(
                [rows, c],
                Distribution::Normal(0.0, 1.0),
                device,
            )));
        }
    }

    /// Whether prompts can name their structure.
    pub fn knows_structures(&self) -> bool {
        self.structure_embeddings.is_some()
    }

    /// Fourier features of coordinates already normalised to [0, 1]: `[.., 2]` → `[.., C]`.
    fn pe_encoding<const D: usize>(&self, coords: Tensor<D>) -> Tensor<D> {
        let coords = coords * 2.0 - 1.0;
        let dims = coords.dims();
        let lead: usize = dims[..D - 1].iter().product();
        let proj = coords
            .reshape([lead, 2])
            .matmul(self.gaussian_matrix.clone())
            * (2.0 * PI);
        let enc = Tensor::cat(vec![proj.clone().sin(), proj.cos()], 1);
        let mut out = dims;
        out[D - 1] = self.embed_dim();
        enc.reshape(out)
    }

    /// Positional encoding of pixel coordinates `[B, N, 2]` (x, y) in model-input pixels.
    fn pe_of_coords(&self, coords: Tensor<3>) -> Tensor<3> {
        self.pe_encoding(coords / self.input_image_size as f64)
    }

    /// Dense positional encoding of the embedding grid as the decoder's image tokens take
    /// it: `[1, E², C]`, cells in raster order (Meta's `get_dense_pe` is `[1, C, E, E]`),
    /// computed once per grid side and device (Meta recomputes it for every decode).
    pub fn dense_pe(&self, device: &Device) -> Tensor<3> {
        let e = self.image_embedding_size;
        // A poisoned lock only means another decode panicked; the value is still whole.
        let mut cache = self
            .dense_pe_cache
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((side, dev, pe)) = cache.as_ref() {
            if *side == e && dev == device {
                return pe.clone();
            }
        }
        let pe = self.compute_dense_pe(device);
        *cache = Some((e, device.clone(), pe.clone()));
        pe
    }

    fn compute_dense_pe(&self, device: &Device) -> Tensor<3> {
        let e = self.image_embedding_size;
        let mut grid = Vec::with_capacity(e * e * 2);
        for y in 0..e {
            for x in 0..e {
                // Cell centres, as Meta's cumsum(ones) - 0.5.
                grid.push((x as f32 + 0.5) / e as f32);
                grid.push((y as f32 + 0.5) / e as f32);
            }
        }
        let grid = Tensor::<3>::from_data(TensorData::new(grid, [e, e, 2]), device);
        self.pe_encoding(grid).reshape([1, e * e, self.embed_dim()])
    }

    /// # Shapes
    /// - `points`: coordinates `[B, N, 2]` (x, y, model-input pixels) and labels `[B, N]`
    ///   (1 positive, 0 negative, -1 padding)
    /// - `boxes`: `[B, 4]` (x0, y0, x1, y1)
    /// - `masks`: `[B, 1, 4E, 4E]` low-resolution logits
    /// - `structures`: `[B]` structure kinds (ignored by a model without structure embeddings)
    /// - returns sparse `[B, N', C]` and dense embeddings in the decoder's token layout:
    ///   `[B, E², C]` from a mask, `[1, 1, C]` (every cell alike) without (Meta's: `[B, C, E, E]`)
    pub fn forward(
        &self,
        points: Option<(Tensor<3>, Tensor<2>)>,
        boxes: Option<Tensor<2>>,
        masks: Option<Tensor<4>>,
        structures: Option<Tensor<1, Int>>,
        device: &Device,
    ) -> (Tensor<3>, Tensor<3>) {
        let c = self.embed_dim();
        let batch = points
            .as_ref()
            .map(|(p, _)| p.dims()[0])
            .or_else(|| boxes.as_ref().map(|b| b.dims()[0]))
            .or_else(|| masks.as_ref().map(|m| m.dims()[0]))
            .unwrap_or(1);
        let mut sparse = Vec::new();
        if let Some((coords, labels)) = points {
            sparse.push(self.embed_points(coords, labels, boxes.is_none()));
        }
        if let Some(b) = boxes {
            sparse.push(self.embed_boxes(b));
        }
        if let (Some(table), Some(kinds)) = (&self.structure_embeddings, structures) {
            let [b] = kinds.dims();
            sparse.push(table.val().select(0, kinds).reshape([b, 1, c]));
        }
        let sparse = if sparse.is_empty() {
            Tensor::zeros([batch, 0, c], device)
        } else {
            Tensor::cat(sparse, 1)
        };
        let dense = match masks {
            Some(m) => self.embed_masks(m),
            None => self.no_mask_embed.val().reshape([1, 1, c]),
        };
        (sparse, dense)
    }

    fn embed_points(&self, coords: Tensor<3>, labels: Tensor<2>, pad: bool) -> Tensor<3> {
        let [b, _, _] = coords.dims();
        let device = coords.device();
        let coords = coords + 0.5; // pixel centres
        let (coords, labels) = if pad {
            // Without a box, Meta appends one padding point.
            let zeros = Tensor::zeros([b, 1, 2], &device);
            let pads = Tensor::full([b, 1], LABEL_PAD, &device);
            (
                Tensor::cat(vec![coords, zeros], 1),
                Tensor::cat(vec![labels, pads], 1),
            )
        } else {
            (coords, labels)
        };
        let pe = self.pe_of_coords(coords); // [B, N, C]
        let is = |v: f32| labels.clone().equal_elem(v).float().unsqueeze_dim::<3>(2); // [B, N, 1]
        let (pad_m, neg_m, pos_m) = (is(LABEL_PAD), is(LABEL_NEGATIVE), is(LABEL_POSITIVE));
        let c = self.embed_dim();
        let emb = |p: &Param<Tensor<2>>| p.val().reshape([1, 1, c]);
        pe * (pad_m.clone().neg() + 1.0)
            + pad_m * emb(&self.not_a_point_embed)
            + neg_m * emb(&self.point_embeddings[0])
            + pos_m * emb(&self.point_embeddings[1])
    }

    fn embed_boxes(&self, boxes: Tensor<2>) -> Tensor<3> {
        let [b, _] = boxes.dims();
        let corners = (boxes + 0.5).reshape([b, 2, 2]);
        let pe = self.pe_of_coords(corners); // [B, 2, C]
        let c = self.embed_dim();
        let corner = Tensor::cat(
            vec![
                self.point_embeddings[2].val().reshape([1, 1, c]),
                self.point_embeddings[3].val().reshape([1, 1, c]),
            ],
            1,
        );
        pe + corner
    }

    /// `[B, 1, 4E, 4E]` logits → `[B, E², C]`, channels-last throughout: the two 2×2
    /// stride-2 convolutions as per-patch matmuls, the 1×1 one as a plain matmul.
    fn embed_masks(&self, masks: Tensor<4>) -> Tensor<3> {
        let [b, _, s, _] = masks.dims();
        let x = masks.reshape([b, s, s, 1]);
        let x = gelu(self.mask_ln1.forward_last(patch_conv(&self.mask_conv1, x)));
        let x = gelu(self.mask_ln2.forward_last(patch_conv(&self.mask_conv2, x)));
        let [_, e, _, m] = x.dims();
        let [d, _, _, _] = self.mask_conv3.weight.dims();
        let w = self.mask_conv3.weight.val().reshape([d, m]).transpose();
        let y = x.reshape([b, e * e, m]).matmul(w.unsqueeze_dim(0));
        match &self.mask_conv3.bias {
            Some(bias) => y + bias.val().reshape([1, 1, d]),
            None => y,
        }
    }
}

/// A 2×2, stride-2 convolution on channels-last `[B, H, W, C]` → `[B, H/2, W/2, O]`: each
/// output pixel is its 2×2 patch, (dy, dx, c) flattened, times the kernel.
fn patch_conv(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    let [b, h, w, c] = x.dims();
    let [o, _, _, _] = conv.weight.dims();
    let (h2, w2) = (h / 2, w / 2);
    let patches = x
        .reshape([b, h2, 2, w2, 2, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, h2 * w2, 4 * c]);
    let k = conv
        .weight
        .val()
        .permute([2, 3, 1, 0]) // [dy, dx, C, O]
        .reshape([1, 4 * c, o]);
    let y = patches.matmul(k);
    let y = match &conv.bias {
        Some(bias) => y + bias.val().reshape([1, 1, o]),
        None => y,
    };
    y.reshape([b, h2, w2, o])
}

impl NamedParams for PromptEncoder {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        // A fresh cache, not a cleared shared one: clones of the old model keep theirs.
        self.dense_pe_cache = DensePeCache::default();
        f(
            &format!("{prefix}.pe_layer.positional_encoding_gaussian_matrix"),
            ParamRef::Buffer2(&mut self.gaussian_matrix),
        )?;
        for (i, p) in self.point_embeddings.iter_mut().enumerate() {
            f(
                &format!("{prefix}.point_embeddings.{i}.weight"),
                ParamRef::D2(p),
            )?;
        }
        f(
            &format!("{prefix}.not_a_point_embed.weight"),
            ParamRef::D2(&mut self.not_a_point_embed),
        )?;
        self.mask_conv1
            .visit_named(&format!("{prefix}.mask_downscaling.0"), f)?;
        self.mask_ln1
            .visit_named(&format!("{prefix}.mask_downscaling.1"), f)?;
        self.mask_conv2
            .visit_named(&format!("{prefix}.mask_downscaling.3"), f)?;
        self.mask_ln2
            .visit_named(&format!("{prefix}.mask_downscaling.4"), f)?;
        self.mask_conv3
            .visit_named(&format!("{prefix}.mask_downscaling.6"), f)?;
        f(
            &format!("{prefix}.no_mask_embed.weight"),
            ParamRef::D2(&mut self.no_mask_embed),
        )?;
        match &mut self.structure_embeddings {
            Some(p) => f(&format!("{prefix}.{STRUCTURE_KEY}"), ParamRef::D2(p)),
            None => Ok(()),
        }
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;

    /// Meta's dense encoding at cell (x, y), channel j: sin (j < C/2) or cos of
    /// 2π (u·G[0, j'] + v·G[1, j']) with u, v the cell centre scaled to [-1, 1].
    fn expected(g: &[f32], c: usize, e: usize, x: usize, y: usize, j: usize) -> f32 {
        let half = c / 2;
        let (u, v) = (
            2.0 * (x as f32 + 0.5) / e as f32 - 1.0,
            2.0 * (y as f32 + 0.5) / e as f32 - 1.0,
        );
        let jj = j % half;
        let a = 2.0 * std::f32::consts::PI * (u * g[jj] + v * g[half + jj]);
        if j < half {
            a.sin()
        } else {
            a.cos()
        }
    }

    #[test]
    fn the_cached_dense_pe_follows_a_reloaded_fourier_matrix() {
        let device = crate::backend::cpu();
        let (c, e) = (8, 4);
        let mut pe = PromptEncoderConfig::new()
            .with_embed_dim(c)
            .with_image_embedding_size(e)
            .with_input_image_size(64)
            .init(&device);
        let check = |pe: &PromptEncoder| {
            let g = pe.gaussian_matrix.to_data().try_to_vec::<f32>().unwrap();
            let got = pe.dense_pe(&device).to_data().try_to_vec::<f32>().unwrap();
            for j in 0..c {
                for y in 0..e {
                    for x in 0..e {
                        let want = expected(&g, c, e, x, y, j);
                        let have = got[(y * e + x) * c + j];
                        assert!((want - have).abs() < 1e-5, "{j} {y} {x}: {have} vs {want}");
                    }
                }
            }
            got
        };
        let first = check(&pe);
        assert_eq!(
            pe.dense_pe(&device).to_data().try_to_vec::<f32>().unwrap(),
            first
        );
        // Loading a checkpoint replaces the matrix: the encoding must follow it.
        pe.visit_named("p", &mut |_, r| {
            if let ParamRef::Buffer2(t) = r {
                *t = t.clone() * 3.0 + 0.25;
            }
            Ok(())
        })
        .unwrap();
        assert_ne!(check(&pe), first);
    }
}
