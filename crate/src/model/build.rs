//! Model presets and geometry read off a checkpoint.
//!
//! ViT-B, -L and -H differ by four numbers: embed dim, depth, heads and global blocks.

use super::image_encoder::ImageEncoderConfig;
use super::sam::SamConfig;
use crate::weights::{StateDict, WeightsError};

/// Free geometry of the image encoder (patch 16, window 14, prompt dim 256, SAM's decoder).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Geometry {
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub global_attn_indexes: Vec<usize>,
    pub image_size: usize,
}

impl Geometry {
    pub fn preset(name: &str) -> Option<Self> {
        let (embed_dim, depth, num_heads, global_attn_indexes) = match name {
            "vit_b" => (768, 12, 12, vec![2, 5, 8, 11]),
            "vit_l" => (1024, 24, 16, vec![5, 11, 17, 23]),
            "vit_h" => (1280, 32, 16, vec![7, 15, 23, 31]),
            _ => return None,
        };
        Some(Self {
            embed_dim,
            depth,
            num_heads,
            global_attn_indexes,
            image_size: 1024,
        })
    }

    /// Checks the numbers make a model (divisibility, ranges) before building one.
    pub fn validate(&self) -> Result<(), WeightsError> {
        let bad = |m: String| Err(WeightsError::NotSam(m));
        if self.num_heads == 0 || self.embed_dim == 0 || self.embed_dim % self.num_heads != 0 {
            return bad(format!(
                "embed_dim {} is not a positive multiple of num_heads {}",
                self.embed_dim, self.num_heads
            ));
        }
        if self.image_size < 16 || self.image_size % 16 != 0 {
            return bad(format!(
                "image_size {} is not a positive multiple of 16",
                self.image_size
            ));
        }
        if let Some(i) = self.global_attn_indexes.iter().find(|&&i| i >= self.depth) {
            return bad(format!(
                "global attention block {i} is beyond depth {}",
                self.depth
            ));
        }
        Ok(())
    }

    pub fn config(&self) -> SamConfig {
        SamConfig::new().with_image_encoder(
            ImageEncoderConfig::new()
                .with_embed_dim(self.embed_dim)
                .with_depth(self.depth)
                .with_num_heads(self.num_heads)
                .with_global_attn_indexes(self.global_attn_indexes.clone())
                .with_img_size(self.image_size),
        )
    }

    /// Reads the geometry off SAM's tensor shapes: embed dim from the patch embedding, depth
    /// from the block count, heads from the relative-position width, global blocks from the
    /// relative-position length, image size from the position grid.
    pub fn from_state_dict(sd: &StateDict) -> Result<Self, WeightsError> {
        let shape = |k: &str| {
            sd.shape(k)
                .map(<[usize]>::to_vec)
                .ok_or_else(|| WeightsError::NotSam(format!("no tensor `{k}`")))
        };
        let patch = shape("image_encoder.patch_embed.proj.weight")?;
        let embed_dim = match patch.as_slice() {
            [e, 3, 16, 16] => *e,
            other => {
                return Err(WeightsError::NotSam(format!(
                    "patch embedding has shape {other:?}, expected [embed_dim, 3, 16, 16]"
                )))
            }
        };
        let grid = match shape("image_encoder.pos_embed")?.as_slice() {
            [1, g, g2, _] if g == g2 => *g,
            other => {
                return Err(WeightsError::NotSam(format!(
                    "pos_embed has shape {other:?}"
                )))
            }
        };
        let depth = (0..)
            .take_while(|i| {
                sd.shape(&format!("image_encoder.blocks.{i}.norm1.weight"))
                    .is_some()
            })
            .count();
        if depth == 0 {
            return Err(WeightsError::NotSam("no image encoder blocks".into()));
        }
        let mut num_heads = 0;
        let mut global_attn_indexes = Vec::new();
        for i in 0..depth {
            let rel = shape(&format!("image_encoder.blocks.{i}.attn.rel_pos_h"))?;
            let (len, head_dim) = match rel.as_slice() {
                [l, d] if *d > 0 => (*l, *d),
                other => {
                    return Err(WeightsError::NotSam(format!(
                        "block {i} rel_pos_h has shape {other:?}"
                    )))
                }
            };
            num_heads = embed_dim / head_dim;
            // Windowed blocks span 2*14-1 positions; global ones span the whole grid.
            if len != 2 * 14 - 1 {
                global_attn_indexes.push(i);
            }
        }
        let g = Self {
            embed_dim,
            depth,
            num_heads,
            global_attn_indexes,
            image_size: grid * 16,
        };
        g.validate()?;
        Ok(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::HostTensor;

    #[test]
    fn presets_differ_by_the_four_numbers_of_the_paper() {
        let b = Geometry::preset("vit_b").unwrap();
        let h = Geometry::preset("vit_h").unwrap();
        assert_eq!((b.embed_dim, b.depth, b.num_heads), (768, 12, 12));
        assert_eq!((h.embed_dim, h.depth, h.num_heads), (1280, 32, 16));
        assert_eq!(h.global_attn_indexes, vec![7, 15, 23, 31]);
        assert!(Geometry::preset("vit_x").is_none());
    }

    #[test]
    fn geometry_is_read_off_tensor_shapes() {
        let mut sd = StateDict::new();
        let mut put = |k: &str, s: &[usize]| {
            sd.insert(
                k,
                HostTensor::new(s.to_vec(), vec![0.0; s.iter().product()]),
            )
        };
        put("image_encoder.patch_embed.proj.weight", &[64, 3, 16, 16]);
        put("image_encoder.pos_embed", &[1, 16, 16, 64]);
        for (i, len) in [27, 31, 27].into_iter().enumerate() {
            put(&format!("image_encoder.blocks.{i}.norm1.weight"), &[64]);
            put(
                &format!("image_encoder.blocks.{i}.attn.rel_pos_h"),
                &[len, 16],
            );
        }
        let g = Geometry::from_state_dict(&sd).unwrap();
        assert_eq!(
            g,
            Geometry {
                embed_dim: 64,
                depth: 3,
                num_heads: 4,
                global_attn_indexes: vec![1],
                image_size: 256
            }
        );
    }

    #[test]
    fn impossible_geometry_is_refused() {
        let mut g = Geometry::preset("vit_b").unwrap();
        g.num_heads = 7;
        assert!(g.validate().is_err());
        g.num_heads = 12;
        g.global_attn_indexes.push(12);
        assert!(g.validate().is_err());
    }
}
