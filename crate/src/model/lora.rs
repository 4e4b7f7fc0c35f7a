//! Low-rank adapters (LoRA) on the image encoder's attention projections and, optionally,
//! its MLPs.
//!
//! The paper's method (after SAMed): the encoder stays frozen and each adapted projection
//! gains `ΔW = (alpha / rank) · A B` with `A: [in, r]`, `B: [r, out]`, B starting at zero so
//! training starts exactly at the base model. q and v live inside the fused `qkv`
//! projection, so their updates are added to the matching thirds of its output.
//!
//! This file holds the adapters and their arithmetic only; the image encoder decides where
//! they act and folds them into its weights ([`Adapter`] records which of the two it is).

use super::kernels::gelu;
use burn::module::Param;
use burn::prelude::*;
use burn::tensor::module::linear;
use burn::tensor::Distribution;

use super::common::{MlpBlock, NamedParams, ParamRef, Visitor};
use crate::weights::WeightsError;

/// An attention projection an adapter can target.
#[derive(Config, Debug, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum LoraTarget {
    Q,
    K,
    V,
    Proj,
    /// Both layers of every block's MLP (`lin1`, `lin2`).
    Mlp,
}

/// Where and how big the adapters are.
#[derive(Config, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank of each update. Default: 4 (SAMed, the paper).
    #[config(default = 4)]
    pub rank: usize,
    /// Scale numerator: `ΔW = (alpha / rank) · A B`. Default: 4.0 (scale 1).
    #[config(default = 4.0)]
    pub alpha: f64,
    /// Adapted projections of every block. Default: q and v.
    #[config(default = "vec![LoraTarget::Q, LoraTarget::V]")]
    pub targets: Vec<LoraTarget>,
}

/// One low-rank update `x ↦ scale · (x A) B`.
#[derive(Module, Debug)]
pub struct LowRank {
    /// `[in, rank]`, Kaiming-uniform.
    pub a: Param<Tensor<2>>,
    /// `[rank, out]`, zero at initialisation.
    pub b: Param<Tensor<2>>,
    pub scale: f64,
}

impl LowRank {
    pub fn new(d_in: usize, d_out: usize, rank: usize, alpha: f64, device: &Device) -> Self {
        let bound = 1.0 / (d_in as f64).sqrt();
        Self {
            a: Param::from_tensor(Tensor::random(
                [d_in, rank],
                Distribution::Uniform(-bound, bound),
                device,
            )),
            b: Param::from_tensor(Tensor::zeros([rank, d_out], device)),
            scale: alpha / rank as f64,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        linear(linear(x, self.a.val(), None), self.b.val(), None) * self.scale
    }

    /// The dense update `[in, out]` (burn's linear layout).
    pub fn delta(&self) -> Tensor<2> {
        self.a.val().matmul(self.b.val()) * self.scale
    }
}

/// An adapter and where it acts: on top of the base weights (active) or folded into them
/// (merged, kept so it can be taken back out). One value, so an adapter cannot be both.
#[derive(Module, Debug)]
pub struct Adapter<L: Module> {
    lora: L,
    merged: bool,
}

impl<L: Module> Adapter<L> {
    /// A fresh, active adapter.
    pub fn new(lora: L) -> Self {
        Self {
            lora,
            merged: false,
        }
    }

    /// The adapter when it acts on top of the base weights; None once merged.
    pub fn active(&self) -> Option<&L> {
        (!self.merged).then_some(&self.lora)
    }

    pub fn active_mut(&mut self) -> Option<&mut L> {
        (!self.merged).then_some(&mut self.lora)
    }

    pub fn is_merged(&self) -> bool {
        self.merged
    }

    /// Folds an active adapter into the base weights with `apply(lora, 1.0)`.
    pub fn merge(&mut self, apply: impl FnOnce(&L, f64)) {
        if !self.merged {
            apply(&self.lora, 1.0);
            self.merged = true;
        }
    }

