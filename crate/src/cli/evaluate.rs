//! `brainsam evaluate`: 3-D Dice of prompted slice-by-slice segmentation on held-out subjects
//! (synthetic images of a chosen contrast from label maps, or real image+label pairs).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use brainsam::data::labels::{kind, structure};
use brainsam::data::metrics::dice;
use brainsam::data::rng::Rng;
use brainsam::data::slicing::{self};
use brainsam::data::synth::{synthesize, Contrast, SynthConfig};
use brainsam::data::{LabelVolume, Volume};
use brainsam::model::io::MaskThresholds;
use brainsam::model::Sam;
use brainsam::segment::{bbox, interior_point, End, Session, SlicePrompt, StopRules};

use super::choices::{name, Axis, Backend};
use super::common::{
    label_maps, load_label_map, load_model, load_pairs, parse_pairs, parse_structures, AwaitNative,
    FocusArg, MaskThresholdArg, PairsSpec, Res, Structures,
};

#[derive(clap::Args, Debug, Clone)]
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
    #[arg(long, value_parser = parse_pairs)]
    pub pairs: Option<PairsSpec>,
    /// Synthetic contrast.
    #[arg(long, default_value = "t1", ignore_case = true)]
    pub contrast: Contrast,
    /// How each structure is prompted.
    #[arg(long, default_value = "box")]
    pub prompt: PromptKind,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Slice direction.
    #[arg(long, default_value = "axial")]
    pub axis: Axis,
    /// Structures (common ids, comma-separated) or "all".
    #[arg(long, default_value = "all", value_parser = parse_structures)]
    pub labels: Structures,
    #[arg(long, default_value = "cpu")]
    pub backend: Backend,
    /// With --prompt propagate(-click): how propagation ends. Default: the model's (`trained`
    /// for a model trained to propagate, else `default`); `default` names the hand-set
    /// stop rules, `legacy` the first release's, `trained` the model's own end (dense
    /// prompts, empty mask or low IoU); `,name=value` pairs change single rules (e.g.
    /// `default,max_extent=0.8`) to tune them on selection subjects.
    #[arg(long, value_parser = parse_stop_rules)]
    pub stop_rules: Option<StopRules>,
    /// Do not tell a model with structure embeddings which structure each prompt is for
    /// (by default it is told, as the page and `segment` tell it); masks are then cut at 0,
    /// not at their kind's threshold.
    #[arg(long)]
    pub unnamed: bool,
    #[command(flatten)]
    pub focus: FocusArg,
    #[command(flatten)]
    pub threshold: MaskThresholdArg,
    /// Also write each subject's image, truth and prediction (NIfTI) into this folder, to
    /// look at what the model got wrong.
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// `--prompt` of evaluate.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptKind {
    /// The structure's bounding box on each slice.
    Box,
    /// One positive click at the interior-most pixel of each slice.
    Point,
    /// No model: each slice's box filled, the baseline a model must beat.
    BoxFill,
    /// One box on the structure's largest slice, then the 3-D propagation of the app's
    /// "whole structure" button.
    Propagate,
    /// One positive click at the interior-most pixel of the structure's largest slice,
    /// then the 3-D propagation.
    PropagateClick,
}

/// Per structure: |P ∩ T|, |P|, |T| summed over slices.
#[derive(Default, Clone, Copy)]
struct Counts {
    inter: u64,
    pred: u64,
    truth: u64,
}

impl Counts {
    /// Adds one slice's predicted and true masks.
    fn add(&mut self, pred: &[u8], truth: &[u8]) {
        for (p, t) in pred.iter().zip(truth) {
            self.pred += u64::from(*p != 0);
            self.truth += u64::from(*t != 0);
            self.inter += u64::from(*p != 0 && *t != 0);
        }
    }

    /// None when the structure is in neither prediction nor truth (`data::metrics::dice`).
    fn dice(&self) -> Option<f64> {
        dice(self.inter, self.pred, self.truth)
    }
}

/// One structure's prompt on one slice.
struct SliceCase<'a> {
    /// The structure's place in `labels`.
    k: usize,
    index: usize,
    rows: usize,
    cols: usize,
    /// Its true mask on the slice.
    truth: &'a [u8],
    prompt: SlicePrompt,
}

