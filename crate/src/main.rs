//! The `brainsam` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's option enum (v2 and v3; checked by a test).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// A training step frees and reallocates the same large buffers every step; purging them
/// after a delay (mimalloc's default) makes the kernel zero them again (ViT-B LoRA step:
/// ~5.5 s with purging, ~4.3 s without, `brainsam bench`, noisy machine).
fn keep_freed_pages() {
    // SAFETY: sets one integer option; mimalloc reads it at every purge.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

/// Segment Anything for subcortical brain structures in MRI.
#[derive(Parser, Debug)]
#[command(name = "brainsam", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Geometry and parameter counts of a SAM checkpoint (.pth or .safetensors).
    Info(cli::model::InfoArgs),
    /// Convert a SAM checkpoint to safetensors (fp32, or fp16 with --half).
    Convert(cli::model::ConvertArgs),
    /// Write a randomly initialised SAM checkpoint of a preset or custom geometry.
    Init(cli::model::InitArgs),
    /// Synthesise an MRI of a given contrast from a label map (domain randomisation).
    Synth(cli::synth::SynthArgs),
    /// Dice, IoU, 95 % Hausdorff and volume difference per structure.
    Metrics(cli::metrics::MetricsArgs),
    /// Train LoRA adapters (or every weight) on label maps with synthetic contrasts.
    #[cfg(feature = "train")]
    Train(Box<cli::train::TrainArgs>),
    /// 3-D Dice of prompted segmentation on held-out subjects; last line `mean_dice=…`.
    Evaluate(cli::evaluate::EvaluateArgs),
    /// Choose a mask threshold per kind of structure on subjects set apart for it, and
    /// write them into a copy of the model.
    Calibrate(Box<cli::calibrate::CalibrateArgs>),
    /// Segment a NIfTI volume from a prompt file (default: the bundled model).
    Segment(cli::segment::SegmentArgs),
    /// Encoder, decoder and LoRA-training-step timings on random weights (JSON lines).
    Bench(cli::bench::BenchArgs),
}

