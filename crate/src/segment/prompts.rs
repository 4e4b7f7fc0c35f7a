//! Prompts on slices: the prompt file format, boxes and interior points of masks.

use serde::Deserialize;

use super::SegmentError;
use crate::data::labels::kind_of_freesurfer;
use crate::data::slicing;
use crate::data::Orientation;

/// Prompts on one slice, in its pixel coordinates (u = column, v = row).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlicePrompt {
    /// `[u, v, 1 | 0]`: positive or negative points.
    pub points: Vec<[f32; 3]>,
    /// `[u0, v0, u1, v1]`, inclusive voxel bounds.
    pub bbox: Option<[f32; 4]>,
    /// Low-resolution logits of an earlier prediction on this slice.
    pub mask_input: Option<Vec<f32>>,
    /// A binary mask `[rows, cols]` on this slice given as SAM's dense prompt, in place of
    /// `mask_input`: where the structure lay on the neighbouring slice, when propagating.
    pub dense: Option<Vec<u8>>,
    /// The structure's kind (`data::labels::kind`), when known.
    pub structure: Option<usize>,
}

impl SlicePrompt {
    /// Refuses prompts outside the slice (a user's click can be anywhere).
    pub fn check(&self, rows: usize, cols: usize) -> Result<(), SegmentError> {
        let inside = |u: f32, v: f32| {
            u.is_finite()
                && v.is_finite()
                && u >= 0.0
                && v >= 0.0
                && u < cols as f32
                && v < rows as f32
        };
        if self.points.is_empty()
            && self.bbox.is_none()
            && self.mask_input.is_none()
            && self.dense.is_none()
        {
            return Err(SegmentError::Prompt("give a point, a box or a mask".into()));
        }
        if let Some(d) = &self.dense {
            if d.len() != rows * cols {
                return Err(SegmentError::Prompt(format!(
                    "the dense mask has {} pixels, not the slice's {cols}×{rows}",
                    d.len()
                )));
            }
        }
        for [u, v, l] in &self.points {
            if !inside(*u, *v) {
                return Err(SegmentError::Prompt(format!(
                    "point ({u}, {v}) is outside the {cols}×{rows} slice"
                )));
            }
            if *l != 0.0 && *l != 1.0 {
                return Err(SegmentError::Prompt(format!(
                    "point label {l} is not 0 or 1"
                )));
            }
        }
        if let Some([u0, v0, u1, v1]) = self.bbox {
            if !inside(u0, v0) || !inside(u1, v1) || u1 < u0 || v1 < v0 {
                return Err(SegmentError::Prompt(format!(
                    "box ({u0}, {v0}, {u1}, {v1}) is not an inclusive box inside the {cols}×{rows} slice"
                )));
            }
        }
        Ok(())
    }
}

/// Inclusive bounding box `[u0, v0, u1, v1]` of the nonzero pixels, None when empty.
pub fn bbox(mask: &[u8], rows: usize, cols: usize) -> Option<[usize; 4]> {
    let mut b: Option<[usize; 4]> = None;
    for v in 0..rows {
        for u in 0..cols {
            if mask.get(v * cols + u).copied().unwrap_or(0) != 0 {
                b = Some(match b {
                    None => [u, v, u, v],
                    Some([a, c, d, e]) => [a.min(u), c.min(v), d.max(u), e.max(v)],
                });
            }
        }
    }
    b
}

/// The pixel farthest from the mask's border (chamfer 3-4 distance), as (u, v): the most
/// unambiguous single click on a structure. None when the mask is empty.
pub fn interior_point(mask: &[u8], rows: usize, cols: usize) -> Option<(usize, usize)> {
    const FAR: u32 = u32::MAX / 2;
    let n = rows * cols;
    if mask.len() != n {
        return None;
    }
    let mut d: Vec<u32> = mask.iter().map(|m| if *m != 0 { FAR } else { 0 }).collect();
    let at = |d: &Vec<u32>, r: isize, c: isize| -> u32 {
        if r < 0 || c < 0 || r >= rows as isize || c >= cols as isize {
            0 // outside the slice counts as background
        } else {
            d[r as usize * cols + c as usize]
        }
    };
    for r in 0..rows as isize {
        for c in 0..cols as isize {
            let i = r as usize * cols + c as usize;
            if d[i] == 0 {
                continue;
            }
            let m = [(-1, -1, 4), (-1, 0, 3), (-1, 1, 4), (0, -1, 3)]
                .iter()
                .map(|(dr, dc, w)| at(&d, r + dr, c + dc) + w)
                .min()
                .unwrap_or(FAR);
            d[i] = d[i].min(m);
        }
    }
    for r in (0..rows as isize).rev() {
        for c in (0..cols as isize).rev() {
            let i = r as usize * cols + c as usize;
            if d[i] == 0 {
                continue;
            }
            let m = [(1, 1, 4), (1, 0, 3), (1, -1, 4), (0, 1, 3)]
                .iter()
                .map(|(dr, dc, w)| at(&d, r + dr, c + dc) + w)
                .min()
                .unwrap_or(FAR);
            d[i] = d[i].min(m);
        }
    }
    let (best, &dist) = d
        .iter()
        .enumerate()
        .max_by_key(|(i, v)| (**v, std::cmp::Reverse(*i)))?;
    (dist > 0).then_some((best % cols, best / cols))
}