/// A subject to evaluate: a real image with its labels, or a label map to synthesise from.
enum Subject {
    Real {
        name: String,
        /// The image and its truth (boxed: volumes are large beside a path).
        pair: Box<(Volume<f32>, LabelVolume)>,
    },
    Synthetic {
        name: String,
        label_map: PathBuf,
    },
}

impl Subject {
    fn name(&self) -> &str {
        match self {
            Subject::Real { name, .. } | Subject::Synthetic { name, .. } => name,
        }
    }

    /// The image and its truth (common ids); a synthetic one follows `seed` and the name.
    fn load(self, contrast: Contrast, seed: u64) -> Res<(Volume<f32>, LabelVolume)> {
        match self {
            Subject::Real { pair, .. } => Ok(*pair),
            Subject::Synthetic { name, label_map } => {
                let lab = load_label_map(&label_map)?;
                let cfg = match contrast {
                    Contrast::Random => SynthConfig::randomized(),
                    c => SynthConfig::preset(c),
                };
                // Per subject seed: the same --seed gives the same images.
                let s = Rng::new(
                    seed ^ name
                        .bytes()
                        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64)),
                )
                .next_u64();
                let (image, deformed) = synthesize(&lab, &cfg, s)?;
                Ok((image, super::common::common(&deformed)))
            }
        }
    }
}

/// The subjects of `--label-maps` or `--pairs`.
fn subjects(a: &EvaluateArgs) -> Res<Vec<Subject>> {
    match (&a.label_maps, &a.pairs) {
        (Some(dir), None) => Ok(label_maps(dir, &a.subjects)?
            .into_iter()
            .map(|(name, label_map)| Subject::Synthetic { name, label_map })
            .collect()),
        (None, Some(spec)) => Ok(load_pairs(spec)?
            .into_iter()
            .map(|(name, image, truth)| Subject::Real {
                name,
                pair: Box::new((image, truth)),
            })
            .collect()),
        _ => Err("give either --label-maps or --pairs".into()),
    }
}

/// What is evaluated on every subject: the model, the slices and the prompts.
struct Evaluation<'a> {
    sam: &'a Sam,
    axis: usize,
    labels: &'a [i32],
    prompt: PromptKind,
    /// Each prompt names its structure's kind, as the page's and `segment`'s do: a model
    /// with structure embeddings is told it (others ignore it), and the mask is cut at that
    /// kind's threshold.
    told: bool,
    rules: StopRules,
    /// Keep the predicted label volume (for `--save`).
    keep: bool,
}

/// One subject's result.
struct Scored {
    /// Per structure of `labels`.
    counts: Vec<Counts>,
    /// With `--prompt propagate`, per structure: how its walks ended, if it was found.
    stops: Option<Vec<Option<Walked>>>,
    prompts: usize,
    /// The predicted label volume, when kept.
    predicted: Option<Vec<i32>>,
}

pub fn run(a: &EvaluateArgs) -> Res {
    let device = a.backend.device()?;
    let (sam, _, meta) = load_model(a.model.as_deref(), a.adapter.as_deref(), &device)?;
    let of_model = meta.focus;
    a.focus.checked(of_model)?; // refuse bad focus flags before synthesising anything
    let labels = &a.labels.0;
    let ev = Evaluation {
        sam: &sam,
        axis: a.axis.index(),
        labels,
        prompt: a.prompt,
        told: !a.unnamed,
        rules: a
            .stop_rules
            .unwrap_or_else(|| StopRules::for_model(meta.dense_propagation)),
        keep: a.save.is_some(),
    };
    let subjects = subjects(a)?;
    print_header(
        a,
        subjects.len(),
        ev.told && sam.prompt_encoder.knows_structures(),
    );
    let mut per_structure = vec![Vec::new(); labels.len()];
    let mut all = Vec::new();
    for subject in subjects {
        let t0 = Instant::now();
        let name = subject.name().to_string();
        let (image, truth) = subject.load(a.contrast, a.seed)?;
        let mut session = Session::new(&image, device.clone())?;
        a.focus.apply(&mut session, of_model)?;
        session.set_slice_gap(meta.slice_gap);
        session.set_mask_thresholds(a.threshold.resolve(meta.mask_thresholds));
        let mut scored = match a.prompt {
            PromptKind::Propagate | PromptKind::PropagateClick => {
                ev.propagated(&mut session, &truth)?
            }
            _ => ev.slices(&mut session, &truth)?,
        };
        if let (Some(dir), Some(vol)) = (&a.save, scored.predicted.take()) {
            save_subject(dir, &name, &image, &truth, vol)?;
        }
        let dices: Vec<Option<f64>> = scored.counts.iter().map(Counts::dice).collect();
        print_subject(&name, labels, &scored, &dices, t0.elapsed());
        for (k, d) in dices.iter().enumerate() {
            per_structure[k].extend(*d);
        }
        all.extend(dices.into_iter().flatten());
    }
    print_means(labels, &per_structure, &all);
    Ok(())
}

