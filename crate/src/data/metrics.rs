//! Segmentation metrics per structure: Dice, IoU, 95th-percentile Hausdorff distance (mm,
//! voxel spacing honoured) and volume difference; plus table / CSV / JSON reports.
//!
//! HD95 follows the usual definition (e.g. medpy): surface voxels are mask voxels with a
//! 6-neighbour outside the mask; HD95 = max(P95 of pred→truth surface distances,
//! P95 of truth→pred surface distances), distances from an exact Euclidean distance
//! transform with anisotropic spacing.

use super::error::{DataError, Result};
use super::volume::LabelVolume;

/// Metrics of one structure.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct StructureMetrics {
    pub id: i32,
    pub name: String,
    /// None when the structure is absent from both prediction and truth.
    pub dice: Option<f64>,
    pub iou: Option<f64>,
    /// None when either mask is empty.
    pub hd95_mm: Option<f64>,
    pub pred_ml: f64,
    pub truth_ml: f64,
    /// pred − truth, millilitres.
    pub volume_diff_ml: f64,
    /// (pred − truth) / truth × 100; None for an empty truth.
    pub volume_diff_pct: Option<f64>,
}

/// Metrics of all structures plus means over the structures where each metric is defined.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Report {
    pub structures: Vec<StructureMetrics>,
    pub mean_dice: Option<f64>,
    pub mean_iou: Option<f64>,
    pub mean_hd95_mm: Option<f64>,
    pub mean_abs_volume_diff_ml: Option<f64>,
}

/// Dice `2 |P ∩ T| / (|P| + |T|)` from voxel (or pixel) counts: `intersection` = |P ∩ T|,
/// `pred` = |P|, `truth` = |T|. The one Dice of the project: `metrics`, `evaluate` and the
/// page (`www/util.js`, which mirrors it) all score with this rule.
///
/// Two empty masks give `None`: 0/0 is undefined, and a structure absent from both
/// prediction and truth (one a labelling protocol does not delineate, say) says nothing
/// about the model; scoring it 1.0 (MONAI's `ignore_empty=False`) would lift every mean it
/// entered. Means are taken over the structures where Dice is defined (MONAI's default,
/// `ignore_empty=True`, likewise leaves empty truths out). One empty mask gives 0.0.
pub fn dice(intersection: u64, pred: u64, truth: u64) -> Option<f64> {
    let n = pred + truth;
    (n > 0).then(|| 2.0 * intersection as f64 / n as f64)
}

/// Compares `pred` and `truth` (same grid) for each `(id, name)` structure.
pub fn evaluate(
    pred: &LabelVolume,
    truth: &LabelVolume,
    structures: &[(i32, String)],
) -> Result<Report> {
    if pred.dims != truth.dims {
        return Err(DataError::Geometry(format!(
            "prediction dims {:?} differ from truth dims {:?}",
            pred.dims, truth.dims
        )));
    }
    let close =
        (0..3).all(|i| (0..4).all(|j| (pred.affine[i][j] - truth.affine[i][j]).abs() < 1e-3));
    if !close {
        return Err(DataError::Geometry(
            "prediction and truth affines differ: resample the prediction onto the truth grid"
                .into(),
        ));
    }
    let sp = truth.spacing();
    let voxel_ml = det3(&truth.affine).abs() / 1000.0;
    let mut rows = Vec::new();
    for (id, name) in structures {
        let p: Vec<bool> = pred.data.iter().map(|v| v == id).collect();
        let t: Vec<bool> = truth.data.iter().map(|v| v == id).collect();
        let (mut np, mut nt, mut ni) = (0usize, 0usize, 0usize);
        for (a, b) in p.iter().zip(&t) {
            np += *a as usize;
            nt += *b as usize;
            ni += (*a && *b) as usize;
        }
        let both_empty = np + nt == 0;
        let dice = dice(ni as u64, np as u64, nt as u64);
        let iou = (!both_empty).then(|| ni as f64 / (np + nt - ni) as f64);
        let hd95_mm = if np > 0 && nt > 0 {
            Some(hd95(&p, &t, truth.dims, sp))
        } else {
            None
        };
        let (pred_ml, truth_ml) = (np as f64 * voxel_ml, nt as f64 * voxel_ml);
        rows.push(StructureMetrics {
            id: *id,
            name: name.clone(),
            dice,
            iou,
            hd95_mm,
            pred_ml,
            truth_ml,
            volume_diff_ml: pred_ml - truth_ml,
            volume_diff_pct: (nt > 0).then(|| (pred_ml - truth_ml) / truth_ml * 100.0),
        });
    }
    let mean = |f: &dyn Fn(&StructureMetrics) -> Option<f64>| {
        let v: Vec<f64> = rows.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    Ok(Report {
        mean_dice: mean(&|r| r.dice),
        mean_iou: mean(&|r| r.iou),
        mean_hd95_mm: mean(&|r| r.hd95_mm),
        mean_abs_volume_diff_ml: mean(&|r| r.dice.map(|_| r.volume_diff_ml.abs())),
        structures: rows,
    })
}

fn det3(a: &[[f64; 4]; 4]) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1])
        - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

