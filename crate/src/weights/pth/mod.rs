//! In-memory reader for PyTorch `.pth` checkpoints (the zip format written by
//! `torch.save` since torch 1.6). No filesystem access, so it works in wasm.
//!
//! The archive holds `<prefix>/data.pkl`, a pickle describing the object, and
//! `<prefix>/data/<key>` raw storages. A small pickle machine evaluates just
//! what `torch.save` emits; tensors come out as `_rebuild_tensor_v2` calls on
//! persistent-id storages and are gathered (`archive`) into contiguous row-major data.

mod archive;
mod pickle;
mod value;

use thiserror::Error;

pub use archive::read_pth;

/// Element type of a tensor, as named by torch's storage classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PthDType {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl PthDType {
    pub fn size(self) -> usize {
        match self {
            PthDType::F64 | PthDType::I64 => 8,
            PthDType::F32 | PthDType::I32 => 4,
            PthDType::F16 | PthDType::BF16 | PthDType::I16 => 2,
            PthDType::I8 | PthDType::U8 | PthDType::Bool => 1,
        }
    }

    fn from_storage_name(name: &str) -> Option<Self> {
        Some(match name {
            "DoubleStorage" => PthDType::F64,
            "FloatStorage" => PthDType::F32,
            "HalfStorage" => PthDType::F16,
            "BFloat16Storage" => PthDType::BF16,
            "LongStorage" => PthDType::I64,
            "IntStorage" => PthDType::I32,
            "ShortStorage" => PthDType::I16,
            "CharStorage" => PthDType::I8,
            "ByteStorage" => PthDType::U8,
            "BoolStorage" => PthDType::Bool,
            _ => return None,
        })
    }
}

/// One tensor of the state dict, gathered to contiguous little-endian bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct PthTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub dtype: PthDType,
    pub data: Vec<u8>,
}

impl PthTensor {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// Values converted to f32 (integers and bools numerically).
    pub fn to_f32(&self) -> Result<Vec<f32>, PthError> {
        let size = self.dtype.size();
        if self.data.len() != self.numel() * size {
            return Err(PthError::Tensor {
                name: self.name.clone(),
                msg: format!(
                    "{} data bytes for shape {:?} of {:?}",
                    self.data.len(),
                    self.shape,
                    self.dtype
                ),
            });
        }
        let c = self.data.chunks_exact(size);
        Ok(match self.dtype {
            PthDType::F32 => c
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            PthDType::F64 => c
                .map(|b| {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            PthDType::F16 => c
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            PthDType::BF16 => c
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            PthDType::I64 => c
                .map(|b| {
                    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                })
                .collect(),
            PthDType::I32 => c
                .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            PthDType::I16 => c.map(|b| i16::from_le_bytes([b[0], b[1]]) as f32).collect(),
            PthDType::I8 => c.map(|b| b[0] as i8 as f32).collect(),
            PthDType::U8 => c.map(|b| b[0] as f32).collect(),
            PthDType::Bool => c.map(|b| if b[0] != 0 { 1.0 } else { 0.0 }).collect(),
        })
    }
}

#[derive(Debug, Error)]
pub enum PthError {
    #[error("legacy (pre-1.6, non-zip) torch checkpoint; re-save it with a newer torch: torch.save(torch.load(path), path)")]
    Legacy,
    #[error("not a torch checkpoint: {0}")]
    NotZip(String),
    #[error("zip archive: {0}")]
    Zip(String),
    #[error("archive has no data.pkl entry")]
    MissingPickle,
    #[error("pickle: unknown opcode 0x{opcode:02x} at byte {pos}")]
    UnknownOpcode { opcode: u8, pos: usize },
    #[error("pickle: truncated inside opcode 0x{opcode:02x} at byte {pos}")]
    Truncated { opcode: u8, pos: usize },
    #[error("pickle: opcode 0x{opcode:02x} at byte {pos}: {msg}")]
    Pickle { opcode: u8, pos: usize, msg: String },
    #[error("pickle ended without STOP")]
    NoStop,
    #[error("unsupported storage type torch.{0}")]
    UnsupportedStorage(String),
    #[error("tensor {tensor}: storage entry {entry} missing from archive")]
    MissingStorage { tensor: String, entry: String },
    #[error("tensor {name}: {msg}")]
    Tensor { name: String, msg: String },
    #[error("checkpoint holds no tensors")]
    NoTensors,
}

#[cfg(test)]
mod tests;