/// Dice per subject, per threshold (or table) of a grid, per structure (`brainsam calibrate`).
pub struct Graded {
    pub labels: Vec<i32>,
    pub dice: Vec<Vec<Vec<Option<f64>>>>,
}

/// `--prompt box` or `point` on every slice, each prompt's mask cut at every threshold of
/// `grid`; prints a line per subject.
pub fn graded(a: &EvaluateArgs, grid: &[f32]) -> Res<Graded> {
    if !matches!(a.prompt, PromptKind::Box | PromptKind::Point) {
        return Err("thresholds are chosen on box or point prompts on every slice".into());
    }
    if a.unnamed {
        return Err("thresholds are per kind of structure: prompts must name theirs".into());
    }
    per_subject(a, |ev, session, truth| {
        let counts = ev.graded(session, truth, grid)?;
        let per_t: Vec<Vec<Option<f64>>> = counts
            .iter()
            .map(|c| c.iter().map(Counts::dice).collect())
            .collect();
        let means: Vec<String> = grid
            .iter()
            .zip(&per_t)
            .map(|(t, d)| {
                let defined: Vec<f64> = d.iter().flatten().copied().collect();
                format!("{t}:{}", fixed(mean(&defined), 4))
            })
            .collect();
        Ok((per_t, format!("mean Dice by threshold {}", means.join(" "))))
    })
}

/// `--prompt propagate` or `propagate-click`, once per threshold table (`brainsam
/// calibrate`); prints a line per subject.
pub fn walked(a: &EvaluateArgs, tables: &[MaskThresholds]) -> Res<Graded> {
    if !matches!(a.prompt, PromptKind::Propagate | PromptKind::PropagateClick) {
        return Err("walk thresholds are chosen on propagated prompts".into());
    }
    per_subject(a, |ev, session, truth| {
        let mut per_table = Vec::with_capacity(tables.len());
        for t in tables {
            session.set_mask_thresholds(Some(*t));
            let scored = ev.propagated(session, truth)?;
            per_table.push(scored.counts.iter().map(Counts::dice).collect::<Vec<_>>());
        }
        Ok((per_table, format!("{} tables", tables.len())))
    })
}

/// Runs `grade` on each subject's session (model, focus and slice gap as `evaluate` sets
/// them, structures named) and prints its summary line per subject.
fn per_subject(
    a: &EvaluateArgs,
    mut grade: impl FnMut(
        &Evaluation,
        &mut Session,
        &LabelVolume,
    ) -> Res<(Vec<Vec<Option<f64>>>, String)>,
) -> Res<Graded> {
    let device = a.backend.device()?;
    let (sam, _, meta) = load_model(a.model.as_deref(), a.adapter.as_deref(), &device)?;
    a.focus.checked(meta.focus)?;
    let labels = a.labels.0.clone();
    let ev = Evaluation {
        sam: &sam,
        axis: a.axis.index(),
        labels: &labels,
        prompt: a.prompt,
        told: true,
        rules: a
            .stop_rules
            .unwrap_or_else(|| StopRules::for_model(meta.dense_propagation)),
        keep: false,
    };
    let subjects = subjects(a)?;
    print_header(a, subjects.len(), sam.prompt_encoder.knows_structures());
    let mut dice = Vec::new();
    for subject in subjects {
        let t0 = Instant::now();
        let name = subject.name().to_string();
        let (image, truth) = subject.load(a.contrast, a.seed)?;
        let mut session = Session::new(&image, device.clone())?;
        a.focus.apply(&mut session, meta.focus)?;
        session.set_slice_gap(meta.slice_gap);
        let (per_t, summary) = grade(&ev, &mut session, &truth)?;
        println!("{name}: {summary} ({:.1?})", t0.elapsed());
        dice.push(per_t);
    }
    Ok(Graded { labels, dice })
}

