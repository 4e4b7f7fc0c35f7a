//! The common subcortical label set (16 structures, optional lateral ventricles), its colour
//! table, and mappings from each source dataset's label convention.
//!
//! Source values (checked against each atlas' published label list, see docs/data.md):
//! - FreeSurfer aseg / CMA: thalamus 10/49, caudate 11/50, putamen 12/51, pallidum 13/52,
//!   hippocampus 17/53, amygdala 18/54, accumbens 26/58, ventral DC 28/60, lat. ventricle 4/43.
//!   IBSR (v2.0, 18 subjects) and CANDI segmentations use the same CMA numbering.
//! - MALC / MICCAI 2012 (Neuromorphometrics): accumbens 30/23, amygdala 32/31, caudate 37/36,
//!   hippocampus 48/47, pallidum 56/55, putamen 58/57, thalamus 60/59, ventral DC 62/61,
//!   lateral ventricle 52/51 (left/right).
//! - LONI LPBA40: caudate 161/162, putamen 163/164, hippocampus 165/166 (no other targets).
//! - Hammers n30r83 / n30r95: hippocampus 2/1, amygdala 4/3, caudate 34/35, accumbens 36/37,
//!   putamen 38/39, thalamus 40/41, pallidum 42/43, lateral ventricle 46/45 (left/right;
//!   no ventral DC).

use super::error::{DataError, Result};
use super::volume::LabelVolume;

/// Hemisphere of a structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Hemisphere {
    Left,
    Right,
}

/// One structure of the common set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Structure {
    /// Value in our common label maps (1..=16 subcortical, 17/18 lateral ventricles).
    pub id: u8,
    /// Human-readable name, e.g. "Left-Thalamus".
    pub name: &'static str,
    pub hemisphere: Hemisphere,
    /// FreeSurfer aseg value.
    pub freesurfer: i32,
    /// Display colour (FreeSurfer LUT colours).
    pub rgb: [u8; 3],
}

const fn s(id: u8, name: &'static str, h: Hemisphere, fs: i32, rgb: [u8; 3]) -> Structure {
    Structure {
        id,
        name,
        hemisphere: h,
        freesurfer: fs,
        rgb,
    }
}

use Hemisphere::{Left as L, Right as R};

/// The 16 subcortical targets, ids 1..=16 (left then right of each structure).
pub const SUBCORTICAL: [Structure; 16] = [
    s(1, "Left-Thalamus", L, 10, [0, 118, 14]),
    s(2, "Right-Thalamus", R, 49, [0, 118, 14]),
    s(3, "Left-Caudate", L, 11, [122, 186, 220]),
    s(4, "Right-Caudate", R, 50, [122, 186, 220]),
    s(5, "Left-Putamen", L, 12, [236, 13, 176]),
    s(6, "Right-Putamen", R, 51, [236, 13, 176]),
    s(7, "Left-Pallidum", L, 13, [12, 48, 255]),
    s(8, "Right-Pallidum", R, 52, [13, 48, 255]),
    s(9, "Left-Hippocampus", L, 17, [220, 216, 20]),
    s(10, "Right-Hippocampus", R, 53, [220, 216, 20]),
    s(11, "Left-Amygdala", L, 18, [103, 255, 255]),
    s(12, "Right-Amygdala", R, 54, [103, 255, 255]),
    s(13, "Left-Accumbens", L, 26, [255, 165, 0]),
    s(14, "Right-Accumbens", R, 58, [255, 165, 0]),
    s(15, "Left-VentralDC", L, 28, [165, 42, 42]),
    s(16, "Right-VentralDC", R, 60, [165, 42, 42]),
];

/// Optional extra targets.
pub const LATERAL_VENTRICLES: [Structure; 2] = [
    s(17, "Left-Lateral-Ventricle", L, 4, [120, 18, 134]),
    s(18, "Right-Lateral-Ventricle", R, 43, [120, 18, 134]),
];

/// The structure with common id `id`, if any.
pub fn structure(id: i32) -> Option<&'static Structure> {
    SUBCORTICAL
        .iter()
        .chain(LATERAL_VENTRICLES.iter())
        .find(|s| s.id as i32 == id)
}

/// The structure kind (left and right together: 0 thalamus .. 7 ventral DC, 8 lateral
/// ventricle) of common id `id`: the row of the model's structure embeddings.
pub fn kind(id: i32) -> Option<usize> {
    structure(id).map(|s| (s.id as usize - 1) / 2)
}

/// The structure kind of a FreeSurfer aseg value.
pub fn kind_of_freesurfer(value: i32) -> Option<usize> {
    SUBCORTICAL
        .iter()
        .chain(LATERAL_VENTRICLES.iter())
        .find(|s| s.freesurfer == value)
        .and_then(|s| kind(s.id as i32))
}

