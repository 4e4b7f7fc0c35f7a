//! ViT image encoder: patch embedding, absolute positions, windowed and global attention
//! blocks with decomposed relative positions, and the convolutional neck.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::ops::PadMode;

use super::common::{
    chunked_attention, conv2d_matmul, Activation, LayerNorm2d, MlpBlock, NamedParams, ParamRef,
    Visitor,
};
use super::lora::{AttentionLora, LoraConfig, LoraTarget, MlpLora};
use crate::weights::{HostTensor, WeightsError};

/// Geometry of the ViT image encoder.
#[derive(Config, Debug, PartialEq)]
pub struct ImageEncoderConfig {
    /// Input image side in pixels. Default: 1024.
    #[config(default = 1024)]
    pub img_size: usize,
    /// Patch side in pixels. Default: 16.
    #[config(default = 16)]
    pub patch_size: usize,
    /// Token width. Default: 768 (ViT-B).
    #[config(default = 768)]
    pub embed_dim: usize,
    /// Number of transformer blocks. Default: 12.
    #[config(default = 12)]
    pub depth: usize,
    /// Attention heads per block. Default: 12.
    #[config(default = 12)]
    pub num_heads: usize,
    /// MLP hidden width over token width. Default: 4.
    #[config(default = 4)]
    pub mlp_ratio: usize,
    /// Channels of the output embedding (the prompt dimension). Default: 256.
    #[config(default = 256)]
    pub out_chans: usize,
    /// Side of the attention windows in tokens. Default: 14.
    #[config(default = 14)]
    pub window_size: usize,
    /// Blocks that attend globally instead of within windows. Default: [2, 5, 8, 11].
    #[config(default = "vec![2, 5, 8, 11]")]
    pub global_attn_indexes: Vec<usize>,
}

impl ImageEncoderConfig {
    /// Tokens per side: the embedding is `[out_chans, grid, grid]`.
    pub fn grid_size(&self) -> usize {
        self.img_size / self.patch_size
    }

    pub fn init(&self, device: &Device) -> ImageEncoder {
        let grid = self.grid_size();
        let blocks = (0..self.depth)
            .map(|i| {
                let window = if self.global_attn_indexes.contains(&i) {
                    0
                } else {
                    self.window_size
                };
                Block::new(self, window, device)
            })
            .collect();
        ImageEncoder {
            patch_embed: Conv2dConfig::new([3, self.embed_dim], [self.patch_size; 2])
                .with_stride([self.patch_size; 2])
                .init(device),
            pos_embed: Param::from_tensor(Tensor::zeros([1, grid, grid, self.embed_dim], device)),
            blocks,
            neck_conv1: Conv2dConfig::new([self.embed_dim, self.out_chans], [1, 1])
                .with_bias(false)
                .init(device),
            neck_ln1: LayerNorm2d::new(self.out_chans, device),
            neck_conv2: Conv2dConfig::new([self.out_chans, self.out_chans], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .with_bias(false)
                .init(device),
            neck_ln2: LayerNorm2d::new(self.out_chans, device),
        }
    }
}

/// SAM's image encoder (`image_encoder.*` in the checkpoints).
#[derive(Module, Debug)]
pub struct ImageEncoder {
    pub patch_embed: Conv2d,
    /// Absolute positions `[1, grid, grid, embed_dim]`.
    pub pos_embed: Param<Tensor<4>>,
    pub blocks: Vec<Block>,
    pub neck_conv1: Conv2d,
    pub neck_ln1: LayerNorm2d,
    pub neck_conv2: Conv2d,
    pub neck_ln2: LayerNorm2d,
}

impl ImageEncoder {
    /// # Shapes
    /// - input: `[B, 3, img_size, img_size]`, normalised and padded
    /// - output: `[B, out_chans, grid, grid]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = conv2d_matmul(&self.patch_embed, x).permute([0, 2, 3, 1]); // [B, h, w, C]
        let mut x = x + self.pos_embed.val();
        for block in &self.blocks {
            x = block.forward(x);
        }
        let x = x.permute([0, 3, 1, 2]);
        let x = self.neck_ln1.forward(conv2d_matmul(&self.neck_conv1, x));
        self.neck_ln2.forward(conv2d_matmul(&self.neck_conv2, x))
    }
}

