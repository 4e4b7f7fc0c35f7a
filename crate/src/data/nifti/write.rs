//! NIfTI writing to bytes: float32 images and integer label maps, keeping the source header's
//! geometry so that outputs overlay their input in viewers.

use super::header::{self, NiftiHeader, NiftiVersion};
use super::read::gz_err;
use crate::data::error::{DataError, Result};
use crate::data::volume::{checked_len, LabelVolume, Volume};

/// Output datatypes for writing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutType {
    U8,
    I16,
    I32,
    F32,
}

fn out_header<T>(vol: &Volume<T>, t: OutType, cal: (f64, f64), label: bool) -> NiftiHeader {
    let mut h = vol.header.clone();
    let needs2 = vol.dims.iter().any(|d| *d > i16::MAX as usize);
    if needs2 {
        h.version = NiftiVersion::Nifti2;
    }
    h.dim = [3, 1, 1, 1, 1, 1, 1, 1];
    for (i, d) in vol.dims.iter().enumerate() {
        h.dim[i + 1] = *d as i64;
    }
    h.pixdim[4..].fill(0.0);
    h.pixdim[4] = 1.0;
    let (code, bitpix) = match t {
        OutType::U8 => (2, 8),
        OutType::I16 => (4, 16),
        OutType::I32 => (8, 32),
        OutType::F32 => (16, 32),
    };
    h.datatype = code;
    h.bitpix = bitpix;
    h.scl_slope = 1.0;
    h.scl_inter = 0.0;
    (h.cal_min, h.cal_max) = cal;
    h.intent_code = if label { 1002 } else { 0 }; // NIFTI_INTENT_LABEL
    h.intent_name = [0; 16];
    // Keep the geometry the data are in: if the affine was changed (or the header is
    // synthetic), the sform must carry it.
    if header::best_affine(&h) != vol.affine {
        h.srow = [vol.affine[0], vol.affine[1], vol.affine[2]];
        h.sform_code = if h.sform_code > 0 { h.sform_code } else { 2 };
        // Keep qform consistent too: some viewers (ITK-based) read the qform first.
        let qcode = if h.qform_code > 0 {
            h.qform_code
        } else {
            h.sform_code
        };
        header::set_qform(&mut h, &vol.affine, qcode);
    }
    h
}

fn assemble(h: &NiftiHeader, body: Vec<u8>, gzip: bool) -> Result<Vec<u8>> {
    let mut out = header::encode_header(h)?;
    out.extend_from_slice(&body);
    if !gzip {
        return Ok(out);
    }
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&out).map_err(gz_err)?;
    enc.finish().map_err(gz_err)
}

