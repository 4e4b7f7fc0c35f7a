//! Typed values of the command line that several subcommands share: clap lists the
//! choices in `--help` and refuses anything else before a command starts.
//!
//! Choices the library already names (contrasts, LoRA targets) derive `clap::ValueEnum` on
//! the library's own enum behind the `cli` feature; the ones here exist only on the command
//! line.

use burn::prelude::Device;
use clap::ValueEnum;

use super::common::Res;

/// Where the model runs.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// CPU: the fastest CPU backend of this build (LibTorch if built with it, else Flex).
    Cpu,
    /// burn's Flex CPU backend (pure Rust, SIMD kernels on every core).
    Flex,
    /// burn's older NdArray CPU backend; without the `ndarray` feature the name is taken
    /// as `cpu` (it was the CPU backend's name before Flex).
    Ndarray,
    /// PyTorch's CPU kernels through LibTorch (builds with the `libtorch` feature).
    Libtorch,
    /// GPU through wgpu: Vulkan, Metal or DX12 (builds with the `wgpu` feature).
    #[value(alias = "gpu")]
    Wgpu,
}

impl Backend {
    /// The device, or why this build has none of this kind.
    pub fn device(self) -> Res<Device> {
        match self {
            Backend::Cpu => Ok(brainsam::backend::cpu()),
            Backend::Flex => Ok(brainsam::backend::flex()),
            #[cfg(feature = "ndarray")]
            Backend::Ndarray => Ok(brainsam::backend::ndarray()),
            #[cfg(not(feature = "ndarray"))]
            Backend::Ndarray => {
                eprintln!("note: `--backend ndarray` now runs the `flex` backend");
                Ok(brainsam::backend::flex())
            }
            #[cfg(feature = "libtorch")]
            Backend::Libtorch => Ok(brainsam::backend::libtorch()),
            #[cfg(not(feature = "libtorch"))]
            Backend::Libtorch => Err("backend `libtorch` is not available in this build".into()),
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(pollster::block_on(brainsam::backend::gpu())
                .map_err(|e| format!("no GPU adapter: {e}"))?),
            #[cfg(not(feature = "wgpu"))]
            Backend::Wgpu => Err("backend `wgpu` is not available in this build (cpu only)".into()),
        }
    }
}

/// An anatomical slice direction of a canonical (RAS) volume; `0`, `1` and `2`, the voxel
/// axes they are, are accepted too.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Voxel axis 0 (left-right).
    #[value(alias = "0")]
    Sagittal,
    /// Voxel axis 1 (posterior-anterior).
    #[value(alias = "1")]
    Coronal,
    /// Voxel axis 2 (inferior-superior).
    #[value(alias = "2")]
    Axial,
}

impl Axis {
    /// The canonical voxel axis.
    pub fn index(self) -> usize {
        match self {
            Axis::Sagittal => 0,
            Axis::Coronal => 1,
            Axis::Axial => 2,
        }
    }
}

/// The spelling of a choice on the command line (its `--help` name).
pub fn name<E: ValueEnum>(e: &E) -> String {
    e.to_possible_value()
        .map(|v| v.get_name().to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainsam::data::synth::Contrast;
    use brainsam::model::lora::LoraTarget;

    /// Every spelling the string-matching parsers took before the choices were typed.
    #[test]
    fn old_spellings_still_parse() {
        let parse = |s: &str| Backend::from_str(s, true);
        assert_eq!(parse("ndarray"), Ok(Backend::Ndarray));
        assert_eq!(parse("cpu"), Ok(Backend::Cpu));
        assert_eq!(parse("flex"), Ok(Backend::Flex));
        assert_eq!(parse("libtorch"), Ok(Backend::Libtorch));
        assert_eq!(parse("wgpu"), Ok(Backend::Wgpu));
        assert_eq!(parse("gpu"), Ok(Backend::Wgpu));
        assert!(parse("cuda").is_err());
        for (s, a) in [
            ("sagittal", 0),
            ("coronal", 1),
            ("axial", 2),
            ("0", 0),
            ("1", 1),
            ("2", 2),
        ] {
            assert_eq!(Axis::from_str(s, false).map(Axis::index), Ok(a), "{s}");
        }
        assert!(Axis::from_str("3", false).is_err());
        for (s, c) in [
            ("t1", Contrast::T1),
            ("T2", Contrast::T2),
            ("pd", Contrast::Pd),
            ("flair", Contrast::Flair),
            ("random", Contrast::Random),
        ] {
            assert_eq!(Contrast::from_str(s, true), Ok(c), "{s}");
        }
        assert!(Contrast::from_str("t3", true).is_err());
        for (s, t) in [
            ("q", LoraTarget::Q),
            ("k", LoraTarget::K),
            ("v", LoraTarget::V),
            ("proj", LoraTarget::Proj),
            ("mlp", LoraTarget::Mlp),
        ] {
            assert_eq!(LoraTarget::from_str(s, false), Ok(t), "{s}");
        }
        assert_eq!(name(&Contrast::Pd), "pd");
        assert_eq!(name(&Backend::Wgpu), "wgpu");
    }
}
