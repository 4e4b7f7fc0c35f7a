#!/usr/bin/env python3
"""Write NIfTI fixtures with nibabel (an independent implementation) for brainsam's reader tests.

Usage: make_fixtures.py OUT_DIR

For every fixture NAME it writes NAME (a .nii or .nii.gz file) and NAME.json with what nibabel
reads back: shape, affine (img.affine, i.e. sform preferred over qform) and the scaled voxel
values of the first 3-D volume in Fortran (x fastest) order.
Requires: numpy, nibabel.
"""
import json
import os
import sys

import nibabel as nib
import numpy as np

SHAPE = (5, 4, 3)


def affine_lia():
    # FreeSurfer "conformed" orientation, like the shared label maps.
    return np.array([[-2.0, 0, 0, 10], [0, 0, 3.0, -20], [0, -1.5, 0, 30], [0, 0, 0, 1]])


def values(dtype):
    n = int(np.prod(SHAPE))
    v = np.arange(n, dtype=np.float64) * 3 - 40
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is not None:
        v = np.clip(v, info.min, info.max)
    return v.reshape(SHAPE, order="F").astype(dtype)


def save(img, out, name):
    path = os.path.join(out, name)
    nib.save(img, path)
    save_meta(path)


def save_meta(path):
    back = nib.load(path)
    data = np.asanyarray(back.dataobj).astype(np.float64)
    if data.ndim > 3:
        data = data[..., 0]
    meta = {
        "shape": [int(x) for x in back.shape[:3]],
        "affine": back.affine.tolist(),
        "values": [None if not np.isfinite(x) else float(x) for x in data.ravel(order="F")],
    }
    with open(path + ".json", "w") as f:
        json.dump(meta, f)


def main(out):
    os.makedirs(out, exist_ok=True)
    dtypes = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
              np.uint64, np.float32, np.float64]
    for ver, cls in (("n1", nib.Nifti1Image), ("n2", nib.Nifti2Image)):
        for dt in dtypes:
            img = cls(values(dt), affine_lia(), dtype=dt)
            for ext in (".nii", ".nii.gz"):
                save(img, out, f"{ver}_{np.dtype(dt).name}{ext}")
    # scl_slope / scl_inter applied on read.
    img = nib.Nifti1Image(values(np.int16), affine_lia())
    img.header.set_slope_inter(0.5, 100.0)
    save(img, out, "scaled_int16.nii.gz")
    # Big-endian file.
    be = nib.Nifti1Header(endianness=">")
    img = nib.Nifti1Image(values(np.float32), affine_lia(), header=be)
    save(img, out, "bigendian_f32.nii")
    # qform only (sform_code 0): the affine must come from the quaternion.
    img = nib.Nifti1Image(values(np.int16), None)
    rot = np.array([[0, -1.0, 0, 5], [0, 0, 1.0, -7], [-1.0, 0, 0, 9], [0, 0, 0, 1]])
    img.set_qform(rot @ np.diag([1.5, 2.0, 2.5, 1.0]), code=1)
    img.set_sform(None, code=0)
    save(img, out, "qform_only.nii")
    # sform and qform both set and different: sform wins, as in nibabel.
    img = nib.Nifti1Image(values(np.int16), None)
    img.set_qform(np.diag([1.0, 1.0, 1.0, 1.0]), code=1)
    img.set_sform(affine_lia(), code=2)
    save(img, out, "sform_and_qform.nii")
    # 4-D: the reader keeps the first volume.
    v4 = np.stack([values(np.float32), values(np.float32) + 1000], axis=-1)
    save(nib.Nifti1Image(v4, affine_lia()), out, "four_d.nii.gz")
    # NaN and Inf voxels.
    v = values(np.float32)
    v[0, 0, 0], v[1, 0, 0], v[2, 0, 0] = np.nan, np.inf, -np.inf
    save(nib.Nifti1Image(v, affine_lia()), out, "nonfinite.nii")
    # RGB and complex datatypes must be refused with a clear message.
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, affine_lia()), os.path.join(out, "rgb.nii"))
    cplx = values(np.float32).astype(np.complex64)
    nib.save(nib.Nifti1Image(cplx, affine_lia()), os.path.join(out, "complex.nii"))
    mgh(out)


def mgh(out):
    """FreeSurfer MGH/MGZ: every voxel type nibabel writes, an oblique affine, and a file
    without valid geometry (goodRASFlag 0), whose affine nibabel fills with its default."""
    c, s = np.cos(0.3), np.sin(0.3)
    oblique = np.array([[-c * 1.2, 0, s * 0.9, 12.5], [0, 0, 1.1, -31.0],
                        [s * 1.2, -1.3, c * 0.9, 7.25], [0, 0, 0, 1]])
    for dt in (np.uint8, np.int16, np.int32, np.float32):
        for ext in (".mgh", ".mgz"):
            save(nib.MGHImage(values(dt), oblique), out, f"mgh_{np.dtype(dt).name}{ext}")
    path = os.path.join(out, "mgh_noras.mgh")
    nib.save(nib.MGHImage(values(np.float32), oblique), path)
    with open(path, "r+b") as f:  # goodRASFlag: the big-endian int16 at byte 28
        f.seek(28)
        f.write(b"\x00\x00")
    save_meta(path)
    four = np.stack([values(np.float32), values(np.float32) + 1000], axis=-1)
    save(nib.MGHImage(four, oblique), out, "mgh_four_d.mgz")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