/// Label conventions of the supported datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Convention {
    /// FreeSurfer aseg / CMA values (also the shared label maps, IBSR and CANDI).
    FreeSurfer,
    Ibsr,
    Candi,
    /// MICCAI 2012 multi-atlas labelling challenge (Neuromorphometrics protocol).
    Malc,
    Lpba40,
    /// Hammers n30r83 and n30r95 (same values for the subcortical regions).
    Hammers,
}

impl Convention {
    /// (source value, common id) pairs; structures a protocol does not delineate are absent.
    pub fn table(self, with_ventricles: bool) -> Vec<(i32, u8)> {
        let mut t: Vec<(i32, u8)> = match self {
            Convention::FreeSurfer | Convention::Ibsr | Convention::Candi => {
                SUBCORTICAL.iter().map(|s| (s.freesurfer, s.id)).collect()
            }
            Convention::Malc => vec![
                (60, 1),
                (59, 2),
                (37, 3),
                (36, 4),
                (58, 5),
                (57, 6),
                (56, 7),
                (55, 8),
                (48, 9),
                (47, 10),
                (32, 11),
                (31, 12),
                (30, 13),
                (23, 14),
                (62, 15),
                (61, 16),
            ],
            Convention::Lpba40 => vec![(161, 3), (162, 4), (163, 5), (164, 6), (165, 9), (166, 10)],
            Convention::Hammers => vec![
                (40, 1),
                (41, 2),
                (34, 3),
                (35, 4),
                (38, 5),
                (39, 6),
                (42, 7),
                (43, 8),
                (2, 9),
                (1, 10),
                (4, 11),
                (3, 12),
                (36, 13),
                (37, 14),
            ],
        };
        if with_ventricles {
            match self {
                Convention::FreeSurfer | Convention::Ibsr | Convention::Candi => {
                    t.extend([(4, 17), (43, 18)])
                }
                Convention::Malc => t.extend([(52, 17), (51, 18)]),
                Convention::Hammers => t.extend([(46, 17), (45, 18)]),
                Convention::Lpba40 => {}
            }
        }
        t
    }

    /// Parses a name such as `freesurfer`, `malc`, `lpba40`, `hammers`, `ibsr`, `candi`.
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name.to_ascii_lowercase().as_str() {
            "freesurfer" | "aseg" | "fs" => Convention::FreeSurfer,
            "ibsr" => Convention::Ibsr,
            "candi" => Convention::Candi,
            "malc" | "miccai2012" => Convention::Malc,
            "lpba40" | "lpba" => Convention::Lpba40,
            "hammers" | "n30r83" | "n30r95" => Convention::Hammers,
            other => {
                return Err(DataError::Invalid(format!(
                    "unknown label convention '{other}' (freesurfer, ibsr, candi, malc, lpba40, hammers)"
                )))
            }
        })
    }
}

/// Maps a label volume of convention `conv` onto the common ids (everything else → 0).
pub fn to_common(labels: &LabelVolume, conv: Convention, with_ventricles: bool) -> LabelVolume {
    let table = conv.table(with_ventricles);
    let lut = |v: i32| {
        table
            .iter()
            .find(|(src, _)| *src == v)
            .map_or(0, |(_, id)| *id as i32)
    };
    // Labels are few: build a dense LUT over the observed range when it is small.
    let max = labels.data.iter().copied().max().unwrap_or(0);
    let min = labels.data.iter().copied().min().unwrap_or(0);
    let data = if min >= 0 && max < 65536 {
        let dense: Vec<i32> = (0..=max).map(lut).collect();
        labels
            .data
            .iter()
            .map(|v| dense.get(*v as usize).copied().unwrap_or(0))
            .collect()
    } else {
        labels.data.iter().map(|v| lut(*v)).collect()
    };
    LabelVolume {
        dims: labels.dims,
        data,
        affine: labels.affine,
        header: labels.header.clone(),
    }
}

/// Maps common ids back to FreeSurfer values (for writing predictions in aseg convention).
pub fn common_to_freesurfer(labels: &LabelVolume) -> LabelVolume {
    let data = labels
        .data
        .iter()
        .map(|v| structure(*v).map_or(0, |s| s.freesurfer))
        .collect();
    LabelVolume {
        dims: labels.dims,
        data,
        affine: labels.affine,
        header: labels.header.clone(),
    }
}

