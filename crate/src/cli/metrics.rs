//! `brainsam metrics`: Dice / IoU / HD95 / volume difference of a prediction vs truth.

use brainsam::data::labels::{to_common, Convention, LATERAL_VENTRICLES, SUBCORTICAL};
use brainsam::data::metrics::evaluate;
use brainsam::data::volume::{read_file, read_labels, write_file, LabelVolume};
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
    /// Label convention of the prediction: common (ids 1..16), freesurfer, ibsr, candi,
    /// malc, lpba40 or hammers.
    #[arg(long, default_value = "freesurfer")]
    pub pred_labels: String,
    /// Label convention of the truth (same choices).
    #[arg(long, default_value = "freesurfer")]
    pub truth_labels: String,
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

fn load(
    path: &Path,
    convention: &str,
    ventricles: bool,
) -> Result<LabelVolume, Box<dyn std::error::Error>> {
    let loaded = read_labels(&read_file(path)?)?;
    for w in &loaded.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    if convention.eq_ignore_ascii_case("common") {
        return Ok(loaded.volume);
    }
    Ok(to_common(
        &loaded.volume,
        Convention::parse(convention)?,
        ventricles,
    ))
}

pub fn run(args: &MetricsArgs) -> Result<(), Box<dyn std::error::Error>> {
    let pred = load(&args.pred, &args.pred_labels, args.ventricles)?;
    let truth = load(&args.truth, &args.truth_labels, args.ventricles)?;
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