/// Bounding box [lo, hi) of the voxels set in either mask.
fn bbox(a: &[bool], b: &[bool], dims: [usize; 3]) -> ([usize; 3], [usize; 3]) {
    let (mut lo, mut hi) = (dims, [0; 3]);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if *x || *y {
            let p = [
                i % dims[0],
                (i / dims[0]) % dims[1],
                i / (dims[0] * dims[1]),
            ];
            for k in 0..3 {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k] + 1);
            }
        }
    }
    (lo, hi)
}

/// Surface voxels of a mask restricted to a box (grid outside the volume counts as outside).
fn surface(m: &[bool], dims: [usize; 3], lo: [usize; 3], hi: [usize; 3]) -> Vec<bool> {
    let bd = [0, 1, 2].map(|k| hi[k] - lo[k]);
    let mut out = vec![false; bd[0] * bd[1] * bd[2]];
    let at = |x: i64, y: i64, z: i64| -> bool {
        if x < 0
            || y < 0
            || z < 0
            || x >= dims[0] as i64
            || y >= dims[1] as i64
            || z >= dims[2] as i64
        {
            return false;
        }
        m.get(x as usize + dims[0] * (y as usize + dims[1] * z as usize))
            .copied()
            .unwrap_or(false)
    };
    let mut k = 0;
    for z in lo[2]..hi[2] {
        for y in lo[1]..hi[1] {
            for x in lo[0]..hi[0] {
                let (xi, yi, zi) = (x as i64, y as i64, z as i64);
                if at(xi, yi, zi) {
                    let nb = [
                        (1, 0, 0),
                        (-1, 0, 0),
                        (0, 1, 0),
                        (0, -1, 0),
                        (0, 0, 1),
                        (0, 0, -1),
                    ];
                    if nb.iter().any(|(dx, dy, dz)| !at(xi + dx, yi + dy, zi + dz)) {
                        if let Some(o) = out.get_mut(k) {
                            *o = true;
                        }
                    }
                }
                k += 1;
            }
        }
    }
    out
}

/// Squared Euclidean distance (mm²) from every voxel of a box to the nearest feature voxel
/// (Felzenszwalb & Huttenlocher's separable lower-envelope algorithm, per axis spacing).
fn edt_sq(feat: &[bool], bd: [usize; 3], sp: [f64; 3]) -> Vec<f64> {
    let big = 1e30;
    let mut d: Vec<f64> = feat.iter().map(|f| if *f { 0.0 } else { big }).collect();
    let strides = [1, bd[0], bd[0] * bd[1]];
    for axis in 0..3 {
        let n = bd[axis];
        let others: Vec<usize> = (0..3).filter(|a| *a != axis).collect();
        let (o1, o2) = (others[0], others[1]);
        let mut f = vec![0.0; n];
        for b in 0..bd[o2] {
            for a in 0..bd[o1] {
                let start = a * strides[o1] + b * strides[o2];
                for (q, fq) in f.iter_mut().enumerate() {
                    *fq = d.get(start + q * strides[axis]).copied().unwrap_or(big);
                }
                let out = envelope(&f, sp[axis]);
                for (q, v) in out.iter().enumerate() {
                    if let Some(x) = d.get_mut(start + q * strides[axis]) {
                        *x = *v;
                    }
                }
            }
        }
    }
    d
}