/// The prompt file of `brainsam segment`: voxel axes and indices of the file as stored.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptFile {
    pub prompts: Vec<FilePrompt>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilePrompt {
    pub label: i32,
    pub slice_axis: usize,
    pub slice: usize,
    #[serde(rename = "box", default)]
    pub bbox: Option<[f64; 4]>,
    #[serde(default)]
    pub points: Vec<[f64; 3]>,
    /// Extend the slice's mask through the volume (the page's "Whole structure (3D)").
    #[serde(default)]
    pub propagate: bool,
}

/// A file prompt moved onto the canonical slice that shows the same voxels.
#[derive(Debug, Clone)]
pub struct CanonicalPrompt {
    pub label: i32,
    pub axis: usize,
    pub index: usize,
    pub prompt: SlicePrompt,
    pub propagate: bool,
}

impl PromptFile {
    pub fn parse(text: &str) -> Result<Self, SegmentError> {
        let f: PromptFile = serde_json::from_str(text)
            .map_err(|e| SegmentError::Prompt(format!("prompt file: {e}")))?;
        if f.prompts.is_empty() {
            return Err(SegmentError::Prompt("prompt file has no prompts".into()));
        }
        Ok(f)
    }

    /// Checks every prompt against the stored dims and maps it into canonical slices.
    pub fn to_canonical(
        &self,
        stored_dims: [usize; 3],
        o: &Orientation,
    ) -> Result<Vec<CanonicalPrompt>, SegmentError> {
        self.prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                p.to_canonical(stored_dims, o)
                    .map_err(|e| SegmentError::Prompt(format!("prompt {i}: {e}")))
            })
            .collect()
    }
}

