//! safetensors in and out, fp32 or fp16 on disk, fp32 in memory.

use std::collections::HashMap;

use half::{bf16, f16};
use safetensors::tensor::{Dtype, TensorView};
use safetensors::SafeTensors;

use super::{HostTensor, StateDict, WeightsError};

fn st_err(e: impl std::fmt::Display) -> WeightsError {
    WeightsError::Safetensors(e.to_string())
}

/// Reads every float tensor; integer tensors are refused (SAM has none).
pub fn read_safetensors(bytes: &[u8]) -> Result<StateDict, WeightsError> {
    let st = SafeTensors::deserialize(bytes).map_err(st_err)?;
    let mut sd = StateDict::new();
    for (name, view) in st.tensors() {
        let raw = view.data();
        let data: Vec<f32> = match view.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(WeightsError::Safetensors(format!(
                    "tensor `{name}` has dtype {other:?}; only F32, F16 and BF16 are supported"
                )))
            }
        };
        sd.insert(name, HostTensor::new(view.shape().to_vec(), data));
    }
    Ok(sd)
}

/// Serialises tensors as fp32, or fp16 when `half` (values out of fp16 range saturate).
pub fn write_safetensors<'a>(
    tensors: impl IntoIterator<Item = (&'a String, &'a HostTensor)>,
    half: bool,
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, WeightsError> {
    let encoded: Vec<(&String, &HostTensor, Vec<u8>)> = tensors
        .into_iter()
        .map(|(name, t)| {
            let bytes = if half {
                t.data
                    .iter()
                    .flat_map(|v| f16::from_f32(*v).to_le_bytes())
                    .collect()
            } else {
                t.data.iter().flat_map(|v| v.to_le_bytes()).collect()
            };
            (name, t, bytes)
        })
        .collect();
    let dtype = if half { Dtype::F16 } else { Dtype::F32 };
    let mut views = Vec::with_capacity(encoded.len());
    for (name, t, bytes) in &encoded {
        let view = TensorView::new(dtype, t.shape.clone(), bytes).map_err(st_err)?;
        views.push((name.as_str(), view));
    }
    safetensors::serialize(views, metadata).map_err(st_err)
}

/// The same tensors, their bytes and dtypes untouched, under new header metadata.
pub fn with_metadata(
    bytes: &[u8],
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, WeightsError> {
    let st = SafeTensors::deserialize(bytes).map_err(st_err)?;
    safetensors::serialize(st.tensors(), Some(metadata)).map_err(st_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateDict {
        let mut sd = StateDict::new();
        sd.insert(
            "a.weight",
            HostTensor::new(vec![2, 3], vec![0.0, 1.0, -2.5, 3.25, 1e-3, 7.0]),
        );
        sd.insert("b", HostTensor::new(vec![], vec![42.0]));
        sd
    }

    #[test]
    fn fp32_round_trip_is_exact() {
        let sd = sample();
        let bytes = write_safetensors(sd.iter(), false, None).unwrap();
        let back = StateDict::from_bytes(&bytes).unwrap();
        assert_eq!(back.get("a.weight"), sd.get("a.weight"));
        assert_eq!(back.get("b"), sd.get("b"));
    }

    #[test]
    fn fp16_round_trip_is_within_half_precision() {
        let sd = sample();
        let bytes = write_safetensors(sd.iter(), true, None).unwrap();
        let fp32_len = write_safetensors(sd.iter(), false, None).unwrap().len();
        assert!(bytes.len() < fp32_len);
        let back = StateDict::from_bytes(&bytes).unwrap();
        let (a, b) = (
            &sd.get("a.weight").unwrap().data,
            &back.get("a.weight").unwrap().data,
        );
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() <= 1e-3 * x.abs().max(1.0), "{x} vs {y}");
        }
    }

    #[test]
    fn truncated_file_is_an_error() {
        let bytes = write_safetensors(sample().iter(), false, None).unwrap();
        for cut in [9, bytes.len() / 2, bytes.len() - 1] {
            assert!(read_safetensors(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }
}
