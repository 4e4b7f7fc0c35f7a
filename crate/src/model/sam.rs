//! The whole model: image encoder, prompt encoder and mask decoder.

use burn::prelude::*;

use super::common::{NamedParams, Visitor};
use super::fine_features::{FineFeatures, FINE_KEY};
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
            fine_features: None,
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
    /// Our fine-feature path ([`super::fine_features`]), when the model has one.
    pub fine_features: Option<FineFeatures>,
}

impl Sam {
    pub fn img_size(&self) -> usize {
        self.prompt_encoder.input_image_size
    }

    /// Image embedding of normalised, padded images `[B, 3, S, S]` → `[B, C, E, E]`; a
    /// model with fine features returns them behind the C channels, `[B, C + 16F, E, E]`, so
    /// that whatever keeps, batches or selects embeddings keeps them too.
    pub fn embed(&self, images: Tensor<4>) -> Tensor<4> {
        match &self.fine_features {
            None => self.image_encoder.forward(images),
            Some(fine) => Tensor::cat(
                vec![
                    self.image_encoder.forward(images.clone()),
                    fine.encode(images),
                ],
                1,
            ),
        }
    }

    /// Adds a fresh fine-feature path (its projection zero: predictions unchanged) unless
    /// the model has one; false when the patch size allows none (not a multiple of 4).
    pub fn add_fine_features(&mut self, device: &Device) -> bool {
        if self.fine_features.is_none() {
            let patch = self.image_encoder.patch_embed.weight.dims()[2];
            let upscaled = self.mask_decoder.upscaled_channels();
            self.fine_features = FineFeatures::new(patch, upscaled, device);
        }
        self.fine_features.is_some()
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
        let c = self.prompt_encoder.embed_dim();
        let [b, channels, _, _] = embedding.dims();
        let (embedding, fine) = match &self.fine_features {
            Some(path) if channels > c => (
                embedding.clone().slice([0..b, 0..c]),
                Some(path.project(embedding.slice([0..b, c..channels]))),
            ),
            _ => (embedding, None),
        };
        let (sparse, dense) = self.prompt_encoder.forward(
            prompts.points,
            prompts.boxes,
            prompts.mask_input,
            prompts.structures,
            &device,
        );
        let pe = self.prompt_encoder.dense_pe(&device);
        self.mask_decoder
            .forward(embedding, pe, sparse, dense, fine, multimask_output)
    }

    /// Parameter counts of the image encoder, prompt encoder, mask decoder and fine
    /// features (0 without).
    pub fn param_counts(&self) -> [(&'static str, usize); 4] {
        [
            ("image_encoder", self.image_encoder.num_params()),
            ("prompt_encoder", self.prompt_encoder.num_params()),
            ("mask_decoder", self.mask_decoder.num_params()),
            (
                FINE_KEY,
                self.fine_features.as_ref().map_or(0, |f| f.num_params()),
            ),
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
        self.mask_decoder.visit_named(&join("mask_decoder"), f)?;
        match self.fine_features.as_mut() {
            Some(fine) => fine.visit_named(&join(FINE_KEY), f),
            None => Ok(()),
        }
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
