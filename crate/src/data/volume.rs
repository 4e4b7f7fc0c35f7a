//! In-memory volumes: voxel values with their voxel→world geometry and source header.
//!
//! Voxel data are stored as in the file: x fastest, i.e. `index = x + nx * (y + ny * z)`.
//! Reading and writing them as NIfTI is in [`super::nifti`].

use super::error::{DataError, Result};
use super::nifti::header::{self, NiftiHeader};

/// Largest volume accepted (about 645³ voxels, 1 GiB as f32); larger headers are refused
/// before any allocation so that a corrupt header cannot exhaust memory (wasm has 4 GiB).
pub const MAX_VOXELS: u64 = 1 << 28;

/// A 3-D volume with its voxel→world geometry and the header it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume<T = f32> {
    /// Voxel counts along the three array axes.
    pub dims: [usize; 3],
    /// Voxel values, x fastest.
    pub data: Vec<T>,
    /// 4×4 voxel→world (RAS+ mm) affine, as nibabel's `img.affine`.
    pub affine: [[f64; 4]; 4],
    /// Header of the source file (or a synthetic one), reused when writing outputs.
    pub header: NiftiHeader,
}

/// Integer label map sharing the geometry conventions of [`Volume`].
pub type LabelVolume = Volume<i32>;

/// Result of reading a file: the volume plus what the reader had to fix or ignore.
#[derive(Debug, Clone)]
pub struct Loaded<T> {
    pub volume: Volume<T>,
    /// Human-readable notes (4-D input reduced to its first volume, NaN voxels zeroed, ...).
    pub warnings: Vec<String>,
}

impl<T: Copy> Volume<T> {
    /// Creates a volume with an affine; the header is synthesised (sform = affine).
    pub fn new(dims: [usize; 3], data: Vec<T>, affine: [[f64; 4]; 4]) -> Result<Self> {
        let n = checked_len(dims)?;
        if data.len() != n {
            return Err(DataError::Geometry(format!(
                "dims {dims:?} need {n} voxels, data has {}",
                data.len()
            )));
        }
        let mut header = NiftiHeader {
            sform_code: 2,
            ..NiftiHeader::default()
        };
        for (i, d) in dims.iter().enumerate() {
            header.dim[i + 1] = *d as i64;
        }
        header.srow = [affine[0], affine[1], affine[2]];
        header::set_qform(&mut header, &affine, 2);
        Ok(Volume {
            dims,
            data,
            affine,
            header,
        })
    }

    /// Same geometry and header, other voxel values.
    pub fn with_data<U: Copy>(&self, data: Vec<U>) -> Result<Volume<U>> {
        if data.len() != self.data.len() {
            return Err(DataError::Geometry(format!(
                "replacement data has {} voxels, volume has {}",
                data.len(),
                self.data.len()
            )));
        }
        Ok(Volume {
            dims: self.dims,
            data,
            affine: self.affine,
            header: self.header.clone(),
        })
    }

    /// Linear index of voxel (x, y, z), or None outside the grid.
    pub fn index(&self, x: usize, y: usize, z: usize) -> Option<usize> {
        let [nx, ny, nz] = self.dims;
        (x < nx && y < ny && z < nz).then_some(x + nx * (y + ny * z))
    }

    /// Value at voxel (x, y, z), or None outside the grid.
    pub fn get(&self, x: usize, y: usize, z: usize) -> Option<T> {
        self.index(x, y, z).and_then(|i| self.data.get(i).copied())
    }

    /// Voxel size in mm along each array axis (column norms of the affine).
    pub fn spacing(&self) -> [f64; 3] {
        column_norms(&self.affine)
    }

    /// World (mm) coordinates of a (possibly fractional) voxel position.
    pub fn voxel_to_world(&self, v: [f64; 3]) -> [f64; 3] {
        let a = &self.affine;
        let mut w = [0.0; 3];
        for (i, wi) in w.iter_mut().enumerate() {
            *wi = a[i][0] * v[0] + a[i][1] * v[1] + a[i][2] * v[2] + a[i][3];
        }
        w
    }
}

pub(crate) fn column_norms(a: &[[f64; 4]; 4]) -> [f64; 3] {
    let mut s = [0.0; 3];
    for (j, sj) in s.iter_mut().enumerate() {
        *sj = (a[0][j].powi(2) + a[1][j].powi(2) + a[2][j].powi(2)).sqrt();
    }
    s
}

pub(crate) fn checked_len(dims: [usize; 3]) -> Result<usize> {
    let n = dims[0] as u128 * dims[1] as u128 * dims[2] as u128;
    if n == 0 {
        let axis = dims.iter().position(|d| *d == 0).unwrap_or(0) + 1;
        return Err(DataError::ZeroSizeDim { axis });
    }
    if n > MAX_VOXELS as u128 {
        return Err(DataError::TooLarge {
            voxels: n,
            limit: MAX_VOXELS,
        });
    }
    Ok(n as usize)
}

/// A file's decoded values as image voxels: NaN/Inf become 0, reported in the warnings.
/// Every reader (NIfTI, MGH) converts through here, so they agree on bad voxels.
pub(crate) fn image_voxels(values: impl Iterator<Item = f64>) -> (Vec<f32>, Vec<String>) {
    let mut bad = 0usize;
    let data = values
        .map(|v| {
            let v = v as f32;
            if v.is_finite() {
                v
            } else {
                bad += 1;
                0.0
            }
        })
        .collect();
    let warnings = (bad > 0)
        .then(|| format!("{bad} NaN/Inf voxels set to 0"))
        .into_iter()
        .collect();
    (data, warnings)
}

/// A file's decoded values as labels: NaN/Inf and out-of-range values become 0, non-integer
/// ones are rounded; both reported.
pub(crate) fn label_voxels(values: impl Iterator<Item = f64>) -> (Vec<i32>, Vec<String>) {
    let (mut bad, mut frac) = (0usize, 0usize);
    let data = values
        .map(|v| {
            if !v.is_finite() || v.abs() > i32::MAX as f64 {
                bad += 1;
                return 0;
            }
            let r = v.round();
            if (r - v).abs() > 1e-3 {
                frac += 1;
            }
            r as i32
        })
        .collect();
    let mut warnings = Vec::new();
    if bad > 0 {
        warnings.push(format!("{bad} NaN/Inf/out-of-range label voxels set to 0"));
    }
    if frac > 0 {
        warnings.push(format!("{frac} non-integer label voxels rounded"));
    }
    (data, warnings)
}
