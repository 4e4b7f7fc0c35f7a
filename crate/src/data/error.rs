//! Typed errors of the data pipeline: every bad-input case has its own variant and message.

use thiserror::Error;

/// Everything that can go wrong while reading, processing or writing brain volumes.
#[derive(Debug, Error)]
pub enum DataError {
    #[error("not a NIfTI file: {0}")]
    NotNifti(String),
    #[error("invalid MGH/MGZ file: {0}")]
    Mgh(String),
    #[error("invalid NRRD file: {0}")]
    Nrrd(String),
    #[error("corrupt or truncated gzip stream: {0}")]
    Gzip(String),
    #[error(
        "NIfTI data truncated: header promises {expected} bytes of voxel data, file holds {actual}"
    )]
    Truncated { expected: u64, actual: u64 },
    #[error("invalid NIfTI header: {0}")]
    BadHeader(String),
    #[error("volume too large: {voxels} voxels exceeds the limit of {limit} (refused before allocating)")]
    TooLarge { voxels: u128, limit: u64 },
    #[error("zero-size dimension: dim[{axis}] = 0, the volume holds no voxels")]
    ZeroSizeDim { axis: usize },
    #[error("unsupported NIfTI datatype {code} ({name}): {why}")]
    UnsupportedDatatype {
        code: i16,
        name: &'static str,
        why: &'static str,
    },
    #[error("geometry mismatch: {0}")]
    Geometry(String),
    #[error("invalid argument: {0}")]
    Invalid(String),
    #[error("dataset layout: {0}")]
    Dataset(String),
    #[error("PNG encoding failed: {0}")]
    Png(String),
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Result alias of the data pipeline.
pub type Result<T> = std::result::Result<T, DataError>;

impl DataError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
