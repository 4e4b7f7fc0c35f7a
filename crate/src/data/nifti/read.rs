//! NIfTI-1/-2 reading from bytes (`.nii` or gzip, detected from the bytes): datatype decoding,
//! size validation before any allocation, `scl_slope`/`scl_inter`, the first 3-D volume.

use std::io::Read;

use super::header::{self, NiftiHeader, NiftiVersion, NIFTI1_HEADER_SIZE, NIFTI2_HEADER_SIZE};
use crate::data::error::{DataError, Result};
use crate::data::volume::{image_voxels, label_voxels, Loaded, Volume, MAX_VOXELS};

/// Largest gap between header and voxel data (extensions) accepted.
const MAX_EXTENSION_BYTES: f64 = 64.0 * 1024.0 * 1024.0;

/// Scalar NIfTI datatypes supported for reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarType {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl ScalarType {
    /// Maps a NIfTI datatype code, with a clear error for non-scalar or exotic types.
    pub fn from_code(code: i16) -> Result<Self> {
        let unsupported = |name, why| Err(DataError::UnsupportedDatatype { code, name, why });
        Ok(match code {
            2 => ScalarType::U8,
            256 => ScalarType::I8,
            4 => ScalarType::I16,
            512 => ScalarType::U16,
            8 => ScalarType::I32,
            768 => ScalarType::U32,
            1024 => ScalarType::I64,
            1280 => ScalarType::U64,
            16 => ScalarType::F32,
            64 => ScalarType::F64,
            32 | 1792 | 2048 => {
                return unsupported("complex", "complex-valued images have no single intensity")
            }
            128 | 2304 => return unsupported("RGB/RGBA", "colour images are not MRI intensities"),
            1 => return unsupported("binary", "1-bit data is not supported"),
            1536 => return unsupported("float128", "128-bit floats are not supported"),
            _ => return unsupported("unknown", "not a NIfTI datatype code"),
        })
    }

    /// Bytes per voxel.
    pub fn size(self) -> usize {
        match self {
            ScalarType::U8 | ScalarType::I8 => 1,
            ScalarType::I16 | ScalarType::U16 => 2,
            ScalarType::I32 | ScalarType::U32 | ScalarType::F32 => 4,
            ScalarType::I64 | ScalarType::U64 | ScalarType::F64 => 8,
        }
    }

    /// NIfTI datatype code.
    pub fn code(self) -> i16 {
        match self {
            ScalarType::U8 => 2,
            ScalarType::I8 => 256,
            ScalarType::I16 => 4,
            ScalarType::U16 => 512,
            ScalarType::I32 => 8,
            ScalarType::U32 => 768,
            ScalarType::I64 => 1024,
            ScalarType::U64 => 1280,
            ScalarType::F32 => 16,
            ScalarType::F64 => 64,
        }
    }

    /// One voxel from its bytes (also NRRD's, which names the same types).
    pub(crate) fn decode(self, b: &[u8], le: bool) -> f64 {
        macro_rules! num {
            ($t:ty) => {{
                let mut a = [0u8; std::mem::size_of::<$t>()];
                for (d, s) in a.iter_mut().zip(b) {
                    *d = *s;
                }
                if le {
                    <$t>::from_le_bytes(a) as f64
                } else {
                    <$t>::from_be_bytes(a) as f64
                }
            }};
        }
        match self {
            ScalarType::U8 => num!(u8),
            ScalarType::I8 => num!(i8),
            ScalarType::I16 => num!(i16),
            ScalarType::U16 => num!(u16),
            ScalarType::I32 => num!(i32),
            ScalarType::U32 => num!(u32),
            ScalarType::I64 => num!(i64),
            ScalarType::U64 => num!(u64),
            ScalarType::F32 => num!(f32),
            ScalarType::F64 => num!(f64),
        }
    }
}

/// Header plus raw (unscaled) voxel bytes of the first 3-D volume.
struct Raw {
    header: NiftiHeader,
    dims: [usize; 3],
    dtype: ScalarType,
    bytes: Vec<u8>,
    warnings: Vec<String>,
}

/// What a validated header says about where and how large the voxel data are.
struct Plan {
    dims: [usize; 3],
    dtype: ScalarType,
    /// Byte offset of the voxel data.
    offset: u64,
    /// Bytes of the first 3-D volume.
    first: u64,
    /// Bytes of the whole declared array.
    full: u64,
    warnings: Vec<String>,
}

