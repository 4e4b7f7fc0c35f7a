//! Synthetic MRI from label maps (domain randomisation in the SynthSeg spirit): per-label
//! Gaussian intensities, contrast presets or random contrasts, random affine + elastic
//! deformation (image and labels together), blur / partial volume, anisotropic low
//! resolution, smooth bias field, Rician noise and gamma. Deterministic for a given seed.
//!
//! Works in the label map's own voxel grid, so outputs share its affine and header.

use super::error::{DataError, Result};
use super::rng::Rng;
use super::volume::{checked_len, LabelVolume, Volume};

/// Image contrast to imitate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Contrast {
    T1,
    T2,
    Pd,
    Flair,
    /// Every label gets a uniformly random mean intensity.
    Random,
}

impl Contrast {
    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "t1" => Contrast::T1,
            "t2" => Contrast::T2,
            "pd" => Contrast::Pd,
            "flair" => Contrast::Flair,
            "random" => Contrast::Random,
            o => {
                return Err(DataError::Invalid(format!(
                    "unknown contrast '{o}' (t1, t2, pd, flair, random)"
                )))
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Contrast::T1 => "t1",
            Contrast::T2 => "t2",
            Contrast::Pd => "pd",
            Contrast::Flair => "flair",
            Contrast::Random => "random",
        }
    }
}

/// Tissue classes of FreeSurfer-convention labels (for the presets).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tissue {
    Air,
    Wm,
    Cortex,
    Csf,
    Thalamus,
    Caudate,
    Putamen,
    Pallidum,
    Hippocampus,
    Amygdala,
    Accumbens,
    VentralDc,
    Brainstem,
    CerebellumGm,
    CerebellumWm,
    Vessel,
    Plexus,
    /// Extra-cerebral head tissue (labels ≥ 500 and unknown): random per sample.
    Head,
}

fn tissue(label: i32) -> Tissue {
    use Tissue::*;
    match label {
        0 => Air,
        2 | 41 | 77 | 78 | 79 | 85 | 192 | 251..=255 => Wm,
        3 | 42 | 1000..=2999 => Cortex,
        4 | 5 | 14 | 15 | 24 | 43 | 44 | 72 | 75 | 76 => Csf,
        10 | 49 => Thalamus,
        11 | 50 => Caudate,
        12 | 51 => Putamen,
        13 | 52 => Pallidum,
        17 | 53 => Hippocampus,
        18 | 54 => Amygdala,
        26 | 58 => Accumbens,
        28 | 60 => VentralDc,
        16 | 170..=175 => Brainstem,
        8 | 47 => CerebellumGm,
        7 | 46 => CerebellumWm,
        30 | 62 => Vessel,
        31 | 63 => Plexus,
        _ => Head,
    }
}

/// Mean intensity (0..1) of a tissue in a preset; `None` for randomised head tissue.
fn preset_mean(c: Contrast, t: Tissue) -> Option<f64> {
    use Tissue::*;
    // Columns: T1 (MPRAGE-like), T2, PD, FLAIR. Relative values from typical 3T appearance:
    // T1 WM > GM > CSF; T2 CSF > GM > WM; PD GM > WM, CSF bright; FLAIR CSF dark, GM > WM.
    let row: [f64; 4] = match t {
        Air => [0.0, 0.0, 0.0, 0.0],
        Wm => [0.80, 0.30, 0.62, 0.42],
        Cortex => [0.48, 0.55, 0.78, 0.62],
        Csf => [0.12, 0.95, 0.88, 0.06],
        Thalamus => [0.66, 0.40, 0.70, 0.52],
        Caudate => [0.54, 0.52, 0.76, 0.60],
        Putamen => [0.58, 0.44, 0.74, 0.56],
        Pallidum => [0.70, 0.28, 0.66, 0.46],
        Hippocampus => [0.50, 0.58, 0.78, 0.66],
        Amygdala => [0.52, 0.55, 0.77, 0.64],
        Accumbens => [0.53, 0.52, 0.76, 0.60],
        VentralDc => [0.70, 0.34, 0.65, 0.46],
        Brainstem => [0.74, 0.34, 0.64, 0.48],
        CerebellumGm => [0.50, 0.52, 0.76, 0.60],
        CerebellumWm => [0.76, 0.30, 0.62, 0.44],
        Vessel => [0.35, 0.20, 0.40, 0.30],
        Plexus => [0.45, 0.60, 0.70, 0.40],
        Head => return None,
    };
    match c {
        Contrast::T1 => Some(row[0]),
        Contrast::T2 => Some(row[1]),
        Contrast::Pd => Some(row[2]),
        Contrast::Flair => Some(row[3]),
        Contrast::Random => None,
    }
}

