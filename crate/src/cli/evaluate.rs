//! `brainsam evaluate`: 3-D Dice of prompted slice-by-slice segmentation on held-out subjects
//! (synthetic images of a chosen contrast from label maps, or real image+label pairs).

use std::path::PathBuf;
use std::time::Instant;

use brainsam::data::labels::{kind, structure};
use brainsam::data::rng::Rng;
use brainsam::data::slicing::{self};
use brainsam::data::synth::{synthesize, Contrast, SynthConfig};
use brainsam::data::{LabelVolume, Volume};
use brainsam::segment::{bbox, interior_point, End, Session, SlicePrompt, StopRules};

use super::common::{
    device, label_maps, load_label_map, load_model, load_pairs, parse_labels, AwaitNative,
    FocusArg, Res,
};

#[derive(clap::Args, Debug)]
pub struct EvaluateArgs {
    /// Model checkpoint (default: the bundled model).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// LoRA adapter trained on --model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Folder of FreeSurfer-convention label maps; each subject's image is synthesised.
    #[arg(long)]
    pub label_maps: Option<PathBuf>,
    /// Only these label maps (file stems, comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub subjects: Vec<String>,
    /// Real image+label pairs instead: DATASET:FOLDER.
    #[arg(long)]
    pub pairs: Option<String>,
    /// Synthetic contrast: t1, t2, pd, flair or random.
    #[arg(long, default_value = "t1")]
    pub contrast: String,
    /// box (the structure's bounding box on each slice), point (one positive click at
    /// the interior-most pixel of each slice), box-fill: no model, each box filled — the
    /// baseline a model must beat, or propagate: one box on the structure's largest slice,
    /// then the 3-D propagation of the app's "whole structure" button.
    #[arg(long, default_value = "box")]
    pub prompt: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// axial, coronal or sagittal.
    #[arg(long, default_value = "axial")]
    pub axis: String,
    /// Structures (common ids) or "all".
    #[arg(long, default_value = "all")]
    pub labels: String,
    #[arg(long, default_value = "ndarray")]
    pub backend: String,
    /// With --prompt propagate: the `default` stop rules, or the first release's `legacy`
    /// ones, for comparison; `,name=value` pairs change single rules (e.g.
    /// `default,max_extent=0.8`) to tune them on held-out subjects.
    #[arg(long, default_value = "default")]
    pub stop_rules: String,
    /// Do not tell a model with structure embeddings which structure each prompt is for
    /// (by default it is told, as the page and `segment` tell it).
    #[arg(long)]
    pub unnamed: bool,
    #[command(flatten)]
    pub focus: FocusArg,
    /// Also write each subject's image, truth and prediction (NIfTI) into this folder, to
    /// look at what the model got wrong.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// Per structure: |P ∩ T|, |P|, |T| summed over slices.
#[derive(Default, Clone, Copy)]
struct Counts {
    inter: u64,
    pred: u64,
    truth: u64,
}

impl Counts {
    fn dice(&self) -> f64 {
        if self.pred + self.truth == 0 {
            1.0
        } else {
            2.0 * self.inter as f64 / (self.pred + self.truth) as f64
        }
    }
}

/// A subject to evaluate: name, and either a real image and labels or a label map to
/// synthesise from.
type Subject = (
    String,
    Option<Volume<f32>>,
    Option<LabelVolume>,
    Option<PathBuf>,
);

pub fn run(a: &EvaluateArgs) -> Res {
    let device = device(&a.backend)?;
    let (sam, _, of_model) = load_model(a.model.as_deref(), a.adapter.as_deref(), &device)?;
    a.focus.checked(of_model)?; // refuse bad focus flags before synthesising anything
    let labels = parse_labels(&a.labels)?;
    let axis = match a.axis.as_str() {
        "sagittal" => 0,
        "coronal" => 1,
        "axial" => 2,
        o => return Err(format!("--axis is axial, coronal or sagittal, not `{o}`").into()),
    };
    let (use_points, fill_box, propagate) = match a.prompt.as_str() {
        "box" => (false, false, false),
        "point" => (true, false, false),
        "box-fill" => (false, true, false),
        "propagate" => (false, false, true),
        o => {
            return Err(format!("--prompt is box, point, box-fill or propagate, not `{o}`").into())
        }
    };
    let rules = stop_rules(&a.stop_rules)?;
    // The structure each prompt is for, when the model can be told.
    let told = sam.prompt_encoder.knows_structures() && !a.unnamed;
    let named = |l: i32| if told { kind(l) } else { None };
    let contrast = Contrast::parse(&a.contrast)?;
    let mut subjects: Vec<Subject> = Vec::new();
    match (&a.label_maps, &a.pairs) {
        (Some(dir), None) => {
            for (name, path) in label_maps(dir, &a.subjects)? {
                subjects.push((name, None, None, Some(path)));
            }
        }
        (None, Some(spec)) => {
            for (name, img, lab) in load_pairs(spec)? {
                subjects.push((name, Some(img), Some(lab), None));
            }
        }
        _ => return Err("give either --label-maps or --pairs".into()),
    }
    println!(
        "evaluate: {} subject(s), {} prompts{}, {} slices, {}",
        subjects.len(),
        a.prompt,
        if told { " naming their structure" } else { "" },
        a.axis,
        if a.pairs.is_some() {
            "real images".to_string()
        } else {
            format!("synthetic {} (seed {})", contrast.name(), a.seed)
        }
    );
    let mut all = Vec::new();
    let mut per_structure = vec![Vec::new(); labels.len()];
    for (name, image, truth, path) in subjects {
        let t0 = Instant::now();
        let (image, truth) = match (image, truth, path) {
            (Some(i), Some(t), _) => (i, t),
            (_, _, Some(p)) => {
                let lab = load_label_map(&p)?;
                let cfg = match contrast {
                    Contrast::Random => SynthConfig::randomized(),
                    c => SynthConfig::preset(c),
                };
                // Per subject seed: the same --seed gives the same images.
                let s = Rng::new(
                    a.seed
                        ^ name
                            .bytes()
                            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
                )
                .next_u64();
                let (image, deformed) = synthesize(&lab, &cfg, s)?;
                (image, super::common::common(&deformed))
            }
            _ => continue,
        };
        let mut session = Session::new(&image, device.clone())?;
        a.focus.apply(&mut session, of_model)?;
        let mut counts = vec![Counts::default(); labels.len()];
        let mut stops = vec![None; labels.len()];
        let mut prompts = 0;
        let mut predicted = a.save.as_ref().map(|_| vec![0i32; truth.data.len()]);
        if propagate {
            let largest = largest_sections(&truth, axis, &labels);
            for (k, &l) in labels.iter().enumerate() {
                (counts[k], stops[k]) = propagated(
                    &sam,
                    &mut session,
                    &truth,
                    axis,
                    (l, named(l)),
                    largest[k],
                    &rules,
                )?;
                prompts += 1;
            }
        } else {
            for index in 0..truth.dims[axis] {
                let tp = slicing::slice(&truth, axis, index)?;
                for (k, &l) in labels.iter().enumerate() {
                    let mask: Vec<u8> = tp.data.iter().map(|v| u8::from(*v == l)).collect();
                    let area = mask.iter().filter(|m| **m != 0).count() as u64;
                    if area == 0 {
                        continue;
                    }
                    let prompt = if use_points {
                        let Some((u, v)) = interior_point(&mask, tp.rows, tp.cols) else {
                            continue;
                        };
                        SlicePrompt {
                            points: vec![[u as f32, v as f32, 1.0]],
                            structure: named(l),
                            ..Default::default()
                        }
                    } else {
                        let Some([u0, v0, u1, v1]) = bbox(&mask, tp.rows, tp.cols) else {
                            continue;
                        };
                        SlicePrompt {
                            bbox: Some([u0 as f32, v0 as f32, u1 as f32, v1 as f32]),
                            structure: named(l),
                            ..Default::default()
                        }
                    };
                    let pred = match prompt.bbox {
                        Some(b) if fill_box => box_filled(b, tp.rows, tp.cols),
                        _ => {
                            session
                                .predict(&sam, axis, index, &prompt)
                                .await_native()?
                                .data
                        }
                    };
                    prompts += 1;
                    if let Some(vol) = predicted.as_mut() {
                        paint(vol, truth.dims, axis, index, tp.cols, &pred, l)?;
                    }
                    let c = &mut counts[k];
                    c.truth += area;
                    for (p, t) in pred.iter().zip(&mask) {
                        c.pred += u64::from(*p != 0);
                        c.inter += u64::from(*p != 0 && *t != 0);
                    }
                }
                session.clear_cache(); // each slice is visited once
            }
        }
        if let (Some(dir), Some(vol)) = (&a.save, predicted) {
            save_subject(dir, &name, &image, &truth, vol)?;
        }
        let dices: Vec<f64> = counts.iter().map(Counts::dice).collect();
        let mean = dices.iter().sum::<f64>() / dices.len().max(1) as f64;
        let parts: Vec<String> = labels
            .iter()
            .zip(&dices)
            .map(|(l, d)| format!("{}={d:.3}", structure(*l).map_or("?", |s| s.name)))
            .collect();
        println!(
            "{name}: mean {mean:.4} ({prompts} prompts, {:.1?}) {}",
            t0.elapsed(),
            parts.join(" ")
        );
        if propagate {
            // Leaks (> 1) and early stops (< 1) look alike in Dice.
            let ratios: Vec<String> = labels
                .iter()
                .zip(&counts)
                .map(|(l, c)| {
                    let r = c.pred as f64 / c.truth.max(1) as f64;
                    format!("{}={r:.2}", structure(*l).map_or("?", |s| s.name))
                })
                .collect();
            println!("{name}: predicted/true volume {}", ratios.join(" "));
            // Where each walk ended (slices kept beyond the seed, up and down) and why.
            let why: Vec<String> = labels
                .iter()
                .zip(&stops)
                .filter_map(|(l, e): (&i32, &Option<Walked>)| {
                    let ([up, down], seed) = (*e)?;
                    Some(format!(
                        "{}=+{}:{}/-{}:{}",
                        structure(*l).map_or("?", |s| s.name),
                        up.last - seed,
                        up.reason.code(),
                        seed - down.last,
                        down.reason.code()
                    ))
                })
                .collect();
            println!("{name}: stops {}", why.join(" "));
        }
        for (k, d) in dices.iter().enumerate() {
            per_structure[k].push(*d);
        }
        all.extend(dices);
    }
    println!("per structure (mean over subjects):");
    for (l, ds) in labels.iter().zip(&per_structure) {
        let m = ds.iter().sum::<f64>() / ds.len().max(1) as f64;
        println!("  {:<20} {m:.4}", structure(*l).map_or("?", |s| s.name));
    }
    let mean = all.iter().sum::<f64>() / all.len().max(1) as f64;
    println!("mean_dice={mean:.4}");
    Ok(())
}

/// `default` or `legacy`, then optional `,name=value` overrides.
fn stop_rules(spec: &str) -> Res<StopRules> {
    let mut parts = spec.split(',');
    let mut r = match parts.next().map(str::trim) {
        Some("default") => StopRules::default(),
        Some("legacy") => StopRules::legacy(),
        o => return Err(format!("--stop-rules starts with default or legacy, not `{o:?}`").into()),
    };
    for kv in parts {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--stop-rules: `{kv}` is not name=value"))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| format!("--stop-rules: `{v}` is not a number"))?;
        match k.trim() {
            "min_area" => r.min_area = v as usize,
            "max_growth" => r.max_growth = v,
            "max_area_vs_seed" => r.max_area_vs_seed = v,
            "min_iou" => r.min_iou = v as f32,
            "min_tissue_share" => r.min_tissue_share = v,
            "max_regrowth" => r.max_regrowth = v,
            "max_extent" => r.max_extent = v,
            "box_margin" => r.box_margin = v as f32,
            o => return Err(format!("--stop-rules: no rule `{o}`").into()),
        }
    }
    Ok(r)
}

/// Per structure, the slice along `axis` where it is largest: (index, area), one pass.
fn largest_sections(truth: &LabelVolume, axis: usize, labels: &[i32]) -> Vec<(usize, usize)> {
    let [nx, ny, _] = truth.dims;
    let mut areas = vec![vec![0usize; truth.dims[axis]]; labels.len()];
    for (i, v) in truth.data.iter().enumerate() {
        if let Some(k) = labels.iter().position(|l| l == v) {
            let at = [i % nx, (i / nx) % ny, i / (nx * ny)][axis];
            areas[k][at] += 1;
        }
    }
    areas
        .iter()
        .map(|a| {
            a.iter()
                .copied()
                .enumerate()
                .fold((0, 0), |b, x| if x.1 > b.1 { x } else { b })
        })
        .collect()
}

/// How a propagation's two walks ended, and the seed slice they started from.
type Walked = ([End; 2], usize);

/// One box on structure `l`'s largest section `best` (index, area), propagated through the
/// volume.
fn propagated(
    sam: &brainsam::model::Sam,
    session: &mut Session,
    truth: &LabelVolume,
    axis: usize,
    (l, structure): (i32, Option<usize>),
    best: (usize, usize),
    rules: &StopRules,
) -> Res<(Counts, Option<Walked>)> {
    let mut c = Counts {
        truth: truth.data.iter().filter(|v| **v == l).count() as u64,
        ..Default::default()
    };
    if best.1 == 0 {
        return Ok((c, None));
    }
    let tp = slicing::slice(truth, axis, best.0)?;
    let mask: Vec<u8> = tp.data.iter().map(|v| u8::from(*v == l)).collect();
    let Some([u0, v0, u1, v1]) = bbox(&mask, tp.rows, tp.cols) else {
        return Ok((c, None));
    };
    let prompt = SlicePrompt {
        bbox: Some([u0 as f32, v0 as f32, u1 as f32, v1 as f32]),
        structure,
        ..Default::default()
    };
    let seed = session.predict(sam, axis, best.0, &prompt).await_native()?;
    let pred = session
        .propagate(
            sam,
            axis,
            best.0,
            &seed,
            prompt.structure,
            rules,
            &mut |_, _| {},
        )
        .await_native()?;
    for (p, t) in pred.mask.iter().zip(&truth.data) {
        c.pred += u64::from(*p != 0);
        c.inter += u64::from(*p != 0 && *t == l);
    }
    Ok((c, Some((pred.ends, best.0))))
}

/// The mask that is the (inclusive) box itself.
fn box_filled([u0, v0, u1, v1]: [f32; 4], rows: usize, cols: usize) -> Vec<u8> {
    let inside = |x: usize, lo: f32, hi: f32| x as f32 >= lo && x as f32 <= hi;
    (0..rows * cols)
        .map(|i| u8::from(inside(i % cols, u0, u1) && inside(i / cols, v0, v1)))
        .collect()
}

/// Writes a slice's mask into a volume in `dims`' voxel order with `label`.
fn paint(
    vol: &mut [i32],
    dims: [usize; 3],
    axis: usize,
    index: usize,
    cols: usize,
    mask: &[u8],
    label: i32,
) -> Res {
    for (i, m) in mask.iter().enumerate() {
        if *m != 0 {
            let [x, y, z] = slicing::slice_to_voxel(axis, index, i % cols, i / cols)?;
            vol[x + dims[0] * (y + dims[1] * z)] = label;
        }
    }
    Ok(())
}

/// `<name>_image.nii.gz`, `<name>_truth.nii.gz` and `<name>_pred.nii.gz` in `dir`.
fn save_subject(
    dir: &std::path::Path,
    name: &str,
    image: &Volume<f32>,
    truth: &LabelVolume,
    predicted: Vec<i32>,
) -> Res {
    use brainsam::data::volume::{label_out_type, write_file, write_image, write_labels};
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let pred = truth.with_data(predicted)?;
    write_file(
        &dir.join(format!("{name}_image.nii.gz")),
        &write_image(image, true)?,
    )?;
    for (suffix, v) in [("truth", truth), ("pred", &pred)] {
        let bytes = write_labels(v, label_out_type(v), true)?;
        write_file(&dir.join(format!("{name}_{suffix}.nii.gz")), &bytes)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Painting each slice's mask back gives the structure itself, along every axis.
    #[test]
    fn painted_slices_rebuild_the_structure() {
        let dims = [5, 6, 7];
        let n: usize = dims.iter().product();
        let data: Vec<i32> = (0..n)
            .map(|i| i32::from(i % 3 == 0 || i % 7 == 2))
            .collect();
        let identity = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let truth = LabelVolume::new(dims, data.clone(), identity).unwrap();
        for axis in 0..3 {
            let mut vol = vec![0i32; n];
            for index in 0..dims[axis] {
                let p = slicing::slice(&truth, axis, index).unwrap();
                let mask: Vec<u8> = p.data.iter().map(|v| u8::from(*v == 1)).collect();
                paint(&mut vol, dims, axis, index, p.cols, &mask, 1).unwrap();
            }
            assert_eq!(vol, data, "axis {axis}");
        }
    }
}