/// 1-D squared distance transform: out[p] = min_q (s·(p−q))² + f[q].
fn envelope(f: &[f64], s: f64) -> Vec<f64> {
    let n = f.len();
    let big = 1e30;
    let pos = |q: usize| q as f64 * s;
    let mut v: Vec<usize> = Vec::with_capacity(n); // parabola vertices
    let mut z: Vec<f64> = Vec::with_capacity(n + 1); // boundaries
    for q in 0..n {
        if f[q] >= big {
            continue;
        }
        loop {
            let Some(&last) = v.last() else {
                v.push(q);
                z.clear();
                z.push(f64::NEG_INFINITY);
                break;
            };
            let sx = ((f[q] + pos(q).powi(2)) - (f[last] + pos(last).powi(2)))
                / (2.0 * (pos(q) - pos(last)));
            if sx <= *z.last().unwrap_or(&f64::NEG_INFINITY) {
                v.pop();
                z.pop();
                if v.is_empty() {
                    continue;
                }
            } else {
                v.push(q);
                z.push(sx);
                break;
            }
        }
    }
    if v.is_empty() {
        return vec![big; n];
    }
    let mut out = vec![0.0; n];
    let mut k = 0;
    for (p, o) in out.iter_mut().enumerate() {
        while k + 1 < v.len() && z.get(k + 1).is_some_and(|b| *b < pos(p)) {
            k += 1;
        }
        let q = v[k];
        *o = (pos(p) - pos(q)).powi(2) + f[q];
    }
    out
}