/// Low-resolution acquisition to simulate: thick slices along one axis.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LowRes {
    /// Voxel axis of the slice direction (0, 1, 2), or None for a random axis.
    pub axis: Option<usize>,
    /// Slice thickness range in mm (sampled uniformly).
    pub thickness_mm: (f64, f64),
}

/// Parameters of the generative model. All ranges are sampled per call from the seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    pub contrast: Contrast,
    /// Relative jitter (sd) of preset means, so that presets still vary across samples.
    pub mean_jitter: f64,
    /// Within-label intensity sd range (fraction of full scale).
    pub label_std: (f64, f64),
    /// Maximum rotation about each axis, degrees (0 disables).
    pub max_rotation_deg: f64,
    /// Maximum relative scaling (0.1 → 0.9..1.1).
    pub max_scaling: f64,
    /// Maximum shear.
    pub max_shear: f64,
    /// Maximum translation, mm.
    pub max_translation_mm: f64,
    /// Elastic displacement sd in mm at the control points (0 disables).
    pub elastic_std_mm: f64,
    /// Control points per axis of the elastic field.
    pub elastic_grid: usize,
    /// Gaussian blur sd range in mm (partial volume / scanner PSF).
    pub blur_mm: (f64, f64),
    /// Probability of simulating a thick-slice acquisition, and its parameters.
    pub low_res_prob: f64,
    pub low_res: LowRes,
    /// sd of the log bias field at its control points (0 disables).
    pub bias_std: f64,
    pub bias_grid: usize,
    /// Rician noise sd range (fraction of full scale).
    pub noise_std: (f64, f64),
    /// sd of the log gamma exponent (0 disables).
    pub gamma_std: f64,
}

impl SynthConfig {
    /// A realistic image of the given contrast with mild random deformation and artefacts.
    pub fn preset(contrast: Contrast) -> Self {
        SynthConfig {
            contrast,
            mean_jitter: 0.04,
            label_std: (0.015, 0.04),
            max_rotation_deg: 8.0,
            max_scaling: 0.08,
            max_shear: 0.01,
            max_translation_mm: 5.0,
            elastic_std_mm: 1.5,
            elastic_grid: 6,
            blur_mm: (0.5, 1.0),
            low_res_prob: 0.0,
            low_res: LowRes {
                axis: None,
                thickness_mm: (3.0, 6.0),
            },
            bias_std: 0.15,
            bias_grid: 4,
            noise_std: (0.005, 0.02),
            gamma_std: 0.0,
        }
    }

    /// Full domain randomisation for training: random contrast, strong deformation,
    /// frequent thick slices, stronger bias, noise and gamma.
    pub fn randomized() -> Self {
        SynthConfig {
            contrast: Contrast::Random,
            mean_jitter: 0.0,
            label_std: (0.0, 0.08),
            max_rotation_deg: 15.0,
            max_scaling: 0.15,
            max_shear: 0.02,
            max_translation_mm: 10.0,
            elastic_std_mm: 3.0,
            elastic_grid: 6,
            blur_mm: (0.0, 1.0),
            low_res_prob: 0.5,
            low_res: LowRes {
                axis: None,
                thickness_mm: (2.0, 7.0),
            },
            bias_std: 0.3,
            bias_grid: 4,
            noise_std: (0.0, 0.05),
            gamma_std: 0.25,
        }
    }

