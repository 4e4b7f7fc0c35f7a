//! Fine features: a small convolutional path from the input pixels straight to the grid of
//! the mask logits, added to the decoder's upscaled image features. Not part of Meta's SAM.
//!
//! SAM's masks come from tokens one patch wide (8 px here, 2 voxels of a 64-px window)
//! upscaled by two transposed convolutions that see no pixel: the boundary of a small
//! structure is guessed from its tokens. HQ-SAM (Ke et al., 2023) fed early, finer features
//! into the decoder for that reason; here the finer features come from the image itself,
//! two convolutions at the logits' resolution, computed with the embedding (so a refining
//! click does not pay for them) and mixed in per pixel by a projection that starts at zero
//! (a model gains the path without changing what it predicts).

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use super::common::{conv2d_matmul, NamedParams, Visitor};
use super::kernels::gelu;
use crate::weights::WeightsError;

/// Channels of the fine features.
pub const FINE_CHANNELS: usize = 16;
/// `fine_features.*` in our checkpoints (Meta's have none).
pub const FINE_KEY: &str = "fine_features";

/// The path's layers.
#[derive(Module, Debug)]
pub struct FineFeatures {
    /// Patchify to the logits' grid: kernel = stride = patch / 4 (the logits are 4E wide).
    pub stem: Conv2d,
    /// 3 × 3 "same", the features' spatial context.
    pub conv: Conv2d,
    /// Per pixel onto the upscaled features' channels (the hypernetworks' width).
    pub proj: Linear,
}

impl FineFeatures {
    /// A fresh path for a model of `patch_size` whose upscaled features have `upscaled`
    /// channels; `None` when the patch is not a multiple of 4 (no integer stride reaches
    /// the logits' grid).
    pub fn new(patch_size: usize, upscaled: usize, device: &Device) -> Option<Self> {
        let stride = Self::stride(patch_size)?;
        Some(Self {
            stem: Conv2dConfig::new([3, FINE_CHANNELS], [stride; 2])
                .with_stride([stride; 2])
                .init(device),
            conv: Conv2dConfig::new([FINE_CHANNELS, FINE_CHANNELS], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                .init(device),
            proj: LinearConfig::new(FINE_CHANNELS, upscaled)
                .with_initializer(Initializer::Zeros)
                .init(device),
        })
    }

    fn stride(patch_size: usize) -> Option<usize> {
        (patch_size % 4 == 0 && patch_size > 0).then_some(patch_size / 4)
    }

    /// Images `[B, 3, S, S]` → features `[B, 16F, E, E]`: the `[B, F, 4E, 4E]` features in
    /// the pixel order of the decoder's upscaled features (2E grid, then the 2 × 2 block),
    /// channels last, laid out so that they can travel behind an embedding's channels.
    pub fn encode(&self, images: Tensor<4>) -> Tensor<4> {
        let x = gelu(conv2d_matmul(&self.stem, images));
        let x = gelu(conv2d_matmul(&self.conv, x)); // [B, F, 4E, 4E]
        let [b, f, g, _] = x.dims();
        let e = g / 4;
        x.reshape([b, f, 2 * e, 2, 2 * e, 2])
            .permute([0, 2, 4, 3, 5, 1])
            .reshape([b, 16 * f, e, e])
    }

    /// The decoder's term of features from [`Self::encode`]: `[B, 16F, E, E]` →
    /// `[B, 16E², C/8]`, to add to the upscaled features.
    pub fn project(&self, fine: Tensor<4>) -> Tensor<3> {
        let [b, c, e, _] = fine.dims();
        self.proj.forward(fine.reshape([b, 16 * e * e, c / 16]))
    }
}

impl NamedParams for FineFeatures {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        self.stem.visit_named(&format!("{prefix}.stem"), f)?;
        self.conv.visit_named(&format!("{prefix}.conv"), f)?;
        self.proj.visit_named(&format!("{prefix}.proj"), f)
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::model::build::Geometry;
    use crate::model::io::checkpoint::{load_sam, state_dict};
    use crate::model::{Prompts, Sam};
    use burn::module::Param;
    use burn::tensor::Distribution;

    /// 64-px input, patch 8: an 8² embedding, 32² logits.
    fn model(device: &Device) -> Sam {
        device.seed(3);
        Geometry::tiny(8, 4).config().init(device)
    }

    fn logits(sam: &Sam, image: &Tensor<4>) -> Vec<f32> {
        let device = image.device();
        let prompts = Prompts {
            boxes: Some(Tensor::from_data(
                TensorData::new(vec![8.0f32, 10.0, 50.0, 44.0], [1, 4]),
                &device,
            )),
            ..Default::default()
        };
        let (l, _) = sam.decode(sam.embed(image.clone()), prompts, true);
        l.into_data().try_to_vec().unwrap()
    }

    fn randomise_projection(sam: &mut Sam, device: &Device) {
        let fine = sam.fine_features.as_mut().unwrap();
        let dims = fine.proj.weight.dims();
        fine.proj.weight =
            Param::from_tensor(Tensor::random(dims, Distribution::Normal(0.0, 1.0), device));
    }