/// Encodes an image as float32 NIfTI (gzip-compressed if `gzip`), keeping the source header's
/// geometry (qform/sform, units) so that it overlays the input in viewers.
pub fn write_image(vol: &Volume<f32>, gzip: bool) -> Result<Vec<u8>> {
    checked_len(vol.dims)?;
    let (lo, hi) = vol
        .data
        .iter()
        .fold((f32::MAX, f32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let h = out_header(vol, OutType::F32, (lo as f64, hi as f64), false);
    let body = vol.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    assemble(&h, body, gzip)
}

/// Encodes a label map as uint8, int16 or int32 NIfTI; refuses labels the type cannot hold.
pub fn write_labels(vol: &LabelVolume, t: OutType, gzip: bool) -> Result<Vec<u8>> {
    checked_len(vol.dims)?;
    let (lo, hi) = vol
        .data
        .iter()
        .fold((i32::MAX, i32::MIN), |(a, b), v| (a.min(*v), b.max(*v)));
    let (min, max) = match t {
        OutType::U8 => (0, 255),
        OutType::I16 => (i16::MIN as i32, i16::MAX as i32),
        OutType::I32 => (i32::MIN, i32::MAX),
        OutType::F32 => (-(1 << 24), 1 << 24),
    };
    if lo < min || hi > max {
        return Err(DataError::Invalid(format!(
            "labels span {lo}..={hi}, which does not fit {t:?}"
        )));
    }
    let h = out_header(vol, t, (lo as f64, hi as f64), true);
    let body: Vec<u8> = match t {
        OutType::U8 => vol.data.iter().map(|v| *v as u8).collect(),
        OutType::I16 => vol
            .data
            .iter()
            .flat_map(|v| (*v as i16).to_le_bytes())
            .collect(),
        OutType::I32 => vol.data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        OutType::F32 => vol
            .data
            .iter()
            .flat_map(|v| (*v as f32).to_le_bytes())
            .collect(),
    };
    assemble(&h, body, gzip)
}

/// Smallest integer type that holds every label (uint8, else int16, else int32).
pub fn label_out_type(vol: &LabelVolume) -> OutType {
    let (lo, hi) = vol
        .data
        .iter()
        .fold((0, 0), |(a, b), v| (a.min(*v), b.max(*v)));
    if lo >= 0 && hi <= 255 {
        OutType::U8
    } else if lo >= i16::MIN as i32 && hi <= i16::MAX as i32 {
        OutType::I16
    } else {
        OutType::I32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::nifti::{read_labels, write_file};
    use crate::data::testutil::*;

    const IDENTITY: [[f64; 4]; 4] = [
        [1.0, 0.0, 0.0, 0.0],
        [0.0, 1.0, 0.0, 0.0],
        [0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 1.0],
    ];

    #[test]
    fn written_label_maps_are_read_by_nibabel_with_the_source_affine_and_counts() {
        let src = label_map_path(2);
        let v = read_labels(&read_bytes(&src)).unwrap().volume;
        let common =
            crate::data::labels::to_common(&v, crate::data::labels::Convention::FreeSurfer, false);
        let dir = temp_dir("labels-roundtrip");
        let want_src = python_json("check_nifti.py", &[src.to_str().unwrap()]);
        for (t, dtype) in [(OutType::U8, "uint8"), (OutType::I16, "int16")] {
            let p = dir.join(format!("labels_{dtype}.nii.gz"));
            write_file(&p, &write_labels(&common, t, true).unwrap()).unwrap();
            let got = python_json("check_nifti.py", &[p.to_str().unwrap()]);
            assert_eq!(got["dtype"], dtype);
            assert_eq!(got["shape"], want_src["shape"]);
            assert_affine_close(
                &json_affine(&got["affine"]),
                &json_affine(&want_src["affine"]),
                1e-5,
            );
            assert_affine_close(
                &json_affine(&got["qform_affine"]),
                &json_affine(&want_src["qform_affine"]),
                1e-4,
            );
            assert_eq!(got["intent_code"], 1002);
            for s in crate::data::labels::SUBCORTICAL {
                let n = common.data.iter().filter(|x| **x == s.id as i32).count();
                assert_eq!(
                    got["labels"][s.id.to_string()].as_u64(),
                    Some(n as u64),
                    "{}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn canonical_volumes_are_written_with_matching_sform_and_qform() {
        // Writing a reoriented volume must not leave the source's stale qform behind.
        let src = label_map_path(13);
        let v = read_labels(&read_bytes(&src)).unwrap().volume;
        let (c, _) = crate::data::orient::to_canonical(&v).unwrap();
        let p = temp_dir("canonical-write").join("canonical.nii.gz");
        write_file(&p, &write_labels(&c, OutType::I16, true).unwrap()).unwrap();
        let got = python_json("check_nifti.py", &[p.to_str().unwrap()]);
        assert_affine_close(&json_affine(&got["affine"]), &c.affine, 1e-5);
        assert_affine_close(&json_affine(&got["qform_affine"]), &c.affine, 1e-4);
        assert_eq!(
            crate::data::orient::axcodes(&json_affine(&got["qform_affine"])),
            "RAS"
        );
    }

    #[test]
    fn written_float_images_round_trip_through_nibabel_in_nifti1_and_nifti2() {
        let dir = temp_dir("image-roundtrip");
        let aff = [
            [-2.0, 0.0, 0.0, 10.0],
            [0.0, 0.0, 3.0, -20.0],
            [0.0, -1.5, 0.0, 30.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let data: Vec<f32> = (0..60).map(|i| i as f32 * 0.25 - 3.0).collect();
        let mut v = Volume::new([5, 4, 3], data.clone(), aff).unwrap();
        for (ver, gz) in [(NiftiVersion::Nifti1, false), (NiftiVersion::Nifti2, true)] {
            v.header.version = ver;
            let p = dir.join(format!("img_{ver:?}.nii{}", if gz { ".gz" } else { "" }));
            write_file(&p, &write_image(&v, gz).unwrap()).unwrap();
            let got = python_json("check_nifti.py", &[p.to_str().unwrap(), "--values"]);
            assert_eq!(got["dtype"], "float32");
            assert_affine_close(&json_affine(&got["affine"]), &aff, 1e-6);
            assert_affine_close(&json_affine(&got["qform_affine"]), &aff, 1e-5);
            let vals: Vec<f32> = got["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            assert_eq!(vals, data);
        }
    }

    #[test]
    fn labels_that_do_not_fit_the_output_type_are_refused() {
        let v = Volume::new([2, 1, 1], vec![0, 300], IDENTITY).unwrap();
        assert!(matches!(
            write_labels(&v, OutType::U8, false),
            Err(DataError::Invalid(_))
        ));
        assert_eq!(label_out_type(&v), OutType::I16);
    }
}