/// The first line: what is evaluated on what.
fn print_header(a: &EvaluateArgs, subjects: usize, told: bool) {
    println!(
        "evaluate: {subjects} subject(s), {} prompts{}, {} slices, {}",
        name(&a.prompt),
        if told { " naming their structure" } else { "" },
        name(&a.axis),
        if a.pairs.is_some() {
            "real images".to_string()
        } else {
            format!("synthetic {} (seed {})", a.contrast.name(), a.seed)
        }
    );
}

/// A subject's Dice per structure and, for propagation, volume ratios and where it stopped.
fn print_subject(
    name: &str,
    labels: &[i32],
    scored: &Scored,
    dices: &[Option<f64>],
    took: Duration,
) {
    let short = |l: &i32| structure(*l).map_or("?", |s| s.name);
    let defined: Vec<f64> = dices.iter().flatten().copied().collect();
    let parts: Vec<String> = labels
        .iter()
        .zip(dices)
        .map(|(l, d)| format!("{}={}", short(l), fixed(*d, 3)))
        .collect();
    println!(
        "{name}: mean {} ({} prompts, {took:.1?}) {}",
        fixed(mean(&defined), 4),
        scored.prompts,
        parts.join(" ")
    );
    let Some(stops) = &scored.stops else {
        return;
    };
    // Leaks (> 1) and early stops (< 1) look alike in Dice.
    let ratios: Vec<String> = labels
        .iter()
        .zip(&scored.counts)
        .map(|(l, c)| {
            let r = c.pred as f64 / c.truth.max(1) as f64;
            format!("{}={r:.2}", short(l))
        })
        .collect();
    println!("{name}: predicted/true volume {}", ratios.join(" "));
    // Where each walk ended (slices kept beyond the seed, up and down) and why.
    let why: Vec<String> = labels
        .iter()
        .zip(stops)
        .filter_map(|(l, e)| {
            let ([up, down], seed) = (*e)?;
            Some(format!(
                "{}=+{}:{}/-{}:{}",
                short(l),
                up.last - seed,
                up.reason.code(),
                seed - down.last,
                down.reason.code()
            ))
        })
        .collect();
    println!("{name}: stops {}", why.join(" "));
}

/// Per structure over subjects, then over every (subject, structure) where Dice is defined:
/// the last line is `mean_dice=…`.
fn print_means(labels: &[i32], per_structure: &[Vec<f64>], all: &[f64]) {
    println!("per structure (mean over subjects):");
    for (l, ds) in labels.iter().zip(per_structure) {
        println!(
            "  {:<20} {}",
            structure(*l).map_or("?", |s| s.name),
            fixed(mean(ds), 4)
        );
    }
    println!("mean_dice={}", fixed(mean(all), 4));
}

/// The mean, None for no values.
fn mean(v: &[f64]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// `digits` decimals, or `n/a` where Dice is undefined.
fn fixed(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |v| format!("{v:.digits$}"))
}

