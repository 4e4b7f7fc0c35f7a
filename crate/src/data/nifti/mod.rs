//! NIfTI files: the header ([`header`]), reading ([`read`]) and writing ([`write`]) of volumes,
//! all from/to bytes (wasm-friendly), plus the thin native path helpers.

pub mod header;
pub mod read;
pub mod write;

use crate::data::error::{DataError, Result};

pub use read::{read_header, read_image, read_labels, ScalarType};
pub use write::{label_out_type, write_image, write_labels, OutType};

/// Reads a whole file (native convenience; the byte-based functions are the portable API).
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| DataError::io(path, e))
}

/// Writes bytes to a file (native convenience).
pub fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| DataError::io(path, e))
}

/// True when the path names a gzip-compressed NIfTI (`.nii.gz`).
pub fn is_gz_path(path: &std::path::Path) -> bool {
    path.to_string_lossy().to_ascii_lowercase().ends_with(".gz")
}
