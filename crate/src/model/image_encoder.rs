//! ViT image encoder: patch embedding, absolute positions, windowed and global attention
//! blocks with decomposed relative positions, and the convolutional neck. LoRA adapters
//! (see [`super::lora`]) act in the attention projections and MLPs, on top of the weights
//! or merged into them.

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::ops::PadMode;

use super::common::{
    chunked_attention, conv2d_matmul, Activation, LayerNorm2d, MlpBlock, NamedParams, ParamRef,
    Visitor,
};
use super::kernels::RelPosBias;
use super::lora::{Adapter, AttentionLora, LoraConfig, LoraTarget, MlpLora};
use crate::weights::WeightsError;

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
    /// Adds fresh adapters (B = 0, so outputs are unchanged) to every block, replacing any
    /// it had (merged ones stay folded into the weights).
    pub fn add_lora(&mut self, config: &LoraConfig, device: &Device) {
        let attention = config.targets.iter().any(|t| *t != LoraTarget::Mlp);
        let mlp = config.targets.contains(&LoraTarget::Mlp);
        for block in &mut self.blocks {
            let [dim, hidden] = block.mlp.lin1.weight.dims();
            block.attn.lora =
                attention.then(|| Adapter::new(AttentionLora::new(dim, config, device)));
            block.mlp_lora = mlp.then(|| Adapter::new(MlpLora::new(dim, hidden, config, device)));
        }
    }

    /// True when some block has an adapter acting on top of its weights (not merged).
    pub fn has_lora(&self) -> bool {
        self.blocks.iter().any(|b| {
            b.attn.lora.as_ref().is_some_and(|a| !a.is_merged())
                || b.mlp_lora.as_ref().is_some_and(|a| !a.is_merged())
        })
    }

    pub fn merge_lora(&mut self) {
        self.blocks.iter_mut().for_each(Block::merge_lora);
    }

    pub fn unmerge_lora(&mut self) {
        self.blocks.iter_mut().for_each(Block::unmerge_lora);
    }

    /// Names the adapter tensors `{prefix}.blocks.{i}.attn.lora_{q,k,v,proj}.{a,b}` and
    /// `{prefix}.blocks.{i}.mlp.lora_{lin1,lin2}.{a,b}` (`a` is `[in, rank]`, `b` is
    /// `[rank, out]`); active adapters only, as merged ones are part of the weights.
    pub fn visit_lora(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        for (i, block) in self.blocks.iter_mut().enumerate() {
            if let Some(lora) = block.attn.lora.as_mut().and_then(Adapter::active_mut) {
                lora.visit_named(&format!("{prefix}.blocks.{i}.attn"), f)?;
            }
            if let Some(lora) = block.mlp_lora.as_mut().and_then(Adapter::active_mut) {
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
    /// MLP adapter (LoRA target `mlp`), active or merged as for attention.
    pub mlp_lora: Option<Adapter<MlpLora>>,
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
        x + match self.mlp_lora.as_ref().and_then(Adapter::active) {
            Some(lora) => lora.forward(&self.mlp, h),
            None => self.mlp.forward(h),
        }
    }

    /// Folds attention and MLP adapters into the weights.
    pub fn merge_lora(&mut self) {
        self.attn.merge_lora();
        if let Some(adapter) = self.mlp_lora.as_mut() {
            adapter.merge(|lora, sign| apply_mlp_delta(&mut self.mlp, lora, sign));
        }
    }

    /// Takes merged adapters back out of the weights.
    pub fn unmerge_lora(&mut self) {
        self.attn.unmerge_lora();
        if let Some(adapter) = self.mlp_lora.as_mut() {
            adapter.unmerge(|lora, sign| apply_mlp_delta(&mut self.mlp, lora, sign));
        }
    }
}

/// Adds `sign` times the MLP adapter's dense updates to both layers' weights.
fn apply_mlp_delta(mlp: &mut MlpBlock, lora: &MlpLora, sign: f64) {
    for (lin, l) in [(&mut mlp.lin1, &lora.lin1), (&mut mlp.lin2, &lora.lin2)] {
        lin.weight = Param::from_tensor(lin.weight.val() + l.delta() * sign);
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
    /// Low-rank adapters of `qkv` / `proj`: applied on top, or folded into the weights.
    pub lora: Option<Adapter<AttentionLora>>,
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
        }
    }

    /// `[B, h, w, C]` → `[B, h, w, C]`
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, h, w, c] = x.dims();
        let heads = self.num_heads;
        let hd = c / heads;
        let n = h * w;
        let lora = self.lora.as_ref().and_then(Adapter::active);
        let qkv = self.qkv.forward(x.clone());
        let mut parts = [0, 1, 2].map(|i| qkv.clone().narrow(3, i * c, c)); // q, k, v
        if let Some(l) = lora {
            parts = l.add_to_qkv(x, parts);
        }
        let [q, k, v] = parts.map(|t| {
            t.reshape([b, n, heads, hd])
                .swap_dims(1, 2)
                .reshape([b * heads, n, hd])
        });

        let (rel_h, rel_w) = self.decomposed_rel_pos(q.clone(), h, w); // [BH, n, h], [BH, n, w]
        let bias = |n0: usize, n1: usize, q0: usize, q1: usize| {
            Some(RelPosBias {
                rows: rel_h.clone().slice([n0..n1, q0..q1]),
                cols: rel_w.clone().slice([n0..n1, q0..q1]),
            })
        };
        let scale = (hd as f64).powf(-0.5);
        let out = chunked_attention(q * scale, k, v, &bias); // [BH, n, hd]
        let out = out
            .reshape([b, heads, h, w, hd])
            .permute([0, 2, 3, 1, 4])
            .reshape([b, h, w, c]);
        match lora.and_then(|l| l.proj.as_ref()) {
            Some(p) => self.proj.forward(out.clone()) + p.forward(out),
            None => self.proj.forward(out),
        }
    }

    /// Folds the adapter into `qkv` and `proj` so inference costs nothing extra.
    pub fn merge_lora(&mut self) {
        if let Some(adapter) = self.lora.as_mut() {
            adapter.merge(|lora, sign| {
                apply_attention_delta(&mut self.qkv, &mut self.proj, lora, sign)
            });
        }
    }

    /// Takes a merged adapter back out of the weights.
    pub fn unmerge_lora(&mut self) {
        if let Some(adapter) = self.lora.as_mut() {
            adapter.unmerge(|lora, sign| {
                apply_attention_delta(&mut self.qkv, &mut self.proj, lora, sign)
            });
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

/// Adds `sign` times the adapter's dense updates to the `qkv` and `proj` weights.
fn apply_attention_delta(qkv: &mut Linear, proj: &mut Linear, lora: &AttentionLora, sign: f64) {
    let [dim, _] = qkv.weight.dims();
    let device = qkv.weight.device();
    qkv.weight = Param::from_tensor(qkv.weight.val() + lora.qkv_weight_delta(dim, &device) * sign);
    if let Some(p) = &lora.proj {
        proj.weight = Param::from_tensor(proj.weight.val() + p.delta() * sign);
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