impl Evaluation<'_> {
    /// The structure told to the model for label `l`, if it is told.
    fn named(&self, l: i32) -> Option<usize> {
        if self.told {
            kind(l)
        } else {
            None
        }
    }

    /// Box, point or filled-box prompts on every slice where each structure is.
    fn slices(&self, session: &mut Session, truth: &LabelVolume) -> Res<Scored> {
        let axis = self.axis;
        let mut counts = vec![Counts::default(); self.labels.len()];
        let mut prompts = 0;
        let mut predicted = self.keep.then(|| vec![0i32; truth.data.len()]);
        self.each_slice_prompt(session, truth, |session, p| {
            let pred = match p.prompt.bbox {
                Some(b) if self.prompt == PromptKind::BoxFill => box_filled(b, p.rows, p.cols),
                _ => {
                    session
                        .predict(self.sam, axis, p.index, &p.prompt)
                        .await_native()?
                        .data
                }
            };
            prompts += 1;
            if let Some(vol) = predicted.as_mut() {
                paint(
                    vol,
                    truth.dims,
                    axis,
                    p.index,
                    p.cols,
                    &pred,
                    self.labels[p.k],
                )?;
            }
            counts[p.k].add(&pred, p.truth);
            Ok(())
        })?;
        Ok(Scored {
            counts,
            stops: None,
            prompts,
            predicted,
        })
    }

    /// As [`Self::slices`], the masks cut at each of `grid`'s thresholds instead of the
    /// session's: per threshold, per structure. One prediction serves every threshold.
    fn graded(
        &self,
        session: &mut Session,
        truth: &LabelVolume,
        grid: &[f32],
    ) -> Res<Vec<Vec<Counts>>> {
        let mut counts = vec![vec![Counts::default(); self.labels.len()]; grid.len()];
        self.each_slice_prompt(session, truth, |session, p| {
            let scores = session
                .scores(self.sam, self.axis, p.index, &p.prompt)
                .await_native()?;
            for (c, t) in counts.iter_mut().zip(grid) {
                c[p.k].add(&scores.mask(*t).data, p.truth);
            }
            Ok(())
        })?;
        Ok(counts)
    }

    /// Calls `f` with the prompt of every structure on every slice where it is.
    fn each_slice_prompt(
        &self,
        session: &mut Session,
        truth: &LabelVolume,
        mut f: impl FnMut(&mut Session, SliceCase) -> Res,
    ) -> Res {
        for index in 0..truth.dims[self.axis] {
            let tp = slicing::slice(truth, self.axis, index)?;
            for (k, &l) in self.labels.iter().enumerate() {
                let mask: Vec<u8> = tp.data.iter().map(|v| u8::from(*v == l)).collect();
                if !mask.contains(&1) {
                    continue;
                }
                let Some(prompt) = self.slice_prompt(&mask, tp.rows, tp.cols, l) else {
                    continue;
                };
                let case = SliceCase {
                    k,
                    index,
                    rows: tp.rows,
                    cols: tp.cols,
                    truth: &mask,
                    prompt,
                };
                f(session, case)?;
            }
            session.clear_cache(); // each slice is visited once
        }
        Ok(())
    }

    /// The prompt for structure `l`'s `mask` on one slice: one interior point, or its box.
    fn slice_prompt(&self, mask: &[u8], rows: usize, cols: usize, l: i32) -> Option<SlicePrompt> {
        let structure = self.named(l);
        Some(if self.prompt == PromptKind::Point {
            let (u, v) = interior_point(mask, rows, cols)?;
            SlicePrompt {
                points: vec![[u as f32, v as f32, 1.0]],
                structure,
                ..Default::default()
            }
        } else {
            let [u0, v0, u1, v1] = bbox(mask, rows, cols)?;
            SlicePrompt {
                bbox: Some([u0 as f32, v0 as f32, u1 as f32, v1 as f32]),
                structure,
                ..Default::default()
            }
        })
    }

    /// One box (or click) per structure on its largest section, propagated through the
    /// volume.
    fn propagated(&self, session: &mut Session, truth: &LabelVolume) -> Res<Scored> {
        let largest = largest_sections(truth, self.axis, self.labels);
        let mut counts = Vec::with_capacity(self.labels.len());
        let mut stops = Vec::with_capacity(self.labels.len());
        let mut predicted = self.keep.then(|| vec![0i32; truth.data.len()]);
        for (k, &l) in self.labels.iter().enumerate() {
            let (c, s) = propagated(
                self.sam,
                session,
                truth,
                self.axis,
                (l, self.named(l), self.prompt == PromptKind::PropagateClick),
                largest[k],
                &self.rules,
                predicted.as_mut().map(|v| (v.as_mut_slice(), l)),
            )?;
            counts.push(c);
            stops.push(s);
        }
        Ok(Scored {
            counts,
            stops: Some(stops),
            prompts: self.labels.len(),
            predicted,
        })
    }
}

