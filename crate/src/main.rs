//! The `brainsam` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

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
    /// Segment a NIfTI volume from a prompt file (default: the bundled model).
    Segment(cli::segment::SegmentArgs),
    /// Encoder, decoder and LoRA-training-step timings on random weights (JSON lines).
    Bench(cli::bench::BenchArgs),
}

fn main() -> ExitCode {
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
