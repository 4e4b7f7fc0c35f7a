//! Model presets and geometry read off a checkpoint.
//!
//! ViT-B, -L and -H differ by four numbers: embed dim, depth, heads and global blocks.

use super::image_encoder::ImageEncoderConfig;
use super::sam::SamConfig;
use crate::weights::{StateDict, WeightsError};

/// Free geometry of the image encoder (prompt dim 256 and SAM's decoder are fixed).
/// Meta's models use patch 16 and window 14; a smaller patch gives finer masks (the
/// decoder's logits are 4 / patch of the input resolution), which small brain structures need.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Geometry {
    pub embed_dim: usize,
    pub depth: usize,
    pub num_heads: usize,
    pub global_attn_indexes: Vec<usize>,
    pub image_size: usize,
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    #[serde(default = "default_window")]
    pub window_size: usize,
}

fn default_patch() -> usize {
    16
}

fn default_window() -> usize {
    14
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
            patch_size: 16,
            window_size: 14,
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
        if self.patch_size == 0 || self.patch_size > 64 {
            return bad(format!("patch_size {} is not in 1..=64", self.patch_size));
        }
        if self.image_size < self.patch_size || self.image_size % self.patch_size != 0 {
            return bad(format!(
                "image_size {} is not a positive multiple of the patch size {}",
                self.image_size, self.patch_size
            ));
        }
        if self.window_size == 0 {
            return bad("window_size must be positive".into());
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
                .with_img_size(self.image_size)
                .with_patch_size(self.patch_size)
                .with_window_size(self.window_size),
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
        let (embed_dim, patch_size) = match patch.as_slice() {
            [e, 3, p, p2] if p == p2 => (*e, *p),
            other => {
                return Err(WeightsError::NotSam(format!(
                    "patch embedding has shape {other:?}, expected [embed_dim, 3, p, p]"
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
        let mut window_size = None;
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
            // Global blocks span the whole grid (2g - 1 positions); windowed ones 2w - 1.
            if len == 2 * grid - 1 {
                global_attn_indexes.push(i);
            } else {
                window_size = Some(len.div_ceil(2));
            }
        }
        let g = Self {
            embed_dim,
            depth,
            num_heads,
            global_attn_indexes,
            image_size: grid * patch_size,
            patch_size,
            window_size: window_size.unwrap_or(14),
        };
        g.validate()?;
        Ok(g)
    }
}

#[cfg(test)]
impl Geometry {
    /// The small SAM the unit tests build: 32-d, 2 blocks (the second global), 64-px input.
    pub(crate) fn tiny(patch_size: usize, window_size: usize) -> Self {
        Self {
            embed_dim: 32,
            depth: 2,
            num_heads: 2,
            global_attn_indexes: vec![1],
            image_size: 64,
            patch_size,
            window_size,
        }
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
                image_size: 256,
                patch_size: 16,
                window_size: 14,
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
