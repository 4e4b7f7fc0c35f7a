//! Checkpoint files: Meta's `.pth` state dicts and safetensors (fp32 or fp16).
//!
//! Both are read into a [`StateDict`] keyed by SAM's own parameter names
//! (`image_encoder.blocks.0.attn.qkv.weight`, ...), which the model modules consume.
//! Loading fails with an error naming the key and both shapes; nothing is guessed.

pub mod pth;
mod safetensors_io;

use std::collections::BTreeMap;

pub use safetensors_io::{read_safetensors, with_metadata, write_safetensors};

/// A host-side float tensor from a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl HostTensor {
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Self {
        Self { shape, data }
    }
}

/// Why a checkpoint could not be read or did not fit the model.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("checkpoint is missing tensor `{key}` (the model expects shape {expected:?})")]
    Missing { key: String, expected: Vec<usize> },
    #[error(
        "tensor `{key}` has shape {found:?} in the checkpoint, the model expects {expected:?}"
    )]
    Shape {
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("checkpoint has {count} tensor(s) the model does not use, e.g. {examples}")]
    Unexpected { count: usize, examples: String },
    #[error("not a SAM checkpoint: {0}")]
    NotSam(String),
    #[error(
        "unrecognised checkpoint format: expected a PyTorch .pth (zip) or a .safetensors file"
    )]
    UnknownFormat,
    #[error("PyTorch checkpoint: {0}")]
    Pth(#[from] pth::PthError),
    #[error("safetensors: {0}")]
    Safetensors(String),
}

/// Parameters by name, consumed as the model takes them so leftovers can be reported.
#[derive(Debug, Default, Clone)]
pub struct StateDict {
    tensors: BTreeMap<String, HostTensor>,
}

impl StateDict {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads a `.pth` (zip) or `.safetensors` checkpoint, told apart by content.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, WeightsError> {
        if bytes.starts_with(b"PK\x03\x04") {
            let mut sd = Self::new();
            for t in pth::read_pth(bytes)? {
                let data = t.to_f32()?;
                sd.insert(t.name, HostTensor::new(t.shape, data));
            }
            return Ok(sd);
        }
        if looks_like_safetensors(bytes) {
            return read_safetensors(bytes);
        }
        Err(WeightsError::UnknownFormat)
    }