    #[test]
    fn a_new_path_changes_no_prediction_until_trained_and_then_survives_a_save_and_load() {
        let device = crate::backend::cpu();
        let mut sam = model(&device);
        let image = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let before = logits(&sam, &image);
        assert!(sam.add_fine_features(&device));
        let c = sam.prompt_encoder.embed_dim();
        assert_eq!(
            sam.embed(image.clone()).dims(),
            [1, c + 16 * FINE_CHANNELS, 8, 8]
        );
        assert_eq!(logits(&sam, &image), before);

        randomise_projection(&mut sam, &device);
        let trained = logits(&sam, &image);
        assert_ne!(trained, before, "the fine features are not used");
        let sd = pollster::block_on(state_dict(&sam)).unwrap();
        let loaded = load_sam(&Geometry::tiny(8, 4).config(), sd, &device).unwrap();
        assert!(loaded.fine_features.is_some());
        assert_eq!(logits(&loaded, &image), trained);
    }

    /// The features reach the logits where their pixels are: without biases the path maps
    /// a black image to zero, so on a spot the fine term is nonzero only within the stem's
    /// and the 3 × 3 convolution's reach of it (a wrong pixel order would move it elsewhere).
    #[test]
    fn a_spot_in_the_image_moves_the_logits_only_around_its_place() {
        let device = crate::backend::cpu();
        let mut sam = model(&device);
        assert!(sam.add_fine_features(&device));
        randomise_projection(&mut sam, &device);
        let fine = sam.fine_features.as_mut().unwrap();
        for conv in [&mut fine.stem, &mut fine.conv] {
            let bias = conv.bias.as_ref().unwrap().dims();
            conv.bias = Some(Param::from_tensor(Tensor::zeros(bias, &device)));
        }
        let mut without = sam.clone();
        without.fine_features = None;
        let mut pixels = vec![0.0f32; 3 * 64 * 64];
        for c in 0..3 {
            for (y, x) in [(40, 12), (40, 13), (41, 12), (41, 13)] {
                pixels[c * 64 * 64 + y * 64 + x] = 3.0;
            }
        }
        let image = Tensor::<4>::from_data(TensorData::new(pixels, [1, 3, 64, 64]), &device);
        let with = logits(&sam, &image);
        let base = logits(&without, &image);
        // The fine term of each mask plane: zero but near (20, 6).
        for m in 0..3 {
            let plane = |v: &[f32], y: usize, x: usize| v[m * 32 * 32 + y * 32 + x];
            let mut moved = Vec::new();
            for y in 0..32 {
                for x in 0..32 {
                    let d = plane(&with, y, x) - plane(&base, y, x);
                    if d.abs() > 1e-5 {
                        moved.push((y, x));
                    }
                }
            }
            assert!(!moved.is_empty(), "mask {m}: the spot changed nothing");
            for (y, x) in moved {
                assert!(
                    (19..=21).contains(&y) && (5..=7).contains(&x),
                    "mask {m}: logit ({y}, {x}) moved, far from the spot at (20, 6)"
                );
            }
        }
    }

    #[test]
    fn a_stem_of_the_wrong_shape_is_refused_with_its_key() {
        let device = crate::backend::cpu();
        let mut sam = model(&device);
        assert!(sam.add_fine_features(&device));
        let mut sd = pollster::block_on(state_dict(&sam)).unwrap();
        let key = format!("{FINE_KEY}.stem.weight");
        sd.insert(
            &key,
            crate::weights::HostTensor::new(vec![8, 3, 2, 2], vec![0.0; 8 * 12]),
        );
        let Err(err) = load_sam(&Geometry::tiny(8, 4).config(), sd, &device) else {
            panic!("an 8-channel stem loaded");
        };
        assert!(err.to_string().contains(&key), "{err}");
        let mut odd = Geometry::tiny(8, 4);
        odd.patch_size = 6;
        odd.image_size = 60;
        assert!(!odd.config().init(&device).add_fine_features(&device));
    }

    /// Under autodiff the path learns: its projection gets a gradient while it is zero.
    #[test]
    fn the_zero_projection_gets_a_gradient() {
        let device = crate::backend::cpu().autodiff();
        let mut sam = model(&device);
        assert!(sam.add_fine_features(&device));
        let image = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let prompts = Prompts {
            boxes: Some(Tensor::from_data(
                TensorData::new(vec![8.0f32, 10.0, 50.0, 44.0], [1, 4]),
                &device,
            )),
            ..Default::default()
        };
        let (l, _) = sam.decode(sam.embed(image), prompts, false);
        let grads = l.powi_scalar(2).mean().backward();
        let fine = sam.fine_features.as_ref().unwrap();
        let g = fine
            .proj
            .weight
            .grad(&grads)
            .expect("no gradient for the projection");
        let norm: f32 = g.abs().sum().into_scalar();
        assert!(norm > 0.0, "the projection's gradient is zero");
    }
}