impl ImageEncoder {
    /// Adds fresh adapters (B = 0, so outputs are unchanged) to every block.
    pub fn add_lora(&mut self, config: &LoraConfig, device: &Device) {
        let attention = config.targets.iter().any(|t| *t != LoraTarget::Mlp);
        let mlp = config.targets.contains(&LoraTarget::Mlp);
        for block in &mut self.blocks {
            let [dim, hidden] = block.mlp.lin1.weight.dims();
            block.attn.lora = attention.then(|| AttentionLora::new(dim, config, device));
            block.attn.merged_lora = None;
            block.mlp_lora = mlp.then(|| MlpLora::new(dim, hidden, config, device));
            block.merged_mlp_lora = None;
        }
    }

    pub fn has_lora(&self) -> bool {
        self.blocks
            .iter()
            .any(|b| b.attn.lora.is_some() || b.mlp_lora.is_some())
    }

    pub fn merge_lora(&mut self) {
        self.blocks.iter_mut().for_each(Block::merge_lora);
    }

    pub fn unmerge_lora(&mut self) {
        self.blocks.iter_mut().for_each(Block::unmerge_lora);
    }

    /// Names the adapter tensors `{prefix}.blocks.{i}.attn.lora_{q,k,v,proj}.{a,b}` and
    /// `{prefix}.blocks.{i}.mlp.lora_{lin1,lin2}.{a,b}` (`a` is `[in, rank]`, `b` is
    /// `[rank, out]`).
    pub fn visit_lora(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        for (i, block) in self.blocks.iter_mut().enumerate() {
            if let Some(lora) = block.attn.lora.as_mut() {
                lora.visit_named(&format!("{prefix}.blocks.{i}.attn"), f)?;
            }
            if let Some(lora) = block.mlp_lora.as_mut() {
                lora.visit_named(&format!("{prefix}.blocks.{i}.mlp"), f)?;
            }
        }
        Ok(())
    }
}

impl NamedParams for ImageEncoder {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.patch_embed
            .visit_named(&format!("{prefix}.patch_embed.proj"), f)?;
        f(
            &format!("{prefix}.pos_embed"),
            ParamRef::PosEmbed(&mut self.pos_embed),
        )?;
        self.blocks.visit_named(&format!("{prefix}.blocks"), f)?;
        self.neck_conv1
            .visit_named(&format!("{prefix}.neck.0"), f)?;
        self.neck_ln1.visit_named(&format!("{prefix}.neck.1"), f)?;
        self.neck_conv2
            .visit_named(&format!("{prefix}.neck.2"), f)?;
        self.neck_ln2.visit_named(&format!("{prefix}.neck.3"), f)
    }
}

/// A transformer block; `window_size == 0` means global attention.
#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub mlp: MlpBlock,
    pub window_size: usize,
    /// MLP adapters (LoRA target `mlp`), unmerged and merged as for attention.
    pub mlp_lora: Option<MlpLora>,
    pub merged_mlp_lora: Option<MlpLora>,
}

impl Block {
    fn new(cfg: &ImageEncoderConfig, window_size: usize, device: &Device) -> Self {
        let d = cfg.embed_dim;
        let side = if window_size > 0 {
            window_size
        } else {
            cfg.grid_size()
        };
        Self {
            norm1: LayerNormConfig::new(d).with_epsilon(1e-6).init(device),
            attn: Attention::new(d, cfg.num_heads, side, device),
            norm2: LayerNormConfig::new(d).with_epsilon(1e-6).init(device),
            mlp: MlpBlock::new(d, d * cfg.mlp_ratio, Activation::Gelu, device),
            window_size,
            mlp_lora: None,
            merged_mlp_lora: None,
        }
    }

