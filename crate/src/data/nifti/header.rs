//! NIfTI-1 and NIfTI-2 header parsing and encoding (both byte orders in, little-endian out).
//!
//! Field offsets follow the published `nifti1.h` / `nifti2.h` layouts. Every read is
//! bounds-checked so that malformed input gives an error, never a panic.

use crate::data::error::{DataError, Result};

/// Size in bytes of a NIfTI-1 header.
pub const NIFTI1_HEADER_SIZE: usize = 348;
/// Size in bytes of a NIfTI-2 header.
pub const NIFTI2_HEADER_SIZE: usize = 540;

/// Which revision of the format a header uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NiftiVersion {
    Nifti1,
    Nifti2,
}

/// Version-agnostic NIfTI header (wide types hold both revisions losslessly).
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    pub version: NiftiVersion,
    pub little_endian: bool,
    pub dim_info: u8,
    pub dim: [i64; 8],
    pub intent_p: [f64; 3],
    pub intent_code: i32,
    pub datatype: i16,
    pub bitpix: i16,
    pub slice_start: i64,
    pub pixdim: [f64; 8],
    pub vox_offset: f64,
    pub scl_slope: f64,
    pub scl_inter: f64,
    pub slice_end: i64,
    pub slice_code: i32,
    pub xyzt_units: i32,
    pub cal_max: f64,
    pub cal_min: f64,
    pub slice_duration: f64,
    pub toffset: f64,
    pub descrip: [u8; 80],
    pub aux_file: [u8; 24],
    pub qform_code: i32,
    pub sform_code: i32,
    pub quatern: [f64; 3],
    pub qoffset: [f64; 3],
    pub srow: [[f64; 4]; 3],
    pub intent_name: [u8; 16],
}

