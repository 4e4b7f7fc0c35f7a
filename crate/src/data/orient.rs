//! Reorientation to the closest canonical RAS+ voxel order (as nibabel's
//! `as_closest_canonical`) and back, as an exact axis permutation plus flips.

use super::error::{DataError, Result};
use super::volume::Volume;

/// How a source voxel array maps onto its closest RAS+ canonical array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Orientation {
    /// For canonical axis i (0 = R, 1 = A, 2 = S): the source voxel axis that runs along it.
    pub src_axis: [usize; 3],
    /// Whether source axis `src_axis[i]` runs opposite to canonical axis i.
    pub flip: [bool; 3],
    /// Source array dims.
    pub src_dims: [usize; 3],
}

/// For each voxel axis, the world axis (0 = x/R, 1 = y/A, 2 = z/S) it is closest to and
/// whether it points the negative way. Greedy on the largest direction cosine, so that two
/// voxel axes never claim the same world axis.
pub fn voxel_axes_to_world(affine: &[[f64; 4]; 4]) -> [(usize, bool); 3] {
    let mut cos = [[0.0f64; 3]; 3]; // cos[world][voxel]
    for j in 0..3 {
        let n = (0..3).map(|i| affine[i][j].powi(2)).sum::<f64>().sqrt();
        for (i, row) in cos.iter_mut().enumerate() {
            row[j] = if n > 0.0 { affine[i][j] / n } else { 0.0 };
        }
    }
    let mut out = [(0usize, false); 3];
    let (mut used_w, mut used_v) = ([false; 3], [false; 3]);
    for _ in 0..3 {
        let mut best = (0, 0, -1.0);
        for (i, row) in cos.iter().enumerate() {
            for (j, c) in row.iter().enumerate() {
                if !used_w[i] && !used_v[j] && c.abs() > best.2 {
                    best = (i, j, c.abs());
                }
            }
        }
        let (i, j, _) = best;
        used_w[i] = true;
        used_v[j] = true;
        out[j] = (i, cos[i][j] < 0.0);
    }
    out
}

/// Orientation codes of the voxel axes, e.g. `"LIA"` for FreeSurfer conformed volumes.
pub fn axcodes(affine: &[[f64; 4]; 4]) -> String {
    voxel_axes_to_world(affine)
        .iter()
        .map(|(w, neg)| match (w, neg) {
            (0, false) => 'R',
            (0, true) => 'L',
            (1, false) => 'A',
            (1, true) => 'P',
            (2, false) => 'S',
            _ => 'I',
        })
        .collect()
}

impl Orientation {
    /// Orientation of a volume with the given dims and affine.
    pub fn of(dims: [usize; 3], affine: &[[f64; 4]; 4]) -> Self {
        let mut src_axis = [0; 3];
        let mut flip = [false; 3];
        for (j, (w, neg)) in voxel_axes_to_world(affine).iter().enumerate() {
            src_axis[*w] = j;
            flip[*w] = *neg;
        }
        Orientation {
            src_axis,
            flip,
            src_dims: dims,
        }
    }

    /// True when the source is already canonical (no permutation, no flip).
    pub fn is_identity(&self) -> bool {
        self.src_axis == [0, 1, 2] && self.flip == [false; 3]
    }

    /// Dims of the canonical array.
    pub fn canonical_dims(&self) -> [usize; 3] {
        self.src_axis.map(|a| self.src_dims[a])
    }

    /// Source voxel of canonical voxel `c`.
    #[allow(clippy::needless_range_loop)] // i indexes four parallel arrays
    pub fn canonical_to_source(&self, c: [usize; 3]) -> [usize; 3] {
        let mut s = [0; 3];
        for i in 0..3 {
            let a = self.src_axis[i];
            let n = self.src_dims[a];
            s[a] = if self.flip[i] {
                n.saturating_sub(1).saturating_sub(c[i])
            } else {
                c[i]
            };
        }
        s
    }

    /// Canonical voxel of source voxel `s`.
    #[allow(clippy::needless_range_loop)] // i indexes four parallel arrays
    pub fn source_to_canonical(&self, s: [usize; 3]) -> [usize; 3] {
        let mut c = [0; 3];
        for i in 0..3 {
            let a = self.src_axis[i];
            let n = self.src_dims[a];
            c[i] = if self.flip[i] {
                n.saturating_sub(1).saturating_sub(s[a])
            } else {
                s[a]
            };
        }
        c
    }

    /// 4×4 matrix taking canonical voxel coordinates to source voxel coordinates.
    fn canonical_to_source_matrix(&self) -> [[f64; 4]; 4] {
        let mut m = [[0.0; 4]; 4];
        m[3][3] = 1.0;
        for i in 0..3 {
            let a = self.src_axis[i];
            if self.flip[i] {
                m[a][i] = -1.0;
                m[a][3] = self.src_dims[a] as f64 - 1.0;
            } else {
                m[a][i] = 1.0;
            }
        }
        m
    }

    /// Reorders a source volume into canonical RAS+ order; the affine is updated so that
    /// every voxel keeps its world position. The header is carried unchanged for output.
    pub fn to_canonical<T: Copy>(&self, vol: &Volume<T>) -> Result<Volume<T>> {
        self.check(vol.dims, "source")?;
        let cd = self.canonical_dims();
        let data = self.gather(cd, |c| {
            let s = self.canonical_to_source(c);
            vol.get(s[0], s[1], s[2])
        })?;
        Ok(Volume {
            dims: cd,
            data,
            affine: matmul(&vol.affine, &self.canonical_to_source_matrix()),
            header: vol.header.clone(),
        })
    }

