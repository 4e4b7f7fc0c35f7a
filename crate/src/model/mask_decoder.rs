//! Mask decoder: output tokens through the two-way transformer, upscaled image features,
//! hypernetwork MLPs per mask token, and the IoU head.

use super::kernels::gelu;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::Distribution;

use super::common::{LayerNorm2d, Mlp, NamedParams, ParamRef, UpConv2x2, Visitor};
use super::transformer::{TwoWayTransformer, TwoWayTransformerConfig};
use crate::weights::WeightsError;

/// Geometry of the mask decoder.
#[derive(Config, Debug, PartialEq)]
pub struct MaskDecoderConfig {
    /// Token width (the prompt dimension). Default: 256.
    #[config(default = 256)]
    pub transformer_dim: usize,
    /// Masks predicted besides the single-mask output. Default: 3.
    #[config(default = 3)]
    pub num_multimask_outputs: usize,
    /// Layers of the IoU head. Default: 3.
    #[config(default = 3)]
    pub iou_head_depth: usize,
    /// Hidden width of the IoU head. Default: 256.
    #[config(default = 256)]
    pub iou_head_hidden_dim: usize,
    /// The two-way transformer. Default: SAM's (depth 2, 8 heads, MLP 2048).
    #[config(default = "TwoWayTransformerConfig::new()")]
    pub transformer: TwoWayTransformerConfig,
}

impl MaskDecoderConfig {
    pub fn init(&self, device: &Device) -> MaskDecoder {
        let d = self.transformer_dim;
        let n = self.num_multimask_outputs + 1;
        let token = |rows| {
            Param::from_tensor(Tensor::random(
                [rows, d],
                Distribution::Normal(0.0, 1.0),
                device,
            ))
        };
        MaskDecoder {
            transformer: self.transformer.init(device),
            iou_token: token(1),
            mask_tokens: token(n),
            upscale_conv1: UpConv2x2::new(d, d / 4, device),
            upscale_ln: LayerNorm2d::new(d / 4, device),
            upscale_conv2: UpConv2x2::new(d / 4, d / 8, device),
            output_hypernetworks_mlps: (0..n).map(|_| Mlp::new(d, d, d / 8, 3, device)).collect(),
            iou_prediction_head: Mlp::new(
                d,
                self.iou_head_hidden_dim,
                n,
                self.iou_head_depth,
                device,
            ),
        }
    }
}

/// `mask_decoder.*` in the checkpoints.
#[derive(Module, Debug)]
pub struct MaskDecoder {
    pub transformer: TwoWayTransformer,
    pub iou_token: Param<Tensor<2>>,
    pub mask_tokens: Param<Tensor<2>>,
    pub upscale_conv1: UpConv2x2,
    pub upscale_ln: LayerNorm2d,
    pub upscale_conv2: UpConv2x2,
    pub output_hypernetworks_mlps: Vec<Mlp>,
    pub iou_prediction_head: Mlp,
}

impl MaskDecoder {
    pub fn num_mask_tokens(&self) -> usize {
        self.mask_tokens.dims()[0]
    }

    /// Channels of the upscaled image features (C/8), the hypernetworks' output width.
    pub fn upscaled_channels(&self) -> usize {
        self.upscale_conv2.weight.dims()[1]
    }

    /// Predicts masks for each prompt set.
    ///
    /// # Shapes
    /// - `image_embeddings`: `[1 or B, C, E, E]` (one image shared by all prompt sets, or one
    ///   image per prompt set)
    /// - `image_pe`: `[1, E², C]` ([`super::prompt_encoder::PromptEncoder::dense_pe`])
    /// - `sparse`: `[B, N, C]`, `dense`: `[B, E², C]` or `[1, 1, C]` (as the prompt encoder
    ///   returns it)
    /// - `fine`: `[1 or B, 16E², C/8]`, a term added to the upscaled features
    ///   ([`super::fine_features::FineFeatures::project`]), or none (SAM as Meta made it)
    /// - returns logits `[B, M, 4E, 4E]` and IoU predictions `[B, M]`, M = 3 for
    ///   `multimask_output`, else 1
    pub fn forward(
        &self,
        image_embeddings: Tensor<4>,
        image_pe: Tensor<3>,
        sparse: Tensor<3>,
        dense: Tensor<3>,
        fine: Option<Tensor<3>>,
        multimask_output: bool,
    ) -> (Tensor<4>, Tensor<2>) {
        let (masks, iou) = self.predict_masks(image_embeddings, image_pe, sparse, dense, fine);
        let m = self.num_mask_tokens();
        let range = if multimask_output { 1..m } else { 0..1 };
        let [b, _, h, w] = masks.dims();
        (
            masks.slice([0..b, range.clone(), 0..h, 0..w]),
            iou.slice([0..b, range]),
        )
    }