impl Default for NiftiHeader {
    fn default() -> Self {
        NiftiHeader {
            version: NiftiVersion::Nifti1,
            little_endian: true,
            dim_info: 0,
            dim: [3, 1, 1, 1, 1, 1, 1, 1],
            intent_p: [0.0; 3],
            intent_code: 0,
            datatype: 16,
            bitpix: 32,
            slice_start: 0,
            pixdim: [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            vox_offset: 352.0,
            scl_slope: 1.0,
            scl_inter: 0.0,
            slice_end: 0,
            slice_code: 0,
            xyzt_units: 2, // millimetres
            cal_max: 0.0,
            cal_min: 0.0,
            slice_duration: 0.0,
            toffset: 0.0,
            descrip: [0; 80],
            aux_file: [0; 24],
            qform_code: 0,
            sform_code: 0,
            quatern: [0.0; 3],
            qoffset: [0.0; 3],
            srow: [
                [1.0, 0.0, 0.0, 0.0],
                [0.0, 1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
            ],
            intent_name: [0; 16],
        }
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    le: bool,
}

impl Cursor<'_> {
    fn bytes<const N: usize>(&self, off: usize) -> Result<[u8; N]> {
        self.b
            .get(off..off + N)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| DataError::NotNifti(format!("header shorter than {} bytes", off + N)))
    }
    fn i16(&self, off: usize) -> Result<i16> {
        let a = self.bytes::<2>(off)?;
        Ok(if self.le {
            i16::from_le_bytes(a)
        } else {
            i16::from_be_bytes(a)
        })
    }
    fn i32(&self, off: usize) -> Result<i32> {
        let a = self.bytes::<4>(off)?;
        Ok(if self.le {
            i32::from_le_bytes(a)
        } else {
            i32::from_be_bytes(a)
        })
    }
    fn i64(&self, off: usize) -> Result<i64> {
        let a = self.bytes::<8>(off)?;
        Ok(if self.le {
            i64::from_le_bytes(a)
        } else {
            i64::from_be_bytes(a)
        })
    }
    fn f32(&self, off: usize) -> Result<f64> {
        let a = self.bytes::<4>(off)?;
        Ok(if self.le {
            f32::from_le_bytes(a)
        } else {
            f32::from_be_bytes(a)
        } as f64)
    }
    fn f64(&self, off: usize) -> Result<f64> {
        let a = self.bytes::<8>(off)?;
        Ok(if self.le {
            f64::from_le_bytes(a)
        } else {
            f64::from_be_bytes(a)
        })
    }
}

/// Identifies the revision and byte order from the first four bytes (`sizeof_hdr`).
pub fn sniff(first4: &[u8]) -> Result<(NiftiVersion, bool)> {
    let a: [u8; 4] = first4
        .get(..4)
        .and_then(|s| s.try_into().ok())
        .ok_or_else(|| DataError::NotNifti("fewer than 4 bytes".into()))?;
    match (i32::from_le_bytes(a), i32::from_be_bytes(a)) {
        (348, _) => Ok((NiftiVersion::Nifti1, true)),
        (_, 348) => Ok((NiftiVersion::Nifti1, false)),
        (540, _) => Ok((NiftiVersion::Nifti2, true)),
        (_, 540) => Ok((NiftiVersion::Nifti2, false)),
        (le, _) => Err(DataError::NotNifti(format!(
            "sizeof_hdr is {le}, expected 348 (NIfTI-1) or 540 (NIfTI-2)"
        ))),
    }
}

/// Parses a header from the start of `b` (which must hold at least the header size).
pub fn parse_header(b: &[u8]) -> Result<NiftiHeader> {
    let (version, le) = sniff(b)?;
    let c = Cursor { b, le };
    match version {
        NiftiVersion::Nifti1 => parse1(&c),
        NiftiVersion::Nifti2 => parse2(&c),
    }
}

fn parse1(c: &Cursor) -> Result<NiftiHeader> {
    let magic: [u8; 4] = c.bytes(344)?;
    match &magic {
        b"n+1\0" => {}
        b"ni1\0" => return Err(DataError::NotNifti(
            "this is the header of a .hdr/.img pair; only single-file .nii/.nii.gz is supported"
                .into(),
        )),
        _ => {
            return Err(DataError::NotNifti(
                "NIfTI-1 magic 'n+1' missing (ANALYZE 7.5 files are not supported)".into(),
            ))
        }
    }
    let mut h = NiftiHeader {
        version: NiftiVersion::Nifti1,
        little_endian: c.le,
        dim_info: c.bytes::<1>(39)?[0],
        ..NiftiHeader::default()
    };
    for i in 0..8 {
        h.dim[i] = c.i16(40 + 2 * i)? as i64;
        h.pixdim[i] = c.f32(76 + 4 * i)?;
    }
    for i in 0..3 {
        h.intent_p[i] = c.f32(56 + 4 * i)?;
        h.quatern[i] = c.f32(256 + 4 * i)?;
        h.qoffset[i] = c.f32(268 + 4 * i)?;
        for j in 0..4 {
            h.srow[i][j] = c.f32(280 + 16 * i + 4 * j)?;
        }
    }
    h.intent_code = c.i16(68)? as i32;
    h.datatype = c.i16(70)?;
    h.bitpix = c.i16(72)?;
    h.slice_start = c.i16(74)? as i64;
    h.vox_offset = c.f32(108)?;
    h.scl_slope = c.f32(112)?;
    h.scl_inter = c.f32(116)?;
    h.slice_end = c.i16(120)? as i64;
    h.slice_code = c.bytes::<1>(122)?[0] as i32;
    h.xyzt_units = c.bytes::<1>(123)?[0] as i32;
    h.cal_max = c.f32(124)?;
    h.cal_min = c.f32(128)?;
    h.slice_duration = c.f32(132)?;
    h.toffset = c.f32(136)?;
    h.descrip = c.bytes(148)?;
    h.aux_file = c.bytes(228)?;
    h.qform_code = c.i16(252)? as i32;
    h.sform_code = c.i16(254)? as i32;
    h.intent_name = c.bytes(328)?;
    Ok(h)
}

fn parse2(c: &Cursor) -> Result<NiftiHeader> {
    let magic: [u8; 8] = c.bytes(4)?;
    if &magic[..4] != b"n+2\0" {
        return Err(DataError::NotNifti(if &magic[..4] == b"ni2\0" {
            "this is the header of a NIfTI-2 .hdr/.img pair; only single-file .nii/.nii.gz is supported".into()
        } else {
            "NIfTI-2 magic 'n+2' missing".into()
        }));
    }
    let mut h = NiftiHeader {
        version: NiftiVersion::Nifti2,
        little_endian: c.le,
        ..NiftiHeader::default()
    };
    h.datatype = c.i16(12)?;
    h.bitpix = c.i16(14)?;
    for i in 0..8 {
        h.dim[i] = c.i64(16 + 8 * i)?;
        h.pixdim[i] = c.f64(104 + 8 * i)?;
    }
    for i in 0..3 {
        h.intent_p[i] = c.f64(80 + 8 * i)?;
        h.quatern[i] = c.f64(352 + 8 * i)?;
        h.qoffset[i] = c.f64(376 + 8 * i)?;
        for j in 0..4 {
            h.srow[i][j] = c.f64(400 + 32 * i + 8 * j)?;
        }
    }
    h.vox_offset = c.i64(168)? as f64;
    h.scl_slope = c.f64(176)?;
    h.scl_inter = c.f64(184)?;
    h.cal_max = c.f64(192)?;
    h.cal_min = c.f64(200)?;
    h.slice_duration = c.f64(208)?;
    h.toffset = c.f64(216)?;
    h.slice_start = c.i64(224)?;
    h.slice_end = c.i64(232)?;
    h.descrip = c.bytes(240)?;
    h.aux_file = c.bytes(320)?;
    h.qform_code = c.i32(344)?;
    h.sform_code = c.i32(348)?;
    h.slice_code = c.i32(496)?;
    h.xyzt_units = c.i32(500)?;
    h.intent_code = c.i32(504)?;
    h.intent_name = c.bytes(508)?;
    h.dim_info = c.bytes::<1>(524)?[0];
    Ok(h)
}

struct Out(Vec<u8>);

impl Out {
    fn put(&mut self, off: usize, bytes: &[u8]) {
        // The buffer is pre-sized to the header length and all offsets are constants below it.
        if let Some(dst) = self.0.get_mut(off..off + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    }
}

/// Encodes `h` as a little-endian single-file header followed by an empty extension flag.
/// `h.vox_offset` is ignored: data starts right after the flag (352 or 544).
pub fn encode_header(h: &NiftiHeader) -> Result<Vec<u8>> {
    match h.version {
        NiftiVersion::Nifti1 => encode1(h),
        NiftiVersion::Nifti2 => Ok(encode2(h)),
    }
}

fn i16_field(v: i64, name: &str) -> Result<[u8; 2]> {
    i16::try_from(v)
        .map(i16::to_le_bytes)
        .map_err(|_| DataError::Invalid(format!("{name} = {v} does not fit NIfTI-1 (use NIfTI-2)")))
}

fn encode1(h: &NiftiHeader) -> Result<Vec<u8>> {
    let f = |v: f64| (v as f32).to_le_bytes();
    let mut o = Out(vec![0u8; NIFTI1_HEADER_SIZE + 4]);
    o.put(0, &348i32.to_le_bytes());
    o.put(38, b"r");
    o.put(39, &[h.dim_info]);
    for i in 0..8 {
        o.put(40 + 2 * i, &i16_field(h.dim[i], "dim")?);
        o.put(76 + 4 * i, &f(h.pixdim[i]));
    }
    for i in 0..3 {
        o.put(56 + 4 * i, &f(h.intent_p[i]));
        o.put(256 + 4 * i, &f(h.quatern[i]));
        o.put(268 + 4 * i, &f(h.qoffset[i]));
        for j in 0..4 {
            o.put(280 + 16 * i + 4 * j, &f(h.srow[i][j]));
        }
    }
    o.put(68, &i16_field(h.intent_code as i64, "intent_code")?);
    o.put(70, &h.datatype.to_le_bytes());
    o.put(72, &h.bitpix.to_le_bytes());
    o.put(74, &i16_field(h.slice_start, "slice_start")?);
    o.put(108, &f((NIFTI1_HEADER_SIZE + 4) as f64));
    o.put(112, &f(h.scl_slope));
    o.put(116, &f(h.scl_inter));
    o.put(120, &i16_field(h.slice_end, "slice_end")?);
    o.put(122, &[h.slice_code.clamp(0, 255) as u8]);
    o.put(123, &[h.xyzt_units.clamp(0, 255) as u8]);
    o.put(124, &f(h.cal_max));
    o.put(128, &f(h.cal_min));
    o.put(132, &f(h.slice_duration));
    o.put(136, &f(h.toffset));
    o.put(148, &h.descrip);
    o.put(228, &h.aux_file);
    o.put(252, &i16_field(h.qform_code as i64, "qform_code")?);
    o.put(254, &i16_field(h.sform_code as i64, "sform_code")?);
    o.put(328, &h.intent_name);
    o.put(344, b"n+1\0");
    Ok(o.0)
}

fn encode2(h: &NiftiHeader) -> Vec<u8> {
    let f = |v: f64| v.to_le_bytes();
    let mut o = Out(vec![0u8; NIFTI2_HEADER_SIZE + 4]);
    o.put(0, &540i32.to_le_bytes());
    o.put(4, b"n+2\0\r\n\x1a\n");
    o.put(12, &h.datatype.to_le_bytes());
    o.put(14, &h.bitpix.to_le_bytes());
    for i in 0..8 {
        o.put(16 + 8 * i, &h.dim[i].to_le_bytes());
        o.put(104 + 8 * i, &f(h.pixdim[i]));
    }
    for i in 0..3 {
        o.put(80 + 8 * i, &f(h.intent_p[i]));
        o.put(352 + 8 * i, &f(h.quatern[i]));
        o.put(376 + 8 * i, &f(h.qoffset[i]));
        for j in 0..4 {
            o.put(400 + 32 * i + 8 * j, &f(h.srow[i][j]));
        }
    }
    o.put(168, &((NIFTI2_HEADER_SIZE + 4) as i64).to_le_bytes());
    o.put(176, &f(h.scl_slope));
    o.put(184, &f(h.scl_inter));
    o.put(192, &f(h.cal_max));
    o.put(200, &f(h.cal_min));
    o.put(208, &f(h.slice_duration));
    o.put(216, &f(h.toffset));
    o.put(224, &h.slice_start.to_le_bytes());
    o.put(232, &h.slice_end.to_le_bytes());
    o.put(240, &h.descrip);
    o.put(320, &h.aux_file);
    o.put(344, &h.qform_code.to_le_bytes());
    o.put(348, &h.sform_code.to_le_bytes());
    o.put(496, &h.slice_code.to_le_bytes());
    o.put(500, &h.xyzt_units.to_le_bytes());
    o.put(504, &h.intent_code.to_le_bytes());
    o.put(508, &h.intent_name);
    o.put(524, &[h.dim_info]);
    o.0
}

/// Voxel→world affine as nibabel's `get_best_affine`: sform if `sform_code > 0`, else qform
/// if `qform_code > 0`, else the ANALYZE-style base affine (centre origin, x flipped).
pub fn best_affine(h: &NiftiHeader) -> [[f64; 4]; 4] {
    let srow_ok = h.srow.iter().flatten().all(|v| v.is_finite());
    if h.sform_code > 0 && srow_ok {
        let s = h.srow;
        return [s[0], s[1], s[2], [0.0, 0.0, 0.0, 1.0]];
    }
    if h.qform_code > 0 {
        if let Some(q) = qform_affine(h) {
            return q;
        }
    }
    base_affine(h)
}

fn zooms(h: &NiftiHeader) -> [f64; 3] {
    let mut z = [1.0; 3];
    for (i, zi) in z.iter_mut().enumerate() {
        let p = h.pixdim[i + 1].abs();
        if p.is_finite() && p > 0.0 {
            *zi = p;
        }
    }
    z
}

/// The quaternion (qform) affine of the NIfTI-1 standard.
pub fn qform_affine(h: &NiftiHeader) -> Option<[[f64; 4]; 4]> {
    let [b, c, d] = h.quatern;
    if ![b, c, d]
        .iter()
        .chain(h.qoffset.iter())
        .all(|v| v.is_finite())
    {
        return None;
    }
    let a2 = 1.0 - (b * b + c * c + d * d);
    let a = if a2 < 1e-7 { 0.0 } else { a2.sqrt() };
    let r = [
        [
            a * a + b * b - c * c - d * d,
            2.0 * (b * c - a * d),
            2.0 * (b * d + a * c),
        ],
        [
            2.0 * (b * c + a * d),
            a * a + c * c - b * b - d * d,
            2.0 * (c * d - a * b),
        ],
        [
            2.0 * (b * d - a * c),
            2.0 * (c * d + a * b),
            a * a + d * d - c * c - b * b,
        ],
    ];
    let z = zooms(h);
    let qfac = if h.pixdim[0] < 0.0 { -1.0 } else { 1.0 };
    let s = [z[0], z[1], z[2] * qfac];
    let mut m = [[0.0; 4]; 4];
    for i in 0..3 {
        for j in 0..3 {
            m[i][j] = r[i][j] * s[j];
        }
        m[i][3] = h.qoffset[i];
    }
    m[3][3] = 1.0;
    Some(m)
}

/// Sets qform (quaternion, offsets, qfac in `pixdim[0]`, zooms) from an affine, as the
/// NIfTI-1 standard's `mat44_to_quatern`: columns are normalised to a rotation (a left-handed
/// one gets qfac = −1); shear cannot be represented and is dropped.
pub fn set_qform(h: &mut NiftiHeader, affine: &[[f64; 4]; 4], code: i32) {
    let mut r = [[0.0f64; 3]; 3];
    let mut zooms = [1.0f64; 3];
    for j in 0..3 {
        let n = (0..3).map(|i| affine[i][j].powi(2)).sum::<f64>().sqrt();
        zooms[j] = if n > 0.0 { n } else { 1.0 };
        for i in 0..3 {
            r[i][j] = if n > 0.0 {
                affine[i][j] / n
            } else {
                (i == j) as u8 as f64
            };
        }
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    let qfac = if det < 0.0 { -1.0 } else { 1.0 };
    if qfac < 0.0 {
        for row in r.iter_mut() {
            row[2] = -row[2];
        }
    }
    let trace = r[0][0] + r[1][1] + r[2][2];
    let (a, mut b, mut c, mut d);
    if trace > -0.5 {
        a = 0.5 * (1.0 + trace).sqrt();
        b = 0.25 * (r[2][1] - r[1][2]) / a;
        c = 0.25 * (r[0][2] - r[2][0]) / a;
        d = 0.25 * (r[1][0] - r[0][1]) / a;
    } else if r[0][0] >= r[1][1] && r[0][0] >= r[2][2] {
        b = 0.5 * (1.0 + r[0][0] - r[1][1] - r[2][2]).max(0.0).sqrt();
        a = 0.25 * (r[2][1] - r[1][2]) / b;
        c = 0.25 * (r[0][1] + r[1][0]) / b;
        d = 0.25 * (r[0][2] + r[2][0]) / b;
    } else if r[1][1] >= r[2][2] {
        c = 0.5 * (1.0 - r[0][0] + r[1][1] - r[2][2]).max(0.0).sqrt();
        a = 0.25 * (r[0][2] - r[2][0]) / c;
        b = 0.25 * (r[0][1] + r[1][0]) / c;
        d = 0.25 * (r[1][2] + r[2][1]) / c;
    } else {
        d = 0.5 * (1.0 - r[0][0] - r[1][1] + r[2][2]).max(0.0).sqrt();
        a = 0.25 * (r[1][0] - r[0][1]) / d;
        b = 0.25 * (r[0][2] + r[2][0]) / d;
        c = 0.25 * (r[1][2] + r[2][1]) / d;
    }
    // The standard keeps a ≥ 0 (q and −q are the same rotation); a itself is not stored.
    if a < 0.0 {
        (b, c, d) = (-b, -c, -d);
    }
    h.quatern = [b, c, d];
    h.qoffset = [affine[0][3], affine[1][3], affine[2][3]];
    h.pixdim[0] = qfac;
    h.pixdim[1..4].copy_from_slice(&zooms);
    h.qform_code = code;
}

fn base_affine(h: &NiftiHeader) -> [[f64; 4]; 4] {
    let z = zooms(h);
    let origin = |i: usize| (h.dim[i + 1].max(1) as f64 - 1.0) / 2.0;
    [
        [-z[0], 0.0, 0.0, origin(0) * z[0]],
        [0.0, z[1], 0.0, -origin(1) * z[1]],
        [0.0, 0.0, z[2], -origin(2) * z[2]],
        [0.0, 0.0, 0.0, 1.0],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sform_is_preferred_over_qform_when_both_are_set() {
        let mut h = NiftiHeader {
            qform_code: 1,
            sform_code: 2,
            qoffset: [5.0, 6.0, 7.0],
            ..Default::default()
        };
        h.srow[0][3] = -90.0;
        assert_eq!(best_affine(&h)[0][3], -90.0);
        h.sform_code = 0;
        assert_eq!(best_affine(&h)[0][3], 5.0);
    }

    #[test]
    fn qform_with_180_degree_rotation_about_x_flips_y_and_z() {
        // b = 1 is a 180° rotation about x (nifti1.h): R = diag(1, -1, -1).
        let h = NiftiHeader {
            qform_code: 1,
            quatern: [1.0, 0.0, 0.0],
            pixdim: [1.0, 2.0, 3.0, 4.0, 0.0, 0.0, 0.0, 0.0],
            ..Default::default()
        };
        let m = best_affine(&h);
        assert_eq!([m[0][0], m[1][1], m[2][2]], [2.0, -3.0, -4.0]);
    }

    #[test]
    fn qform_set_from_an_affine_reproduces_it_for_rotations_and_flips() {
        let cases = [
            // FreeSurfer LIA (left-handed), RAS, a 180° rotation, and an oblique rotation.
            [
                [-1.0, 0.0, 0.0, 128.0],
                [0.0, 0.0, 1.0, -128.0],
                [0.0, -1.0, 0.0, 128.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            [
                [2.0, 0.0, 0.0, -90.0],
                [0.0, 2.5, 0.0, -126.0],
                [0.0, 0.0, 3.0, -72.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            [
                [-1.0, 0.0, 0.0, 0.0],
                [0.0, -1.0, 0.0, 0.0],
                [0.0, 0.0, 1.0, 0.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
            [
                [0.8, -0.6, 0.0, 1.0],
                [0.6, 0.8, 0.0, 2.0],
                [0.0, 0.0, -1.5, 3.0],
                [0.0, 0.0, 0.0, 1.0],
            ],
        ];
        for m in cases {
            let mut h = NiftiHeader::default();
            set_qform(&mut h, &m, 1);
            let q = qform_affine(&h).unwrap();
            for i in 0..3 {
                for j in 0..4 {
                    assert!((q[i][j] - m[i][j]).abs() < 1e-9, "{m:?} -> {q:?}");
                }
            }
        }
    }

    #[test]
    fn analyze_style_header_is_refused_with_a_clear_message() {
        let mut b = vec![0u8; 352];
        b[..4].copy_from_slice(&348i32.to_le_bytes());
        let e = parse_header(&b).unwrap_err().to_string();
        assert!(e.contains("ANALYZE"), "{e}");
    }

    #[test]
    fn big_endian_headers_are_recognised() {
        let mut b = vec![0u8; 352];
        b[..4].copy_from_slice(&348i32.to_be_bytes());
        b[344..348].copy_from_slice(b"n+1\0");
        b[40..42].copy_from_slice(&3i16.to_be_bytes());
        b[42..44].copy_from_slice(&7i16.to_be_bytes());
        let h = parse_header(&b).unwrap();
        assert!(!h.little_endian);
        assert_eq!(h.dim[1], 7);
    }
}