/// `default` or `legacy`, then optional `,name=value` overrides (clap's value parser).
pub fn parse_stop_rules(spec: &str) -> Result<StopRules, String> {
    let mut parts = spec.split(',');
    let mut r = match parts.next().map(str::trim) {
        Some("default") => StopRules::default(),
        Some("legacy") => StopRules::legacy(),
        Some("trained") => StopRules::trained(),
        Some("across") => StopRules::across(),
        o => {
            return Err(format!(
                "starts with default, legacy, trained or across, not `{o:?}`"
            ))
        }
    };
    for kv in parts {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("`{kv}` is not name=value"))?;
        let v: f64 = v
            .trim()
            .parse()
            .map_err(|_| format!("`{v}` is not a number"))?;
        // Every rule is a count, share, ratio, margin or switch: a negative box margin, say,
        // would invert the boxes of thin masks halfway through a walk.
        if !(v.is_finite() && v >= 0.0) {
            return Err(format!("`{kv}`: rules take finite values of 0 or more"));
        }
        match k.trim() {
            "min_area" => r.min_area = v as usize,
            "max_growth" => r.max_growth = v,
            "max_area_vs_seed" => r.max_area_vs_seed = v,
            "min_iou" => r.min_iou = v as f32,
            "min_tissue_share" => r.min_tissue_share = v,
            "max_regrowth" => r.max_regrowth = v,
            "max_extent" => r.max_extent = v,
            "box_margin" => r.box_margin = v as f32,
            "dense_prompt" => r.dense_prompt = v != 0.0,
            "three_planes" => r.three_planes = v != 0.0,
            "across" => r.across = v != 0.0,
            o => return Err(format!("no rule `{o}`")),
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

/// One box on structure `l`'s largest section `best` (index, area), or a click at its
/// interior-most pixel, propagated through the volume; painted into `keep` with its label
/// when given (later structures over earlier ones, as `segment` does).
#[allow(clippy::too_many_arguments)] // one structure's walk and where its result goes
fn propagated(
    sam: &brainsam::model::Sam,
    session: &mut Session,
    truth: &LabelVolume,
    axis: usize,
    (l, structure, click): (i32, Option<usize>, bool),
    best: (usize, usize),
    rules: &StopRules,
    keep: Option<(&mut [i32], i32)>,
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
    let prompt = match interior_point(&mask, tp.rows, tp.cols) {
        Some((u, v)) if click => SlicePrompt {
            points: vec![[u as f32, v as f32, 1.0]],
            structure,
            ..Default::default()
        },
        _ => SlicePrompt {
            bbox: Some([u0 as f32, v0 as f32, u1 as f32, v1 as f32]),
            structure,
            ..Default::default()
        },
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
    if let Some((vol, label)) = keep {
        for (v, p) in vol.iter_mut().zip(&pred.mask) {
            if *p != 0 {
                *v = label;
            }
        }
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
    dir: &Path,
    name: &str,
    image: &Volume<f32>,
    truth: &LabelVolume,
    predicted: Vec<i32>,
) -> Res {
    use brainsam::data::nifti::{label_out_type, write_file, write_image, write_labels};
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

    /// `calibrate`'s one pass over a grid of thresholds counts, at each threshold, what the
    /// plain evaluation counts with the model's masks cut there (the bundled model, box
    /// prompts on every axial slice of the left putamen of a synthetic T1); a higher cut
    /// keeps fewer pixels.
    #[test]
    fn graded_counts_equal_the_plain_evaluation_at_each_threshold() {
        let device = Backend::Cpu.device().unwrap();
        let (sam, _, meta) = load_model(None, None, &device).unwrap();
        let lab = load_label_map(&super::super::common::test_label_map("subject_13")).unwrap();
        let (image, deformed) = synthesize(&lab, &SynthConfig::preset(Contrast::T1), 3).unwrap();
        let truth = super::super::common::common(&deformed);
        let labels = [5]; // Left-Putamen
        let ev = Evaluation {
            sam: &sam,
            axis: 2,
            labels: &labels,
            prompt: PromptKind::Box,
            told: true,
            rules: StopRules::default(),
            keep: false,
        };
        let session = || {
            let mut s = Session::new(&image, device.clone()).unwrap();
            s.set_focus(meta.focus);
            s.set_slice_gap(meta.slice_gap);
            s
        };
        let grid = [-2.0, 0.0, 3.0];
        let graded = ev.graded(&mut session(), &truth, &grid).unwrap();
        let mut preds = Vec::new();
        for (t, counts) in grid.iter().zip(&graded) {
            let mut plain = session();
            plain.set_mask_thresholds(Some(MaskThresholds::uniform(*t)));
            let c = ev.slices(&mut plain, &truth).unwrap().counts[0];
            assert!(c.truth > 0 && c.inter > 0, "the putamen was not found");
            let g = counts[0];
            assert_eq!(
                (g.inter, g.pred, g.truth),
                (c.inter, c.pred, c.truth),
                "at {t}"
            );
            preds.push(g.pred);
        }
        assert!(preds[0] > preds[1] && preds[1] > preds[2], "{preds:?}");
    }

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
