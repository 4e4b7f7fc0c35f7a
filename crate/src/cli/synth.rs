//! `brainsam synth`: synthetic MRI (image + deformed labels) from a label map.

use brainsam::data::labels::{to_common, Convention};
use brainsam::data::montage::render_png;
use brainsam::data::nifti::{label_out_type, read_file, write_file, write_image, write_labels};
use brainsam::data::read_labels;
use brainsam::data::synth::{synthesize, Contrast, LowRes, SynthConfig};
use std::path::PathBuf;

/// Synthesise a multi-contrast MRI from a FreeSurfer-convention label map.
#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Label map (.nii or .nii.gz, FreeSurfer aseg values).
    #[arg(long)]
    pub label_map: PathBuf,
    /// Contrast to imitate.
    #[arg(long, default_value = "t1", ignore_case = true)]
    pub contrast: Contrast,
    /// Random seed; the same seed gives the same output.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Output directory (created); receives image.nii.gz and labels.nii.gz.
    #[arg(long)]
    pub out: PathBuf,
    /// Disable the random affine and elastic deformation.
    #[arg(long)]
    pub no_deform: bool,
    /// Simulate thick slices of this thickness in mm (e.g. 5 for 1×1×5 mm).
    #[arg(long)]
    pub slice_thickness: Option<f64>,
    /// Voxel axis (0, 1, 2, as stored) of the thick slices; random if omitted.
    #[arg(long, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..3))]
    pub slice_axis: Option<usize>,
    /// Also write montage.png (three planes with subcortical outlines).
    #[arg(long)]
    pub montage: bool,
}

pub fn run(args: &SynthArgs) -> Result<(), Box<dyn std::error::Error>> {
    let contrast = args.contrast;
    let loaded = read_labels(&read_file(&args.label_map)?)?;
    for w in &loaded.warnings {
        eprintln!("warning: {}: {w}", args.label_map.display());
    }
    let mut cfg = match contrast {
        Contrast::Random => SynthConfig::randomized(),
        c => SynthConfig::preset(c),
    };
    if args.no_deform {
        cfg = cfg.without_deformation();
    }
    if let Some(t) = args.slice_thickness {
        if !(t.is_finite() && t > 0.0) {
            return Err(
                format!("--slice-thickness must be a positive number of mm, got {t}").into(),
            );
        }
        cfg.low_res_prob = 1.0;
        cfg.low_res = LowRes {
            axis: args.slice_axis,
            thickness_mm: (t, t),
        };
    }
    let start = std::time::Instant::now();
    let (image, labels) = synthesize(&loaded.volume, &cfg, args.seed)?;
    let took = start.elapsed();
    std::fs::create_dir_all(&args.out)?;
    let (pi, pl) = (
        args.out.join("image.nii.gz"),
        args.out.join("labels.nii.gz"),
    );
    write_file(&pi, &write_image(&image, true)?)?;
    write_file(&pl, &write_labels(&labels, label_out_type(&labels), true)?)?;
    say(format_args!(
        "synthesised {} (seed {}) {:?} in {:.2?}: {} + {}",
        contrast.name(),
        args.seed,
        image.dims,
        took,
        pi.display(),
        pl.display()
    ));
    if args.montage {
        let common = to_common(&labels, Convention::FreeSurfer, false);
        let pm = args.out.join("montage.png");
        write_file(&pm, &render_png(&image, &common, 2)?)?;
        say(format_args!("montage: {}", pm.display()));
    }
    Ok(())
}

/// Prints a line; a closed stdout (e.g. `| head`) is not an error worth a panic.
fn say(args: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{args}");
}
