//! `brainsam metrics`: Dice / IoU / HD95 / volume difference of a prediction vs truth.

use brainsam::data::labels::{to_common, Convention, LATERAL_VENTRICLES, SUBCORTICAL};
use brainsam::data::metrics::evaluate;
use brainsam::data::nifti::{read_file, write_file};
use brainsam::data::read_labels;
use brainsam::data::volume::LabelVolume;
use std::path::{Path, PathBuf};

/// Compare a predicted label map with the ground truth, per subcortical structure.
#[derive(clap::Args, Debug)]
pub struct MetricsArgs {
    /// Predicted label map (.nii / .nii.gz).
    #[arg(long)]
    pub pred: PathBuf,
    /// Ground-truth label map on the same grid.
    #[arg(long)]
    pub truth: PathBuf,
    /// Label convention of the prediction.
    #[arg(long, default_value = "freesurfer", ignore_case = true)]
    pub pred_labels: LabelConvention,
    /// Label convention of the truth.
    #[arg(long, default_value = "freesurfer", ignore_case = true)]
    pub truth_labels: LabelConvention,
    /// Also score the lateral ventricles.
    #[arg(long)]
    pub ventricles: bool,
    /// CSV output path.
    #[arg(long, default_value = "metrics.csv")]
    pub csv: PathBuf,
    /// JSON output path.
    #[arg(long, default_value = "metrics.json")]
    pub json: PathBuf,
}

/// The label values of a file: brainsam's common ids, or a dataset's convention
/// (`data::labels::Convention`, with the spellings `Convention::parse` takes).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelConvention {
    /// brainsam's ids (1..=16, ventricles 17 and 18), as `segment` and the page write them.
    Common,
    /// FreeSurfer aseg / CMA values (also the shared label maps).
    #[value(alias = "aseg", alias = "fs")]
    Freesurfer,
    Ibsr,
    Candi,
    /// MICCAI 2012 multi-atlas challenge.
    #[value(alias = "miccai2012")]
    Malc,
    #[value(alias = "lpba")]
    Lpba40,
    /// Hammers n30r83 / n30r95.
    #[value(alias = "n30r83", alias = "n30r95")]
    Hammers,
}

impl LabelConvention {
    /// The dataset convention to map from; None for common ids, kept as they are.
    fn convention(self) -> Option<Convention> {
        match self {
            LabelConvention::Common => None,
            LabelConvention::Freesurfer => Some(Convention::FreeSurfer),
            LabelConvention::Ibsr => Some(Convention::Ibsr),
            LabelConvention::Candi => Some(Convention::Candi),
            LabelConvention::Malc => Some(Convention::Malc),
            LabelConvention::Lpba40 => Some(Convention::Lpba40),
            LabelConvention::Hammers => Some(Convention::Hammers),
        }
    }
}

fn load(
    path: &Path,
    convention: LabelConvention,
    ventricles: bool,
) -> Result<LabelVolume, Box<dyn std::error::Error>> {
    let loaded = read_labels(&read_file(path)?)?;
    for w in &loaded.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    Ok(match convention.convention() {
        None => loaded.volume,
        Some(c) => to_common(&loaded.volume, c, ventricles),
    })
}

pub fn run(args: &MetricsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let pred = load(&args.pred, args.pred_labels, args.ventricles)?;
    let truth = load(&args.truth, args.truth_labels, args.ventricles)?;
    let mut structures: Vec<(i32, String)> = SUBCORTICAL
        .iter()
        .map(|s| (s.id as i32, s.name.to_string()))
        .collect();
    if args.ventricles {
        structures.extend(
            LATERAL_VENTRICLES
                .iter()
                .map(|s| (s.id as i32, s.name.to_string())),
        );
    }
    let report = evaluate(&pred, &truth, &structures)?;
    say(format_args!("{}", report.table().trim_end()));
    write_file(&args.csv, report.csv().as_bytes())?;
    write_file(&args.json, report.json()?.as_bytes())?;
    say(format_args!(
        "wrote {} and {}",
        args.csv.display(),
        args.json.display()
    ));
    Ok(())
}

/// Prints a line; a closed stdout (e.g. `| head`) is not an error worth a panic.
fn say(args: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{args}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    /// Every name `Convention::parse` takes is a value of `--pred-labels`, for the same
    /// convention.
    #[test]
    fn every_convention_name_is_a_choice() {
        for name in [
            "freesurfer",
            "aseg",
            "fs",
            "ibsr",
            "candi",
            "malc",
            "miccai2012",
            "lpba40",
            "lpba",
            "hammers",
            "n30r83",
            "n30r95",
            "FreeSurfer",
        ] {
            let choice = LabelConvention::from_str(name, true).unwrap();
            assert_eq!(
                choice.convention(),
                Some(Convention::parse(name).unwrap()),
                "{name}"
            );
        }
        assert_eq!(
            LabelConvention::from_str("common", true)
                .unwrap()
                .convention(),
            None
        );
        assert!(LabelConvention::from_str("aseg2", true).is_err());
    }
}
