//! NRRD volumes (`.nrrd`: what 3D Slicer, ITK-SNAP and MITK write). A text header of
//! `field: value` lines, a blank line, then the voxels (raw, gzip or text), axis 0 fastest.
//! The header's `space directions` / `space origin` are in its named `space` (Slicer writes
//! LPS); they are turned into the RAS+ affine every other reader here gives.

use std::io::Read;

use super::error::{DataError, Result};
use super::nifti::read::gz_err;
use super::nifti::ScalarType;
use super::volume::{image_voxels, label_voxels, Loaded, Volume, MAX_VOXELS};

/// True when the bytes start with NRRD's magic line (`NRRD0001` … `NRRD0005`).
pub fn is_nrrd(bytes: &[u8]) -> bool {
    bytes.starts_with(b"NRRD000")
}

/// Reads a `.nrrd` image as f32 (the first element of any non-spatial axis); NaN/Inf → 0.
pub fn read_image(bytes: &[u8]) -> Result<Loaded<f32>> {
    let mut raw = read_raw(bytes)?;
    let (data, w) = image_voxels(std::mem::take(&mut raw.values).into_iter());
    finish(raw, data, w)
}

/// Reads a `.nrrd` label map (e.g. a Slicer `.seg.nrrd` with one layer); floats are rounded.
pub fn read_labels(bytes: &[u8]) -> Result<Loaded<i32>> {
    let mut raw = read_raw(bytes)?;
    let (data, w) = label_voxels(std::mem::take(&mut raw.values).into_iter());
    finish(raw, data, w)
}

fn finish<T: Copy>(raw: Raw, data: Vec<T>, more: Vec<String>) -> Result<Loaded<T>> {
    let mut warnings = raw.warnings;
    warnings.extend(more);
    Ok(Loaded {
        volume: Volume::new(raw.dims, data, raw.affine)?,
        warnings,
    })
}

fn bad(msg: impl Into<String>) -> DataError {
    DataError::Nrrd(msg.into())
}

/// The voxel type an NRRD `type` names (with its aliases from the format's specification):
/// the same scalar types as NIfTI's.
fn scalar_type(name: &str) -> Result<ScalarType> {
    use ScalarType as T;
    Ok(match name {
        "signed char" | "int8" | "int8_t" => T::I8,
        "uchar" | "unsigned char" | "uint8" | "uint8_t" => T::U8,
        "short" | "short int" | "signed short" | "signed short int" | "int16" | "int16_t" => T::I16,
        "ushort" | "unsigned short" | "unsigned short int" | "uint16" | "uint16_t" => T::U16,
        "int" | "signed int" | "int32" | "int32_t" => T::I32,
        "uint" | "unsigned int" | "uint32" | "uint32_t" => T::U32,
        "longlong"
        | "long long"
        | "long long int"
        | "signed long long"
        | "signed long long int"
        | "int64"
        | "int64_t" => T::I64,
        "ulonglong" | "unsigned long long" | "unsigned long long int" | "uint64" | "uint64_t" => {
            T::U64
        }
        "float" => T::F32,
        "double" => T::F64,
        _ => return Err(bad(format!("voxel type \"{name}\" is not a number type"))),
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    Raw,
    Gzip,
    Text,
}

/// The fields of a header this reader uses, as written.
#[derive(Default)]
struct Fields {
    kind: Option<String>,
    dimension: Option<String>,
    sizes: Option<String>,
    encoding: Option<String>,
    endian: Option<String>,
    space: Option<String>,
    space_dimension: Option<String>,
    directions: Option<String>,
    origin: Option<String>,
    spacings: Option<String>,
    kinds: Option<String>,
    byte_skip: Option<String>,
}

/// Splits the header from the data (at the first empty line) and collects its fields.
fn parse_header(bytes: &[u8]) -> Result<(Fields, &[u8])> {
    let mut at = 0;
    let mut fields = Fields::default();
    let mut first = true;
    loop {
        let Some(len) = bytes[at..].iter().position(|b| *b == b'\n') else {
            return Err(bad(
                "the header does not end (no empty line before the data)",
            ));
        };
        let line = std::str::from_utf8(&bytes[at..at + len])
            .map_err(|_| bad("the header is not text"))?
            .trim_end_matches('\r');
        at += len + 1;
        if first {
            first = false;
            if !line.starts_with("NRRD000") {
                return Err(bad("missing the NRRD000x magic line"));
            }
            continue;
        }
        if line.is_empty() {
            return Ok((fields, &bytes[at..]));
        }
        if line.starts_with('#') || line.contains(":=") {
            continue; // comments and key/value pairs carry nothing geometric
        }
        let Some((name, value)) = line.split_once(": ") else {
            return Err(bad(format!(
                "header line \"{line}\" is not \"field: value\""
            )));
        };
        let value = Some(value.trim().to_string());
        match name.trim().to_ascii_lowercase().as_str() {
            "type" => fields.kind = value,
            "dimension" => fields.dimension = value,
            "sizes" => fields.sizes = value,
            "encoding" => fields.encoding = value,
            "endian" => fields.endian = value,
            "space" => fields.space = value,
            "space dimension" => fields.space_dimension = value,
            "space directions" => fields.directions = value,
            "space origin" => fields.origin = value,
            "spacings" => fields.spacings = value,
            "kinds" => fields.kinds = value,
            "byte skip" | "byteskip" => fields.byte_skip = value,
            "data file" | "datafile" => {
                return Err(bad(
                    "a detached header (.nhdr with a separate data file): open a .nrrd \
                     that holds its data",
                ))
            }
            _ => {}
        }
    }
}

fn need<'a>(v: &'a Option<String>, name: &str) -> Result<&'a str> {
    v.as_deref()
        .ok_or_else(|| bad(format!("the header has no \"{name}\" field")))
}