    fn predict_masks(
        &self,
        image_embeddings: Tensor<4>,
        image_pe: Tensor<3>,
        sparse: Tensor<3>,
        dense: Tensor<3>,
        fine: Option<Tensor<3>>,
    ) -> (Tensor<4>, Tensor<2>) {
        let [b, _, c] = sparse.dims();
        let m = self.num_mask_tokens();
        let output_tokens = Tensor::cat(vec![self.iou_token.val(), self.mask_tokens.val()], 0)
            .unsqueeze_dim::<3>(0)
            .expand([b, 1 + m, c]);
        let tokens = Tensor::cat(vec![output_tokens, sparse], 1);

        // Image tokens [B, E², C]: the one transpose of the decode, fused with the sum.
        let [ib, _, e, _] = image_embeddings.dims();
        let src = image_embeddings.reshape([ib, c, e * e]).swap_dims(1, 2) + dense;
        let src = if src.dims()[0] == b {
            src
        } else {
            src.expand([b, e * e, c])
        };
        let (hs, src) = self.transformer.forward(src, image_pe, tokens);
        let iou_token_out = hs.clone().slice([0..b, 0..1]).reshape([b, c]);
        let mask_tokens_out = hs.slice([0..b, 1..1 + m]); // [B, M, C]

        // Channels-last upscaling: pixels of the 2E grid in raster order between the two
        // steps, the 4E grid's order restored on the M mask planes only.
        let up = gelu(
            self.upscale_ln
                .forward_last(self.upscale_conv1.forward_pixels(src)),
        );
        let [_, _, _, c4] = up.dims();
        let up = up
            .reshape([b, e, e, 2, 2, c4])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b, 4 * e * e, c4]);
        let up = gelu(self.upscale_conv2.forward_pixels(up)); // [B, 4E², 4, C/8]
        let [_, _, _, cu] = up.dims();
        let up = up.reshape([b, 16 * e * e, cu]);
        let up = match fine {
            Some(fine) => up + fine,
            None => up,
        };

        let hyper_in: Vec<Tensor<3>> = self
            .output_hypernetworks_mlps
            .iter()
            .enumerate()
            .map(|(i, mlp)| mlp.forward(mask_tokens_out.clone().slice([0..b, i..i + 1])))
            .collect();
        let hyper_in = Tensor::cat(hyper_in, 1); // [B, M, C/8]
        let masks = hyper_in
            .matmul(up.swap_dims(1, 2)) // [B, M, 16E²]
            .reshape([b, m, 2 * e, 2 * e, 2, 2])
            .permute([0, 1, 2, 4, 3, 5])
            .reshape([b, m, 4 * e, 4 * e]);
        let iou = self.iou_prediction_head.forward(iou_token_out);
        (masks, iou)
    }
}

impl NamedParams for MaskDecoder {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.transformer
            .visit_named(&format!("{prefix}.transformer"), f)?;
        f(
            &format!("{prefix}.iou_token.weight"),
            ParamRef::D2(&mut self.iou_token),
        )?;
        f(
            &format!("{prefix}.mask_tokens.weight"),
            ParamRef::D2(&mut self.mask_tokens),
        )?;
        self.upscale_conv1
            .visit_named(&format!("{prefix}.output_upscaling.0"), f)?;
        self.upscale_ln
            .visit_named(&format!("{prefix}.output_upscaling.1"), f)?;
        self.upscale_conv2
            .visit_named(&format!("{prefix}.output_upscaling.3"), f)?;
        self.output_hypernetworks_mlps
            .visit_named(&format!("{prefix}.output_hypernetworks_mlps"), f)?;
        self.iou_prediction_head
            .visit_named(&format!("{prefix}.iou_prediction_head"), f)
    }
}
