//! Two-way transformer of the mask decoder: prompt tokens and image tokens attend to each
//! other in turn.

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::common::{chunked_attention, Activation, MlpBlock, NamedParams, Visitor};
use crate::weights::WeightsError;

/// Geometry of the two-way transformer.
#[derive(Config, Debug, PartialEq)]
pub struct TwoWayTransformerConfig {
    /// Number of two-way blocks. Default: 2.
    #[config(default = 2)]
    pub depth: usize,
    /// Token width. Default: 256.
    #[config(default = 256)]
    pub embedding_dim: usize,
    /// Attention heads. Default: 8.
    #[config(default = 8)]
    pub num_heads: usize,
    /// MLP hidden width. Default: 2048.
    #[config(default = 2048)]
    pub mlp_dim: usize,
    /// Internal width divisor of the cross attentions. Default: 2.
    #[config(default = 2)]
    pub attention_downsample_rate: usize,
}

impl TwoWayTransformerConfig {
    pub fn init(&self, device: &Device) -> TwoWayTransformer {
        let d = self.embedding_dim;
        let cross = || Attention::new(d, self.num_heads, self.attention_downsample_rate, device);
        TwoWayTransformer {
            layers: (0..self.depth)
                .map(|i| TwoWayAttentionBlock {
                    self_attn: Attention::new(d, self.num_heads, 1, device),
                    norm1: LayerNormConfig::new(d).init(device),
                    cross_attn_token_to_image: cross(),
                    norm2: LayerNormConfig::new(d).init(device),
                    mlp: MlpBlock::new(d, self.mlp_dim, Activation::Relu, device),
                    norm3: LayerNormConfig::new(d).init(device),
                    norm4: LayerNormConfig::new(d).init(device),
                    cross_attn_image_to_token: cross(),
                    skip_first_layer_pe: i == 0,
                })
                .collect(),
            final_attn_token_to_image: cross(),
            norm_final_attn: LayerNormConfig::new(d).init(device),
        }
    }
}

/// `mask_decoder.transformer.*` in the checkpoints.
#[derive(Module, Debug)]
pub struct TwoWayTransformer {
    pub layers: Vec<TwoWayAttentionBlock>,
    pub final_attn_token_to_image: Attention,
    pub norm_final_attn: LayerNorm,
}

impl TwoWayTransformer {
    /// # Shapes
    /// - `image`, `image_pe`: `[B, C, h, w]`
    /// - `tokens`: `[B, N, C]` (also their own positional encoding)
    /// - returns processed tokens `[B, N, C]` and image tokens `[B, h*w, C]`
    pub fn forward(
        &self,
        image: Tensor<4>,
        image_pe: Tensor<4>,
        tokens: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let [b, c, h, w] = image.dims();
        let keys0 = image.reshape([b, c, h * w]).swap_dims(1, 2);
        let key_pe = image_pe.reshape([b, c, h * w]).swap_dims(1, 2);
        let mut queries = tokens.clone();
        let mut keys = keys0;
        for layer in &self.layers {
            (queries, keys) = layer.forward(queries, keys, tokens.clone(), key_pe.clone());
        }
        let q = queries.clone() + tokens;
        let k = keys.clone() + key_pe;
        let attn = self.final_attn_token_to_image.forward(q, k, keys.clone());
        (self.norm_final_attn.forward(queries + attn), keys)
    }
}

impl NamedParams for TwoWayTransformer {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.layers.visit_named(&format!("{prefix}.layers"), f)?;
        self.final_attn_token_to_image
            .visit_named(&format!("{prefix}.final_attn_token_to_image"), f)?;
        self.norm_final_attn
            .visit_named(&format!("{prefix}.norm_final_attn"), f)
    }
}

/// Self-attention of the tokens, token→image cross-attention, MLP, image→token
/// cross-attention.
#[derive(Module, Debug)]
pub struct TwoWayAttentionBlock {
    pub self_attn: Attention,
    pub norm1: LayerNorm,
    pub cross_attn_token_to_image: Attention,
    pub norm2: LayerNorm,
    pub mlp: MlpBlock,
    pub norm3: LayerNorm,
    pub norm4: LayerNorm,
    pub cross_attn_image_to_token: Attention,
    pub skip_first_layer_pe: bool,
}