    /// No deformation at all (image exactly on the input labels).
    pub fn without_deformation(mut self) -> Self {
        self.max_rotation_deg = 0.0;
        self.max_scaling = 0.0;
        self.max_shear = 0.0;
        self.max_translation_mm = 0.0;
        self.elastic_std_mm = 0.0;
        self
    }
}

/// Synthesises an image and the correspondingly deformed labels from a label map.
/// The image is float32 in [0, 1]; both outputs keep the input's grid, affine and header.
pub fn synthesize(
    labels: &LabelVolume,
    cfg: &SynthConfig,
    seed: u64,
) -> Result<(Volume<f32>, LabelVolume)> {
    checked_len(labels.dims)?;
    if labels.data.len() != labels.dims.iter().product::<usize>() {
        return Err(DataError::Geometry(
            "label data length does not match dims".into(),
        ));
    }
    let mut rng = Rng::new(seed);
    let (mut r_def, mut r_int, mut r_art) = (rng.fork(), rng.fork(), rng.fork());
    let spacing = labels
        .spacing()
        .map(|s| if s > 0.0 && s.is_finite() { s } else { 1.0 });
    let deformed = deform(labels, cfg, spacing, &mut r_def)?;
    let mut img = intensities(&deformed, cfg, &mut r_int);
    let dims = labels.dims;
    // Partial volume / scanner PSF.
    for (ax, sp) in spacing.iter().enumerate() {
        let sd = r_art.range(cfg.blur_mm.0, cfg.blur_mm.1) / sp;
        blur_axis(&mut img, dims, ax, sd);
    }
    if cfg.low_res_prob > 0.0 && r_art.uniform() < cfg.low_res_prob {
        let ax = cfg
            .low_res
            .axis
            .filter(|a| *a < 3)
            .unwrap_or_else(|| r_art.below(3));
        let t = r_art.range(cfg.low_res.thickness_mm.0, cfg.low_res.thickness_mm.1);
        let factor = (t / spacing[ax]).max(1.0);
        low_res_axis(&mut img, dims, ax, factor);
    }
    if cfg.bias_std > 0.0 {
        let g = cfg.bias_grid.max(2);
        let field = SmoothField::random(&mut r_art, [g; 3], cfg.bias_std);
        let xt = x_table(dims, g);
        let mut row = Vec::with_capacity(dims[0]);
        for (k, line) in img.chunks_mut(dims[0]).enumerate() {
            field.row(dims, k % dims[1], k / dims[1], &xt, &mut row);
            for (v, b) in line.iter_mut().zip(&row) {
                *v *= b.exp() as f32;
            }
        }
    }
    let sd = r_art.range(cfg.noise_std.0, cfg.noise_std.1) as f32;
    if sd > 0.0 {
        for v in img.iter_mut() {
            let (a, b) = (r_art.normal() as f32 * sd, r_art.normal() as f32 * sd);
            *v = ((*v + a).powi(2) + b * b).sqrt();
        }
    }
    normalise(&mut img);
    if cfg.gamma_std > 0.0 {
        let g = (r_art.normal() * cfg.gamma_std).exp() as f32;
        img.iter_mut().for_each(|v| *v = v.powf(g));
    }
    Ok((labels.with_data(img)?, deformed))
}

fn for_each_voxel(dims: [usize; 3], mut f: impl FnMut(usize, [usize; 3])) {
    let mut i = 0;
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                f(i, [x, y, z]);
                i += 1;
            }
        }
    }
}

/// Random values on a coarse grid, trilinearly interpolated over the volume.
struct SmoothField {
    g: [usize; 3],
    v: Vec<f64>,
}

impl SmoothField {
    fn random(rng: &mut Rng, g: [usize; 3], sd: f64) -> Self {
        let v = (0..g[0] * g[1] * g[2]).map(|_| rng.normal() * sd).collect();
        SmoothField { g, v }
    }

