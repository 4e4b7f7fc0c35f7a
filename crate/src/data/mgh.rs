//! FreeSurfer's MGH volumes (`.mgh`, gzip-compressed `.mgz`: what `recon-all` writes, e.g.
//! `T1.mgz`, `aseg.mgz`). A big-endian 284-byte header, then the voxels x fastest, frame
//! last. Read into the same [`Volume`] as NIfTI; outputs are written as NIfTI in the same grid.

use std::io::Read;

use super::error::{DataError, Result};
use super::nifti::read::gz_err;
use super::volume::{image_voxels, label_voxels, Loaded, Volume, MAX_VOXELS};

/// Header bytes before the voxels (the fields read below, then reserved space).
const HEADER_SIZE: usize = 284;
/// The only version FreeSurfer writes.
const VERSION: [u8; 4] = [0, 0, 0, 1];

/// True when the bytes (raw or gzip) start like an MGH file. A NIfTI file starts with its
/// header size, 348 or 540, so the two never look alike.
pub fn is_mgh(bytes: &[u8]) -> bool {
    let mut head = [0u8; 4];
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut gz = flate2::read::MultiGzDecoder::new(bytes);
        if gz.read_exact(&mut head).is_err() {
            return false;
        }
    } else if let Some(h) = bytes.get(..4) {
        head.copy_from_slice(h);
    }
    head == VERSION
}

/// Voxel types of MGH files.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    U8,
    I32,
    F32,
    I16,
}

impl Kind {
    fn of(code: i32) -> Result<Self> {
        match code {
            0 => Ok(Kind::U8),
            1 => Ok(Kind::I32),
            3 => Ok(Kind::F32),
            4 => Ok(Kind::I16),
            _ => Err(DataError::Mgh(format!(
                "voxel type {code} is not one of uchar (0), int (1), float (3), short (4)"
            ))),
        }
    }

    fn size(self) -> usize {
        match self {
            Kind::U8 => 1,
            Kind::I16 => 2,
            Kind::I32 | Kind::F32 => 4,
        }
    }

    fn decode(self, b: &[u8]) -> f64 {
        match self {
            Kind::U8 => b[0] as f64,
            Kind::I16 => i16::from_be_bytes([b[0], b[1]]) as f64,
            Kind::I32 => i32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64,
            Kind::F32 => f32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64,
        }
    }
}

fn be_i32(h: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]])
}

fn be_f32(h: &[u8], at: usize) -> f64 {
    f32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]) as f64
}

/// A file's first frame before conversion to the volume's voxel type.
struct Raw {
    values: Vec<f64>,
    dims: [usize; 3],
    affine: [[f64; 4]; 4],
    warnings: Vec<String>,
}

fn read_raw(bytes: &[u8]) -> Result<Raw> {
    let mut r: Box<dyn Read + '_> = if bytes.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(bytes))
    } else {
        Box::new(bytes)
    };
    let mut h = vec![0u8; HEADER_SIZE];
    r.read_exact(&mut h).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            DataError::Mgh(format!("shorter than its {HEADER_SIZE}-byte header"))
        }
        _ => gz_err(e),
    })?;
    if h[..4] != VERSION {
        return Err(DataError::Mgh(format!(
            "version {} is not 1",
            be_i32(&h, 0)
        )));
    }
    let mut dims = [0usize; 3];
    for (i, d) in dims.iter_mut().enumerate() {
        let v = be_i32(&h, 4 + 4 * i);
        *d = usize::try_from(v)
            .ok()
            .filter(|d| *d > 0)
            .ok_or(DataError::ZeroSizeDim { axis: i + 1 })?;
    }
    let frames = be_i32(&h, 16);
    let kind = Kind::of(be_i32(&h, 20))?;
    let voxels = dims.iter().map(|d| *d as u128).product::<u128>();
    if voxels > MAX_VOXELS as u128 {
        return Err(DataError::TooLarge {
            voxels,
            limit: MAX_VOXELS,
        });
    }
    let mut warnings = Vec::new();
    if frames > 1 {
        warnings.push(format!("{frames} frames: only the first is read"));
    }
    let affine = vox2ras(&h, dims);
    let want = voxels as usize * kind.size();
    let mut data = Vec::with_capacity(want.min(64 << 20));
    r.take(want as u64).read_to_end(&mut data).map_err(gz_err)?;
    if data.len() < want {
        return Err(DataError::Truncated {
            expected: want as u64,
            actual: data.len() as u64,
        });
    }
    let values = data
        .chunks_exact(kind.size())
        .map(|c| kind.decode(c))
        .collect();
    Ok(Raw {
        values,
        dims,
        affine,
        warnings,
    })
}