impl TwoWayAttentionBlock {
    fn forward(
        &self,
        queries: Tensor<3>,
        keys: Tensor<3>,
        query_pe: Tensor<3>,
        key_pe: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let queries = if self.skip_first_layer_pe {
            self.self_attn
                .forward(queries.clone(), queries.clone(), queries)
        } else {
            let q = queries.clone() + query_pe.clone();
            queries.clone() + self.self_attn.forward(q.clone(), q, queries)
        };
        let queries = self.norm1.forward(queries);

        let q = queries.clone() + query_pe.clone();
        let k = keys.clone() + key_pe.clone();
        let queries = queries + self.cross_attn_token_to_image.forward(q, k, keys.clone());
        let queries = self.norm2.forward(queries);

        let queries = self
            .norm3
            .forward(queries.clone() + self.mlp.forward(queries));

        let q = queries.clone() + query_pe;
        let k = keys.clone() + key_pe;
        let keys = keys
            + self
                .cross_attn_image_to_token
                .forward(k, q, queries.clone());
        (queries, self.norm4.forward(keys))
    }
}

impl NamedParams for TwoWayAttentionBlock {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.self_attn
            .visit_named(&format!("{prefix}.self_attn"), f)?;
        self.norm1.visit_named(&format!("{prefix}.norm1"), f)?;
        self.cross_attn_token_to_image
            .visit_named(&format!("{prefix}.cross_attn_token_to_image"), f)?;
        self.norm2.visit_named(&format!("{prefix}.norm2"), f)?;
        self.mlp.visit_named(&format!("{prefix}.mlp"), f)?;
        self.norm3.visit_named(&format!("{prefix}.norm3"), f)?;
        self.norm4.visit_named(&format!("{prefix}.norm4"), f)?;
        self.cross_attn_image_to_token
            .visit_named(&format!("{prefix}.cross_attn_image_to_token"), f)
    }
}

/// Attention with separate q/k/v projections to an optionally narrower internal width.
#[derive(Module, Debug)]
pub struct Attention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub out_proj: Linear,
    pub num_heads: usize,
}

impl Attention {
    fn new(dim: usize, num_heads: usize, downsample_rate: usize, device: &Device) -> Self {
        let internal = dim / downsample_rate;
        Self {
            q_proj: LinearConfig::new(dim, internal).init(device),
            k_proj: LinearConfig::new(dim, internal).init(device),
            v_proj: LinearConfig::new(dim, internal).init(device),
            out_proj: LinearConfig::new(internal, dim).init(device),
            num_heads,
        }
    }

    /// `[B, N, C]` → `[B, N, C]`, heads split over the batch for the attention map.
    fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let h = self.num_heads;
        let split = |x: Tensor<3>| {
            let [b, n, c] = x.dims();
            x.reshape([b, n, h, c / h])
                .swap_dims(1, 2)
                .reshape([b * h, n, c / h])
        };
        let [b, nq, _] = q.dims();
        let q = split(self.q_proj.forward(q));
        let k = split(self.k_proj.forward(k));
        let v = split(self.v_proj.forward(v));
        let hd = q.dims()[2];
        let out = chunked_attention(q / (hd as f64).sqrt(), k, v, &|_, _, _, _| None);
        let out = out
            .reshape([b, h, nq, hd])
            .swap_dims(1, 2)
            .reshape([b, nq, h * hd]);
        self.out_proj.forward(out)
    }
}

impl NamedParams for Attention {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.q_proj.visit_named(&format!("{prefix}.q_proj"), f)?;
        self.k_proj.visit_named(&format!("{prefix}.k_proj"), f)?;
        self.v_proj.visit_named(&format!("{prefix}.v_proj"), f)?;
        self.out_proj.visit_named(&format!("{prefix}.out_proj"), f)
    }
}