    /// Values of row (y, z) along x: the control grid is interpolated in y and z once per
    /// row, then linearly along x (the same trilinear interpolation, separably).
    fn row(&self, dims: [usize; 3], y: usize, z: usize, xt: &[(usize, f64)], out: &mut Vec<f64>) {
        let [g0, g1, _] = self.g;
        let (by, fy) = axis_pos(y, dims[1], g1);
        let (bz, fz) = axis_pos(z, dims[2], self.g[2]);
        let at = |ix: usize, iy: usize, iz: usize| {
            self.v.get(ix + g0 * (iy + g1 * iz)).copied().unwrap_or(0.0)
        };
        let coarse: Vec<f64> = (0..g0)
            .map(|ix| {
                let a = at(ix, by, bz) * (1.0 - fy) + at(ix, by + 1, bz) * fy;
                let b = at(ix, by, bz + 1) * (1.0 - fy) + at(ix, by + 1, bz + 1) * fy;
                a * (1.0 - fz) + b * fz
            })
            .collect();
        out.clear();
        out.extend(xt.iter().map(|(b, f)| {
            let c0 = coarse.get(*b).copied().unwrap_or(0.0);
            let c1 = coarse.get(b + 1).copied().unwrap_or(c0);
            c0 + f * (c1 - c0)
        }));
    }
}

/// Position of voxel `p` (of `n`) on a grid of `g` ≥ 2 control points spanning the axis:
/// (lower control point, fraction towards the next).
fn axis_pos(p: usize, n: usize, g: usize) -> (usize, f64) {
    let t = p as f64 / (n.max(2) - 1) as f64 * (g.max(2) - 1) as f64;
    let b = (t.floor() as usize).min(g.saturating_sub(2));
    (b, t - b as f64)
}

fn x_table(dims: [usize; 3], g: usize) -> Vec<(usize, f64)> {
    (0..dims[0]).map(|x| axis_pos(x, dims[0], g)).collect()
}

/// Random affine + elastic deformation of the labels (nearest neighbour), about the centre.
fn deform(
    labels: &LabelVolume,
    cfg: &SynthConfig,
    sp: [f64; 3],
    rng: &mut Rng,
) -> Result<LabelVolume> {
    let dims = labels.dims;
    let rot = cfg.max_rotation_deg.to_radians();
    let angles = [0; 3].map(|_| rng.range(-rot, rot));
    let scales = [0; 3].map(|_| 1.0 + rng.range(-cfg.max_scaling, cfg.max_scaling));
    let shear = [0; 3].map(|_| rng.range(-cfg.max_shear, cfg.max_shear));
    let trans = [0; 3].map(|_| rng.range(-cfg.max_translation_mm, cfg.max_translation_mm));
    let g = cfg.elastic_grid.max(2);
    let fields = [0; 3].map(|_| SmoothField::random(rng, [g; 3], cfg.elastic_std_mm));
    let identity = rot == 0.0
        && cfg.max_scaling == 0.0
        && cfg.max_shear == 0.0
        && cfg.max_translation_mm == 0.0
        && cfg.elastic_std_mm == 0.0;
    if identity {
        return Ok(labels.clone());
    }
    // Output voxel → source position (mm about the centre): x_src = M x_out + t + d(x_out).
    let (sx, cx) = angles[0].sin_cos();
    let (sy, cy) = angles[1].sin_cos();
    let (sz, cz) = angles[2].sin_cos();
    let rx = [[1.0, 0.0, 0.0], [0.0, cx, -sx], [0.0, sx, cx]];
    let ry = [[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]];
    let rz = [[cz, -sz, 0.0], [sz, cz, 0.0], [0.0, 0.0, 1.0]];
    let shm = [
        [1.0, shear[0], shear[1]],
        [0.0, 1.0, shear[2]],
        [0.0, 0.0, 1.0],
    ];
    let m = mul3(&mul3(&mul3(&rz, &ry), &rx), &mul3(&shm, &diag3(scales)));
    let centre = dims.map(|d| (d as f64 - 1.0) / 2.0);
    let mut out = vec![0i32; labels.data.len()];
    let elastic = cfg.elastic_std_mm > 0.0;
    let xt = x_table(dims, g);
    let mut rows = [Vec::new(), Vec::new(), Vec::new()];
    for_each_voxel(dims, |i, p| {
        if p[0] == 0 && elastic {
            for (f, r) in fields.iter().zip(rows.iter_mut()) {
                f.row(dims, p[1], p[2], &xt, r);
            }
        }
        let q = [0, 1, 2].map(|a| (p[a] as f64 - centre[a]) * sp[a]);
        let mut src = [0.0; 3];
        for a in 0..3 {
            let d = rows[a].get(p[0]).copied().unwrap_or(0.0);
            let mm = m[a][0] * q[0] + m[a][1] * q[1] + m[a][2] * q[2] + trans[a] + d;
            src[a] = mm / sp[a] + centre[a];
        }
        let r = src.map(|s| s.round());
        if (0..3).all(|a| r[a] >= 0.0 && r[a] < dims[a] as f64) {
            if let (Some(v), Some(o)) = (
                labels.get(r[0] as usize, r[1] as usize, r[2] as usize),
                out.get_mut(i),
            ) {
                *o = v;
            }
        }
    });
    labels.with_data(out)
}