/// Validates dims, datatype and offset before anything is allocated.
fn plan(h: &NiftiHeader) -> Result<Plan> {
    let mut warnings = Vec::new();
    let ndim = h.dim[0];
    if !(1..=7).contains(&ndim) {
        return Err(DataError::BadHeader(format!(
            "dim[0] = {ndim}, must be between 1 and 7"
        )));
    }
    let mut full: u128 = 1;
    // NIfTI-2 dims are i64: products saturate (u128 would overflow) and sizes are checked
    // before any conversion to usize (which is 32-bit on wasm).
    let mut first: u128 = 1;
    let mut dims_wide = [1u128; 3];
    for i in 1..=ndim as usize {
        let d = h.dim[i];
        if d == 0 {
            return Err(DataError::ZeroSizeDim { axis: i });
        }
        if d < 0 {
            return Err(DataError::BadHeader(format!("dim[{i}] = {d} is negative")));
        }
        full = full.saturating_mul(d as u128);
        if i <= 3 {
            dims_wide[i - 1] = d as u128;
            first = first.saturating_mul(d as u128);
        } else if d > 1 {
            warnings.push(format!(
                "{ndim}-D input (dim[{i}] = {d}): using the first 3-D volume only"
            ));
        }
    }
    if first > MAX_VOXELS as u128 {
        return Err(DataError::TooLarge {
            voxels: first,
            limit: MAX_VOXELS,
        });
    }
    // Each factor is at most `first` ≤ MAX_VOXELS, so the casts are lossless.
    let dims = dims_wide.map(|d| d as usize);
    let dtype = ScalarType::from_code(h.datatype)?;
    let header_size = match h.version {
        NiftiVersion::Nifti1 => NIFTI1_HEADER_SIZE,
        NiftiVersion::Nifti2 => NIFTI2_HEADER_SIZE,
    } as f64;
    let off = h.vox_offset;
    if !off.is_finite() || off.fract() != 0.0 || off > header_size + MAX_EXTENSION_BYTES {
        return Err(DataError::BadHeader(format!(
            "vox_offset = {off} is not usable"
        )));
    }
    // vox_offset 0 occurs in the wild for single files; the data then follow the header.
    let off = if off < header_size { header_size } else { off } as u64;
    let sz = dtype.size() as u128;
    let full_bytes = u64::try_from(full.saturating_mul(sz)).unwrap_or(u64::MAX);
    Ok(Plan {
        dims,
        dtype,
        offset: off,
        first: (first * sz) as u64,
        full: full_bytes,
        warnings,
    })
}

fn read_raw(bytes: &[u8]) -> Result<Raw> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        read_raw_stream(flate2::read::MultiGzDecoder::new(bytes), true)
    } else {
        let head = bytes.get(..4).ok_or_else(|| {
            DataError::NotNifti(format!("only {} bytes, not even a header", bytes.len()))
        })?;
        let size = match header::sniff(head)?.0 {
            NiftiVersion::Nifti1 => NIFTI1_HEADER_SIZE,
            NiftiVersion::Nifti2 => NIFTI2_HEADER_SIZE,
        };
        if bytes.len() < size {
            return Err(DataError::NotNifti(format!(
                "{} bytes, shorter than a {size}-byte header",
                bytes.len()
            )));
        }
        let h = header::parse_header(bytes)?;
        let Plan {
            dims,
            dtype,
            offset: off,
            first,
            full,
            warnings,
        } = plan(&h)?;
        let avail = (bytes.len() as u64).saturating_sub(off);
        if avail < full {
            return Err(DataError::Truncated {
                expected: full,
                actual: avail,
            });
        }
        let data = bytes
            .get(off as usize..(off + first) as usize)
            .ok_or(DataError::Truncated {
                expected: first,
                actual: avail,
            })?;
        Ok(Raw {
            header: h,
            dims,
            dtype,
            bytes: data.to_vec(),
            warnings,
        })
    }
}

pub(crate) fn gz_err(e: std::io::Error) -> DataError {
    DataError::Gzip(e.to_string())
}