    /// Takes a merged adapter back out with `apply(lora, -1.0)`.
    pub fn unmerge(&mut self, apply: impl FnOnce(&L, f64)) {
        if self.merged {
            apply(&self.lora, -1.0);
            self.merged = false;
        }
    }
}

/// The adapters of one attention block.
#[derive(Module, Debug)]
pub struct AttentionLora {
    pub q: Option<LowRank>,
    pub k: Option<LowRank>,
    pub v: Option<LowRank>,
    pub proj: Option<LowRank>,
}

impl AttentionLora {
    pub fn new(dim: usize, config: &LoraConfig, device: &Device) -> Self {
        let make = |t: LoraTarget| {
            config
                .targets
                .contains(&t)
                .then(|| LowRank::new(dim, dim, config.rank, config.alpha, device))
        };
        Self {
            q: make(LoraTarget::Q),
            k: make(LoraTarget::K),
            v: make(LoraTarget::V),
            proj: make(LoraTarget::Proj),
        }
    }

    /// The q, k and v projections of input `x` with their updates added, each where it has
    /// an adapter (added to the thirds of the fused output, never to a zero-padded copy of
    /// it: that would cost a fill, a concatenation and a full-width add per block).
    pub fn add_to_qkv<const D: usize>(&self, x: Tensor<D>, qkv: [Tensor<D>; 3]) -> [Tensor<D>; 3] {
        let [q, k, v] = qkv;
        let add = |lora: &Option<LowRank>, t: Tensor<D>| match lora {
            Some(l) => t + l.forward(x.clone()),
            None => t,
        };
        [add(&self.q, q), add(&self.k, k), add(&self.v, v)]
    }

    /// Dense update of the qkv weight `[C, 3C]`, zeros where a projection has no adapter.
    pub fn qkv_weight_delta(&self, dim: usize, device: &Device) -> Tensor<2> {
        let parts = [&self.q, &self.k, &self.v].map(|p| {
            p.as_ref()
                .map(LowRank::delta)
                .unwrap_or_else(|| Tensor::zeros([dim, dim], device))
        });
        Tensor::cat(parts.into(), 1)
    }
}

impl NamedParams for AttentionLora {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        let parts = [
            ("q", &mut self.q),
            ("k", &mut self.k),
            ("v", &mut self.v),
            ("proj", &mut self.proj),
        ];
        for (name, part) in parts {
            if let Some(l) = part {
                f(&format!("{prefix}.lora_{name}.a"), ParamRef::D2(&mut l.a))?;
                f(&format!("{prefix}.lora_{name}.b"), ParamRef::D2(&mut l.b))?;
            }
        }
        Ok(())
    }
}

/// The adapters of one block's MLP: `lin1` (`dim → hidden`) and `lin2` (`hidden → dim`).
#[derive(Module, Debug)]
pub struct MlpLora {
    pub lin1: LowRank,
    pub lin2: LowRank,
}

impl MlpLora {
    pub fn new(dim: usize, hidden: usize, config: &LoraConfig, device: &Device) -> Self {
        Self {
            lin1: LowRank::new(dim, hidden, config.rank, config.alpha, device),
            lin2: LowRank::new(hidden, dim, config.rank, config.alpha, device),
        }
    }

    /// The encoder's GELU MLP with both updates added to its layers' outputs.
    pub fn forward<const D: usize>(&self, mlp: &MlpBlock, x: Tensor<D>) -> Tensor<D> {
        let h = gelu(mlp.lin1.forward(x.clone()) + self.lin1.forward(x));
        mlp.lin2.forward(h.clone()) + self.lin2.forward(h)
    }
}

