//! Tests of the `.pth` reader on fixtures written by torch, and on truncated and corrupted
//! files.

use super::archive::{read_entry, select_state_dict, MAX_PICKLE_BYTES};
use super::pickle::unpickle;
use super::*;
use safetensors::SafeTensors;
use std::io::Cursor;
use std::path::PathBuf;

/// Fixtures written by `tests/weights/gen_*_fixtures.py`.
fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/pth")
}

fn load(name: &str) -> Vec<u8> {
    let p = data_dir().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn st_dtype(d: safetensors::Dtype) -> PthDType {
    use safetensors::Dtype as D;
    match d {
        D::F64 => PthDType::F64,
        D::F32 => PthDType::F32,
        D::F16 => PthDType::F16,
        D::BF16 => PthDType::BF16,
        D::I64 => PthDType::I64,
        D::I32 => PthDType::I32,
        D::I16 => PthDType::I16,
        D::I8 => PthDType::I8,
        D::U8 => PthDType::U8,
        D::BOOL => PthDType::Bool,
        other => panic!("unexpected dtype {other:?}"),
    }
}

/// Every tensor of `<case>.pth` equals the safetensors copy byte for byte,
/// with the same names (and no others).
fn check_case(case: &str) -> usize {
    let got = read_pth(&load(&format!("{case}.pth"))).unwrap();
    let exp_bytes = load(&format!("{case}.safetensors"));
    let exp = SafeTensors::deserialize(&exp_bytes).unwrap();
    let mut names: Vec<_> = got.iter().map(|t| t.name.clone()).collect();
    names.sort();
    let mut want: Vec<String> = exp.names().iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "{case}: tensor names");
    for t in &got {
        let e = exp.tensor(&t.name).unwrap();
        assert_eq!(t.shape, e.shape(), "{case}/{}: shape", t.name);
        assert_eq!(t.dtype, st_dtype(e.dtype()), "{case}/{}: dtype", t.name);
        assert_eq!(t.data, e.data(), "{case}/{}: data", t.name);
        assert_eq!(t.numel(), e.shape().iter().product::<usize>());
    }
    got.len()
}

#[test]
fn all_dtypes_match_safetensors() {
    assert_eq!(check_case("dtypes"), 10);
}

#[test]
fn to_f32_matches_torch_float_conversion() {
    let got = read_pth(&load("dtypes.pth")).unwrap();
    let exp_bytes = load("dtypes_f32.safetensors");
    let exp = SafeTensors::deserialize(&exp_bytes).unwrap();
    let mut checked = 0;
    for t in got.iter().filter(|t| t.dtype != PthDType::Bool) {
        let e = exp.tensor(&t.name).unwrap();
        let want: Vec<f32> = e
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect();
        assert_eq!(t.to_f32().unwrap(), want, "{}", t.name);
        checked += 1;
    }
    assert_eq!(checked, 9);
    let b = got.iter().find(|t| t.name == "bool").unwrap();
    assert_eq!(b.to_f32().unwrap(), vec![1.0, 0.0, 1.0, 1.0, 0.0, 0.0]);
}

#[test]
fn strided_offset_shared_and_parameter_tensors_are_gathered() {
    assert_eq!(check_case("views"), 10);
}

#[test]
fn state_dict_nested_under_model_or_state_dict_loses_prefix() {
    assert_eq!(check_case("nested_model"), 2);
    assert_eq!(check_case("nested_state_dict"), 2);
}

#[test]
fn module_state_dict_with_metadata_in_protocols_2_and_4() {
    let n = check_case("module");
    assert_eq!(n, 11);
    assert_eq!(check_case("module_proto4"), n);
}

#[test]
fn deflate_compressed_entries_are_read() {
    assert_eq!(check_case("module_deflate"), 11);
}

#[test]
fn zero_dim_tensors_have_empty_shape() {
    assert_eq!(check_case("scalar"), 3);
    let got = read_pth(&load("scalar.pth")).unwrap();
    let s = got.iter().find(|t| t.name == "s").unwrap();
    assert!(s.shape.is_empty());
    assert_eq!(s.to_f32().unwrap(), vec![3.5]);
}

#[test]
fn legacy_format_asks_to_resave() {
    let err = read_pth(&load("legacy.pth")).unwrap_err();
    assert!(matches!(err, PthError::Legacy), "{err}");
    assert!(err.to_string().contains("re-save"));
}

#[test]
fn not_a_zip_is_an_error() {
    assert!(matches!(read_pth(b"hello"), Err(PthError::NotZip(_))));
    assert!(read_pth(b"").is_err());
    assert!(read_pth(b"PK\x03\x04garbage").is_err());
}

#[test]
fn truncated_files_are_errors_not_panics() {
    for case in [
        "module.pth",
        "views.pth",
        "module_deflate.pth",
        "module_proto4.pth",
    ] {
        let bytes = load(case);
        for cut in (0..bytes.len()).step_by(7) {
            assert!(read_pth(&bytes[..cut]).is_err(), "{case} cut at {cut}");
        }
    }
}