/// `(a,b,c)` vectors, or `none` for a non-spatial axis.
fn parse_vectors(s: &str) -> Result<Vec<Option<[f64; 3]>>> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix("none") {
            out.push(None);
            rest = r.trim_start();
            continue;
        }
        let (open, close) = (rest.find('('), rest.find(')'));
        let (Some(0), Some(close)) = (open, close) else {
            return Err(bad(format!("vector list \"{s}\" is not (x,y,z) … or none")));
        };
        let v: Vec<f64> = rest[1..close]
            .split(',')
            .map(|x| x.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad(format!("vector \"{}\" is not numbers", &rest[..=close])))?;
        let [x, y, z] = v[..] else {
            return Err(bad(format!(
                "vector \"{}\" has {} components; only 3-D spaces are read",
                &rest[..=close],
                v.len()
            )));
        };
        out.push(Some([x, y, z]));
        rest = rest[close + 1..].trim_start();
    }
    Ok(out)
}

/// Signs that turn the named space's coordinates into RAS.
fn to_ras(space: Option<&str>, warnings: &mut Vec<String>) -> Result<[f64; 3]> {
    Ok(match space.map(|s| s.to_ascii_lowercase()) {
        None => {
            warnings
                .push("the file names no space: its coordinates are taken as LPS (ITK's)".into());
            [-1.0, -1.0, 1.0]
        }
        Some(s) => match s.as_str() {
            "right-anterior-superior" | "ras" => [1.0, 1.0, 1.0],
            "left-anterior-superior" | "las" => [-1.0, 1.0, 1.0],
            "left-posterior-superior" | "lps" => [-1.0, -1.0, 1.0],
            other => {
                return Err(bad(format!(
                    "space \"{other}\" is not one of right-anterior-superior, \
                     left-anterior-superior, left-posterior-superior"
                )))
            }
        },
    })
}

/// A file's voxels before conversion, with the spatial grid's geometry.
struct Raw {
    values: Vec<f64>,
    dims: [usize; 3],
    affine: [[f64; 4]; 4],
    warnings: Vec<String>,
}