    /// Inverse of [`Orientation::to_canonical`]: back to the source voxel order and affine.
    pub fn from_canonical<T: Copy>(&self, vol: &Volume<T>) -> Result<Volume<T>> {
        self.check(vol.dims, "canonical")?;
        let data = self.gather(self.src_dims, |s| {
            let c = self.source_to_canonical(s);
            vol.get(c[0], c[1], c[2])
        })?;
        Ok(Volume {
            dims: self.src_dims,
            data,
            affine: matmul(
                &vol.affine,
                &invert_perm(&self.canonical_to_source_matrix()),
            ),
            header: vol.header.clone(),
        })
    }

    fn check(&self, dims: [usize; 3], which: &str) -> Result<()> {
        let want = if which == "source" {
            self.src_dims
        } else {
            self.canonical_dims()
        };
        if dims != want {
            return Err(DataError::Geometry(format!(
                "{which} volume has dims {dims:?}, orientation expects {want:?}"
            )));
        }
        Ok(())
    }

    fn gather<T>(&self, dims: [usize; 3], f: impl Fn([usize; 3]) -> Option<T>) -> Result<Vec<T>> {
        let mut out = Vec::with_capacity(dims.iter().product());
        for z in 0..dims[2] {
            for y in 0..dims[1] {
                for x in 0..dims[0] {
                    out.push(f([x, y, z]).ok_or_else(|| {
                        DataError::Geometry("reorientation index out of range".into())
                    })?);
                }
            }
        }
        Ok(out)
    }
}

/// Reorients a volume to closest canonical RAS+, returning the orientation to undo it.
pub fn to_canonical<T: Copy>(vol: &Volume<T>) -> Result<(Volume<T>, Orientation)> {
    let o = Orientation::of(vol.dims, &vol.affine);
    Ok((o.to_canonical(vol)?, o))
}

pub(crate) fn matmul(a: &[[f64; 4]; 4], b: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    let mut m = [[0.0; 4]; 4];
    for i in 0..4 {
        for j in 0..4 {
            m[i][j] = (0..4).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    m
}

/// Inverse of a signed permutation with translation (exact, no floating error).
#[allow(clippy::needless_range_loop)] // matrix index arithmetic reads best as indices
fn invert_perm(m: &[[f64; 4]; 4]) -> [[f64; 4]; 4] {
    let mut r = [[0.0; 4]; 4];
    r[3][3] = 1.0;
    for i in 0..3 {
        for j in 0..3 {
            r[j][i] = m[i][j]; // orthogonal: inverse = transpose
        }
    }
    for j in 0..3 {
        r[j][3] = -(0..3).map(|i| r[j][i] * m[i][3]).sum::<f64>();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::nifti::read_labels;
    use crate::data::testutil::*;

    fn lia() -> [[f64; 4]; 4] {
        [
            [-1.0, 0.0, 0.0, 128.0],
            [0.0, 0.0, 1.0, -128.0],
            [0.0, -1.0, 0.0, 128.0],
            [0.0, 0.0, 0.0, 1.0],
        ]
    }

    #[test]
    fn freesurfer_conformed_affine_is_reported_as_lia() {
        assert_eq!(axcodes(&lia()), "LIA");
    }

    #[test]
    fn canonical_volume_keeps_every_voxel_at_the_same_world_position() {
        let dims = [4, 3, 2];
        let data: Vec<i32> = (0..24).collect();
        let v = Volume::new(dims, data, lia()).unwrap();
        let (c, o) = to_canonical(&v).unwrap();
        assert_eq!(axcodes(&c.affine), "RAS");
        assert_eq!(c.dims, [4, 2, 3]);
        for s in [[0, 0, 0], [3, 2, 1], [1, 2, 0]] {
            let cc = o.source_to_canonical(s);
            assert_eq!(c.get(cc[0], cc[1], cc[2]), v.get(s[0], s[1], s[2]));
            assert_eq!(
                c.voxel_to_world(cc.map(|x| x as f64)),
                v.voxel_to_world(s.map(|x| x as f64))
            );
        }
    }

    #[test]
    fn reorienting_back_restores_the_source_array_and_affine_exactly() {
        let v = Volume::new([4, 3, 2], (0..24).collect::<Vec<i32>>(), lia()).unwrap();
        let (c, o) = to_canonical(&v).unwrap();
        let back = o.from_canonical(&c).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn canonical_affine_matches_nibabel_as_closest_canonical_on_a_real_label_map() {
        // The maps are LIA (i to the left, j down, k forward): RAS flips i and j and swaps
        // j and k, so the canonical affine is diag(1, 1, 1) with a new origin, as nibabel's
        // as_closest_canonical computes it.
        for subject in [1, 2] {
            let p = label_map_path(subject);
            let v = read_labels(&read_bytes(&p)).unwrap().volume;
            assert_eq!(axcodes(&v.affine), "LIA");
            let (c, _) = to_canonical(&v).unwrap();
            let want = python_json("check_nifti.py", &[p.to_str().unwrap()]);
            let expect = json_affine(&want["canonical_affine"]);
            for (i, row) in expect.iter().take(3).enumerate() {
                for (j, x) in row.iter().take(3).enumerate() {
                    assert_eq!(*x, if i == j { 1.0 } else { 0.0 }, "nibabel: not diagonal");
                }
            }
            assert_affine_close(&c.affine, &expect, 1e-4);
        }
    }
}
