#!/usr/bin/env python3
"""Write the committed test subset: label maps cropped around the subcortical structures.

Usage: crop_label_maps.py SRC_DIR OUT_DIR [SUBJECT ...]

SRC_DIR holds SynthSeg's training label maps (subject_NN.nii.gz, 256^3, 1 mm). Each map is
cropped to the bounding box of the FreeSurfer subcortical values (below) plus MARGIN voxels
on every side, stored as int16 (SynthSeg values go up to 530), gzipped. The affine keeps every voxel at its world point:
the new origin is the old affine applied to the crop's first voxel. Both sform and qform are
written (codes as in the source) so readers that prefer either agree. Without SUBJECT
arguments it writes subject_01, subject_02 and subject_13. The crop is checked on the way:
every kept voxel must hold the source's value and map to the source's world coordinates.
Requires: numpy, nibabel.
"""
import sys
from pathlib import Path

import nibabel as nib
import numpy as np

# Left/right thalamus, caudate, putamen, pallidum, hippocampus, amygdala, accumbens, ventral DC.
SUBCORTICAL = [10, 11, 12, 13, 17, 18, 26, 28, 49, 50, 51, 52, 53, 54, 58, 60]
MARGIN = 10
DEFAULT = ["subject_01", "subject_02", "subject_13"]


def crop(src: Path, out: Path) -> None:
    img = nib.load(src)
    data = np.asanyarray(img.dataobj)
    labels = np.rint(data).astype(np.int64)
    assert np.array_equal(labels, data), f"{src}: non-integer labels"
    assert labels.min() >= 0 and labels.max() <= 32767, f"{src}: labels outside int16"
    where = np.argwhere(np.isin(labels, SUBCORTICAL))
    lo = np.maximum(where.min(0) - MARGIN, 0)
    hi = np.minimum(where.max(0) + MARGIN + 1, labels.shape)
    part = labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.int16)

    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ lo + img.affine[:3, 3]
    hdr = img.header.copy()
    hdr.set_data_dtype(np.int16)
    hdr["scl_slope"], hdr["scl_inter"] = 1.0, 0.0
    new = nib.Nifti1Image(part, affine, hdr)
    new.set_sform(affine, int(img.header["sform_code"]) or 1)
    new.set_qform(affine, int(img.header["qform_code"]) or 1)
    new.set_data_dtype(np.int16)
    nib.save(new, out)

    # Check what was written against the source.
    back = nib.load(out)
    got = np.asanyarray(back.dataobj)
    assert back.header.get_data_dtype() == np.int16
    assert np.array_equal(got, labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]])
    corners = np.array([[0, 0, 0], np.array(got.shape) - 1, [3, 5, 7]], dtype=float)
    for v in corners:
        world_new = back.affine @ np.append(v, 1)
        world_old = img.affine @ np.append(v + lo, 1)
        assert np.allclose(world_new, world_old, atol=1e-4), (v, world_new, world_old)
    assert np.allclose(back.get_qform(), back.affine, atol=1e-4)
    for value in SUBCORTICAL:
        assert (got == value).sum() == (labels == value).sum(), f"{src}: label {value} cut"
    print(f"{out.name}: voxels {lo.tolist()}..{(hi - 1).tolist()} of {list(labels.shape)}, "
          f"shape {list(got.shape)}, {out.stat().st_size // 1024} KiB")


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    src, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for subject in argv[2:] or DEFAULT:
        crop(src / f"{subject}.nii.gz", out / f"{subject}.nii.gz")


if __name__ == "__main__":
    main(sys.argv[1:])
