//! Volume ↔ 2-D slices for SAM, intensity normalisation, and coordinate transforms.
//!
//! Convention (shared with the prompt format): a slice is taken at index `index` along voxel
//! axis `axis` (0, 1, 2 of the array as stored, or of a canonical volume). The two remaining
//! axes in increasing order are `u` (the lower) and `v` (the higher). A [`Plane`] is row-major
//! with `cols = dims[u_axis]` and `rows = dims[v_axis]`: pixel (row, col) = voxel with
//! `u = col`, `v = row`. No flips are applied; display code flips as it likes.

use super::error::{DataError, Result};
use super::volume::Volume;

/// A 2-D row-major image.
#[derive(Debug, Clone, PartialEq)]
pub struct Plane<T> {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<T>,
}

impl<T: Copy> Plane<T> {
    /// Value at (row, col), or None outside.
    pub fn get(&self, row: usize, col: usize) -> Option<T> {
        (row < self.rows && col < self.cols)
            .then(|| self.data.get(row * self.cols + col).copied())
            .flatten()
    }
}

/// The (u, v) axes of a slice along `axis`, in increasing order.
pub fn plane_axes(axis: usize) -> Result<(usize, usize)> {
    match axis {
        0 => Ok((1, 2)),
        1 => Ok((0, 2)),
        2 => Ok((0, 1)),
        _ => Err(DataError::Invalid(format!(
            "slice axis {axis} is not 0, 1 or 2"
        ))),
    }
}

/// Voxel (x, y, z) → (slice index, u, v) for slices along `axis`.
pub fn voxel_to_slice(axis: usize, voxel: [usize; 3]) -> Result<(usize, usize, usize)> {
    let (a, b) = plane_axes(axis)?;
    Ok((voxel[axis], voxel[a], voxel[b]))
}

/// (slice index, u, v) → voxel (x, y, z) for slices along `axis`.
pub fn slice_to_voxel(axis: usize, index: usize, u: usize, v: usize) -> Result<[usize; 3]> {
    let (a, b) = plane_axes(axis)?;
    let mut p = [0; 3];
    p[axis] = index;
    p[a] = u;
    p[b] = v;
    Ok(p)
}

/// Extracts the slice at `index` along `axis`.
pub fn slice<T: Copy>(vol: &Volume<T>, axis: usize, index: usize) -> Result<Plane<T>> {
    let (a, b) = plane_axes(axis)?;
    if index >= vol.dims[axis] {
        return Err(DataError::Invalid(format!(
            "slice {index} out of range: axis {axis} has {} voxels",
            vol.dims[axis]
        )));
    }
    let (cols, rows) = (vol.dims[a], vol.dims[b]);
    let mut data = Vec::with_capacity(rows * cols);
    for v in 0..rows {
        for u in 0..cols {
            let p = slice_to_voxel(axis, index, u, v)?;
            data.push(
                vol.get(p[0], p[1], p[2])
                    .ok_or_else(|| DataError::Invalid("voxel outside volume".into()))?,
            );
        }
    }
    Ok(Plane { rows, cols, data })
}

/// The slices `index - gap`, `index`, `index + gap` along `axis` as one plane of triples: the
/// model's three input channels see the neighbours a reader scrolls through (2.5-D input).
/// Beyond the volume's ends the nearest slice stands in; `gap` 0 gives three copies of one
/// slice, SAM's grey-level input.
pub fn slab<T: Copy>(
    vol: &Volume<T>,
    axis: usize,
    index: usize,
    gap: usize,
) -> Result<Plane<[T; 3]>> {
    let centre = slice(vol, axis, index)?;
    if gap == 0 {
        return Ok(Plane {
            rows: centre.rows,
            cols: centre.cols,
            data: centre.data.iter().map(|x| [*x; 3]).collect(),
        });
    }
    let last = vol.dims[axis] - 1;
    let below = slice(vol, axis, index.saturating_sub(gap))?;
    let above = slice(vol, axis, (index + gap).min(last))?;
    let data = below
        .data
        .iter()
        .zip(&centre.data)
        .zip(&above.data)
        .map(|((b, c), a)| [*b, *c, *a])
        .collect();
    Ok(Plane {
        rows: centre.rows,
        cols: centre.cols,
        data,
    })
}