fn main() -> ExitCode {
    keep_freed_pages();
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Info(a) => cli::model::info(a),
        Command::Convert(a) => cli::model::convert(a),
        Command::Init(a) => cli::model::init(a),
        Command::Synth(a) => cli::synth::run(a),
        Command::Metrics(a) => cli::metrics::run(a),
        #[cfg(feature = "train")]
        Command::Train(a) => cli::train::run(a),
        Command::Evaluate(a) => cli::evaluate::run(a),
        Command::Calibrate(a) => cli::calibrate::run(a),
        Command::Segment(a) => cli::segment::run(a),
        Command::Bench(a) => cli::bench::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use brainsam::data::synth::Contrast;
    use brainsam::model::lora::LoraTarget;
    use brainsam::train::schedule::Decay;
    use clap::error::ErrorKind;
    use clap::{CommandFactory, ValueEnum};
    use cli::choices::{Axis, Backend};

    /// The option index is a C enum position: mimalloc v3 (libmimalloc-sys's default) sets
    /// purge_delay's default to 1000 ms, so reading 1000 there (nothing set yet in the test
    /// binary) confirms the index.
    #[test]
    fn the_purge_delay_option_is_the_one_we_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            let v = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
            assert_eq!(v, 1000);
        }
    }

    fn parse(args: &[&str]) -> Result<Command, clap::Error> {
        Cli::try_parse_from(std::iter::once("brainsam").chain(args.iter().copied()))
            .map(|c| c.command)
    }

    /// Refused as a bad value (not a possible value, or refused by its value parser).
    fn refused(args: &[&str]) -> bool {
        parse(args).is_err_and(|e| {
            eprintln!("{args:?}: {e}");
            matches!(
                e.kind(),
                ErrorKind::InvalidValue | ErrorKind::ValueValidation
            )
        })
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// A typo in a choice is clap's error, before any work.
    #[test]
    fn typos_in_choices_are_refused_by_clap() {
        let synth = ["synth", "--label-map", "l.nii.gz", "--out", "o"];
        for bad in [
            &["--contrast", "t3"][..],
            &["--slice-thickness", "5", "--slice-axis", "3"],
        ] {
            assert!(refused(&[&synth[..], bad].concat()), "{bad:?}");
        }
        let evaluate = ["evaluate", "--label-maps", "d"];
        for bad in [
            &["--prompt", "boxes"][..],
            &["--axis", "transverse"],
            &["--backend", "cuda"],
            &["--labels", "1,l"],
            &["--focus", "2"],
            &["--stop-rules", "default,max_extend=0.8"],
            &["--stop-rules", "default,box_margin=-1"],
            &["--stop-rules", "default,max_extent=NaN"],
            &["--pairs", "ibsr2:/data"],
        ] {
            assert!(refused(&[&evaluate[..], bad].concat()), "{bad:?}");
        }
        let train = ["train", "--out", "o", "--model", "m"];
        for bad in [
            &["--contrasts", "t1,t3"][..],
            &["--lora-targets", "q,o"],
            &["--axes", "0,3"],
            &["--decay", "linear"],
        ] {
            assert!(refused(&[&train[..], bad].concat()), "{bad:?}");
        }
        let e = parse(&["init", "--out", "o", "--preset", "vit_s"]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidValue);
        let e = parse(&[
            "metrics",
            "--pred",
            "p",
            "--truth",
            "t",
            "--pred-labels",
            "fsl",
        ]);
        assert_eq!(e.unwrap_err().kind(), ErrorKind::InvalidValue);
    }

    /// The spellings the commands took when they matched strings still parse, to the same
    /// choices.
    #[test]
    fn old_spellings_parse_to_the_same_choices() {
        let Command::Evaluate(a) = parse(&[
            "evaluate",
            "--label-maps",
            "d",
            "--contrast",
            "T2",
            "--prompt",
            "box-fill",
            "--axis",
            "sagittal",
            "--backend",
            "cpu",
            "--labels",
            "3,4",
            "--focus",
            "2,64",
            "--stop-rules",
            "legacy,max_extent=0.8",
        ])
        .unwrap() else {
            panic!("not evaluate")
        };
        assert_eq!(a.contrast, Contrast::T2);
        assert_eq!(a.prompt, cli::evaluate::PromptKind::BoxFill);
        assert_eq!(a.axis, Axis::Sagittal);
        assert_eq!(a.backend, Backend::Cpu);
        assert_eq!(a.labels.0, [3, 4]);
        assert_eq!(a.stop_rules.map(|r| r.max_extent), Some(0.8));
        let Command::Train(t) = parse(&[
            "train",
            "--out",
            "o",
            "--model",
            "m",
            "--contrasts",
            "t1,t2,random,random",
            "--lora-targets",
            "q,v,mlp",
            "--axes",
            "0,2",
            "--decay",
            "poly:0.9",
            "--backend",
            "gpu",
        ])
        .unwrap() else {
            panic!("not train")
        };
        use Contrast::{Random, T1, T2};
        assert_eq!(t.contrasts, [T1, T2, Random, Random]);
        use LoraTarget::{Mlp, Q, V};
        assert_eq!(t.lora_targets, [Q, V, Mlp]);
        assert_eq!(t.axes, [Axis::Sagittal, Axis::Axial]);
        assert_eq!(t.decay, Decay::Poly(0.9));
        assert_eq!(t.backend, Backend::Wgpu);
        // The defaults are the old ones.
        let Command::Train(t) = parse(&["train", "--out", "o", "--model", "m"]).unwrap() else {
            panic!("not train")
        };
        assert_eq!(t.contrasts, [T1, T2]);
        assert_eq!(t.lora_targets, [Q, V]);
        assert_eq!(t.axes, [Axis::Sagittal, Axis::Coronal, Axis::Axial]);
        assert_eq!(t.labels.0, (1..=16).collect::<Vec<_>>());
        assert_eq!(t.decay, Decay::Cosine);
        let Command::Metrics(m) = parse(&[
            "metrics",
            "--pred",
            "p",
            "--truth",
            "t",
            "--truth-labels",
            "aseg",
        ])
        .unwrap() else {
            panic!("not metrics")
        };
        assert_eq!(m.truth_labels, cli::metrics::LabelConvention::Freesurfer);
    }

    /// `--mask-threshold` takes auto, sam or a logit within range; calibrate's grid takes
    /// negative values.
    #[test]
    fn mask_thresholds_parse_and_out_of_range_values_are_refused() {
        use cli::common::ThresholdChoice;
        let threshold = |v: &str| {
            parse(&[
                "segment",
                "--image",
                "i",
                "--prompts",
                "p",
                "--out",
                "o",
                "--mask-threshold",
                v,
            ])
            .map(|c| match c {
                Command::Segment(a) => a.threshold.mask_threshold,
                _ => panic!("not segment"),
            })
        };
        assert_eq!(threshold("auto").unwrap(), ThresholdChoice::Auto);
        assert_eq!(threshold("sam").unwrap(), ThresholdChoice::Uniform(0.0));
        assert_eq!(threshold("-1.5").unwrap(), ThresholdChoice::Uniform(-1.5));
        for bad in ["20", "wide", "inf"] {
            assert_eq!(
                threshold(bad).unwrap_err().kind(),
                ErrorKind::ValueValidation,
                "{bad}"
            );
        }
        let Command::Calibrate(c) = parse(&[
            "calibrate",
            "--label-maps",
            "d",
            "--out",
            "o",
            "--grid",
            "-1,0.5",
        ])
        .unwrap() else {
            panic!("not calibrate")
        };
        assert_eq!(c.grid, [-1.0, 0.5]);
        assert_eq!(c.eval.prompt, cli::evaluate::PromptKind::Box);
    }

    /// Every `--preset` is one of Meta's geometries.
    #[test]
    fn every_preset_is_a_geometry() {
        for p in cli::model::Preset::value_variants() {
            let name = cli::choices::name(p);
            assert!(brainsam::model::Geometry::preset(&name).is_some(), "{name}");
        }
    }
}