fn read_raw(bytes: &[u8]) -> Result<Raw> {
    let (f, data) = parse_header(bytes)?;
    let kind = scalar_type(need(&f.kind, "type")?)?;
    let sizes: Vec<usize> = need(&f.sizes, "sizes")?
        .split_whitespace()
        .map(|s| s.parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .map_err(|_| bad("\"sizes\" are not whole numbers"))?;
    let n_axes: usize = need(&f.dimension, "dimension")?
        .parse()
        .map_err(|_| bad("\"dimension\" is not a whole number"))?;
    if sizes.len() != n_axes {
        return Err(bad(format!("{} sizes for dimension {n_axes}", sizes.len())));
    }
    if let Some(axis) = sizes.iter().position(|s| *s == 0) {
        return Err(DataError::ZeroSizeDim { axis: axis + 1 });
    }
    let elements = sizes.iter().map(|s| *s as u128).product::<u128>();
    if elements > MAX_VOXELS as u128 {
        return Err(DataError::TooLarge {
            voxels: elements,
            limit: MAX_VOXELS,
        });
    }
    let mut warnings = Vec::new();
    let (spatial, directions, ras) = spatial_axes(&f, n_axes, &mut warnings)?;
    let dims = [sizes[spatial[0]], sizes[spatial[1]], sizes[spatial[2]]];
    for (axis, size) in sizes.iter().enumerate() {
        if !spatial.contains(&axis) && *size > 1 {
            warnings.push(format!(
                "{size} elements along non-spatial axis {axis}: only the first is read"
            ));
        }
    }
    let elements = elements as usize;
    let all = decode(&f, kind, data, elements)?;
    // Axis 0 fastest: the stride of an axis is the product of the sizes before it.
    let stride = |a: usize| sizes[..a].iter().product::<usize>();
    let (s0, s1, s2) = (stride(spatial[0]), stride(spatial[1]), stride(spatial[2]));
    let mut values = Vec::with_capacity(dims.iter().product());
    for z in 0..dims[2] {
        for y in 0..dims[1] {
            for x in 0..dims[0] {
                values.push(all[x * s0 + y * s1 + z * s2]);
            }
        }
    }
    let origin = match f.origin.as_deref() {
        Some(o) => parse_vectors(o)?
            .first()
            .copied()
            .flatten()
            .ok_or_else(|| bad("\"space origin\" is not (x,y,z)"))?,
        None => [0.0; 3],
    };
    let mut affine = [[0.0; 4]; 4];
    for row in 0..3 {
        for (col, d) in directions.iter().enumerate() {
            affine[row][col] = ras[row] * d[row];
        }
        affine[row][3] = ras[row] * origin[row];
    }
    affine[3][3] = 1.0;
    Ok(Raw {
        values,
        dims,
        affine,
        warnings,
    })
}

/// The three spatial axes (in file order), their direction vectors, and the signs to RAS.
type Spatial = (Vec<usize>, Vec<[f64; 3]>, [f64; 3]);

fn spatial_axes(f: &Fields, n_axes: usize, warnings: &mut Vec<String>) -> Result<Spatial> {
    let three = |spatial: Vec<usize>| -> Result<Vec<usize>> {
        if spatial.len() == 3 {
            Ok(spatial)
        } else {
            Err(bad(format!(
                "{} spatial axes: a 3-D volume is needed",
                spatial.len()
            )))
        }
    };
    if let Some(d) = f.directions.as_deref() {
        let vectors = parse_vectors(d)?;
        if vectors.len() != n_axes {
            return Err(bad(format!(
                "{} space directions for dimension {n_axes}",
                vectors.len()
            )));
        }
        let spatial = three((0..n_axes).filter(|a| vectors[*a].is_some()).collect())?;
        let dirs = vectors.into_iter().flatten().collect();
        if f.space.is_none() && f.space_dimension.is_none() {
            return Err(bad("\"space directions\" without \"space\""));
        }
        return Ok((spatial, dirs, to_ras(f.space.as_deref(), warnings)?));
    }
    // No orientation: a grid with spacings, axes taken as RAS.
    let spatial = match f.kinds.as_deref() {
        Some(k) => {
            let kinds: Vec<&str> = k.split_whitespace().collect();
            three(
                (0..n_axes)
                    .filter(|a| matches!(kinds.get(*a), Some(&"domain") | Some(&"space")))
                    .collect(),
            )?
        }
        None => three((0..n_axes).collect())?,
    };
    let spacings: Vec<f64> = match f.spacings.as_deref() {
        Some(s) => s
            .split_whitespace()
            .map(|x| x.parse::<f64>().unwrap_or(f64::NAN))
            .collect(),
        None => vec![f64::NAN; n_axes],
    };
    let dirs = spatial
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let s = spacings
                .get(*a)
                .copied()
                .filter(|s| s.is_finite() && *s > 0.0);
            let mut d = [0.0; 3];
            d[i] = s.unwrap_or(1.0);
            d
        })
        .collect();
    warnings.push("the file has no orientation (no space directions): axes taken as RAS".into());
    Ok((spatial, dirs, [1.0; 3]))
}