    /// `[B, h, w, C]` → `[B, h, w, C]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let shortcut = x.clone();
        let x = self.norm1.forward(x);
        let x = if self.window_size > 0 {
            let [_, h, w, _] = x.dims();
            let (windows, padded) = window_partition(x, self.window_size);
            let windows = self.attn.forward(windows);
            window_unpartition(windows, self.window_size, padded, (h, w))
        } else {
            self.attn.forward(x)
        };
        let x = shortcut + x;
        let h = self.norm2.forward(x.clone());
        x + match &self.mlp_lora {
            Some(lora) => lora.forward(&self.mlp, h),
            None => self.mlp.forward(h),
        }
    }
}

impl NamedParams for Block {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.norm1.visit_named(&format!("{prefix}.norm1"), f)?;
        self.attn.visit_named(&format!("{prefix}.attn"), f)?;
        self.norm2.visit_named(&format!("{prefix}.norm2"), f)?;
        self.mlp.visit_named(&format!("{prefix}.mlp"), f)
    }
}

/// Multi-head self-attention with decomposed relative position bias.
///
/// `qkv` and `proj` are the projections LoRA adapters wrap.
#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    /// `[2 * side - 1, head_dim]` relative positions along rows and columns.
    pub rel_pos_h: Param<Tensor<2>>,
    pub rel_pos_w: Param<Tensor<2>>,
    pub num_heads: usize,
    /// Low-rank adapters applied on top of `qkv` / `proj`.
    pub lora: Option<AttentionLora>,
    /// Adapters currently folded into the weights (kept to unmerge).
    pub merged_lora: Option<AttentionLora>,
}

impl Attention {
    fn new(dim: usize, num_heads: usize, side: usize, device: &Device) -> Self {
        let head_dim = dim / num_heads;
        Self {
            qkv: LinearConfig::new(dim, 3 * dim).init(device),
            proj: LinearConfig::new(dim, dim).init(device),
            rel_pos_h: Param::from_tensor(Tensor::zeros([2 * side - 1, head_dim], device)),
            rel_pos_w: Param::from_tensor(Tensor::zeros([2 * side - 1, head_dim], device)),
            num_heads,
            lora: None,
            merged_lora: None,
        }
    }

    /// `[B, h, w, C]` → `[B, h, w, C]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let heads = self.num_heads;
        let hd = c / heads;
        let n = h * w;
        let mut qkv = self.qkv.forward(x.clone());
        if let Some(delta) = self.lora.as_ref().and_then(|l| l.qkv_delta(x)) {
            qkv = qkv + delta;
        }
        let qkv = qkv
            .reshape([b, n, 3, heads, hd])
            .permute([2, 0, 3, 1, 4])
            .reshape([3, b * heads, n, hd]);
        let q = qkv.clone().narrow(0, 0, 1).reshape([b * heads, n, hd]);
        let k = qkv.clone().narrow(0, 1, 1).reshape([b * heads, n, hd]);
        let v = qkv.narrow(0, 2, 1).reshape([b * heads, n, hd]);

