//! Parity with Meta's `segment_anything` on fixtures written by `tests/parity/gen_fixtures.py`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use brainsam::model::io::checkpoint::{geometry_of, load_sam};
use brainsam::model::predictor::{preprocess_image, read_f32};
use brainsam::model::transforms::ResizeLongestSide;
use brainsam::model::{Geometry, Prompt, SamPredictor};
use brainsam::weights::{HostTensor, StateDict};
use burn::prelude::*;

/// Fixture directories: those under `tests/fixtures/parity/` and every directory listed,
/// colon-separated, in `BRAINSAM_PARITY_DIRS` (a fixture itself or a folder of fixtures).
pub fn fixture_dirs() -> Vec<PathBuf> {
    let mut roots = vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/parity")];
    if let Ok(extra) = std::env::var("BRAINSAM_PARITY_DIRS") {
        roots.extend(
            extra
                .split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        );
    }
    let mut dirs = Vec::new();
    for root in roots {
        collect(&root, &mut dirs);
    }
    dirs.sort();
    dirs
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    if dir.join("case.safetensors").is_file() {
        out.push(dir.to_path_buf());
        return;
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                collect(&e.path(), out);
            }
        }
    }
}

fn rel_l2(ours: &[f32], theirs: &[f32]) -> f64 {
    assert_eq!(ours.len(), theirs.len(), "length differs");
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (a, b) in ours.iter().zip(theirs) {
        num += ((a - b) as f64).powi(2);
        den += (*b as f64).powi(2);
    }
    (num / den.max(1e-30)).sqrt()
}

fn tensor<'a>(case: &'a StateDict, key: &str) -> Option<&'a HostTensor> {
    case.get(key)
}

/// The case file mixes u8 and f32 tensors; all are widened to f32 here.
fn read_case(bytes: &[u8]) -> StateDict {
    use safetensors::{tensor::Dtype, SafeTensors};
    let st = SafeTensors::deserialize(bytes).expect("case.safetensors");
    let mut sd = StateDict::new();
    for (name, view) in st.tensors() {
        let data: Vec<f32> = match view.dtype() {
            Dtype::U8 => view.data().iter().map(|v| *v as f32).collect(),
            Dtype::F32 => view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            other => panic!("case tensor `{name}` has unsupported dtype {other:?}"),
        };
        sd.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    sd
}

fn u8_of(t: &HostTensor) -> Vec<u8> {
    t.data.iter().map(|v| *v as u8).collect()
}

/// Runs one fixture and returns a line for the log; panics with the numbers on failure.
pub fn check_fixture(dir: &Path, device: &Device, tol: f64) -> String {
    let config: Geometry = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap())
        .expect("config.json");
    let sd = StateDict::from_bytes(&std::fs::read(dir.join("sam.pth")).unwrap()).expect("sam.pth");
    assert_eq!(
        geometry_of(&sd).expect("geometry"),
        config,
        "geometry read off the checkpoint"
    );
    let sam = load_sam(&config.config(), sd, device).expect("load");
    let case = read_case(&std::fs::read(dir.join("case.safetensors")).unwrap());

    let image = tensor(&case, "image").expect("image");
    let (h, w) = (image.shape[0], image.shape[1]);
    let rgb = u8_of(image);
    let transform = ResizeLongestSide::new(config.image_size);
    if let Some(expected) = tensor(&case, "input_image") {
        let (ours, _) = preprocess_image(&transform, &rgb, h, w).unwrap();
        let e = rel_l2(&ours, &expected.data);
        assert!(
            e < 1e-6,
            "{}: preprocessed input rel L2 {e:.2e}",
            dir.display()
        );
    }

    let start = Instant::now();
    let mut predictor = SamPredictor::new(&sam, device.clone());
    predictor.set_image(&rgb, h, w).unwrap();
    let embedding = pollster::block_on(read_f32(predictor.embedding().unwrap().clone())).unwrap();
    let t_embed = start.elapsed();

    let mut prompt = Prompt {
        multimask: tensor(&case, "multimask")
            .map(|t| t.data[0] != 0.0)
            .unwrap_or(false),
        ..Default::default()
    };
    if let (Some(c), Some(l)) = (tensor(&case, "point_coords"), tensor(&case, "point_labels")) {
        prompt.points = c
            .data
            .chunks_exact(2)
            .zip(&l.data)
            .map(|(p, l)| ([p[0], p[1]], *l))
            .collect();
    }
    if let Some(b) = tensor(&case, "box") {
        prompt.bbox = Some([b.data[0], b.data[1], b.data[2], b.data[3]]);
    }
    if let Some(m) = tensor(&case, "mask_input") {
        prompt.mask_input = Some(m.data.clone());
    }
    let start = Instant::now();
    let pred = pollster::block_on(predictor.predict(&prompt)).unwrap();
    let t_decode = start.elapsed();

    let e_embed = rel_l2(
        &embedding,
        &tensor(&case, "expected_embedding").unwrap().data,
    );
    let e_logits = rel_l2(
        &pred.low_res_logits,
        &tensor(&case, "expected_low_res_logits").unwrap().data,
    );
    let exp_iou = &tensor(&case, "expected_iou").unwrap().data;
    let e_iou = pred
        .iou
        .iter()
        .zip(exp_iou)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max) as f64;
    let exp_masks = u8_of(tensor(&case, "expected_masks").unwrap());
    assert_eq!(pred.masks.len(), exp_masks.len(), "mask count/size");
    let agree = pred
        .masks
        .iter()
        .zip(&exp_masks)
        .filter(|(a, b)| a == b)
        .count() as f64
        / exp_masks.len() as f64;
    let line = format!(
        "{}: embedding {e_embed:.2e}, logits {e_logits:.2e}, iou {e_iou:.2e}, masks agree {:.4}% (embed {:.2?}, decode {:.2?})",
        dir.display(),
        agree * 100.0,
        t_embed,
        t_decode
    );
    assert!(
        e_embed <= tol && e_logits <= tol && e_iou <= tol && agree >= 0.999,
        "FAILED {line}"
    );
    line
}

pub fn run_all(device: &Device, tol: f64) {
    let dirs = fixture_dirs();
    assert!(
        !dirs.is_empty(),
        "no parity fixtures found: run `python tests/parity/gen_fixtures.py` (see tests/parity/README.md) or set BRAINSAM_PARITY_DIRS"
    );
    for dir in dirs {
        println!("{}", check_fixture(&dir, device, tol));
    }
}