fn read_raw_stream<R: Read>(mut r: R, gz: bool) -> Result<Raw> {
    let mut head = vec![0u8; 4];
    read_exact_or(&mut r, &mut head, gz)?;
    let size = match header::sniff(&head)?.0 {
        NiftiVersion::Nifti1 => NIFTI1_HEADER_SIZE,
        NiftiVersion::Nifti2 => NIFTI2_HEADER_SIZE,
    };
    head.resize(size, 0);
    read_exact_or(&mut r, &mut head[4..], gz)?;
    let h = header::parse_header(&head)?;
    let Plan {
        dims,
        dtype,
        offset: off,
        first,
        warnings,
        ..
    } = plan(&h)?;
    // Skip extensions, then read exactly the first volume (size already validated).
    let skip = off - size as u64;
    let skipped = std::io::copy(&mut (&mut r).take(skip), &mut std::io::sink()).map_err(gz_err)?;
    if skipped < skip {
        return Err(DataError::Truncated {
            expected: first,
            actual: 0,
        });
    }
    // Grow with the data actually decoded: a tiny gzip must not reserve gigabytes up front.
    let mut data = Vec::with_capacity(first.min(64 << 20) as usize);
    (&mut r)
        .take(first)
        .read_to_end(&mut data)
        .map_err(gz_err)?;
    if (data.len() as u64) < first {
        return Err(DataError::Truncated {
            expected: first,
            actual: data.len() as u64,
        });
    }
    // Pull one more byte so that a corrupt trailer (CRC, length) is noticed for 3-D files.
    let mut one = [0u8; 1];
    r.read(&mut one).map_err(gz_err)?;
    Ok(Raw {
        header: h,
        dims,
        dtype,
        bytes: data,
        warnings,
    })
}

fn read_exact_or<R: Read>(r: &mut R, buf: &mut [u8], gz: bool) -> Result<()> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            DataError::NotNifti("input ends inside the header".into())
        } else if gz {
            gz_err(e)
        } else {
            DataError::NotNifti(e.to_string())
        }
    })
}

fn scaling(h: &NiftiHeader) -> (f64, f64) {
    // As nibabel: a slope of 0 or a non-finite slope means "no scaling".
    if h.scl_slope.is_finite() && h.scl_slope != 0.0 {
        let inter = if h.scl_inter.is_finite() {
            h.scl_inter
        } else {
            0.0
        };
        (h.scl_slope, inter)
    } else {
        (1.0, 0.0)
    }
}

/// The first volume's values after `scl_slope` / `scl_inter`.
fn decoded(raw: &Raw) -> impl Iterator<Item = f64> + '_ {
    let (slope, inter) = scaling(&raw.header);
    let le = raw.header.little_endian;
    raw.bytes
        .chunks_exact(raw.dtype.size())
        .map(move |c| raw.dtype.decode(c, le) * slope + inter)
}

fn finish<T>(raw: Raw, data: Vec<T>, mut warnings: Vec<String>) -> Loaded<T> {
    let affine = header::best_affine(&raw.header);
    warnings.extend(raw.warnings);
    Loaded {
        volume: Volume {
            dims: raw.dims,
            data,
            affine,
            header: raw.header,
        },
        warnings,
    }
}

/// Reads a `.nii` or `.nii.gz` (detected from the bytes) image as f32 after
/// `scl_slope`/`scl_inter`; NaN/Inf voxels become 0 (reported in the warnings).
pub fn read_image(bytes: &[u8]) -> Result<Loaded<f32>> {
    let raw = read_raw(bytes)?;
    let (data, w) = image_voxels(decoded(&raw));
    Ok(finish(raw, data, w))
}

/// Reads a label map (any scalar datatype, float labels rounded to integers).
/// NaN/Inf and out-of-range values become 0, non-integer values are rounded; both reported.
pub fn read_labels(bytes: &[u8]) -> Result<Loaded<i32>> {
    let raw = read_raw(bytes)?;
    let (data, w) = label_voxels(decoded(&raw));
    Ok(finish(raw, data, w))
}

