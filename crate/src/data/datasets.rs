//! Adapters that find (image, label) pairs in each public dataset's published folder layout.
//! Layouts are documented in docs/data.md; each is tested with a stand-in built in that layout.
//!
//! Discovery uses the file system (native only); reading goes through the byte-based readers.

use super::error::{DataError, Result};
use super::labels::{to_common, Convention};
use super::nifti::read_file;
use super::volume::{LabelVolume, Volume};
use super::{read_image, read_labels};
use std::path::{Path, PathBuf};

/// Supported datasets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dataset {
    /// IBSR v2.0 (18 subjects): `IBSR_nn/IBSR_nn_ana.nii.gz` + `IBSR_nn_seg_ana.nii.gz`.
    Ibsr,
    /// MICCAI 2012 multi-atlas challenge: `{training,testing}-images/NNNN_3.nii` +
    /// `{training,testing}-labels/NNNN_3_glm.nii`.
    Malc,
    /// LONI LPBA40 (native space, converted to NIfTI): `S01/S01.native.mri.nii.gz` +
    /// `S01/S01.native.label.nii.gz`.
    Lpba40,
    /// Hammers n30r83 / n30r95: `aNN.nii.gz` + `aNN-seg.nii.gz`.
    Hammers,
    /// CANDI Share (Schizophrenia Bulletin 2008): `<group>/<subject>/<subject>_procimg.nii.gz` +
    /// `<subject>_seg.nii.gz`.
    Candi,
    /// Our shared synthetic-training maps: `label_maps/subject_NN.nii.gz` (labels only).
    SharedLabelMaps,
}

impl Dataset {
    pub fn convention(self) -> Convention {
        match self {
            Dataset::Ibsr => Convention::Ibsr,
            Dataset::Malc => Convention::Malc,
            Dataset::Lpba40 => Convention::Lpba40,
            Dataset::Hammers => Convention::Hammers,
            Dataset::Candi => Convention::Candi,
            Dataset::SharedLabelMaps => Convention::FreeSurfer,
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "ibsr" => Dataset::Ibsr,
            "malc" | "miccai2012" => Dataset::Malc,
            "lpba40" => Dataset::Lpba40,
            "hammers" => Dataset::Hammers,
            "candi" => Dataset::Candi,
            "shared" => Dataset::SharedLabelMaps,
            o => return Err(DataError::Invalid(format!("unknown dataset '{o}'"))),
        })
    }
}

/// One subject: where its image (if any) and labels are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub id: String,
    pub image: Option<PathBuf>,
    pub labels: PathBuf,
    pub convention: Convention,
}

