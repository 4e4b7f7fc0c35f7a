//! The whole model: image encoder, prompt encoder and mask decoder.

use burn::prelude::*;

use super::common::{NamedParams, Visitor};
use super::image_encoder::{ImageEncoder, ImageEncoderConfig};
use super::mask_decoder::{MaskDecoder, MaskDecoderConfig};
use super::prompt_encoder::{PromptEncoder, PromptEncoderConfig};
use crate::weights::{StateDict, WeightsError};

/// ImageNet statistics SAM normalises with (RGB, 0-255 scale).
pub const PIXEL_MEAN: [f32; 3] = [123.675, 116.28, 103.53];
pub const PIXEL_STD: [f32; 3] = [58.395, 57.12, 57.375];
/// Logit threshold of a binary mask.
pub const MASK_THRESHOLD: f32 = 0.0;

/// Geometry of a SAM model. Presets live in [`super::build`].
#[derive(Config, Debug, PartialEq)]
pub struct SamConfig {
    /// The ViT image encoder. Default: ViT-B at 1024 px.
    #[config(default = "ImageEncoderConfig::new()")]
    pub image_encoder: ImageEncoderConfig,
    /// The mask decoder. Default: SAM's.
    #[config(default = "MaskDecoderConfig::new()")]
    pub mask_decoder: MaskDecoderConfig,
    /// Hidden channels of the mask-prompt downscaling. Default: 16.
    #[config(default = 16)]
    pub mask_in_chans: usize,
}

impl SamConfig {
    pub fn prompt_encoder(&self) -> PromptEncoderConfig {
        let enc = &self.image_encoder;
        PromptEncoderConfig::new()
            .with_embed_dim(enc.out_chans)
            .with_image_embedding_size(enc.grid_size())
            .with_input_image_size(enc.img_size)
            .with_mask_in_chans(self.mask_in_chans)
    }

    /// A model with random weights.
    pub fn init(&self, device: &Device) -> Sam {
        Sam {
            image_encoder: self.image_encoder.init(device),
            prompt_encoder: self.prompt_encoder().init(device),
            mask_decoder: self.mask_decoder.init(device),
        }
    }

    /// A model with the weights of `sd`, which must hold exactly SAM's tensors.
    pub fn load(&self, sd: StateDict, device: &Device) -> Result<Sam, WeightsError> {
        super::checkpoint::load_sam(self, sd, device)
    }
}

/// Segment Anything.
#[derive(Module, Debug)]
pub struct Sam {
    pub image_encoder: ImageEncoder,
    pub prompt_encoder: PromptEncoder,
    pub mask_decoder: MaskDecoder,
}

impl Sam {
    pub fn img_size(&self) -> usize {
        self.prompt_encoder.input_image_size
    }

    /// Image embedding of normalised, padded images `[B, 3, S, S]` → `[B, C, E, E]`.
    pub fn embed(&self, images: Tensor<4>) -> Tensor<4> {
        self.image_encoder.forward(images)
    }

    /// Low-resolution mask logits `[B, M, 4E, 4E]` and IoU predictions `[B, M]` for prompt
    /// sets on an embedding `[1 or B, C, E, E]`. Coordinates are in model-input pixels.
    pub fn decode(
        &self,
        embedding: Tensor<4>,
        points: Option<(Tensor<3>, Tensor<2>)>,
        boxes: Option<Tensor<2>>,
        mask_input: Option<Tensor<4>>,
        multimask_output: bool,
    ) -> (Tensor<4>, Tensor<2>) {
        let device = embedding.device();
        let (sparse, dense) = self
            .prompt_encoder
            .forward(points, boxes, mask_input, &device);
        let pe = self.prompt_encoder.dense_pe(&device);
        self.mask_decoder
            .forward(embedding, pe, sparse, dense, multimask_output)
    }

    /// Parameter counts of the image encoder, prompt encoder and mask decoder.
    pub fn param_counts(&self) -> [(&'static str, usize); 3] {
        [
            ("image_encoder", self.image_encoder.num_params()),
            ("prompt_encoder", self.prompt_encoder.num_params()),
            ("mask_decoder", self.mask_decoder.num_params()),
        ]
    }
}

impl NamedParams for Sam {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        let join = |name: &str| {
            if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}.{name}")
            }
        };
        self.image_encoder.visit_named(&join("image_encoder"), f)?;
        self.prompt_encoder
            .visit_named(&join("prompt_encoder"), f)?;
        self.mask_decoder.visit_named(&join("mask_decoder"), f)
    }
}
