//! Label volumes the page exchanges with the engine: canonical `u8` ids (1..=16 for the
//! subcortical set, 101..=255 for custom structures), exported in a chosen convention.

use crate::data::labels::{to_common, Convention, SUBCORTICAL};
use crate::data::LabelVolume;

/// Label values written to the exported file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportConvention {
    /// brainsam's ids as shown in the page.
    Common,
    /// FreeSurfer aseg values for the 16 structures; custom ids unchanged.
    FreeSurfer,
}

impl ExportConvention {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "common" => Ok(Self::Common),
            "freesurfer" => Ok(Self::FreeSurfer),
            _ => Err(format!(
                "label convention `{s}` is not `common` or `freesurfer`"
            )),
        }
    }

    pub fn value(self, id: u8) -> i32 {
        match self {
            Self::FreeSurfer => SUBCORTICAL
                .iter()
                .find(|s| s.id == id)
                .map_or(id as i32, |s| s.freesurfer),
            Self::Common => id as i32,
        }
    }
}

/// A reference label map (FreeSurfer values, any orientation of the image's grid) as
/// common ids; voxels outside the 16 structures become 0.
pub fn reference_to_common(labels: &LabelVolume) -> Vec<u8> {
    let common = to_common(labels, Convention::FreeSurfer, false);
    common
        .data
        .iter()
        .map(|v| u8::try_from(*v).unwrap_or(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freesurfer_export_maps_the_sixteen_and_keeps_custom_ids() {
        let fs = ExportConvention::FreeSurfer;
        assert_eq!(fs.value(1), 10); // Left-Thalamus
        assert_eq!(fs.value(16), 60); // Right-VentralDC
        assert_eq!(fs.value(0), 0);
        assert_eq!(fs.value(101), 101);
        assert_eq!(ExportConvention::Common.value(5), 5);
        assert!(ExportConvention::parse("aseg").is_err());
    }
}