/// FreeSurfer's voxel → RAS: direction cosines scaled by the voxel sizes, placed so that the
/// volume's centre voxel (dims / 2) lands on `c_ras`, as nibabel reads it. Without valid
/// geometry (goodRASflag 0) nibabel's default: 1 mm voxels, the cosines below, centred on
/// the origin.
fn vox2ras(h: &[u8], dims: [usize; 3]) -> [[f64; 4]; 4] {
    let good = i16::from_be_bytes([h[28], h[29]]) > 0;
    let (delta, cosines, centre) = if good {
        let delta = [be_f32(h, 30), be_f32(h, 34), be_f32(h, 38)];
        // Stored per voxel axis: that axis's direction in RAS.
        let mut c = [[0.0; 3]; 3];
        for (axis, dir) in c.iter_mut().enumerate() {
            for (k, x) in dir.iter_mut().enumerate() {
                *x = be_f32(h, 42 + 4 * (3 * axis + k));
            }
        }
        (delta, c, [be_f32(h, 78), be_f32(h, 82), be_f32(h, 86)])
    } else {
        let default = [[-1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]];
        ([1.0; 3], default, [0.0; 3])
    };
    let mut a = [[0.0; 4]; 4];
    for row in 0..3 {
        let mut shift = 0.0;
        for axis in 0..3 {
            a[row][axis] = cosines[axis][row] * delta[axis];
            shift += a[row][axis] * dims[axis] as f64 / 2.0;
        }
        a[row][3] = centre[row] - shift;
    }
    a[3][3] = 1.0;
    a
}

/// Reads an `.mgh` / `.mgz` image (first frame) as f32; NaN/Inf voxels become 0.
pub fn read_image(bytes: &[u8]) -> Result<Loaded<f32>> {
    let raw = read_raw(bytes)?;
    let (data, w) = image_voxels(raw.values.into_iter());
    finish(raw.dims, data, raw.affine, raw.warnings, w)
}

/// Reads an `.mgh` / `.mgz` label map (e.g. `aseg.mgz`); float labels are rounded.
pub fn read_labels(bytes: &[u8]) -> Result<Loaded<i32>> {
    let raw = read_raw(bytes)?;
    let (data, w) = label_voxels(raw.values.into_iter());
    finish(raw.dims, data, raw.affine, raw.warnings, w)
}

fn finish<T: Copy>(
    dims: [usize; 3],
    data: Vec<T>,
    affine: [[f64; 4]; 4],
    mut warnings: Vec<String>,
    more: Vec<String>,
) -> Result<Loaded<T>> {
    warnings.extend(more);
    Ok(Loaded {
        volume: Volume::new(dims, data, affine)?,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;

    #[test]
    fn every_voxel_type_raw_and_gzip_reads_as_nibabel_reads_it() {
        for dt in ["uint8", "int16", "int32", "float32"] {
            for ext in [".mgh", ".mgz"] {
                let name = format!("mgh_{dt}{ext}");
                let (bytes, want) = fixture_with_meta(&name);
                assert!(is_mgh(&bytes), "{name}");
                let got = crate::data::read_image(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(got.warnings.is_empty(), "{name}: {:?}", got.warnings);
                check_fixture(1e-5, &name, &got.volume, &want);
                let labels = crate::data::read_labels(&bytes).unwrap().volume;
                let as_f32: Vec<f32> = labels.data.iter().map(|v| *v as f32).collect();
                assert_eq!(as_f32, got.volume.data, "{name}: integer voxels as labels");
            }
        }
    }

    #[test]
    fn without_valid_geometry_the_affine_is_nibabels_default() {
        let (bytes, want) = fixture_with_meta("mgh_noras.mgh");
        check_fixture(
            1e-5,
            "mgh_noras.mgh",
            &read_image(&bytes).unwrap().volume,
            &want,
        );
    }

    #[test]
    fn a_four_d_file_gives_its_first_frame_and_says_so() {
        let (bytes, want) = fixture_with_meta("mgh_four_d.mgz");
        let got = read_image(&bytes).unwrap();
        check_fixture(1e-5, "mgh_four_d.mgz", &got.volume, &want);
        assert!(
            got.warnings.iter().any(|w| w.contains("2 frames")),
            "{:?}",
            got.warnings
        );
    }

    #[test]
    fn nifti_is_not_mistaken_for_mgh_and_still_reads() {
        let bytes = read_bytes(&fixtures().join("n1_int16.nii.gz"));
        assert!(!is_mgh(&bytes));
        assert!(crate::data::read_image(&bytes).is_ok());
        assert!(!is_mgh(b""));
    }

    #[test]
    fn truncated_or_odd_files_are_refused_with_a_reason() {
        let (bytes, _) = fixture_with_meta("mgh_float32.mgh");
        let short = &bytes[..HEADER_SIZE + 10];
        assert!(matches!(
            read_image(short),
            Err(DataError::Truncated { .. })
        ));
        assert!(matches!(read_image(&bytes[..100]), Err(DataError::Mgh(_))));
        let mut odd = bytes.clone();
        odd[20..24].copy_from_slice(&2i32.to_be_bytes()); // "long": FreeSurfer never writes it
        let e = read_image(&odd).unwrap_err().to_string();
        assert!(e.contains("voxel type 2"), "{e}");
        let mut huge = bytes;
        for at in [4, 8, 12] {
            huge[at..at + 4].copy_from_slice(&100_000i32.to_be_bytes());
        }
        assert!(matches!(read_image(&huge), Err(DataError::TooLarge { .. })));
    }
}