impl FilePrompt {
    fn to_canonical(&self, dims: [usize; 3], o: &Orientation) -> Result<CanonicalPrompt, String> {
        let a = self.slice_axis;
        let (ua, va) = slicing::plane_axes(a).map_err(|e| e.to_string())?;
        if self.slice >= dims[a] {
            return Err(format!(
                "slice {} is beyond axis {a} of size {}",
                self.slice, dims[a]
            ));
        }
        if self.label <= 0 {
            return Err(format!("label {} must be positive", self.label));
        }
        if self.bbox.is_none() && self.points.is_empty() {
            return Err("needs a box or points".into());
        }
        let voxel = |u: f64, v: f64| -> Result<[usize; 3], String> {
            let ok = |x: f64, n: usize| x.is_finite() && x >= 0.0 && x <= (n - 1) as f64;
            if !ok(u, dims[ua]) || !ok(v, dims[va]) {
                return Err(format!(
                    "({u}, {v}) is outside the {}×{} slice",
                    dims[ua], dims[va]
                ));
            }
            let mut p = [0; 3];
            p[a] = self.slice;
            p[ua] = u.round() as usize;
            p[va] = v.round() as usize;
            Ok(o.source_to_canonical(p))
        };
        // The canonical axis of this slice: the one along which two voxels of it never differ.
        let origin = voxel(0.0, 0.0)?;
        let corner = voxel((dims[ua] - 1) as f64, (dims[va] - 1) as f64)?;
        let axis = (0..3)
            .find(|&k| origin[k] == corner[k] && (dims[ua] > 1 || dims[va] > 1))
            .or_else(|| (0..3).find(|&k| origin[k] == corner[k]))
            .ok_or("slice does not map onto a canonical slice")?;
        let to_uv = |c: [usize; 3]| -> Result<(f32, f32), String> {
            let (_, u, v) = slicing::voxel_to_slice(axis, c).map_err(|e| e.to_string())?;
            Ok((u as f32, v as f32))
        };
        let mut prompt = SlicePrompt {
            structure: kind_of_freesurfer(self.label),
            ..Default::default()
        };
        if let Some([u0, v0, u1, v1]) = self.bbox {
            if u1 < u0 || v1 < v0 {
                return Err(format!(
                    "box [{u0}, {v0}, {u1}, {v1}] has u1 < u0 or v1 < v0"
                ));
            }
            let (a0, b0) = to_uv(voxel(u0, v0)?)?;
            let (a1, b1) = to_uv(voxel(u1, v1)?)?;
            prompt.bbox = Some([a0.min(a1), b0.min(b1), a0.max(a1), b0.max(b1)]);
        }
        for [u, v, l] in &self.points {
            if *l != 0.0 && *l != 1.0 {
                return Err(format!("point label {l} is not 0 or 1"));
            }
            let (a, b) = to_uv(voxel(*u, *v)?)?;
            prompt.points.push([a, b, *l as f32]);
        }
        Ok(CanonicalPrompt {
            label: self.label,
            axis,
            index: origin[axis],
            prompt,
            propagate: self.propagate,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bbox_and_interior_point_of_a_rectangle() {
        let (rows, cols) = (9, 12);
        let mut m = vec![0u8; rows * cols];
        for v in 2..7 {
            for u in 3..10 {
                m[v * cols + u] = 1;
            }
        }
        assert_eq!(bbox(&m, rows, cols), Some([3, 2, 9, 6]));
        let (u, v) = interior_point(&m, rows, cols).unwrap();
        assert_eq!(v, 4, "row of the centre");
        assert!((5..=7).contains(&u), "u = {u}");
        assert_eq!(bbox(&[0; 4], 2, 2), None);
        assert_eq!(interior_point(&[0; 4], 2, 2), None);
    }

    #[test]
    fn file_prompts_follow_a_flipped_and_permuted_orientation() {
        // Stored axes: 0 = anterior→posterior (flipped y), 1 = x, 2 = z.
        let dims = [6, 5, 4];
        let affine = [
            [0.0, 1.0, 0.0, 0.0],
            [-1.0, 0.0, 0.0, 5.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let o = Orientation::of(dims, &affine);
        let f = PromptFile::parse(
            r#"{"prompts": [{"label": 10, "slice_axis": 2, "slice": 3, "box": [1, 0, 4, 2]},
                            {"label": 49, "slice_axis": 0, "slice": 2, "points": [[1, 3, 1]],
                             "propagate": true}]}"#,
        )
        .unwrap();
        let c = f.to_canonical(dims, &o).unwrap();
        // `propagate` is optional and carried over.
        assert_eq!((c[0].propagate, c[1].propagate), (false, true));
        // FreeSurfer 10 and 49 are the left and right thalamus: kind 0 both.
        assert_eq!(
            (c[0].prompt.structure, c[1].prompt.structure),
            (Some(0), Some(0))
        );
        // Axial slice z=3 stays axial; stored (s0, s1) = (y', x) with y = 5 - s0.
        assert_eq!((c[0].axis, c[0].index), (2, 3));
        let cd = o.canonical_dims();
        assert_eq!(cd, [5, 6, 4]);
        // Stored box rows s0 in 1..=4 → canonical y in 1..=4; s1 in 0..=2 → x 0..=2.
        let [u0, v0, u1, v1] = c[0].prompt.bbox.unwrap();
        let mut want = Vec::new();
        for s in [[1, 0, 3], [4, 2, 3]] {
            want.push(o.source_to_canonical(s));
        }
        assert_eq!(
            [u0, v0, u1, v1],
            [
                want[0][0].min(want[1][0]) as f32,
                want[0][1].min(want[1][1]) as f32,
                want[0][0].max(want[1][0]) as f32,
                want[0][1].max(want[1][1]) as f32
            ]
        );
        // Stored slice along axis 0 (y) becomes a canonical coronal slice (axis 1).
        assert_eq!(c[1].axis, 1);
        let p = o.source_to_canonical([2, 1, 3]);
        assert_eq!(c[1].index, p[1]);
        assert_eq!(c[1].prompt.points, vec![[p[0] as f32, p[2] as f32, 1.0]]);
    }

    #[test]
    fn bad_prompt_files_are_refused_with_a_reason() {
        let id = [
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 1.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
        ];
        let o = Orientation::of([4, 4, 4], &id);
        for (text, needle) in [
            (r#"{"prompts": []}"#, "no prompts"),
            (
                r#"{"prompts": [{"label": 1, "slice_axis": 3, "slice": 0, "box": [0,0,1,1]}]}"#,
                "axis",
            ),
            (
                r#"{"prompts": [{"label": 1, "slice_axis": 2, "slice": 9, "box": [0,0,1,1]}]}"#,
                "beyond",
            ),
            (
                r#"{"prompts": [{"label": 1, "slice_axis": 2, "slice": 1}]}"#,
                "box or points",
            ),
            (
                r#"{"prompts": [{"label": 1, "slice_axis": 2, "slice": 1, "box": [0,0,9,1]}]}"#,
                "outside",
            ),
            (
                r#"{"prompts": [{"label": 1, "slice_axis": 2, "slice": 1, "points": [[1,1,2]]}]}"#,
                "label",
            ),
            (r#"{"prompt": []}"#, "prompt file"),
        ] {
            let err = PromptFile::parse(text)
                .and_then(|f| f.to_canonical([4, 4, 4], &o))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