fn p95(mut d: Vec<f64>) -> f64 {
    if d.is_empty() {
        return f64::NAN;
    }
    // numpy.percentile default (linear interpolation).
    d.sort_by(f64::total_cmp);
    let pos = 0.95 * (d.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = (lo + 1).min(d.len() - 1);
    d[lo] + (pos - lo as f64) * (d[hi] - d[lo])
}

fn hd95(p: &[bool], t: &[bool], dims: [usize; 3], sp: [f64; 3]) -> f64 {
    let (lo, hi) = bbox(p, t, dims);
    let bd = [0, 1, 2].map(|k| hi[k] - lo[k]);
    let (sp_, st) = (surface(p, dims, lo, hi), surface(t, dims, lo, hi));
    let (dp, dt) = (edt_sq(&sp_, bd, sp), edt_sq(&st, bd, sp));
    let pick = |from: &[bool], dist: &[f64]| -> Vec<f64> {
        from.iter()
            .zip(dist)
            .filter(|(f, _)| **f)
            .map(|(_, d)| d.sqrt())
            .collect()
    };
    p95(pick(&sp_, &dt)).max(p95(pick(&st, &dp)))
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("n/a".into(), |x| format!("{x:.digits$}"))
}

impl Report {
    /// Human-readable table.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{:<26} {:>7} {:>7} {:>9} {:>9} {:>9} {:>9}\n",
            "structure", "dice", "iou", "hd95_mm", "pred_ml", "truth_ml", "diff_%"
        );
        for r in &self.structures {
            s += &format!(
                "{:<26} {:>7} {:>7} {:>9} {:>9.3} {:>9.3} {:>9}\n",
                r.name,
                opt(r.dice, 4),
                opt(r.iou, 4),
                opt(r.hd95_mm, 2),
                r.pred_ml,
                r.truth_ml,
                opt(r.volume_diff_pct, 1)
            );
        }
        s += &format!(
            "{:<26} {:>7} {:>7} {:>9}   mean |vol diff| {} ml\n",
            "MEAN",
            opt(self.mean_dice, 4),
            opt(self.mean_iou, 4),
            opt(self.mean_hd95_mm, 2),
            opt(self.mean_abs_volume_diff_ml, 3)
        );
        s
    }

    /// CSV with one row per structure and a final `mean` row (empty cells for n/a).
    pub fn csv(&self) -> String {
        let o = |v: Option<f64>| v.map_or(String::new(), |x| format!("{x}"));
        let mut s = String::from(
            "id,name,dice,iou,hd95_mm,pred_ml,truth_ml,volume_diff_ml,volume_diff_pct\n",
        );
        for r in &self.structures {
            s += &format!(
                "{},{},{},{},{},{},{},{},{}\n",
                r.id,
                r.name,
                o(r.dice),
                o(r.iou),
                o(r.hd95_mm),
                r.pred_ml,
                r.truth_ml,
                r.volume_diff_ml,
                o(r.volume_diff_pct)
            );
        }
        s += &format!(
            ",mean,{},{},{},,,{},\n",
            o(self.mean_dice),
            o(self.mean_iou),
            o(self.mean_hd95_mm),
            o(self.mean_abs_volume_diff_ml)
        );
        s
    }

    pub fn json(&self) -> Result<String> {
        serde_json::to_string_pretty(self).map_err(|e| DataError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;

    fn vol(dims: [usize; 3], sp: [f64; 3], voxels: &[[usize; 3]]) -> LabelVolume {
        let aff = [
            [sp[0], 0.0, 0.0, 0.0],
            [0.0, sp[1], 0.0, 0.0],
            [0.0, 0.0, sp[2], 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let mut v = LabelVolume::new(dims, vec![0; dims.iter().product()], aff).unwrap();
        for p in voxels {
            let i = v.index(p[0], p[1], p[2]).unwrap();
            v.data[i] = 1;
        }
        v
    }

    fn one() -> Vec<(i32, String)> {
        vec![(1, "s".into())]
    }

    #[test]
    fn hausdorff_between_single_voxels_is_their_distance_in_mm() {
        let sp = [1.0, 2.0, 3.0];
        let a = vol([8, 8, 8], sp, &[[2, 2, 2]]);
        let b = vol([8, 8, 8], sp, &[[3, 3, 2]]);
        let r = evaluate(&a, &b, &one()).unwrap();
        assert!((r.structures[0].hd95_mm.unwrap() - 5f64.sqrt()).abs() < 1e-9);
        let c = vol([8, 8, 8], sp, &[[2, 2, 5]]);
        let r = evaluate(&a, &c, &one()).unwrap();
        assert!((r.structures[0].hd95_mm.unwrap() - 9.0).abs() < 1e-9);
        assert_eq!(r.structures[0].dice, Some(0.0));
    }

    /// Dice's rule, on counts worked out by hand.
    #[test]
    fn dice_of_counts_and_of_two_empty_masks() {
        assert_eq!(dice(0, 0, 0), None); // both empty: undefined, not 1.0
        assert_eq!(dice(0, 0, 5), Some(0.0)); // nothing predicted
        assert_eq!(dice(0, 3, 0), Some(0.0)); // predicted where nothing is
        assert_eq!(dice(4, 4, 4), Some(1.0));
        assert_eq!(dice(1, 4, 2), Some(2.0 / 6.0));
    }

    #[test]
    fn identical_masks_score_dice_one_and_zero_distance() {
        let pts: Vec<[usize; 3]> = (1..5)
            .flat_map(|x| (1..4).map(move |y| [x, y, 2]))
            .collect();
        let a = vol([6, 6, 6], [0.5, 0.5, 2.0], &pts);
        let r = evaluate(&a, &a, &one()).unwrap();
        let s = &r.structures[0];
        assert_eq!(
            (s.dice, s.iou, s.hd95_mm),
            (Some(1.0), Some(1.0), Some(0.0))
        );
        assert!((s.truth_ml - 12.0 * 0.5 / 1000.0).abs() < 1e-12);
    }

    #[test]
    fn overlap_scores_follow_their_definitions() {
        // 4 pred voxels, 2 truth voxels, 1 shared: Dice 2/6, IoU 1/5, volume +100 %.
        let a = vol(
            [6, 6, 6],
            [1.0; 3],
            &[[0, 0, 0], [1, 0, 0], [2, 0, 0], [3, 0, 0]],
        );
        let b = vol([6, 6, 6], [1.0; 3], &[[3, 0, 0], [5, 5, 5]]);
        let s = evaluate(&a, &b, &one()).unwrap().structures[0].clone();
        assert!((s.dice.unwrap() - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.iou.unwrap() - 0.2).abs() < 1e-12);
        assert!((s.volume_diff_pct.unwrap() - 100.0).abs() < 1e-9);
    }

    #[test]
    fn absent_structures_are_excluded_from_the_means_and_mismatched_grids_refused() {
        let a = vol([4, 4, 4], [1.0; 3], &[[1, 1, 1]]);
        let r = evaluate(&a, &a, &[(1, "s".into()), (2, "absent".into())]).unwrap();
        assert_eq!(r.structures[1].dice, None);
        assert_eq!(r.mean_dice, Some(1.0));
        let b = vol([4, 4, 5], [1.0; 3], &[]);
        assert!(evaluate(&a, &b, &one()).is_err());
        assert!(r.csv().lines().count() == 4 && r.json().unwrap().contains("\"mean_dice\": 1.0"));
    }

    #[test]
    fn dice_iou_hd95_on_a_real_label_map_match_the_independent_numpy_script() {
        use crate::data::labels::{to_common, Convention, SUBCORTICAL};
        use crate::data::nifti::{read_labels, write_file, write_labels, OutType};
        use crate::data::synth::{synthesize, SynthConfig};
        let truth = read_labels(&read_bytes(&label_map_path(13)))
            .unwrap()
            .volume;
        let truth = to_common(&truth, Convention::FreeSurfer, false);
        // A plausible imperfect "prediction": the truth under a small random deformation.
        let mut cfg = SynthConfig::preset(crate::data::synth::Contrast::T1).without_deformation();
        cfg.elastic_std_mm = 1.0;
        let (_, pred) = synthesize(&truth, &cfg, 11).unwrap();
        let dir = temp_dir("dice");
        let (pp, pt) = (dir.join("pred.nii.gz"), dir.join("truth.nii.gz"));
        write_file(&pp, &write_labels(&pred, OutType::U8, true).unwrap()).unwrap();
        write_file(&pt, &write_labels(&truth, OutType::U8, true).unwrap()).unwrap();
        let names: Vec<(i32, String)> = SUBCORTICAL
            .iter()
            .map(|s| (s.id as i32, s.name.to_string()))
            .collect();
        let r = evaluate(&pred, &truth, &names).unwrap();
        let mut args = vec![
            pp.to_str().unwrap().to_string(),
            pt.to_str().unwrap().to_string(),
        ];
        args.extend(names.iter().map(|(i, _)| i.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let py = python_json("dice.py", &args);
        for s in &r.structures {
            let d = py[s.id.to_string()]["dice"].as_f64().unwrap();
            assert!(
                (s.dice.unwrap() - d).abs() < 1e-12,
                "{}: {:?} vs {d}",
                s.name,
                s.dice
            );
            assert!((s.iou.unwrap() - py[s.id.to_string()]["iou"].as_f64().unwrap()).abs() < 1e-12);
            assert!((s.truth_ml - py[s.id.to_string()]["truth_ml"].as_f64().unwrap()).abs() < 1e-9);
            let hd = py[s.id.to_string()]["hd95"].as_f64().unwrap();
            assert!(
                (s.hd95_mm.unwrap() - hd).abs() < 1e-9,
                "{}: hd95 {:?} vs {hd}",
                s.name,
                s.hd95_mm
            );
            assert!(
                s.dice.unwrap() > 0.3 && s.dice.unwrap() < 1.0,
                "{}: {:?}",
                s.name,
                s.dice
            );
        }
    }
}