/// Parses FreeSurfer-style "value name" lines (e.g. `freesurfer_labels.txt` or
/// `FreeSurferColorLUT.txt`), skipping lines that do not start with an integer.
pub fn parse_label_names(text: &str) -> Vec<(i32, String)> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let v = it.next()?.parse::<i32>().ok()?;
            let name = it
                .take_while(|w| w.parse::<i32>().is_err())
                .collect::<Vec<_>>();
            (!name.is_empty()).then(|| (v, name.join(" ")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::*;

    #[test]
    fn common_set_has_sixteen_distinct_structures_with_left_right_pairs() {
        let mut ids: Vec<u8> = SUBCORTICAL.iter().map(|s| s.id).collect();
        ids.dedup();
        assert_eq!(ids, (1..=16).collect::<Vec<u8>>());
        for pair in SUBCORTICAL.chunks(2) {
            assert_eq!(pair[0].hemisphere, Hemisphere::Left);
            assert_eq!(pair[1].hemisphere, Hemisphere::Right);
            assert_eq!(
                pair[0].name.trim_start_matches("Left-"),
                pair[1].name.trim_start_matches("Right-")
            );
        }
    }

    #[test]
    fn a_kind_joins_left_and_right_of_one_name() {
        let kinds: Vec<usize> = (1..=18).map(|id| kind(id).unwrap()).collect();
        assert!(kinds
            .iter()
            .all(|k| *k < crate::model::prompt_encoder::STRUCTURE_KINDS));
        for a in SUBCORTICAL.iter().chain(LATERAL_VENTRICLES.iter()) {
            for b in SUBCORTICAL.iter().chain(LATERAL_VENTRICLES.iter()) {
                let same =
                    a.name.split_once('-').map(|x| x.1) == b.name.split_once('-').map(|x| x.1);
                assert_eq!(
                    kind(a.id as i32) == kind(b.id as i32),
                    same,
                    "{} {}",
                    a.name,
                    b.name
                );
            }
            assert_eq!(kind_of_freesurfer(a.freesurfer), kind(a.id as i32));
        }
        assert_eq!(
            (kind(0), kind(19), kind_of_freesurfer(2)),
            (None, None, None)
        );
    }

    #[test]
    fn freesurfer_values_match_the_names_in_the_shared_label_list() {
        // The shared data's label list is an independent source for the FreeSurfer values.
        let text = std::fs::read_to_string(data_dir().join("label_maps/freesurfer_labels.txt"))
            .expect("freesurfer_labels.txt");
        let names = parse_label_names(&text);
        for s in SUBCORTICAL {
            let (_, name) = names
                .iter()
                .find(|(v, _)| *v == s.freesurfer)
                .unwrap_or_else(|| panic!("{} ({}) missing from the list", s.name, s.freesurfer));
            let side = if s.hemisphere == Hemisphere::Left {
                "left"
            } else {
                "right"
            };
            let organ = s
                .name
                .split('-')
                .nth(1)
                .unwrap()
                .to_lowercase()
                .replace("ventraldc", "ventral dc");
            assert!(
                name.starts_with(side) && name.to_lowercase().contains(&organ),
                "{} vs '{name}'",
                s.name
            );
        }
    }

    #[test]
    fn each_convention_maps_distinct_source_values_to_distinct_structures() {
        for c in [
            Convention::FreeSurfer,
            Convention::Malc,
            Convention::Lpba40,
            Convention::Hammers,
        ] {
            let t = c.table(true);
            let mut src: Vec<i32> = t.iter().map(|p| p.0).collect();
            let mut dst: Vec<u8> = t.iter().map(|p| p.1).collect();
            src.sort();
            src.dedup();
            dst.sort();
            dst.dedup();
            assert_eq!(src.len(), t.len(), "{c:?} repeats a source value");
            assert_eq!(dst.len(), t.len(), "{c:?} repeats a target");
        }
    }

    #[test]
    fn malc_left_and_right_values_are_mapped_to_matching_sides() {
        let t = Convention::Malc.table(false);
        let id = |v| t.iter().find(|p| p.0 == v).map(|p| p.1).unwrap();
        // MICCAI 2012: 36 Right Caudate, 37 Left Caudate, 47/48 Right/Left Hippocampus.
        assert_eq!(structure(id(37) as i32).unwrap().name, "Left-Caudate");
        assert_eq!(structure(id(36) as i32).unwrap().name, "Right-Caudate");
        assert_eq!(structure(id(48) as i32).unwrap().name, "Left-Hippocampus");
    }

    #[test]
    fn mapping_a_real_label_map_keeps_subcortical_voxels_and_drops_the_rest() {
        let v = crate::data::nifti::read_labels(&read_bytes(&label_map_path(2)))
            .unwrap()
            .volume;
        let c = to_common(&v, Convention::FreeSurfer, false);
        for s in SUBCORTICAL {
            let a = v.data.iter().filter(|x| **x == s.freesurfer).count();
            let b = c.data.iter().filter(|x| **x == s.id as i32).count();
            assert_eq!(a, b, "{}", s.name);
            assert!(a > 100, "{} has only {a} voxels in subject 2", s.name);
        }
        assert!(c.data.iter().all(|x| (0..=16).contains(x)));
        let back = common_to_freesurfer(&c);
        assert!(back
            .data
            .iter()
            .zip(&v.data)
            .all(|(b, o)| *b == 0 || b == o));
    }

    #[test]
    fn unknown_convention_names_are_refused() {
        assert!(Convention::parse("nope").is_err());
        assert_eq!(Convention::parse("MALC").unwrap(), Convention::Malc);
    }
}