/// Writes `label` into every voxel of slice (`axis`, `index`) where `mask` is true.
pub fn paste_mask<T: Copy>(
    vol: &mut Volume<T>,
    axis: usize,
    index: usize,
    mask: &Plane<bool>,
    label: T,
) -> Result<()> {
    let (a, b) = plane_axes(axis)?;
    if index >= vol.dims[axis] || mask.cols != vol.dims[a] || mask.rows != vol.dims[b] {
        return Err(DataError::Geometry(format!(
            "mask {}×{} (rows×cols) at slice {index} does not fit axis {axis} of dims {:?}",
            mask.rows, mask.cols, vol.dims
        )));
    }
    for v in 0..mask.rows {
        for u in 0..mask.cols {
            if mask.get(v, u) == Some(true) {
                let p = slice_to_voxel(axis, index, u, v)?;
                if let Some(i) = vol.index(p[0], p[1], p[2]) {
                    if let Some(d) = vol.data.get_mut(i) {
                        *d = label;
                    }
                }
            }
        }
    }
    Ok(())
}

/// Exact percentiles (linear interpolation between order statistics, as numpy's default)
/// of the finite values; `ps` in [0, 100].
pub fn percentiles(values: &[f32], ps: &[f64]) -> Result<Vec<f32>> {
    let mut v: Vec<f32> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return Err(DataError::Invalid(
            "no finite values to take percentiles of".into(),
        ));
    }
    let n = v.len();
    let mut out = Vec::with_capacity(ps.len());
    for p in ps {
        if !(0.0..=100.0).contains(p) {
            return Err(DataError::Invalid(format!(
                "percentile {p} outside 0..=100"
            )));
        }
        let pos = p / 100.0 * (n - 1) as f64;
        let lo = pos.floor() as usize;
        let frac = pos - lo as f64;
        let (_, a, rest) = v.select_nth_unstable_by(lo, f32::total_cmp);
        let a = *a;
        let b = rest.iter().copied().fold(f32::INFINITY, f32::min);
        let b = if lo + 1 < n { b } else { a };
        out.push((a as f64 + frac * (b as f64 - a as f64)) as f32);
    }
    Ok(out)
}

/// Maps intensities to 0–255 with limits computed once per volume, so that every slice of a
/// volume is normalised the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalizer {
    pub lo: f32,
    pub hi: f32,
}

impl Normalizer {
    /// Robust limits: the 0.5th and 99.5th percentiles of the volume.
    pub fn robust(vol: &Volume<f32>) -> Result<Self> {
        Self::from_percentiles(vol, 0.5, 99.5)
    }

    pub fn from_percentiles(vol: &Volume<f32>, p_lo: f64, p_hi: f64) -> Result<Self> {
        let q = percentiles(&vol.data, &[p_lo, p_hi])?;
        Ok(Normalizer { lo: q[0], hi: q[1] })
    }

    /// Intensity → 0..=255 (clipped; a flat volume maps to 0).
    pub fn to_u8(&self, x: f32) -> u8 {
        let span = self.hi - self.lo;
        if span.is_nan() || span <= 0.0 || !x.is_finite() {
            return 0;
        }
        ((x - self.lo) / span * 255.0).round().clamp(0.0, 255.0) as u8
    }

    /// Plane → interleaved RGB bytes `[rows, cols, 3]` (three identical channels, for SAM).
    pub fn to_rgb(&self, plane: &Plane<f32>) -> Vec<u8> {
        plane
            .data
            .iter()
            .flat_map(|x| {
                let g = self.to_u8(*x);
                [g, g, g]
            })
            .collect()
    }

    /// A [`slab`] → interleaved RGB bytes `[rows, cols, 3]`, one slice per channel.
    pub fn slab_to_rgb(&self, plane: &Plane<[f32; 3]>) -> Vec<u8> {
        plane
            .data
            .iter()
            .flat_map(|p| p.map(|x| self.to_u8(x)))
            .collect()
    }
}

/// SAM-style resize of the longest side to `target` (1024 for SAM): pixel coordinates
/// (col = u, row = v) scale by the same factor, as SAM's `ResizeLongestSide.apply_coords`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInput {
    pub rows: usize,
    pub cols: usize,
    pub target: usize,
}

