//! `brainsam segment`: prompted segmentation of a NIfTI volume from a prompt file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use brainsam::data::volume::{
    is_gz_path, label_out_type, read_file, read_image, write_file, write_labels,
};
use brainsam::segment::{PromptFile, Session, StopRules};

use super::common::{device, load_model, AwaitNative, FocusArg, Res};

#[derive(clap::Args, Debug)]
pub struct SegmentArgs {
    /// Input MRI (.nii / .nii.gz), any orientation.
    #[arg(long)]
    pub image: PathBuf,
    /// Prompt file: {"prompts": [{"label": 10, "slice_axis": 2, "slice": 120,
    /// "box": [u0, v0, u1, v1]}, {"label": 49, "slice_axis": 0, "slice": 97,
    /// "points": [[u, v, 1], [u, v, 0]]}]} — axes and voxel indices of the file as stored,
    /// (u, v) along the other two axes in increasing order, boxes inclusive. A prompt with
    /// "propagate": true is extended through the volume slice by slice.
    #[arg(long)]
    pub prompts: PathBuf,
    /// Output label volume (input's shape and affine).
    #[arg(long)]
    pub out: PathBuf,
    /// Model checkpoint (default: the bundled model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    #[arg(long, default_value = "ndarray")]
    pub backend: String,
    #[command(flatten)]
    pub focus: FocusArg,
}

pub fn run(a: &SegmentArgs) -> Res {
    let device = device(&a.backend)?;
    let loaded = read_image(&read_file(&a.image)?)?;
    for w in &loaded.warnings {
        eprintln!("warning: {}: {w}", a.image.display());
    }
    let text = std::fs::read_to_string(&a.prompts)
        .map_err(|e| format!("cannot read {}: {e}", a.prompts.display()))?;
    let file = PromptFile::parse(&text)?;
    let (sam, _, of_model) = load_model(a.model.as_deref(), a.adapter.as_deref(), &device)?;
    let mut session = Session::new(&loaded.volume, device)?;
    a.focus.apply(&mut session, of_model)?;
    let prompts = file.to_canonical(loaded.volume.dims, session.orientation())?;
    // Same-slice prompts share one encoding: group them by slice.
    let mut by_slice: BTreeMap<(usize, usize), Vec<usize>> = BTreeMap::new();
    for (i, p) in prompts.iter().enumerate() {
        by_slice.entry((p.axis, p.index)).or_default().push(i);
    }
    let t0 = Instant::now();
    let mut canonical = vec![0i32; session.dims().iter().product()];
    for ((axis, index), ids) in &by_slice {
        for &i in ids {
            let p = &prompts[i];
            let mask = session
                .predict(&sam, *axis, *index, &p.prompt)
                .await_native()?;
            session.paste(&mut canonical, *axis, *index, &mask, p.label)?;
            println!(
                "prompt {i}: label {} on canonical slice {index} of axis {axis}: {} voxels (predicted IoU {:.2})",
                p.label,
                mask.area(),
                mask.iou
            );
            if p.propagate {
                let r = session
                    .propagate(&sam, *axis, *index, &mask, &StopRules::default(), &mut |_, _| {})
                    .await_native()?;
                for (o, m) in canonical.iter_mut().zip(&r.mask) {
                    if *m != 0 {
                        *o = p.label;
                    }
                }
                let [up, down] = r.ends;
                println!(
                    "prompt {i}: propagated to {} voxels on canonical slices {}..={} (up: {}; down: {})",
                    r.mask.iter().filter(|m| **m != 0).count(),
                    down.last,
                    up.last,
                    up.reason.describe(),
                    down.reason.describe()
                );
            }
        }
    }
    let out = session.to_source(canonical)?;
    write_file(
        &a.out,
        &write_labels(&out, label_out_type(&out), is_gz_path(&a.out))?,
    )?;
    println!(
        "wrote {} ({} prompts on {} slices in {:.1?})",
        a.out.display(),
        prompts.len(),
        by_slice.len(),
        t0.elapsed()
    );
    Ok(())
}