fn mul3(a: &[[f64; 3]; 3], b: &[[f64; 3]; 3]) -> [[f64; 3]; 3] {
    let mut m = [[0.0; 3]; 3];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

fn diag3(d: [f64; 3]) -> [[f64; 3]; 3] {
    [[d[0], 0.0, 0.0], [0.0, d[1], 0.0], [0.0, 0.0, d[2]]]
}

/// Per-label Gaussian intensities.
fn intensities(labels: &LabelVolume, cfg: &SynthConfig, rng: &mut Rng) -> Vec<f32> {
    let mut uniq: Vec<i32> = labels.data.clone();
    uniq.sort_unstable();
    uniq.dedup();
    let params: Vec<(f32, f32)> = uniq
        .iter()
        .map(|l| {
            let t = tissue(*l);
            let mean = match preset_mean(cfg.contrast, t) {
                Some(m) => (m * (1.0 + cfg.mean_jitter * rng.normal())).max(0.0),
                None if t == Tissue::Air => rng.range(0.0, 0.3),
                None => rng.range(0.05, 0.95),
            };
            let sd = rng.range(cfg.label_std.0, cfg.label_std.1);
            (mean as f32, sd as f32)
        })
        .collect();
    labels
        .data
        .iter()
        .map(|l| {
            let (m, s) = uniq
                .binary_search(l)
                .ok()
                .and_then(|k| params.get(k).copied())
                .unwrap_or((0.0, 0.0));
            (m + s * rng.normal() as f32).max(0.0)
        })
        .collect()
}

/// Applies `f` to every 1-D line of the volume along `axis`.
fn map_lines(img: &mut [f32], dims: [usize; 3], axis: usize, mut f: impl FnMut(&mut Vec<f32>)) {
    let n = dims[axis];
    let stride = match axis {
        0 => 1,
        1 => dims[0],
        _ => dims[0] * dims[1],
    };
    let (o1, o2) = match axis {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let strides = [1, dims[0], dims[0] * dims[1]];
    let mut line = vec![0.0f32; n];
    for b in 0..dims[o2] {
        for a in 0..dims[o1] {
            let start = a * strides[o1] + b * strides[o2];
            for (k, l) in line.iter_mut().enumerate() {
                *l = img.get(start + k * stride).copied().unwrap_or(0.0);
            }
            f(&mut line);
            for (k, l) in line.iter().enumerate() {
                if let Some(v) = img.get_mut(start + k * stride) {
                    *v = *l;
                }
            }
        }
    }
}

fn gaussian_kernel(sd: f64) -> Vec<f32> {
    let r = (3.0 * sd).ceil() as i64;
    let k: Vec<f64> = (-r..=r)
        .map(|i| (-(i * i) as f64 / (2.0 * sd * sd)).exp())
        .collect();
    let s: f64 = k.iter().sum();
    k.iter().map(|v| (v / s) as f32).collect()
}

fn convolve(line: &[f32], k: &[f32]) -> Vec<f32> {
    let r = (k.len() / 2) as i64;
    let n = line.len() as i64;
    (0..n)
        .map(|i| {
            k.iter()
                .enumerate()
                .map(|(j, w)| {
                    let idx = (i + j as i64 - r).clamp(0, n - 1) as usize;
                    w * line.get(idx).copied().unwrap_or(0.0)
                })
                .sum()
        })
        .collect()
}

/// Gaussian blur along one axis (sd in voxels; below 0.1 voxel it is a no-op).
fn blur_axis(img: &mut [f32], dims: [usize; 3], axis: usize, sd: f64) {
    if sd.is_nan() || sd < 0.1 {
        return;
    }
    let k = gaussian_kernel(sd);
    map_lines(img, dims, axis, |line| *line = convolve(line, &k));
}

/// Thick-slice acquisition along `axis`: slice profile blur (FWHM = thickness), sampling
/// every `factor` voxels, then linear interpolation back to the original grid.
fn low_res_axis(img: &mut [f32], dims: [usize; 3], axis: usize, factor: f64) {
    if factor <= 1.0 {
        return;
    }
    let k = gaussian_kernel(factor / 2.355);
    map_lines(img, dims, axis, |line| {
        let blurred = convolve(line, &k);
        let n = blurred.len();
        let samples: Vec<f32> = (0..)
            .map(|j| j as f64 * factor)
            .take_while(|p| *p <= (n - 1) as f64)
            .map(|p| blurred.get(p.round() as usize).copied().unwrap_or(0.0))
            .collect();
        for (i, v) in line.iter_mut().enumerate() {
            let t = i as f64 / factor;
            let j = t.floor() as usize;
            let f = (t - j as f64) as f32;
            let a = samples.get(j).copied().unwrap_or(0.0);
            let b = samples.get(j + 1).copied().unwrap_or(a);
            *v = a + f * (b - a);
        }
    });
}

/// Scales to [0, 1]: 0 stays 0, the 99.9th percentile (of a strided sample) maps to 1.
fn normalise(img: &mut [f32]) {
    let step = (img.len() / 1_000_000).max(1);
    let mut s: Vec<f32> = img
        .iter()
        .step_by(step)
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if s.is_empty() {
        return;
    }
    let k = ((s.len() - 1) as f64 * 0.999) as usize;
    let (_, hi, _) = s.select_nth_unstable_by(k, f32::total_cmp);
    let hi = *hi;
    if hi > 0.0 {
        img.iter_mut().for_each(|v| *v = (*v / hi).clamp(0.0, 1.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::nifti::{read_labels, write_file, write_image, write_labels, OutType};
    use crate::data::testutil::*;

    fn small_labels() -> LabelVolume {
        // Two blocks (WM 2 and CSF 4) in an air background.
        let dims = [24, 20, 16];
        let mut data = vec![0i32; 24 * 20 * 16];
        for_each_voxel(dims, |i, p| {
            if (4..20).contains(&p[0]) && (4..16).contains(&p[1]) && (4..12).contains(&p[2]) {
                data[i] = if p[0] < 12 { 2 } else { 4 };
            }
        });
        let aff = [
            [-1.0, 0.0, 0.0, 10.0],
            [0.0, 0.0, 1.2, -5.0],
            [0.0, -1.0, 0.0, 7.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        LabelVolume::new(dims, data, aff).unwrap()
    }

    fn mean_of(img: &Volume<f32>, labels: &LabelVolume, l: i32) -> f32 {
        let v: Vec<f32> = img
            .data
            .iter()
            .zip(&labels.data)
            .filter(|(_, x)| **x == l)
            .map(|(v, _)| *v)
            .collect();
        v.iter().sum::<f32>() / v.len() as f32
    }

    #[test]
    fn same_seed_gives_identical_output_and_another_seed_differs() {
        let l = small_labels();
        let cfg = SynthConfig::randomized();
        let a = synthesize(&l, &cfg, 3).unwrap();
        let b = synthesize(&l, &cfg, 3).unwrap();
        let c = synthesize(&l, &cfg, 4).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.0.data, c.0.data);
    }

    #[test]
    fn presets_order_white_matter_and_csf_as_the_contrast_dictates() {
        let l = small_labels();
        for (c, wm_brighter) in [
            (Contrast::T1, true),
            (Contrast::T2, false),
            (Contrast::Flair, true),
        ] {
            let cfg = SynthConfig::preset(c).without_deformation();
            let (img, lab) = synthesize(&l, &cfg, 1).unwrap();
            assert_eq!(lab, l);
            let (wm, csf) = (mean_of(&img, &lab, 2), mean_of(&img, &lab, 4));
            assert_eq!(wm > csf, wm_brighter, "{c:?}: wm {wm} csf {csf}");
            assert!(img.data.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn deformation_moves_labels_but_keeps_grid_and_label_set() {
        let l = small_labels();
        let (img, lab) = synthesize(&l, &SynthConfig::randomized(), 9).unwrap();
        assert_eq!((img.dims, lab.dims, lab.affine), (l.dims, l.dims, l.affine));
        assert_ne!(lab.data, l.data);
        let mut set: Vec<i32> = lab.data.clone();
        set.sort();
        set.dedup();
        assert_eq!(set, vec![0, 2, 4]);
    }

    #[test]
    fn thick_slices_remove_detail_along_one_axis_only() {
        // A one-voxel checker along z survives blur-free sampling only at full resolution.
        let dims = [4, 4, 40];
        let mut img: Vec<f32> = (0..640).map(|i| ((i / 16) % 2) as f32).collect();
        let before = img.clone();
        low_res_axis(&mut img, dims, 2, 5.0);
        let var = |v: &[f32]| {
            let m = v.iter().sum::<f32>() / v.len() as f32;
            v.iter().map(|x| (x - m).powi(2)).sum::<f32>() / v.len() as f32
        };
        assert!(var(&img) < 0.1 * var(&before));
        let mut same = before.clone();
        low_res_axis(&mut same, dims, 0, 5.0); // constant along x: unchanged
        assert!(same.iter().zip(&before).all(|(a, b)| (a - b).abs() < 1e-6));
    }

    #[test]
    fn every_preset_of_a_real_label_map_is_read_back_by_nibabel_with_the_same_affine() {
        let src = label_map_path(1);
        let labels = read_labels(&read_bytes(&src)).unwrap().volume;
        let want = python_json("check_nifti.py", &[src.to_str().unwrap()]);
        let dir = temp_dir("synth-presets");
        for c in [Contrast::T1, Contrast::T2, Contrast::Pd, Contrast::Flair] {
            let t = std::time::Instant::now();
            let (img, lab) = synthesize(&labels, &SynthConfig::preset(c), 3).unwrap();
            eprintln!(
                "synthesised {} {:?} in {:.2?}",
                c.name(),
                labels.dims,
                t.elapsed()
            );
            let (pi, pl) = (
                dir.join(format!("{}_image.nii.gz", c.name())),
                dir.join(format!("{}_labels.nii.gz", c.name())),
            );
            write_file(&pi, &write_image(&img, true).unwrap()).unwrap();
            write_file(&pl, &write_labels(&lab, OutType::I16, true).unwrap()).unwrap();
            for p in [&pi, &pl] {
                let got = python_json("check_nifti.py", &[p.to_str().unwrap()]);
                assert_eq!(got["shape"], want["shape"]);
                assert_affine_close(
                    &json_affine(&got["affine"]),
                    &json_affine(&want["affine"]),
                    1e-5,
                );
            }
            // Subcortical grey matter must stand out from white matter as the contrast says.
            let (wm, put) = (mean_of(&img, &lab, 2), mean_of(&img, &lab, 12));
            match c {
                Contrast::T1 => assert!(wm > put + 0.05, "T1 wm {wm} putamen {put}"),
                Contrast::T2 | Contrast::Pd | Contrast::Flair => {
                    assert!(put > wm + 0.03, "{c:?} wm {wm} putamen {put}")
                }
                Contrast::Random => {}
            }
        }
    }
}