        let (rel_h, rel_w) = self.decomposed_rel_pos(q.clone(), h, w); // [BH, n, h], [BH, n, w]
        let bias = |n0: usize, n1: usize, q0: usize, q1: usize| {
            let rh = rel_h.clone().slice([n0..n1, q0..q1]).unsqueeze_dim::<4>(3);
            let rw = rel_w.clone().slice([n0..n1, q0..q1]).unsqueeze_dim::<4>(2);
            Some((rh + rw).reshape([n1 - n0, q1 - q0, n]))
        };
        let scale = (hd as f64).powf(-0.5);
        let out = chunked_attention(q * scale, k, v, &bias); // [BH, n, hd]
        let out = out
            .reshape([b, heads, h, w, hd])
            .permute([0, 2, 3, 1, 4])
            .reshape([b, h, w, c]);
        match self.lora.as_ref().and_then(|l| l.proj.as_ref()) {
            Some(p) => self.proj.forward(out.clone()) + p.forward(out),
            None => self.proj.forward(out),
        }
    }

    /// The row and column terms of the relative position bias for every query, from the
    /// unscaled queries `[BH, h*w, hd]`.
    fn decomposed_rel_pos(&self, q: Tensor<3>, h: usize, w: usize) -> (Tensor<3>, Tensor<3>) {
        let [bh, _, hd] = q.dims();
        let device = q.device();
        let rh = gather_rel_pos(self.rel_pos_h.val(), h, &device); // [h, h, hd]
        let rw = gather_rel_pos(self.rel_pos_w.val(), w, &device); // [w, w, hd]
        let rq = q.reshape([bh, h, w, hd]);
        // rel_h[b, y, x, k] = sum_c rq[b, y, x, c] * rh[y, k, c]
        let rel_h = rq
            .clone()
            .permute([1, 0, 2, 3])
            .reshape([h, bh * w, hd])
            .matmul(rh.swap_dims(1, 2)) // [h, BH*w, h]
            .reshape([h, bh, w, h])
            .permute([1, 0, 2, 3])
            .reshape([bh, h * w, h]);
        // rel_w[b, y, x, k] = sum_c rq[b, y, x, c] * rw[x, k, c]
        let rel_w = rq
            .permute([2, 0, 1, 3])
            .reshape([w, bh * h, hd])
            .matmul(rw.swap_dims(1, 2)) // [w, BH*h, w]
            .reshape([w, bh, h, w])
            .permute([1, 2, 0, 3])
            .reshape([bh, h * w, w]);
        (rel_h, rel_w)
    }
}

impl NamedParams for Attention {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.qkv.visit_named(&format!("{prefix}.qkv"), f)?;
        self.proj.visit_named(&format!("{prefix}.proj"), f)?;
        f(
            &format!("{prefix}.rel_pos_h"),
            ParamRef::RelPos(&mut self.rel_pos_h),
        )?;
        f(
            &format!("{prefix}.rel_pos_w"),
            ParamRef::RelPos(&mut self.rel_pos_w),
        )
    }
}

/// `R[i, j] = rel_pos[i - j + size - 1]` for query and key positions of one axis.
fn gather_rel_pos(rel_pos: Tensor<2>, size: usize, device: &Device) -> Tensor<3> {
    let hd = rel_pos.dims()[1];
    let idx: Vec<i64> = (0..size)
        .flat_map(|i| (0..size).map(move |j| (i + size - 1 - j) as i64))
        .collect();
    let idx = Tensor::<1, Int>::from_data(TensorData::new(idx, [size * size]), device);
    rel_pos.select(0, idx).reshape([size, size, hd])
}

/// Pads `[B, h, w, C]` to multiples of `ws` and cuts it into `[B * nw, ws, ws, C]` windows.
fn window_partition(x: Tensor<4>, ws: usize) -> (Tensor<4>, (usize, usize)) {
    let [b, h, w, c] = x.dims();
    let (ph, pw) = ((ws - h % ws) % ws, (ws - w % ws) % ws);
    let x = if ph > 0 || pw > 0 {
        x.pad([(0, 0), (0, ph), (0, pw), (0, 0)], PadMode::Constant(0.0))
    } else {
        x
    };
    let (hp, wp) = (h + ph, w + pw);
    let windows = x
        .reshape([b, hp / ws, ws, wp / ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b * (hp / ws) * (wp / ws), ws, ws, c]);
    (windows, (hp, wp))
}

/// Inverse of [`window_partition`], dropping the padding.
fn window_unpartition(
    windows: Tensor<4>,
    ws: usize,
    (hp, wp): (usize, usize),
    (h, w): (usize, usize),
) -> Tensor<4> {
    let [n, _, _, c] = windows.dims();
    let b = n / ((hp / ws) * (wp / ws));
    let x = windows
        .reshape([b, hp / ws, wp / ws, ws, ws, c])
        .permute([0, 1, 3, 2, 4, 5])
        .reshape([b, hp, wp, c]);
    if hp > h || wp > w {
        x.slice([0..b, 0..h, 0..w])
    } else {
        x
    }
}

