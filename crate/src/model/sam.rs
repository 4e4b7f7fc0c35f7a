//! The whole model: image encoder, prompt encoder and mask decoder.

use burn::prelude::*;

use super::common::{NamedParams, Visitor};
use super::image_encoder::{ImageEncoder, ImageEncoderConfig};
use super::mask_decoder::{MaskDecoder, MaskDecoderConfig};
use super::prompt_encoder::{PromptEncoder, PromptEncoderConfig};
use crate::weights::WeightsError;

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
}

/// The prompts of a decoder call, batched `[B, ..]` (see [`PromptEncoder::forward`]).
#[derive(Clone, Default)]
pub struct Prompts {
    pub points: Option<(Tensor<3>, Tensor<2>)>,
    pub boxes: Option<Tensor<2>>,
    pub mask_input: Option<Tensor<4>>,
    /// Structure kinds `[B]`; used only by a model with structure embeddings.
    pub structures: Option<Tensor<1, Int>>,
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
    /// sets on an embedding `[1 or B, C, E, E]`. Coordinates are in model-input pixels;
    /// `structures` `[B]` names each prompt's structure kind (see [`Prompts::structures`]).
    pub fn decode(
        &self,
        embedding: Tensor<4>,
        prompts: Prompts,
        multimask_output: bool,
    ) -> (Tensor<4>, Tensor<2>) {
        let device = embedding.device();
        let (sparse, dense) = self.prompt_encoder.forward(
            prompts.points,
            prompts.boxes,
            prompts.mask_input,
            prompts.structures,
            &device,
        );
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

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::model::build::Geometry;
    use crate::model::io::checkpoint::{load_sam, state_dict};
    use crate::model::prompt_encoder::STRUCTURE_KINDS;
    use burn::tensor::Distribution;

    #[test]
    fn structure_tokens_are_ignored_without_embeddings_and_survive_a_save_and_load() {
        let device = crate::backend::cpu();
        device.seed(7);
        let config = Geometry::tiny(16, 14).config();
        let mut sam = config.init(&device);
        let image = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let emb = sam.embed(image);
        let decode = |s: &Sam, kind: Option<i64>| -> Vec<f32> {
            let prompts = Prompts {
                boxes: Some(Tensor::from_data(
                    TensorData::new(vec![10.0f32, 12.0, 40.0, 50.0], [1, 4]),
                    &device,
                )),
                structures: kind.map(|k| Tensor::from_data(TensorData::new(vec![k], [1]), &device)),
                ..Default::default()
            };
            let (logits, _) = s.decode(emb.clone(), prompts, false);
            logits.into_data().try_to_vec().unwrap()
        };
        // SAM as Meta made it: a kind changes nothing.
        assert_eq!(decode(&sam, Some(3)), decode(&sam, None));

        sam.prompt_encoder.add_structures(STRUCTURE_KINDS, &device);
        let named = decode(&sam, Some(3));
        assert_ne!(named, decode(&sam, None), "the structure token is not used");
        assert_ne!(named, decode(&sam, Some(4)), "kinds are not told apart");

        let sd = pollster::block_on(state_dict(&sam)).unwrap();
        let key = "prompt_encoder.structure_embeddings.weight";
        let c = sam.prompt_encoder.no_mask_embed.dims()[1];
        assert_eq!(sd.shape(key), Some(&[STRUCTURE_KINDS, c][..]));
        let loaded = load_sam(&config, sd, &device).unwrap();
        assert!(loaded.prompt_encoder.knows_structures());
        assert_eq!(decode(&loaded, Some(3)), named);

        // A table of another row count is refused, not indexed past its end.
        let mut sd = pollster::block_on(state_dict(&sam)).unwrap();
        sd.insert(
            key,
            crate::weights::HostTensor::new(vec![4, c], vec![0.0; 4 * c]),
        );
        let Err(err) = load_sam(&config, sd, &device) else {
            panic!("a 4-row table loaded");
        };
        assert!(err.to_string().contains("structure_embeddings"), "{err}");
    }
}
