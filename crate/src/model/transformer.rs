//! Two-way transformer of the mask decoder: prompt tokens and image tokens attend to each
//! other in turn.

use burn::nn::{LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::prelude::*;

use super::common::{
    chunked_attention, Activation, MlpBlock, NamedParams, Visitor, MAX_ATTENTION_ELEMENTS,
};
use super::kernels::attention_probs;
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
    /// - `image`: image tokens `[B, E², C]`; `image_pe`: their positional encoding
    ///   `[1, E², C]`
    /// - `tokens`: `[B, N, C]` (also their own positional encoding)
    /// - returns processed tokens `[B, N, C]` and image tokens `[B, E², C]`
    pub fn forward(
        &self,
        image: Tensor<3>,
        image_pe: Tensor<3>,
        tokens: Tensor<3>,
    ) -> (Tensor<3>, Tensor<3>) {
        let mut queries = tokens.clone();
        let mut keys = image;
        for layer in &self.layers {
            (queries, keys) = layer.forward(queries, keys, tokens.clone(), image_pe.clone());
        }
        let q = queries.clone() + tokens;
        let k = keys.clone() + image_pe;
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

        // The keys do not change before the image→token attention: one sum serves both.
        let q = queries.clone() + query_pe.clone();
        let k = keys.clone() + key_pe;
        let queries = queries
            + self
                .cross_attn_token_to_image
                .forward(q, k.clone(), keys.clone());
        let queries = self.norm2.forward(queries);

        let queries = self
            .norm3
            .forward(queries.clone() + self.mlp.forward(queries));

        let q = queries.clone() + query_pe;
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

    /// `[B, Nq, C]` queries, `[B, Nk, C]` keys and values → `[B, Nq, C]`.
    ///
    /// The decoder's cross attentions pair a handful of prompt tokens with every image
    /// token. When one side has fewer tokens × heads than the internal width, the
    /// projections of the long side are folded through the short side's (associativity of
    /// the matmuls): the same result with a fraction of the multiply-adds, and no head
    /// split of the long side.
    fn forward(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let [b, nq, _] = q.dims();
        let nk = k.dims()[1];
        let h = self.num_heads;
        let internal = self.q_proj.weight.dims()[1];
        let small_map = |rows: usize| b * h * rows * nq.max(nk) <= MAX_ATTENTION_ELEMENTS;
        if nk < nq && nk * h < internal && small_map(nk) {
            self.few_keys(q, k, v)
        } else if nq < nk && nq * h < internal && small_map(nq) {
            self.few_queries(q, k, v)
        } else {
            self.per_head(q, k, v)
        }
    }

    /// `proj(x)` for `x` `[B, N, C]`, heads apart: `[B, h, N, d]`.
    fn heads(&self, proj: &Linear, x: Tensor<3>) -> Tensor<4> {
        let [b, n, _] = x.dims();
        let h = self.num_heads;
        let y = proj.forward(x);
        let d = y.dims()[2] / h;
        y.reshape([b, n, h, d]).swap_dims(1, 2)
    }

    /// A projection's weight `[C, h × d]`, heads apart: `[1, h, C, d]`.
    fn weight_heads(&self, proj: &Linear) -> Tensor<4> {
        let [c, hd] = proj.weight.dims();
        let h = self.num_heads;
        proj.weight.val().reshape([1, c, h, hd / h]).swap_dims(1, 2)
    }

    /// Heads split over the batch for the attention map.
    fn per_head(&self, q: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
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

    /// Few keys (image → token): per head `j`, the scores `(X Wq_j + bq_j) K_jᵀ` are
    /// `X (Wq_j K_jᵀ) + bq_j K_jᵀ`, and the output `Σ_j P_j V_j Wo_j + bo` is `P (V Wo)` with
    /// the heads side by side; the image tokens `X` meet only `[C, heads × Nk]` matrices.
    fn few_keys(&self, x: Tensor<3>, k: Tensor<3>, v: Tensor<3>) -> Tensor<3> {
        let [b, nq, c] = x.dims();
        let nk = k.dims()[1];
        let h = self.num_heads;
        let d = self.q_proj.weight.dims()[1] / h;
        let scale = 1.0 / (d as f64).sqrt();
        let kh = self.heads(&self.k_proj, k).swap_dims(2, 3); // [B, h, d, Nk]
        let m = (self.weight_heads(&self.q_proj).matmul(kh.clone()) * scale) // [B, h, C, Nk]
            .swap_dims(1, 2)
            .reshape([b, c, h * nk]);
        let mut scores = x.matmul(m); // [B, Nq, h × Nk]
        if let Some(bq) = &self.q_proj.bias {
            let qb = bq.val().reshape([1, h, 1, d]).matmul(kh) * scale; // [B, h, 1, Nk]
            scores = scores + qb.reshape([b, 1, h * nk]);
        }
        let probs = attention_probs(scores.reshape([b, nq * h, nk]), None).reshape([b, nq, h * nk]);
        let wo = self.out_proj.weight.val().reshape([1, h, d, c]);
        let vw = self
            .heads(&self.v_proj, v)
            .matmul(wo)
            .reshape([b, h * nk, c]);
        let out = probs.matmul(vw);
        match &self.out_proj.bias {
            Some(bo) => out + bo.val().reshape([1, 1, c]),
            None => out,
        }
    }

    /// Few queries (token → image): per head `j`, the scores `Q_j (Y Wk_j + bk_j)ᵀ` are
    /// `(Q_j Wk_jᵀ) Yᵀ + Q_j bk_j`, and as each row of `P_j` sums to one, `P_j (Z Wv_j + bv_j)`
    /// is `(P_j Z) Wv_j + bv_j`; the image tokens `Y`, `Z` meet only `heads × Nq` rows.
    fn few_queries(&self, q: Tensor<3>, y: Tensor<3>, z: Tensor<3>) -> Tensor<3> {
        let [b, nq, c] = q.dims();
        let h = self.num_heads;
        let d = self.q_proj.weight.dims()[1] / h;
        let scale = 1.0 / (d as f64).sqrt();
        let qh = self.heads(&self.q_proj, q) * scale; // [B, h, Nq, d]
        let wk = self.weight_heads(&self.k_proj).swap_dims(2, 3); // [1, h, d, C]
        let a = qh.clone().matmul(wk).reshape([b, h * nq, c]);
        let mut scores = a.matmul(y.swap_dims(1, 2)); // [B, h × Nq, Nk]
        if let Some(bk) = &self.k_proj.bias {
            let qb = qh.matmul(bk.val().reshape([1, h, d, 1])); // [B, h, Nq, 1]
            scores = scores + qb.reshape([b, h * nq, 1]);
        }
        let r = attention_probs(scores, None)
            .matmul(z)
            .reshape([b, h, nq, c]);
        let mut o = r.matmul(self.weight_heads(&self.v_proj)); // [B, h, Nq, d]
        if let Some(bv) = &self.v_proj.bias {
            o = o + bv.val().reshape([1, h, 1, d]);
        }
        self.out_proj
            .forward(o.swap_dims(1, 2).reshape([b, nq, h * d]))
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

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use burn::module::Param;
    use burn::tensor::Distribution;

    fn random_attention(device: &Device) -> Attention {
        let mut a = Attention::new(32, 4, 2, device);
        // Non-zero biases, so that the folded bias terms are exercised.
        for l in [&mut a.q_proj, &mut a.k_proj, &mut a.v_proj, &mut a.out_proj] {
            let n = l.weight.dims()[1];
            l.bias = Some(Param::from_tensor(Tensor::random(
                [n],
                Distribution::Normal(0.0, 1.0),
                device,
            )));
        }
        a
    }

    fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn folded_cross_attentions_equal_the_per_head_form() {
        let device = crate::backend::flex();
        let a = random_attention(&device);
        let rand =
            |n: usize| Tensor::<3>::random([2, n, 32], Distribution::Normal(0.0, 1.0), &device);
        let (few, many) = (rand(3), rand(50));
        let v_few = rand(3);
        // 3 keys × 4 heads < 16 internal: folded through the keys.
        let want = a.per_head(many.clone(), few.clone(), v_few.clone());
        let got = a.few_keys(many.clone(), few.clone(), v_few.clone());
        assert!(max_diff(got, want.clone()) < 1e-4);
        assert!(max_diff(a.forward(many.clone(), few.clone(), v_few), want) < 1e-4);
        // 3 queries: folded through the queries.
        let v_many = rand(50);
        let want = a.per_head(few.clone(), many.clone(), v_many.clone());
        let got = a.few_queries(few.clone(), many.clone(), v_many.clone());
        assert!(max_diff(got, want.clone()) < 1e-4);
        assert!(max_diff(a.forward(few, many, v_many), want) < 1e-4);
    }

    #[test]
    fn folded_attention_gradients_equal_the_per_head_form() {
        let device = crate::backend::flex().autodiff();
        let a = random_attention(&device);
        let q = Tensor::<3>::random([1, 2, 32], Distribution::Normal(0.0, 1.0), &device);
        let kv = Tensor::<3>::random([1, 40, 32], Distribution::Normal(0.0, 1.0), &device)
            .require_grad();
        let grad = |out: Tensor<3>| {
            let g = out.powi_scalar(2).sum().backward();
            let wk = a.k_proj.weight.grad(&g).expect("k_proj gets a gradient");
            (wk, kv.grad(&g).expect("the image tokens get a gradient"))
        };
        let (wk_a, kv_a) = grad(a.few_queries(q.clone(), kv.clone(), kv.clone()));
        let (wk_b, kv_b) = grad(a.per_head(q, kv.clone(), kv.clone()));
        let err: f32 = (wk_a - wk_b).abs().max().into_scalar();
        assert!(err < 1e-4, "k_proj gradient differs by {err}");
        let err: f32 = (kv_a - kv_b).abs().max().into_scalar();
        assert!(err < 1e-4, "image-token gradient differs by {err}");
    }
}