/// All elements of the file, axis 0 fastest, in the file's encoding.
fn decode(f: &Fields, kind: ScalarType, data: &[u8], elements: usize) -> Result<Vec<f64>> {
    let encoding = match need(&f.encoding, "encoding")?.to_ascii_lowercase().as_str() {
        "raw" => Encoding::Raw,
        "gzip" | "gz" => Encoding::Gzip,
        "txt" | "text" | "ascii" => Encoding::Text,
        other => {
            return Err(bad(format!(
                "encoding \"{other}\" is not raw, gzip or text (save it from Slicer as .nrrd, \
                 compressed or not)"
            )))
        }
    };
    if encoding == Encoding::Text {
        let text = std::str::from_utf8(data).map_err(|_| bad("text data is not text"))?;
        let values: Vec<f64> = text
            .split_whitespace()
            .take(elements)
            .map(|x| x.parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| bad("text data holds something that is not a number"))?;
        if values.len() < elements {
            return Err(DataError::Truncated {
                expected: elements as u64,
                actual: values.len() as u64,
            });
        }
        return Ok(values);
    }
    let big = match f.endian.as_deref() {
        Some("big") => true,
        Some("little") | None => false,
        Some(other) => return Err(bad(format!("endian \"{other}\" is not little or big"))),
    };
    let want = elements * kind.size();
    let skip: i64 = match f.byte_skip.as_deref() {
        Some(s) => s
            .parse()
            .map_err(|_| bad("\"byte skip\" is not a number"))?,
        None => 0,
    };
    let bytes: std::borrow::Cow<[u8]> = match encoding {
        Encoding::Gzip => {
            if skip < 0 {
                return Err(bad("\"byte skip: -1\" is only defined for raw data"));
            }
            let mut out = Vec::with_capacity((want + skip as usize).min(64 << 20));
            flate2::read::MultiGzDecoder::new(data)
                .take((want + skip as usize) as u64)
                .read_to_end(&mut out)
                .map_err(gz_err)?;
            out.into()
        }
        _ => data.into(),
    };
    let start = if skip < 0 {
        bytes.len().saturating_sub(want)
    } else {
        (skip as usize).min(bytes.len())
    };
    let body = &bytes[start..];
    if body.len() < want {
        return Err(DataError::Truncated {
            expected: want as u64,
            actual: body.len() as u64,
        });
    }
    Ok(body[..want]
        .chunks_exact(kind.size())
        .map(|c| kind.decode(c, !big))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;

    #[test]
    fn every_voxel_type_raw_gzip_and_text_reads_as_pynrrd_reads_it() {
        let types = [
            "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32",
            "float64",
        ];
        for dt in types {
            for enc in ["raw", "gzip", "ascii"] {
                let name = format!("nrrd_{dt}_{enc}.nrrd");
                let (bytes, want) = fixture_with_meta(&name);
                assert!(is_nrrd(&bytes), "{name}");
                let got = crate::data::read_image(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
                assert!(got.warnings.is_empty(), "{name}: {:?}", got.warnings);
                check_fixture(1e-9, &name, &got.volume, &want);
                let labels = crate::data::read_labels(&bytes).unwrap().volume;
                let as_f32: Vec<f32> = labels.data.iter().map(|v| *v as f32).collect();
                assert_eq!(as_f32, got.volume.data, "{name}: integer voxels as labels");
            }
        }
    }

    #[test]
    fn big_endian_and_each_named_space_give_the_ras_affine() {
        for name in ["nrrd_bigendian.nrrd", "nrrd_ras.nrrd", "nrrd_las.nrrd"] {
            let (bytes, want) = fixture_with_meta(name);
            check_fixture(1e-9, name, &read_image(&bytes).unwrap().volume, &want);
        }
    }

    #[test]
    fn a_list_axis_gives_its_first_element_and_says_so() {
        let (bytes, want) = fixture_with_meta("nrrd_list_first.nrrd");
        let got = read_image(&bytes).unwrap();
        check_fixture(1e-9, "nrrd_list_first.nrrd", &got.volume, &want);
        assert!(
            got.warnings.iter().any(|w| w.contains("2 elements")),
            "{:?}",
            got.warnings
        );
    }

    #[test]
    fn spacings_without_orientation_give_a_diagonal_affine_with_a_warning() {
        let (bytes, want) = fixture_with_meta("nrrd_spacings.nrrd");
        let got = read_image(&bytes).unwrap();
        check_fixture(1e-9, "nrrd_spacings.nrrd", &got.volume, &want);
        assert!(got.warnings.iter().any(|w| w.contains("no orientation")));
    }

    #[test]
    fn odd_or_truncated_files_are_refused_with_a_reason() {
        let (bytes, _) = fixture_with_meta("nrrd_int16_raw.nrrd");
        let err = |b: &[u8]| read_image(b).unwrap_err().to_string();
        assert!(matches!(
            read_image(&bytes[..bytes.len() - 3]),
            Err(DataError::Truncated { .. })
        ));
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let header_end = text.find("\n\n").unwrap();
        let header = &text[..header_end];
        let with = |from: &str, to: &str| {
            let mut b = header.replacen(from, to, 1).into_bytes();
            b.extend_from_slice(&bytes[header_end..]);
            b
        };
        assert!(err(&with("encoding: raw", "encoding: bzip2")).contains("bzip2"));
        assert!(err(&with("type: int16", "type: block")).contains("block"));
        assert!(
            err(&with("encoding: raw", "encoding: raw\ndata file: x.raw")).contains("detached")
        );
        assert!(err(&with(
            "space: left-posterior-superior",
            "space: scanner-xyz"
        ))
        .contains("scanner-xyz"));
        assert!(err(&with("sizes: 5 4 3", "sizes: 5 4 0")).contains("zero-size"));
        assert!(matches!(
            read_image(&with("sizes: 5 4 3", "sizes: 5000 4000 3000")),
            Err(DataError::TooLarge { .. })
        ));
        assert!(err(b"NRRD0004\ntype: short\n").contains("does not end"));
        assert!(!is_nrrd(b"NIFTI"));
    }
}