impl Pair {
    /// Loads the image (if any) and the labels mapped to the common subcortical ids.
    pub fn load(&self) -> Result<(Option<Volume<f32>>, LabelVolume)> {
        let labels = read_labels(&read_file(&self.labels)?)?.volume;
        let common = to_common(&labels, self.convention, false);
        let image = match &self.image {
            Some(p) => {
                let img = read_image(&read_file(p)?)?.volume;
                if img.dims != common.dims {
                    return Err(DataError::Dataset(format!(
                        "{}: image dims {:?} differ from label dims {:?}",
                        self.id, img.dims, common.dims
                    )));
                }
                Some(img)
            }
            None => None,
        };
        Ok((image, common))
    }
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut v: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    v.sort();
    Ok(v)
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// First existing path among `stem` + each NIfTI extension.
fn nifti(dir: &Path, stem: &str) -> Option<PathBuf> {
    [".nii.gz", ".nii"]
        .iter()
        .map(|e| dir.join(format!("{stem}{e}")))
        .find(|p| p.is_file())
}

fn strip_nifti(n: &str) -> Option<&str> {
    n.strip_suffix(".nii.gz").or_else(|| n.strip_suffix(".nii"))
}

/// Finds all (image, label) pairs of `dataset` under `root`, sorted by id. Subjects whose label
/// file is missing are skipped; an empty result is an error naming the expected layout.
pub fn discover(dataset: Dataset, root: &Path) -> Result<Vec<Pair>> {
    let conv = dataset.convention();
    let mut pairs = Vec::new();
    let mut push = |id: String, image: Option<PathBuf>, labels: Option<PathBuf>| {
        if let Some(labels) = labels {
            pairs.push(Pair {
                id,
                image,
                labels,
                convention: conv,
            });
        }
    };
    match dataset {
        Dataset::Ibsr => {
            for d in entries(root)?.into_iter().filter(|p| p.is_dir()) {
                let id = name(&d);
                if id.starts_with("IBSR_") {
                    push(
                        id.clone(),
                        nifti(&d, &format!("{id}_ana")),
                        nifti(&d, &format!("{id}_seg_ana")),
                    );
                }
            }
        }
        Dataset::Malc => {
            for split in ["training", "testing"] {
                let (imgs, labs) = (
                    root.join(format!("{split}-images")),
                    root.join(format!("{split}-labels")),
                );
                if !imgs.is_dir() {
                    continue;
                }
                for f in entries(&imgs)? {
                    let n = name(&f);
                    if let Some(stem) = strip_nifti(&n) {
                        push(
                            stem.to_string(),
                            Some(f.clone()),
                            nifti(&labs, &format!("{stem}_glm")),
                        );
                    }
                }
            }
        }
        Dataset::Lpba40 => {
            for d in entries(root)?.into_iter().filter(|p| p.is_dir()) {
                let id = name(&d);
                push(
                    id.clone(),
                    nifti(&d, &format!("{id}.native.mri")),
                    nifti(&d, &format!("{id}.native.label")),
                );
            }
        }
        Dataset::Hammers => {
            for f in entries(root)? {
                let n = name(&f);
                if let Some(stem) = strip_nifti(&n) {
                    if !stem.ends_with("-seg") {
                        push(
                            stem.to_string(),
                            Some(f.clone()),
                            nifti(root, &format!("{stem}-seg")),
                        );
                    }
                }
            }
        }
        Dataset::Candi => {
            for g in entries(root)?.into_iter().filter(|p| p.is_dir()) {
                for d in entries(&g)?.into_iter().filter(|p| p.is_dir()) {
                    let id = name(&d);
                    push(
                        id.clone(),
                        nifti(&d, &format!("{id}_procimg")),
                        nifti(&d, &format!("{id}_seg")),
                    );
                }
            }
        }
        Dataset::SharedLabelMaps => {
            let dir = root.join("label_maps");
            for f in entries(&dir)? {
                let n = name(&f);
                if let Some(stem) = strip_nifti(&n) {
                    if stem.starts_with("subject_") {
                        push(stem.to_string(), None, Some(f.clone()));
                    }
                }
            }
        }
    }
    if pairs.is_empty() {
        return Err(DataError::Dataset(format!(
            "no {dataset:?} subjects found under {} (see docs/data.md for the expected layout)",
            root.display()
        )));
    }
    pairs.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::nifti::{write_file, write_image, write_labels, OutType};
    use crate::data::testutil::*;

    /// Writes a tiny stand-in subject whose labels use `values` (source convention) so that the
    /// adapter's mapping can be checked against the expected common ids.
    fn stand_in(image: Option<&Path>, labels: &Path, values: &[i32]) {
        let dims = [values.len(), 2, 2];
        let data: Vec<i32> = (0..dims.iter().product::<usize>())
            .map(|i| values[i % values.len()])
            .collect();
        let aff = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let l = LabelVolume::new(dims, data, aff).unwrap();
        std::fs::create_dir_all(labels.parent().unwrap()).unwrap();
        write_file(
            labels,
            &write_labels(&l, OutType::I16, labels.to_string_lossy().ends_with(".gz")).unwrap(),
        )
        .unwrap();
        if let Some(p) = image {
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            let img = l
                .with_data(l.data.iter().map(|v| *v as f32).collect())
                .unwrap();
            write_file(
                p,
                &write_image(&img, p.to_string_lossy().ends_with(".gz")).unwrap(),
            )
            .unwrap();
        }
    }

    fn check(ds: Dataset, root: &Path, ids: &[&str]) {
        let pairs = discover(ds, root).unwrap();
        assert_eq!(
            pairs.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(),
            ids,
            "{ds:?}"
        );
        let (img, lab) = pairs[0].load().unwrap();
        assert!(img.is_some());
        // Voxel 0 holds the dataset's left-caudate value, voxel 1 an unrelated label.
        assert_eq!(
            lab.data[0], 3,
            "{ds:?}: left caudate must map to common id 3"
        );
        assert_eq!(
            lab.data[1], 0,
            "{ds:?}: non-target labels map to background"
        );
    }

    #[test]
    fn ibsr_layout_is_discovered_and_mapped() {
        let r = temp_dir("ibsr");
        for s in ["IBSR_01", "IBSR_02"] {
            stand_in(
                Some(&r.join(format!("{s}/{s}_ana.nii.gz"))),
                &r.join(format!("{s}/{s}_seg_ana.nii.gz")),
                &[11, 2],
            );
        }
        check(Dataset::Ibsr, &r, &["IBSR_01", "IBSR_02"]);
    }

    #[test]
    fn malc_layout_is_discovered_and_mapped() {
        let r = temp_dir("malc");
        stand_in(
            Some(&r.join("training-images/1000_3.nii")),
            &r.join("training-labels/1000_3_glm.nii"),
            &[37, 44],
        );
        stand_in(
            Some(&r.join("testing-images/1003_3.nii")),
            &r.join("testing-labels/1003_3_glm.nii"),
            &[37, 44],
        );
        check(Dataset::Malc, &r, &["1000_3", "1003_3"]);
    }

    #[test]
    fn lpba40_layout_is_discovered_and_mapped() {
        let r = temp_dir("lpba40");
        stand_in(
            Some(&r.join("S01/S01.native.mri.nii.gz")),
            &r.join("S01/S01.native.label.nii.gz"),
            &[161, 21],
        );
        check(Dataset::Lpba40, &r, &["S01"]);
    }

    #[test]
    fn hammers_layout_is_discovered_and_mapped() {
        let r = temp_dir("hammers");
        stand_in(
            Some(&r.join("a01.nii.gz")),
            &r.join("a01-seg.nii.gz"),
            &[34, 19],
        );
        stand_in(
            Some(&r.join("a02.nii.gz")),
            &r.join("a02-seg.nii.gz"),
            &[34, 19],
        );
        check(Dataset::Hammers, &r, &["a01", "a02"]);
    }

    #[test]
    fn candi_layout_is_discovered_and_mapped() {
        let r = temp_dir("candi");
        let s = "BPDwoPsy_030";
        stand_in(
            Some(&r.join(format!("BPDwoPsy/{s}/{s}_procimg.nii.gz"))),
            &r.join(format!("BPDwoPsy/{s}/{s}_seg.nii.gz")),
            &[11, 3],
        );
        check(Dataset::Candi, &r, &[s]);
    }

    #[test]
    fn shared_label_maps_are_discovered() {
        let pairs = discover(Dataset::SharedLabelMaps, &data_dir()).unwrap();
        let ids: Vec<&str> = pairs.iter().map(|p| p.id.as_str()).collect();
        if full_set() {
            let want: Vec<String> = (1..=15).map(|i| format!("subject_{i:02}")).collect();
            assert_eq!(ids, want);
        } else {
            // The committed subset; its licence and label list beside the maps are not subjects.
            assert_eq!(ids, ["subject_01", "subject_02", "subject_13"]);
        }
        assert!(pairs.iter().all(|p| p.image.is_none()
            && p.convention == Convention::FreeSurfer
            && p.labels.is_file()));
    }

    #[test]
    fn an_empty_or_wrong_folder_gives_a_clear_error() {
        let r = temp_dir("empty");
        let e = discover(Dataset::Hammers, &r).unwrap_err().to_string();
        assert!(
            e.contains("no Hammers subjects") && e.contains("docs/data.md"),
            "{e}"
        );
        assert!(discover(Dataset::Ibsr, &r.join("missing")).is_err());
    }
}