impl ModelInput {
    pub fn new(rows: usize, cols: usize, target: usize) -> Result<Self> {
        if rows == 0 || cols == 0 || target == 0 {
            return Err(DataError::Invalid(format!(
                "model input from a {rows}×{cols} plane to {target} is empty"
            )));
        }
        Ok(ModelInput { rows, cols, target })
    }

    pub fn scale(&self) -> f64 {
        self.target as f64 / self.rows.max(self.cols) as f64
    }

    /// Size (rows, cols) of the resized image before padding to `target`².
    pub fn resized(&self) -> (usize, usize) {
        let s = self.scale();
        (
            (self.rows as f64 * s + 0.5) as usize,
            (self.cols as f64 * s + 0.5) as usize,
        )
    }

    /// Slice pixel (u = col, v = row) → model-input (x, y).
    pub fn to_model(&self, u: f64, v: f64) -> (f64, f64) {
        (u * self.scale(), v * self.scale())
    }

    /// Model-input (x, y) → slice pixel (u, v).
    pub fn from_model(&self, x: f64, y: f64) -> (f64, f64) {
        (x / self.scale(), y / self.scale())
    }
}

/// Indices along `axis` whose slice contains at least one voxel equal to `label`.
pub fn slices_containing(labels: &Volume<i32>, axis: usize, label: i32) -> Result<Vec<usize>> {
    plane_axes(axis)?;
    let [nx, ny, _] = labels.dims;
    let mut hit = vec![false; labels.dims[axis]];
    for (i, l) in labels.data.iter().enumerate() {
        if *l == label {
            let p = [i % nx, (i / nx) % ny, i / (nx * ny)];
            if let Some(h) = hit.get_mut(p[axis]) {
                *h = true;
            }
        }
    }
    Ok(hit
        .iter()
        .enumerate()
        .filter_map(|(i, h)| h.then_some(i))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp() -> Volume<i32> {
        // Value encodes its own coordinates: 100x + 10y + z.
        let dims = [4, 3, 2];
        let mut data = Vec::new();
        for z in 0..2 {
            for y in 0..3 {
                for x in 0..4 {
                    data.push(100 * x + 10 * y + z);
                }
            }
        }
        let id = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        Volume::new(dims, data, id).unwrap()
    }

    #[test]
    fn slice_pixels_are_the_voxels_at_u_col_and_v_row_for_every_axis() {
        let vol = ramp();
        for axis in 0..3 {
            let (a, b) = plane_axes(axis).unwrap();
            let p = slice(&vol, axis, 1).unwrap();
            assert_eq!((p.cols, p.rows), (vol.dims[a], vol.dims[b]));
            for row in 0..p.rows {
                for col in 0..p.cols {
                    let mut xyz = [0; 3];
                    xyz[axis] = 1;
                    xyz[a] = col;
                    xyz[b] = row;
                    let want = 100 * xyz[0] as i32 + 10 * xyz[1] as i32 + xyz[2] as i32;
                    assert_eq!(p.get(row, col), Some(want));
                }
            }
        }
    }

    #[test]
    fn slab_channels_are_the_slices_gap_below_and_above_clamped_at_the_ends() {
        let vol = ramp();
        // Axis 0 has 4 slices: around 1 with gap 2 the lower neighbour clamps to 0, the
        // upper is 3; gap 0 repeats the centre.
        for (index, gap, want) in [(1, 2, [0, 1, 3]), (3, 1, [2, 3, 3]), (2, 0, [2, 2, 2])] {
            let p = slab(&vol, 0, index, gap).unwrap();
            assert_eq!((p.cols, p.rows), (3, 2));
            for row in 0..p.rows {
                for col in 0..p.cols {
                    let at = |x: usize| 100 * x as i32 + 10 * col as i32 + row as i32;
                    assert_eq!(p.get(row, col), Some(want.map(at)), "{index} {gap}");
                }
            }
        }
        assert!(slab(&vol, 0, 4, 1).is_err());
    }

    #[test]
    fn voxel_slice_coordinates_round_trip() {
        for axis in 0..3 {
            let v = [3, 1, 2];
            let (i, a, b) = voxel_to_slice(axis, v).unwrap();
            assert_eq!(slice_to_voxel(axis, i, a, b).unwrap(), v);
        }
        assert!(voxel_to_slice(3, [0, 0, 0]).is_err());
    }

    #[test]
    fn pasted_mask_lands_on_the_voxels_of_that_slice_only() {
        let mut vol = ramp().with_data(vec![0i32; 24]).unwrap();
        let mut mask = Plane {
            rows: 3,
            cols: 4,
            data: vec![false; 12],
        };
        mask.data[4 + 3] = true; // row v=1 (y), col u=3 (x)
        paste_mask(&mut vol, 2, 1, &mask, 7).unwrap();
        assert_eq!(vol.get(3, 1, 1), Some(7));
        assert_eq!(vol.data.iter().filter(|x| **x == 7).count(), 1);
        let wrong = Plane {
            rows: 4,
            cols: 3,
            data: vec![true; 12],
        };
        assert!(paste_mask(&mut vol, 2, 0, &wrong, 1).is_err());
        assert!(paste_mask(&mut vol, 2, 2, &mask, 1).is_err());
    }

    #[test]
    fn percentiles_match_numpy_linear_interpolation() {
        // numpy.percentile([1, 2, 3, 4, 10], [0, 50, 90, 100]) == [1, 3, 7.6, 10]
        let q = percentiles(
            &[4.0, 1.0, 10.0, 3.0, 2.0, f32::NAN],
            &[0.0, 50.0, 90.0, 100.0],
        )
        .unwrap();
        assert_eq!(q[0], 1.0);
        assert_eq!(q[1], 3.0);
        assert!((q[2] - 7.6).abs() < 1e-5);
        assert_eq!(q[3], 10.0);
    }

    #[test]
    fn normalisation_uses_volume_limits_so_slices_agree() {
        let data: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let vol = ramp().with_data(data).unwrap();
        let n = Normalizer::from_percentiles(&vol, 0.0, 100.0).unwrap();
        assert_eq!((n.to_u8(0.0), n.to_u8(23.0), n.to_u8(1e9)), (0, 255, 255));
        let p = slice(&vol, 2, 0).unwrap();
        let rgb = n.to_rgb(&p);
        assert_eq!(rgb.len(), p.rows * p.cols * 3);
        assert!(rgb.chunks(3).all(|c| c[0] == c[1] && c[1] == c[2]));
        // Slice 0 holds the low half of the range only: it must not be stretched to 255.
        assert!(rgb.iter().all(|g| *g < 128));
    }

    #[test]
    fn robust_limits_of_real_t1_volumes_match_numpy_percentiles() {
        use crate::data::testutil::*;
        for p in real_t1_paths() {
            let f = p.display();
            let vol = crate::data::nifti::read_image(&read_bytes(&p))
                .unwrap()
                .volume;
            let want = python_json("check_nifti.py", &[p.to_str().unwrap()]);
            let n = Normalizer::robust(&vol).unwrap();
            assert!(
                (n.lo as f64 - want["p0_5"].as_f64().unwrap()).abs() < 1e-3,
                "{f}"
            );
            assert!(
                (n.hi as f64 - want["p99_5"].as_f64().unwrap()).abs() < 1e-3,
                "{f}"
            );
            assert!(n.hi > n.lo);
        }
    }

    #[test]
    fn model_coordinates_scale_the_longest_side_to_the_target() {
        let m = ModelInput::new(200, 256, 1024).unwrap();
        assert_eq!(m.resized(), (800, 1024));
        assert_eq!(m.to_model(128.0, 100.0), (512.0, 400.0));
        assert_eq!(m.from_model(512.0, 400.0), (128.0, 100.0));
        assert!(ModelInput::new(0, 5, 1024).is_err());
    }

    #[test]
    fn slices_containing_a_label_are_found_along_each_axis() {
        let mut vol = ramp().with_data(vec![0i32; 24]).unwrap();
        let i = vol.index(2, 1, 1).unwrap();
        vol.data[i] = 5;
        assert_eq!(slices_containing(&vol, 0, 5).unwrap(), vec![2]);
        assert_eq!(slices_containing(&vol, 2, 5).unwrap(), vec![1]);
    }
}