impl NamedParams for MlpLora {
    fn visit_named(&mut self, prefix: &str, f: &mut Visitor<'_>) -> Result<(), WeightsError> {
        for (name, l) in [("lin1", &mut self.lin1), ("lin2", &mut self.lin2)] {
            f(&format!("{prefix}.lora_{name}.a"), ParamRef::D2(&mut l.a))?;
            f(&format!("{prefix}.lora_{name}.b"), ParamRef::D2(&mut l.b))?;
        }
        Ok(())
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::model::Geometry;

    fn small_config() -> crate::model::SamConfig {
        Geometry::tiny(16, 14).config()
    }

    fn small() -> (crate::model::Sam, Device) {
        let device = crate::backend::cpu();
        (small_config().init(&device), device)
    }

    fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn lora_b_is_zero_initialised_so_the_encoder_output_is_unchanged() {
        let (mut sam, device) = small();
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let before = sam.image_encoder.forward(x.clone());
        sam.image_encoder.add_lora(&LoraConfig::new(), &device);
        let after = sam.image_encoder.forward(x);
        assert_eq!(max_diff(before, after), 0.0);
    }

    #[test]
    fn merged_adapters_compute_what_unmerged_ones_do_and_unmerge_restores_the_base() {
        let (mut sam, device) = small();
        let config =
            LoraConfig::new().with_targets(vec![LoraTarget::Q, LoraTarget::V, LoraTarget::Proj]);
        sam.image_encoder.add_lora(&config, &device);
        for block in sam.image_encoder.blocks.iter_mut() {
            let lora = block
                .attn
                .lora
                .as_mut()
                .and_then(Adapter::active_mut)
                .unwrap();
            for l in [&mut lora.q, &mut lora.v, &mut lora.proj]
                .into_iter()
                .flatten()
            {
                l.b = Param::from_tensor(Tensor::random(
                    l.b.dims(),
                    Distribution::Normal(0.0, 0.5),
                    &device,
                ));
            }
        }
        let base_qkv = sam.image_encoder.blocks[0].attn.qkv.weight.val();
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let with_adapters = sam.image_encoder.forward(x.clone());
        sam.image_encoder.merge_lora();
        assert!(sam.image_encoder.blocks[0]
            .attn
            .lora
            .as_ref()
            .and_then(Adapter::active)
            .is_none());
        let merged = sam.image_encoder.forward(x.clone());
        assert!(max_diff(with_adapters.clone(), merged) < 1e-4);
        sam.image_encoder.unmerge_lora();
        let restored = sam.image_encoder.blocks[0].attn.qkv.weight.val();
        let d: f32 = (restored - base_qkv).abs().max().into_scalar();
        assert!(d < 1e-5, "base qkv changed by {d}");
        assert!(max_diff(with_adapters, sam.image_encoder.forward(x)) < 1e-4);
    }

    #[test]
    fn adapters_round_trip_through_their_state_dict_with_the_same_output() {
        let (mut sam, device) = small();
        sam.image_encoder.add_lora(&LoraConfig::new(), &device);
        for block in sam.image_encoder.blocks.iter_mut() {
            let lora = block
                .attn
                .lora
                .as_mut()
                .and_then(Adapter::active_mut)
                .unwrap();
            for l in [&mut lora.q, &mut lora.v].into_iter().flatten() {
                l.b = Param::from_tensor(Tensor::random(
                    l.b.dims(),
                    Distribution::Normal(0.0, 0.5),
                    &device,
                ));
            }
        }
        let sd = pollster::block_on(crate::model::io::checkpoint::lora_state_dict(&sam)).unwrap();
        assert_eq!(sd.len(), 2 * 2 * 2, "2 blocks x (q, v) x (a, b)");
        assert_eq!(
            sd.shape("image_encoder.blocks.1.attn.lora_v.a"),
            Some(&[32usize, 4][..])
        );
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let expected = sam.image_encoder.forward(x.clone());

        // A new model from the base checkpoint plus the adapter file computes the same.
        let base = pollster::block_on(crate::model::io::checkpoint::state_dict(&sam)).unwrap();
        let mut rebuilt =
            crate::model::io::checkpoint::load_sam(&small_config(), base, &device).unwrap();
        let bytes = crate::weights::write_safetensors(sd.iter(), false, None).unwrap();
        let sd = crate::weights::StateDict::from_bytes(&bytes).unwrap();
        crate::model::io::checkpoint::load_lora(&mut rebuilt, &LoraConfig::new(), sd, &device)
            .unwrap();
        assert_eq!(max_diff(expected, rebuilt.image_encoder.forward(x)), 0.0);
    }

    #[test]
    fn an_adapter_of_the_wrong_rank_is_refused_with_the_key() {
        let (mut sam, device) = small();
        sam.image_encoder
            .add_lora(&LoraConfig::new().with_rank(8), &device);
        let sd = pollster::block_on(crate::model::io::checkpoint::lora_state_dict(&sam)).unwrap();
        let (mut other, _) = small();
        let err =
            crate::model::io::checkpoint::load_lora(&mut other, &LoraConfig::new(), sd, &device)
                .unwrap_err()
                .to_string();
        assert!(err.contains("lora_q.a") && err.contains("[32, 8]"), "{err}");
    }

    #[test]
    fn mlp_adapters_change_the_output_merge_exactly_and_unmerge_to_the_base() {
        let (mut sam, device) = small();
        let x = Tensor::<4>::random([1, 3, 64, 64], Distribution::Normal(0.0, 1.0), &device);
        let base = sam.image_encoder.forward(x.clone());
        let base_lin2 = sam.image_encoder.blocks[1].mlp.lin2.weight.val();
        let config = LoraConfig::new().with_targets(vec![LoraTarget::Mlp]);
        sam.image_encoder.add_lora(&config, &device);
        assert_eq!(
            max_diff(base.clone(), sam.image_encoder.forward(x.clone())),
            0.0
        );
        for block in sam.image_encoder.blocks.iter_mut() {
            assert!(
                block.attn.lora.is_none(),
                "no attention adapters were asked for"
            );
            let lora = block
                .mlp_lora
                .as_mut()
                .and_then(Adapter::active_mut)
                .unwrap();
            for l in [&mut lora.lin1, &mut lora.lin2] {
                l.b = Param::from_tensor(Tensor::random(
                    l.b.dims(),
                    Distribution::Normal(0.0, 0.5),
                    &device,
                ));
            }
        }
        let adapted = sam.image_encoder.forward(x.clone());
        assert!(
            max_diff(adapted.clone(), base.clone()) > 1e-3,
            "adapters had no effect"
        );
        sam.image_encoder.merge_lora();
        assert!(sam.image_encoder.blocks[0]
            .mlp_lora
            .as_ref()
            .and_then(Adapter::active)
            .is_none());
        assert!(max_diff(adapted, sam.image_encoder.forward(x.clone())) < 1e-4);
        sam.image_encoder.unmerge_lora();
        let d: f32 = (sam.image_encoder.blocks[1].mlp.lin2.weight.val() - base_lin2)
            .abs()
            .max()
            .into_scalar();
        assert!(d < 1e-5, "base lin2 changed by {d}");
        let sd = pollster::block_on(crate::model::io::checkpoint::lora_state_dict(&sam)).unwrap();
        assert_eq!(
            sd.shape("image_encoder.blocks.0.mlp.lora_lin1.a"),
            Some(&[32usize, 4][..])
        );
        assert_eq!(
            sd.shape("image_encoder.blocks.0.mlp.lora_lin2.a"),
            Some(&[128usize, 4][..])
        );
    }

    #[test]
    fn merging_twice_folds_the_adapter_in_once_and_unmerging_twice_takes_it_out_once() {
        let (mut sam, device) = small();
        sam.image_encoder.add_lora(&LoraConfig::new(), &device);
        let lora = sam.image_encoder.blocks[0]
            .attn
            .lora
            .as_mut()
            .and_then(Adapter::active_mut)
            .unwrap();
        let q = lora.q.as_mut().unwrap();
        q.b = Param::from_tensor(Tensor::random(
            q.b.dims(),
            Distribution::Normal(0.0, 0.5),
            &device,
        ));
        let diff = |a: Tensor<2>, b: Tensor<2>| -> f32 { (a - b).abs().max().into_scalar() };
        let base = sam.image_encoder.blocks[0].attn.qkv.weight.val();
        sam.image_encoder.merge_lora();
        let once = sam.image_encoder.blocks[0].attn.qkv.weight.val();
        assert!(diff(once.clone(), base.clone()) > 1e-3);
        sam.image_encoder.merge_lora();
        let twice = sam.image_encoder.blocks[0].attn.qkv.weight.val();
        assert_eq!(diff(twice, once), 0.0);
        assert!(
            !sam.image_encoder.has_lora(),
            "a merged adapter still acts on top"
        );
        sam.image_encoder.unmerge_lora();
        sam.image_encoder.unmerge_lora();
        let back = sam.image_encoder.blocks[0].attn.qkv.weight.val();
        assert!(diff(back, base) < 1e-5);
        assert!(sam.image_encoder.has_lora());
    }

    #[test]
    fn rank_four_q_v_adapters_on_vit_b_have_the_expected_size() {
        // 12 blocks x (q, v) x (768 x 4 + 4 x 768).
        let device = crate::backend::cpu();
        let lora = AttentionLora::new(768, &LoraConfig::new(), &device);
        assert_eq!(lora.num_params() * 12, 147_456);
        // MLP: 12 x (768 x 4 + 4 x 3072 + 3072 x 4 + 4 x 768).
        let mlp = MlpLora::new(768, 3072, &LoraConfig::new(), &device);
        assert_eq!(mlp.num_params() * 12, 368_640);
    }
}
