//! `brainsam segment`: prompted segmentation of a volume (NIfTI or MGZ) from a prompt file.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use brainsam::data::nifti::{is_gz_path, label_out_type, read_file, write_file, write_labels};
use brainsam::data::read_image;
use brainsam::model::Sam;
use brainsam::segment::{PromptFile, Session, SliceMask, StopRules};

use super::choices::Backend;
use super::common::{load_model, AwaitNative, FocusArg, MaskThresholdArg, Res};

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
    #[arg(long, default_value = "cpu")]
    pub backend: Backend,
    /// Do not tell the model which structure a prompt is for. By default a prompt whose
    /// `label` is one of the 16 structures' FreeSurfer values names that structure to a
    /// model trained with structure embeddings (`train --structure-prob`), and its mask is
    /// cut at that structure kind's threshold (`--mask-threshold`); unnamed, at 0.
    #[arg(long)]
    pub unnamed: bool,
    #[command(flatten)]
    pub focus: FocusArg,
    #[command(flatten)]
    pub threshold: MaskThresholdArg,
}

pub fn run(a: &SegmentArgs) -> Res {
    let device = a.backend.device()?;
    let loaded = read_image(&read_file(&a.image)?)?;
    for w in &loaded.warnings {
        eprintln!("warning: {}: {w}", a.image.display());
    }
    let text = std::fs::read_to_string(&a.prompts)
        .map_err(|e| format!("cannot read {}: {e}", a.prompts.display()))?;
    let file = PromptFile::parse(&text)?;
    let (sam, _, meta) = load_model(a.model.as_deref(), a.adapter.as_deref(), &device)?;
    let of_model = meta.focus;
    let mut session = Session::new(&loaded.volume, device)?;
    a.focus.apply(&mut session, of_model)?;
    session.set_slice_gap(meta.slice_gap);
    session.set_mask_thresholds(a.threshold.resolve(meta.mask_thresholds));
    let mut prompts = file.to_canonical(loaded.volume.dims, session.orientation())?;
    if a.unnamed {
        prompts.iter_mut().for_each(|p| p.prompt.structure = None);
    }
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
                propagated(
                    &mut canonical,
                    &mut session,
                    &sam,
                    (i, p.label),
                    (*axis, *index),
                    (&mask, p.prompt.structure),
                    &StopRules::for_model(meta.dense_propagation),
                )?;
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

/// Extends prompt `i`'s mask on slice (`axis`, `index`) through the volume and writes the
/// structure into `canonical` with `label`.
fn propagated(
    canonical: &mut [i32],
    session: &mut Session,
    sam: &Sam,
    (i, label): (usize, i32),
    (axis, index): (usize, usize),
    (mask, structure): (&SliceMask, Option<usize>),
    rules: &StopRules,
) -> Res {
    let r = session
        .propagate(sam, axis, index, mask, structure, rules, &mut |_, _| {})
        .await_native()?;
    for (o, m) in canonical.iter_mut().zip(&r.mask) {
        if *m != 0 {
            *o = label;
        }
    }
    let [up, down] = r.ends;
    let voxels = r.mask.iter().filter(|m| **m != 0).count();
    println!(
        "prompt {i}: propagated to {voxels} voxels on canonical slices {}..={} (stopped at {}: {}; at {}: {})",
        down.last,
        up.last,
        up.last,
        up.reason.describe(),
        down.last,
        down.reason.describe()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::common::{test_label_map, FocusChoice, ThresholdChoice};
    use brainsam::data::metrics::dice;
    use brainsam::data::nifti::{read_labels, write_image};
    use brainsam::data::slicing;
    use brainsam::data::synth::{synthesize, Contrast, SynthConfig};
    use brainsam::data::LabelVolume;
    use brainsam::segment::bbox;

    /// Dice of two masks (0.0 when both are empty: the test wants the structure found).
    fn mask_dice(a: &[u8], b: &[u8]) -> f64 {
        let count = |m: &[u8]| m.iter().filter(|x| **x != 0).count() as u64;
        let inter = a
            .iter()
            .zip(b)
            .filter(|(x, y)| **x != 0 && **y != 0)
            .count() as u64;
        dice(inter, count(a), count(b)).unwrap_or(0.0)
    }

    /// The batch command as a user runs it: a held-out subject's synthetic T1 in its stored
    /// (non-RAS) voxel order, one box on the left putamen's largest stored section with
    /// `"propagate": true`, the bundled model. The output keeps the input's grid and holds
    /// only the prompted label, over the prompted slice and beyond it.
    #[test]
    fn segment_writes_the_prompted_structure_on_the_input_grid_and_propagates_it() {
        const PUTAMEN: i32 = 12; // FreeSurfer Left-Putamen
        let labels = read_labels(&read_file(&test_label_map("subject_13")).unwrap())
            .unwrap()
            .volume;
        let (image, truth) = synthesize(&labels, &SynthConfig::preset(Contrast::T1), 5).unwrap();
        let dims = image.dims;
        // The stored axis closest to superior-inferior: an axial slice, as a user would pick.
        let axis = (0..3)
            .max_by(|&a, &b| {
                image.affine[2][a]
                    .abs()
                    .total_cmp(&image.affine[2][b].abs())
            })
            .unwrap();
        // The structure on stored slice `s` (rows × cols, u along the lower other axis).
        let on = |vol: &LabelVolume, s: usize| -> Vec<u8> {
            let p = slicing::slice(vol, axis, s).unwrap();
            p.data.iter().map(|v| u8::from(*v == PUTAMEN)).collect()
        };
        let area = |m: &[u8]| m.iter().filter(|x| **x != 0).count();
        let slice = (0..dims[axis])
            .max_by_key(|&s| area(&on(&truth, s)))
            .unwrap();
        let plane = slicing::slice(&truth, axis, slice).unwrap();
        let [u0, v0, u1, v1] = bbox(&on(&truth, slice), plane.rows, plane.cols).unwrap();

        let dir = std::env::temp_dir().join(format!("brainsam-{}-segment-cli", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (img_path, prompts, out) = (
            dir.join("t1.nii.gz"),
            dir.join("p.json"),
            dir.join("seg.nii.gz"),
        );
        write_file(&img_path, &write_image(&image, true).unwrap()).unwrap();
        std::fs::write(
            &prompts,
            format!(
                r#"{{"prompts": [{{"label": {PUTAMEN}, "slice_axis": {axis}, "slice": {slice},
                   "box": [{u0}, {v0}, {u1}, {v1}], "propagate": true}}]}}"#
            ),
        )
        .unwrap();
        run(&SegmentArgs {
            image: img_path,
            prompts,
            out: out.clone(),
            model: None, // the bundled model
            adapter: None,
            backend: Backend::Cpu,
            unnamed: false,
            focus: FocusArg {
                focus: FocusChoice::Auto,
                flip_average: false,
            },
            threshold: MaskThresholdArg {
                mask_threshold: ThresholdChoice::Auto,
            },
        })
        .unwrap();

        let seg = read_labels(&read_file(&out).unwrap()).unwrap().volume;
        assert_eq!(seg.dims, dims);
        for (a, b) in seg
            .affine
            .iter()
            .flatten()
            .zip(image.affine.iter().flatten())
        {
            assert!(
                (a - b).abs() < 1e-4,
                "affine {:?} vs {:?}",
                seg.affine,
                image.affine
            );
        }
        assert!(seg.data.iter().all(|v| *v == 0 || *v == PUTAMEN));
        // The prompted slice: a trained model with the structure's own box. The bundled model
        // scores about 0.75 in 3-D on held-out subjects; 0.6 on its largest section is a
        // regression gate, not the quality target.
        let d = mask_dice(&on(&seg, slice), &on(&truth, slice));
        assert!(d >= 0.6, "Dice {d:.3} on the prompted slice");
        // Propagated: more slices than the prompted one, overlapping the true structure.
        let slices = (0..dims[axis]).filter(|&s| area(&on(&seg, s)) > 0).count();
        let in3d = |vol: &LabelVolume| -> Vec<u8> {
            vol.data.iter().map(|v| u8::from(*v == PUTAMEN)).collect()
        };
        let d3 = mask_dice(&in3d(&seg), &in3d(&truth));
        eprintln!("segment CLI: slice Dice {d:.3}, {slices} slices, 3-D Dice {d3:.3}");
        assert!(slices > 1 && d3 >= 0.3, "{slices} slices, 3-D Dice {d3:.3}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
