//! Model presets: the geometry of a SAM and the config it builds (reading it off a checkpoint
//! is [`super::io::checkpoint::geometry_of`]).
//!
//! ViT-B, -L and -H differ by four numbers: embed dim, depth, heads and global blocks.

use super::image_encoder::ImageEncoderConfig;
use super::sam::SamConfig;
use crate::weights::WeightsError;

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
    fn impossible_geometry_is_refused() {
        let mut g = Geometry::preset("vit_b").unwrap();
        g.num_heads = 7;
        assert!(g.validate().is_err());
        g.num_heads = 12;
        g.global_attn_indexes.push(12);
        assert!(g.validate().is_err());
    }
}
