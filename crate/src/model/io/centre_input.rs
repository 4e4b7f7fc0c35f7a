//! Moving a model trained on three copies of a slice to a 2.5-D input (slices k − d, k,
//! k + d) without changing what it computes: the patch embedding's weights for the three
//! channels fold into the centre channel's, the neighbours' start at zero, and the bias
//! takes up the channels' different normalisation (SAM's per-channel mean and std). Training
//! then learns what the neighbours add, as zero-initialised LoRA or identity blocks do.

use crate::model::fine_features::FINE_KEY;
use crate::model::sam::{PIXEL_MEAN, PIXEL_STD};
use crate::weights::{HostTensor, StateDict, WeightsError};

const WEIGHT: &str = "image_encoder.patch_embed.proj.weight";
const BIAS: &str = "image_encoder.patch_embed.proj.bias";

/// The state dict with its patch embedding (and the fine features' stem, which also reads
/// the three channels) seated on the centre channel. Exact wherever the input holds image
/// pixels; in the zero padding right and below a non-square slice the patches' bias differs.
pub fn seat_on_centre_channel(sd: &StateDict) -> Result<StateDict, WeightsError> {
    let mut seated = sd.clone();
    seat(&mut seated, WEIGHT, BIAS)?;
    let stem = format!("{FINE_KEY}.stem");
    if sd.get(&format!("{stem}.weight")).is_some() {
        seat(
            &mut seated,
            &format!("{stem}.weight"),
            &format!("{stem}.bias"),
        )?;
    }
    Ok(seated)
}

/// Seats one convolution over the three input channels.
fn seat(sd: &mut StateDict, weight_key: &str, bias_key: &str) -> Result<(), WeightsError> {
    let missing = |k: &str| WeightsError::NotSam(format!("no tensor {k}"));
    let w = sd.get(weight_key).ok_or_else(|| missing(weight_key))?;
    let b = sd.get(bias_key).ok_or_else(|| missing(bias_key))?;
    let [out, 3, kh, kw] = w.shape[..] else {
        return Err(WeightsError::NotSam(format!(
            "{weight_key} has shape {:?}, not [D, 3, k, k]",
            w.shape
        )));
    };
    if b.shape != [out] {
        return Err(WeightsError::NotSam(format!(
            "{bias_key} has shape {:?}",
            b.shape
        )));
    }
    let (m, s) = (PIXEL_MEAN.map(f64::from), PIXEL_STD.map(f64::from));
    let k = kh * kw;
    let mut weight = vec![0.0f32; w.data.len()];
    let mut bias = b.data.clone();
    for o in 0..out {
        let at = |c: usize, i: usize| w.data[(o * 3 + c) * k + i] as f64;
        for i in 0..k {
            // The centre channel carries the sum the three copies contributed ...
            let slope: f64 = (0..3).map(|c| at(c, i) / s[c]).sum();
            weight[(o * 3 + 1) * k + i] = (s[1] * slope) as f32;
            // ... and the bias what their different means shifted.
            let shift: f64 = (0..3).map(|c| at(c, i) * (m[1] - m[c]) / s[c]).sum();
            bias[o] += shift as f32;
        }
    }
    let shape = w.shape.clone();
    sd.insert(weight_key, HostTensor::new(shape, weight));
    sd.insert(bias_key, HostTensor::new(vec![out], bias));
    Ok(())
}

#[cfg(test)]
mod tests {
    use burn::prelude::*;

    use super::*;
    use crate::model::io::checkpoint::{load_sam, state_dict};
    use crate::model::predictor::preprocess_image;
    use crate::model::transforms::ResizeLongestSide;
    use crate::model::Geometry;

    #[test]
    fn a_seated_model_embeds_any_neighbours_as_the_original_embeds_copies() {
        seated_embeddings_equal(false);
    }

    /// The fine features' stem reads the pixels too: seated alike, its features (which
    /// travel in the embedding) stay equal as well.
    #[test]
    fn a_seated_model_with_fine_features_embeds_them_alike() {
        seated_embeddings_equal(true);
    }

    fn seated_embeddings_equal(fine: bool) {
        let device = crate::backend::cpu();
        device.seed(4);
        let g = Geometry::tiny(8, 4);
        let mut sam = g.config().init(&device);
        if fine {
            assert!(sam.add_fine_features(&device));
        }
        let sd = pollster::block_on(state_dict(&sam)).unwrap();
        let seated = load_sam(&g.config(), seat_on_centre_channel(&sd).unwrap(), &device).unwrap();
        let s = g.image_size;
        let t = ResizeLongestSide { target_length: s };
        // A square slice (no padding), its copies and the same centre between other slices.
        let grey: Vec<u8> = (0..s * s).map(|i| ((i * 37) % 251) as u8).collect();
        let copies: Vec<u8> = grey.iter().flat_map(|g| [*g; 3]).collect();
        let slab: Vec<u8> = grey
            .iter()
            .enumerate()
            .flat_map(|(i, g)| [((i * 11) % 256) as u8, *g, (255 - (i % 256)) as u8])
            .collect();
        let embed = |m: &crate::model::Sam, rgb: &[u8]| {
            let (x, _) = preprocess_image(&t, rgb, s, s).unwrap();
            m.embed(Tensor::<4>::from_data(
                TensorData::new(x, [1, 3, s, s]),
                &device,
            ))
        };
        let want = embed(&sam, &copies);
        let diff: f32 = (embed(&seated, &slab) - want.clone())
            .abs()
            .max()
            .into_scalar();
        assert!(diff < 1e-4, "embeddings differ by {diff}");
        // Not vacuous: the original model does see the neighbours.
        let other: f32 = (embed(&sam, &slab) - want).abs().max().into_scalar();
        assert!(other > 1e-2, "the neighbours changed nothing ({other})");
    }
}