/// Reads only the header (e.g. to inspect a file before loading it).
pub fn read_header(bytes: &[u8]) -> Result<NiftiHeader> {
    Ok(read_raw(bytes)?.header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;

    fn fixture(name: &str) -> Vec<u8> {
        read_bytes(&fixtures().join(name))
    }

    /// A JSON array of numbers (the fixtures' nibabel values).
    fn json_f64s(v: &serde_json::Value) -> Vec<f64> {
        let a = v.as_array().expect("a JSON array");
        a.iter().map(|x| x.as_f64().expect("a number")).collect()
    }

    fn as_f64s(data: &[f32]) -> Vec<f64> {
        data.iter().map(|v| *v as f64).collect()
    }

    fn expected(name: &str) -> serde_json::Value {
        let p = fixtures().join(format!("{name}.json"));
        serde_json::from_slice(&read_bytes(&p)).expect("fixture json")
    }

    #[test]
    fn every_scalar_datatype_in_nifti1_and_nifti2_reads_as_nibabel_reads_it() {
        let mut seen = 0;
        for ver in ["n1", "n2"] {
            for dt in [
                "uint8", "int8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                "float32", "float64",
            ] {
                for ext in [".nii", ".nii.gz"] {
                    let name = format!("{ver}_{dt}{ext}");
                    let exp = expected(&name);
                    let got = read_image(&fixture(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
                    assert_eq!(
                        got.volume.header.version == NiftiVersion::Nifti2,
                        ver == "n2"
                    );
                    assert_eq!(
                        got.volume.dims.to_vec(),
                        exp["shape"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|v| v.as_u64().unwrap() as usize)
                            .collect::<Vec<_>>(),
                        "{name}"
                    );
                    assert_affine_close(&got.volume.affine, &json_affine(&exp["affine"]), 1e-6);
                    for (a, b) in got
                        .volume
                        .data
                        .iter()
                        .zip(exp["values"].as_array().unwrap())
                    {
                        assert_eq!(*a as f64, b.as_f64().unwrap(), "{name}");
                    }
                    seen += 1;
                }
            }
        }
        assert_eq!(seen, 40);
    }

    #[test]
    fn real_t1_volumes_read_with_nibabels_shape_affine_and_voxel_sum() {
        let mut files = real_t1_paths();
        files.push(label_map_path(1)); // float32 in the full set, int16 in the committed crop
        for p in files {
            let f = p.display();
            let got = read_image(&read_bytes(&p)).unwrap();
            let want = python_json("check_nifti.py", &[p.to_str().unwrap()]);
            let dims: Vec<u64> = got.volume.dims.iter().map(|d| *d as u64).collect();
            let shape: Vec<u64> = want["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_u64().unwrap())
                .collect();
            assert_eq!(dims, shape, "{f}");
            assert_affine_close(&got.volume.affine, &json_affine(&want["affine"]), 1e-4);
            let sum: f64 = got.volume.data.iter().map(|v| *v as f64).sum();
            assert_eq!(sum, want["sum"].as_f64().unwrap(), "{f}");
            assert!(got.warnings.is_empty(), "{f}: {:?}", got.warnings);
        }
    }

    #[test]
    fn scl_slope_and_inter_are_applied_like_nibabel() {
        let exp = expected("scaled_int16.nii.gz");
        let got = read_image(&fixture("scaled_int16.nii.gz")).unwrap().volume;
        let want = json_f64s(&exp["values"]);
        assert_eq!(as_f64s(&got.data), want);
        assert!(
            want.iter().any(|v| v.fract() != 0.0),
            "fixture must exercise a fractional slope"
        );
    }

    #[test]
    fn qform_only_big_endian_and_sform_over_qform_files_get_nibabels_affine() {
        for name in ["qform_only.nii", "sform_and_qform.nii", "bigendian_f32.nii"] {
            let exp = expected(name);
            let got = read_image(&fixture(name)).unwrap().volume;
            assert_affine_close(&got.affine, &json_affine(&exp["affine"]), 1e-5);
            let want = json_f64s(&exp["values"]);
            assert_eq!(as_f64s(&got.data), want, "{name}");
        }
    }

    #[test]
    fn four_d_input_uses_the_first_volume_and_says_so() {
        let got = read_image(&fixture("four_d.nii.gz")).unwrap();
        assert!(
            got.warnings.iter().any(|w| w.contains("first 3-D volume")),
            "{:?}",
            got.warnings
        );
        let exp = expected("four_d.nii.gz");
        let want = json_f64s(&exp["values"]);
        assert_eq!(as_f64s(&got.volume.data), want);
    }

    #[test]
    fn nan_and_inf_voxels_become_zero_with_a_warning() {
        let got = read_image(&fixture("nonfinite.nii")).unwrap();
        assert!(got.volume.data.iter().all(|v| v.is_finite()));
        assert_eq!(&got.volume.data[..3], &[0.0, 0.0, 0.0]);
        assert!(
            got.warnings.iter().any(|w| w.starts_with("3 NaN/Inf")),
            "{:?}",
            got.warnings
        );
        let labels = read_labels(&fixture("nonfinite.nii")).unwrap();
        assert!(labels.warnings.iter().any(|w| w.contains("NaN/Inf")));
    }

    #[test]
    fn rgb_and_complex_datatypes_are_refused_clearly() {
        for (name, word) in [("rgb.nii", "RGB"), ("complex.nii", "complex")] {
            let e = read_image(&fixture(name)).unwrap_err();
            assert!(
                matches!(e, DataError::UnsupportedDatatype { .. }),
                "{name}: {e}"
            );
            assert!(e.to_string().contains(word), "{e}");
        }
    }

    #[test]
    fn bytes_that_are_not_nifti_are_refused() {
        for bad in [
            &b""[..],
            b"hello world, definitely not a brain",
            &[0x89, b'P', b'N', b'G', 0, 0, 0, 0],
        ] {
            assert!(
                matches!(read_image(bad), Err(DataError::NotNifti(_))),
                "{bad:?}"
            );
        }
        assert!(matches!(
            read_image(&vec![7u8; 1000]),
            Err(DataError::NotNifti(_))
        ));
    }

    #[test]
    fn truncated_or_corrupt_gzip_is_refused() {
        let gz = fixture("n1_float32.nii.gz");
        let half = &gz[..gz.len() / 2];
        let e = read_image(half).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Gzip(_) | DataError::Truncated { .. } | DataError::NotNifti(_)
            ),
            "{e}"
        );
        let mut flipped = gz.clone();
        let mid = flipped.len() / 2;
        for b in &mut flipped[mid - 8..mid + 8] {
            *b ^= 0x5a;
        }
        let e = read_image(&flipped).unwrap_err();
        assert!(
            matches!(
                e,
                DataError::Gzip(_)
                    | DataError::Truncated { .. }
                    | DataError::BadHeader(_)
                    | DataError::NotNifti(_)
            ),
            "{e}"
        );
        // A valid deflate stream whose CRC trailer is wrong must not pass silently.
        let mut crc = gz.clone();
        let n = crc.len();
        crc[n - 6] ^= 0xff;
        assert!(matches!(read_image(&crc), Err(DataError::Gzip(_))));
    }

    #[test]
    fn header_dims_larger_than_the_data_are_refused() {
        let raw = fixture("n1_int16.nii");
        let e = read_image(&raw[..raw.len() - 10]).unwrap_err();
        assert!(matches!(e, DataError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains("promises"));
    }

    fn header_with_dims(dims: [i16; 3]) -> Vec<u8> {
        let mut raw = fixture("n1_uint8.nii");
        for (i, d) in dims.iter().enumerate() {
            raw[42 + 2 * i..44 + 2 * i].copy_from_slice(&d.to_le_bytes());
        }
        raw
    }

    #[test]
    fn nifti2_dims_whose_product_overflows_are_refused() {
        // Found by fuzzing: three i64 dims near 2^62 overflowed a u128 product.
        let mut raw = fixture("n2_uint8.nii");
        for i in 0..3 {
            raw[24 + 8 * i..32 + 8 * i].copy_from_slice(&(1i64 << 62).to_le_bytes());
        }
        assert!(matches!(read_image(&raw), Err(DataError::TooLarge { .. })));
    }

    #[test]
    fn absurd_dims_are_refused_before_allocating() {
        // 2048 × 32767 × 32767 ≈ 2^41 voxels: must fail fast on the header alone.
        let raw = header_with_dims([2048, 32767, 32767]);
        let e = read_image(&raw).unwrap_err();
        assert!(matches!(e, DataError::TooLarge { .. }), "{e}");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, &raw).unwrap();
        assert!(matches!(
            read_image(&enc.finish().unwrap()),
            Err(DataError::TooLarge { .. })
        ));
        assert!(matches!(
            read_image(&header_with_dims([1024, 1024, 2048])),
            Err(DataError::TooLarge { .. })
        ));
    }

    #[test]
    fn zero_size_and_negative_dims_are_refused() {
        assert!(matches!(
            read_image(&header_with_dims([5, 0, 3])),
            Err(DataError::ZeroSizeDim { axis: 2 })
        ));
        assert!(matches!(
            read_image(&header_with_dims([5, -4, 3])),
            Err(DataError::BadHeader(_))
        ));
        assert!(matches!(
            Volume::<f32>::new([0, 1, 1], vec![], IDENTITY),
            Err(DataError::ZeroSizeDim { .. })
        ));
    }

    const IDENTITY: [[f64; 4]; 4] = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];
}