#[test]
fn flipped_bytes_never_panic() {
    for case in [
        "module.pth",
        "views.pth",
        "dtypes.pth",
        "module_deflate.pth",
    ] {
        let bytes = load(case);
        let mut state = 0x2545_f491_u32;
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            b[i] ^= 1 << (state >> 29);
            // Either an error or some tensors; must not panic.
            let _ = read_pth(&b);
        }
    }
}

#[test]
fn corrupted_pickles_never_panic() {
    for case in ["module.pth", "module_proto4.pth", "views.pth"] {
        let bytes = load(case);
        let mut zip = zip::ZipArchive::new(Cursor::new(bytes.as_slice())).unwrap();
        let name = zip
            .file_names()
            .find(|n| n.ends_with("/data.pkl"))
            .unwrap()
            .to_owned();
        let pkl = read_entry(&mut zip, &name, MAX_PICKLE_BYTES).unwrap();
        assert!(unpickle(&pkl).is_ok());
        for cut in 0..pkl.len() - 1 {
            assert!(unpickle(&pkl[..cut]).is_err(), "{case} pickle cut at {cut}");
        }
        let mut state = 0x1234_5678_u32;
        for i in 0..pkl.len() {
            for _ in 0..4 {
                let mut p = pkl.clone();
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                p[i] = (state >> 24) as u8;
                if let Ok(v) = unpickle(&p) {
                    let _ = select_state_dict(&v);
                }
            }
        }
    }
}

#[test]
fn deeply_nested_pickle_is_refused() {
    let mut p = vec![0x80, 2, b'N'];
    p.extend(std::iter::repeat_n(0x85u8, 100_000)); // TUPLE1 around TUPLE1 ...
    p.push(b'.');
    let err = unpickle(&p).unwrap_err();
    assert!(err.to_string().contains("nested too deeply"), "{err}");
}

/// Builds a one-entry-plus-pickle archive to feed hand-written pickles.
fn archive(pickle: &[u8], storages: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut buf = Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        let opt = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file("ckpt/data.pkl", opt).unwrap();
        w.write_all(pickle).unwrap();
        for (k, d) in storages {
            w.start_file(format!("ckpt/data/{k}"), opt).unwrap();
            w.write_all(d).unwrap();
        }
        w.finish().unwrap();
    }
    buf.into_inner()
}

/// Pickle of `{"w": _rebuild_tensor_v2(storage('0', numel), 0, size, stride)}`.
fn tensor_pickle(numel: u32, size: &[u32], stride: &[u32]) -> Vec<u8> {
    let mut p = vec![0x80, 2, b'}', b'X'];
    p.extend(1u32.to_le_bytes());
    p.push(b'w');
    p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    p.extend(
        b"(X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ",
    );
    p.extend(numel.to_le_bytes());
    p.extend(b"tQK\x00(");
    for s in size {
        p.push(b'J');
        p.extend(s.to_le_bytes());
    }
    p.extend(b"t(");
    for s in stride {
        p.push(b'J');
        p.extend(s.to_le_bytes());
    }
    p.extend(b"t\x89ccollections\nOrderedDict\n)RtRs.");
    p
}

#[test]
fn hand_written_pickle_reads() {
    let data: Vec<u8> = [1.0f32, 2.0, 3.0, 4.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let z = archive(&tensor_pickle(4, &[2, 2], &[1, 2]), &[("0", &data)]);
    let t = read_pth(&z).unwrap();
    assert_eq!(t[0].shape, vec![2, 2]);
    assert_eq!(t[0].to_f32().unwrap(), vec![1.0, 3.0, 2.0, 4.0]);
}

#[test]
fn shape_beyond_storage_is_refused() {
    let data = [0u8; 16];
    let z = archive(&tensor_pickle(4, &[3, 2], &[2, 1]), &[("0", &data)]);
    assert!(matches!(read_pth(&z), Err(PthError::Tensor { .. })));
}

#[test]
fn absurd_sizes_are_refused_before_allocating() {
    let data = [0u8; 16];
    let big = i32::MAX as u32;
    let z = archive(
        &tensor_pickle(big, &[big, big, big], &[0, 0, 0]),
        &[("0", &data)],
    );
    assert!(matches!(read_pth(&z), Err(PthError::Tensor { .. })));
    // Storage declared larger than its entry.
    let z = archive(&tensor_pickle(1000, &[4], &[1]), &[("0", &data)]);
    assert!(matches!(read_pth(&z), Err(PthError::Tensor { .. })));
}

#[test]
fn missing_storage_entry_names_tensor_and_entry() {
    let z = archive(&tensor_pickle(4, &[4], &[1]), &[]);
    let err = read_pth(&z).unwrap_err();
    assert!(matches!(err, PthError::MissingStorage { .. }), "{err}");
    assert!(err.to_string().contains("ckpt/data/0"), "{err}");
}

#[test]
fn unknown_opcode_and_missing_pickle_are_errors() {
    let z = archive(b"\x80\x02\xff.", &[]);
    assert!(matches!(
        read_pth(&z),
        Err(PthError::UnknownOpcode { opcode: 0xff, .. })
    ));
    let mut buf = Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut buf);
        w.start_file("x/other", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.finish().unwrap();
    }
    assert!(matches!(
        read_pth(&buf.into_inner()),
        Err(PthError::MissingPickle)
    ));
}