    pub fn insert(&mut self, key: impl Into<String>, tensor: HostTensor) {
        self.tensors.insert(key.into(), tensor);
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    pub fn shape(&self, key: &str) -> Option<&[usize]> {
        self.tensors.get(key).map(|t| t.shape.as_slice())
    }

    pub fn get(&self, key: &str) -> Option<&HostTensor> {
        self.tensors.get(key)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &HostTensor)> {
        self.tensors.iter()
    }

    /// Removes `key`, checking it has exactly the `expected` shape.
    pub fn take(&mut self, key: &str, expected: &[usize]) -> Result<HostTensor, WeightsError> {
        let found = self.shape(key).map(<[usize]>::to_vec);
        match found {
            None => Err(WeightsError::Missing {
                key: key.to_string(),
                expected: expected.to_vec(),
            }),
            Some(found) if found != expected => Err(WeightsError::Shape {
                key: key.to_string(),
                expected: expected.to_vec(),
                found,
            }),
            Some(_) => self.take_any(key, expected),
        }
    }

    /// Removes `key` whatever its shape (for tensors the loader resamples).
    pub fn take_any(&mut self, key: &str, expected: &[usize]) -> Result<HostTensor, WeightsError> {
        self.tensors
            .remove(key)
            .ok_or_else(|| WeightsError::Missing {
                key: key.to_string(),
                expected: expected.to_vec(),
            })
    }

    /// Succeeds only if every tensor was consumed.
    pub fn finish(self) -> Result<(), WeightsError> {
        if self.tensors.is_empty() {
            return Ok(());
        }
        let examples: Vec<String> = self
            .tensors
            .keys()
            .take(5)
            .map(|k| format!("`{k}`"))
            .collect();
        Err(WeightsError::Unexpected {
            count: self.tensors.len(),
            examples: examples.join(", "),
        })
    }
}

impl StateDict {
    /// The element-wise mean of checkpoints with the same keys and shapes: a "uniform
    /// model soup" of runs fine-tuned from one starting point, which usually scores better
    /// than each run alone at no cost per prediction.
    pub fn average(dicts: &[StateDict]) -> Result<StateDict, WeightsError> {
        let (first, rest) = dicts
            .split_first()
            .ok_or_else(|| WeightsError::NotSam("nothing to average".into()))?;
        let mut sum = first.clone();
        for other in rest {
            let extra: Vec<&String> = other
                .tensors
                .keys()
                .filter(|k| !sum.tensors.contains_key(*k))
                .collect();
            if let Some(k) = extra.first() {
                return Err(WeightsError::Unexpected {
                    count: extra.len(),
                    examples: format!("`{k}`"),
                });
            }
            for (key, acc) in sum.tensors.iter_mut() {
                let t = other
                    .tensors
                    .get(key)
                    .ok_or_else(|| WeightsError::Missing {
                        key: key.clone(),
                        expected: acc.shape.clone(),
                    })?;
                if t.shape != acc.shape {
                    return Err(WeightsError::Shape {
                        key: key.clone(),
                        expected: acc.shape.clone(),
                        found: t.shape.clone(),
                    });
                }
                acc.data.iter_mut().zip(&t.data).for_each(|(a, b)| *a += b);
            }
        }
        let n = dicts.len() as f32;
        for t in sum.tensors.values_mut() {
            t.data.iter_mut().for_each(|a| *a /= n);
        }
        Ok(sum)
    }
}

/// safetensors starts with a little-endian u64 header length and a JSON object.
fn looks_like_safetensors(bytes: &[u8]) -> bool {
    match bytes.get(..9) {
        Some(head) => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&head[..8]);
            let n = u64::from_le_bytes(len);
            head[8] == b'{' && n <= bytes.len() as u64
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sd_with(key: &str, shape: &[usize]) -> StateDict {
        let mut sd = StateDict::new();
        let n = shape.iter().product();
        sd.insert(key, HostTensor::new(shape.to_vec(), vec![0.5; n]));
        sd
    }

    #[test]
    fn shape_mismatch_names_key_and_both_shapes() {
        let mut sd = sd_with("mask_decoder.iou_token.weight", &[1, 128]);
        let err = sd
            .take("mask_decoder.iou_token.weight", &[1, 256])
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("mask_decoder.iou_token.weight"), "{msg}");
        assert!(
            msg.contains("[1, 128]") && msg.contains("[1, 256]"),
            "{msg}"
        );
    }

    #[test]
    fn missing_key_is_reported_with_expected_shape() {
        let mut sd = StateDict::new();
        let msg = sd.take("a.b", &[3]).unwrap_err().to_string();
        assert!(msg.contains("`a.b`") && msg.contains("[3]"), "{msg}");
    }

    #[test]
    fn leftover_tensors_are_an_error() {
        let sd = sd_with("extra.weight", &[2]);
        let msg = sd.finish().unwrap_err().to_string();
        assert!(msg.contains("extra.weight"), "{msg}");
    }

    #[test]
    fn average_is_the_elementwise_mean_and_refuses_other_shapes() {
        let mut a = StateDict::new();
        a.insert("w", HostTensor::new(vec![2], vec![1.0, -3.0]));
        let mut b = StateDict::new();
        b.insert("w", HostTensor::new(vec![2], vec![3.0, 5.0]));
        let mean = StateDict::average(&[a.clone(), b]).unwrap();
        assert_eq!(mean.get("w").unwrap().data, vec![2.0, 1.0]);

        let msg = StateDict::average(&[a.clone(), sd_with("w", &[3])])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`w`") && msg.contains("[3]"), "{msg}");
        let msg = StateDict::average(&[a.clone(), sd_with("v", &[2])])
            .unwrap_err()
            .to_string();
        assert!(msg.contains("`v`"), "{msg}");
        assert!(StateDict::average(&[]).is_err());
    }

    #[test]
    fn random_bytes_are_not_a_checkpoint() {
        let err = StateDict::from_bytes(b"this is not a checkpoint at all").unwrap_err();
        assert!(matches!(err, WeightsError::UnknownFormat), "{err}");
        assert!(StateDict::from_bytes(&[]).is_err());
    }
}
