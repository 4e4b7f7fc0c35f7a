//! Deepening a trained image encoder: new windowed-attention blocks inserted as identities.
//!
//! A new block's attention output projection and second MLP layer start at zero, so each of
//! its residual branches adds exactly nothing and the grown model computes what the trained
//! one did; training then fills the new blocks in (as LoRA's zero B does for adapters).
//! Used to test whether encoder capacity limits a model that further training no longer
//! improves, without starting from scratch.

use burn::prelude::Device;

use super::checkpoint::state_dict;
use crate::model::build::Geometry;
use crate::weights::{HostTensor, StateDict, WeightsError};

const BLOCKS: &str = "image_encoder.blocks.";

/// Tensors of a new block that start at zero: the ends of both residual branches.
const ZEROED: [&str; 4] = [
    "attn.proj.weight",
    "attn.proj.bias",
    "mlp.lin2.weight",
    "mlp.lin2.bias",
];

/// Inserts windowed blocks at positions `at` of the grown encoder (indices into the new
/// block list). Other weights come from `sd`; a new block's remaining weights are drawn
/// as a fresh model's are (seeded by `device`).
pub fn insert_encoder_blocks(
    sd: &StateDict,
    g: &Geometry,
    at: &[usize],
    device: &Device,
) -> Result<(StateDict, Geometry), WeightsError> {
    let depth = g.depth + at.len();
    let mut at = at.to_vec();
    at.sort_unstable();
    at.dedup();
    if at.len() + g.depth != depth {
        return Err(WeightsError::NotSam("a block position is repeated".into()));
    }
    if let Some(p) = at.iter().find(|&&p| p >= depth) {
        return Err(WeightsError::NotSam(format!(
            "block position {p} is beyond the grown depth {depth}"
        )));
    }
    // Old block index -> new index.
    let old_to_new: Vec<usize> = (0..depth).filter(|i| !at.contains(i)).collect();
    let grown = Geometry {
        depth,
        global_attn_indexes: g
            .global_attn_indexes
            .iter()
            .map(|&i| old_to_new[i])
            .collect(),
        ..g.clone()
    };
    grown.validate()?;
    let fresh = pollster::block_on(state_dict(&grown.config().init(device)))?;

    let mut out = StateDict::new();
    for (key, t) in sd.iter() {
        match block_key(key) {
            Some((i, rest)) if i < g.depth => {
                out.insert(format!("{BLOCKS}{}.{rest}", old_to_new[i]), t.clone())
            }
            Some(_) => {
                return Err(WeightsError::NotSam(format!(
                    "`{key}` is beyond the encoder's depth {}",
                    g.depth
                )))
            }
            None => out.insert(key.clone(), t.clone()),
        }
    }
    for (key, t) in fresh.iter() {
        let Some((i, rest)) = block_key(key) else {
            continue;
        };
        if !at.contains(&i) {
            continue;
        }
        let t = if ZEROED.contains(&rest) {
            HostTensor::new(t.shape.clone(), vec![0.0; t.data.len()])
        } else {
            t.clone()
        };
        out.insert(key.clone(), t);
    }
    Ok((out, grown))
}

/// `image_encoder.blocks.{i}.{rest}` -> (i, rest).
fn block_key(key: &str) -> Option<(usize, &str)> {
    let tail = key.strip_prefix(BLOCKS)?;
    let (i, rest) = tail.split_once('.')?;
    Some((i.parse().ok()?, rest))
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::backend;
    use crate::model::io::checkpoint::{geometry_of, load_sam};
    use burn::tensor::{Distribution, Tensor};

    fn small() -> Geometry {
        Geometry {
            embed_dim: 32,
            depth: 2,
            num_heads: 2,
            global_attn_indexes: vec![1],
            image_size: 64,
            patch_size: 8,
            window_size: 4,
        }
    }

    /// A random small model, its state dict and geometry.
    fn model(device: &Device, seed: u64) -> (crate::model::Sam, StateDict, Geometry) {
        device.seed(seed);
        let g = small();
        let sam = g.config().init(device);
        let sd = pollster::block_on(state_dict(&sam)).expect("state dict");
        (sam, sd, g)
    }

    #[test]
    fn grown_encoder_computes_the_same_embedding() {
        let device = backend::cpu();
        let (sam, sd, g) = model(&device, 3);
        let (grown_sd, grown) = insert_encoder_blocks(&sd, &g, &[1, 3], &device).expect("grow");
        assert_eq!(grown.depth, 4);
        // Old blocks 0 and 1 (global) are now 0 and 2.
        assert_eq!(grown.global_attn_indexes, vec![2]);
        assert_eq!(geometry_of(&grown_sd).expect("geometry"), grown);
        let big = load_sam(&grown.config(), grown_sd, &device).expect("load grown");

        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let a = sam.image_encoder.forward(x.clone()).into_data();
        let b = big.image_encoder.forward(x).into_data();
        assert_eq!(a, b, "identity blocks changed the embedding");
    }

    #[test]
    fn new_blocks_are_not_identity_before_zeroing() {
        // Guards the test above: a fresh block without its zeroed projections does change
        // the embedding, so equality there comes from the zeroing.
        let device = backend::cpu();
        let (sam, sd, g) = model(&device, 4);
        let (mut grown_sd, grown) = insert_encoder_blocks(&sd, &g, &[2], &device).expect("grow");
        let w = grown_sd
            .get("image_encoder.blocks.2.mlp.lin2.weight")
            .expect("new block")
            .clone();
        assert!(w.data.iter().all(|&v| v == 0.0));
        grown_sd.insert(
            "image_encoder.blocks.2.mlp.lin2.weight",
            HostTensor::new(w.shape.clone(), vec![0.05; w.data.len()]),
        );
        let big = load_sam(&grown.config(), grown_sd, &device).expect("load grown");
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let a = sam.image_encoder.forward(x.clone()).into_data();
        let b = big.image_encoder.forward(x).into_data();
        assert_ne!(a, b);
    }

    #[test]
    fn rejects_positions_beyond_the_grown_depth() {
        let device = backend::cpu();
        let (_, sd, g) = model(&device, 5);
        assert!(insert_encoder_blocks(&sd, &g, &[5], &device).is_err());
        assert!(insert_encoder_blocks(&sd, &g, &[1, 1], &device).is_err());
    }
}