/// Linear resampling of `len` samples to `out` samples (PyTorch's `interpolate(mode="linear",
/// align_corners=False)`): returns, per output index, the two source indices and weight.
fn linear_taps(len: usize, out: usize) -> Vec<(usize, usize, f32)> {
    let scale = len as f32 / out as f32;
    (0..out)
        .map(|i| {
            let src = ((i as f32 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(len - 1);
            let i1 = (i0 + 1).min(len - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// Relative positions of a checkpoint made for another input size are resampled linearly
/// along their length, as Meta's `get_rel_pos` does at run time.
pub(crate) fn resize_rel_pos(
    key: &str,
    t: HostTensor,
    shape: [usize; 2],
) -> Result<HostTensor, WeightsError> {
    let [len, hd] = shape;
    match *t.shape.as_slice() {
        [l, d] if l == len && d == hd => Ok(t),
        [l, d] if d == hd && l > 0 => {
            let taps = linear_taps(l, len);
            let mut data = Vec::with_capacity(len * hd);
            for (i0, i1, f) in taps {
                for c in 0..hd {
                    data.push(t.data[i0 * hd + c] * (1.0 - f) + t.data[i1 * hd + c] * f);
                }
            }
            Ok(HostTensor::new(shape.to_vec(), data))
        }
        _ => Err(WeightsError::Shape {
            key: key.to_string(),
            expected: shape.to_vec(),
            found: t.shape,
        }),
    }
}

/// Absolute positions of a checkpoint made for another input size are resampled
/// bilinearly over the token grid (so a 1024-px checkpoint can run at 256 px).
pub(crate) fn resize_pos_embed(
    key: &str,
    t: HostTensor,
    shape: [usize; 4],
) -> Result<HostTensor, WeightsError> {
    let [_, gh, gw, c] = shape;
    let (sh, sw) = match t.shape.as_slice() {
        &[1, sh, sw, sc] if sc == c && sh > 0 && sw > 0 => (sh, sw),
        _ => {
            return Err(WeightsError::Shape {
                key: key.to_string(),
                expected: shape.to_vec(),
                found: t.shape,
            })
        }
    };
    if (sh, sw) == (gh, gw) {
        return Ok(t);
    }
    let (ty, tx) = (linear_taps(sh, gh), linear_taps(sw, gw));
    let at = |y: usize, x: usize, ch: usize| t.data[(y * sw + x) * c + ch];
    let mut data = Vec::with_capacity(gh * gw * c);
    for &(y0, y1, fy) in &ty {
        for &(x0, x1, fx) in &tx {
            for ch in 0..c {
                let top = at(y0, x0, ch) * (1.0 - fx) + at(y0, x1, ch) * fx;
                let bottom = at(y1, x0, ch) * (1.0 - fx) + at(y1, x1, ch) * fx;
                data.push(top * (1.0 - fy) + bottom * fy);
            }
        }
    }
    Ok(HostTensor::new(shape.to_vec(), data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pos_embed_resize_keeps_a_constant_field_constant() {
        let t = HostTensor::new(vec![1, 4, 4, 2], vec![3.5; 32]);
        let r = resize_pos_embed("k", t, [1, 7, 7, 2]).unwrap();
        assert_eq!(r.shape, vec![1, 7, 7, 2]);
        assert!(r.data.iter().all(|v| (v - 3.5).abs() < 1e-6));
    }

    #[test]
    fn pos_embed_resize_halves_a_linear_ramp_at_pixel_centres() {
        // 4 -> 2 samples: output centres fall at source positions 0.5 and 2.5.
        let data: Vec<f32> = (0..4).flat_map(|_| (0..4).map(|x| x as f32)).collect();
        let r =
            resize_pos_embed("k", HostTensor::new(vec![1, 4, 4, 1], data), [1, 2, 2, 1]).unwrap();
        assert_eq!(r.data, vec![0.5, 2.5, 0.5, 2.5]);
    }

    #[test]
    fn rel_pos_of_wrong_width_is_a_shape_error() {
        let t = HostTensor::new(vec![27, 8], vec![0.0; 27 * 8]);
        let err = resize_rel_pos("blocks.0.attn.rel_pos_h", t, [27, 16]).unwrap_err();
        assert!(err.to_string().contains("[27, 8]"));
    }
}
