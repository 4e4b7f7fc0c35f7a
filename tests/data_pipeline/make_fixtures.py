#!/usr/bin/env python3
"""Write NIfTI fixtures with nibabel (an independent implementation) for brainsam's reader tests.

Usage: make_fixtures.py OUT_DIR

For every fixture NAME it writes NAME (a .nii or .nii.gz file) and NAME.json with what nibabel
reads back: shape, affine (img.affine, i.e. sform preferred over qform) and the scaled voxel
values of the first 3-D volume in Fortran (x fastest) order.
MGH fixtures are written by nibabel, NRRD fixtures by pynrrd (their JSON: what pynrrd reads
back, the affine from the header's space directions and origin turned into RAS).
Requires: numpy, nibabel, pynrrd.
"""
import json
import os
import sys

import nibabel as nib
import nrrd
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
    nrrd_files(out)


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


# Signs from each NRRD space's coordinates to RAS.
TO_RAS = {"left-posterior-superior": [-1, -1, 1], "right-anterior-superior": [1, 1, 1],
          "left-anterior-superior": [-1, 1, 1]}


def save_nrrd(out, name, data, header, first_of=None):
    """Writes with pynrrd, reads back with pynrrd; `first_of` names a non-spatial axis whose
    first element is the volume."""
    path = os.path.join(out, name)
    nrrd.write(path, data, header, index_order="F")
    back, h = nrrd.read(path, index_order="F")
    back = back.astype(np.float64)
    if first_of is not None:
        back = np.take(back, 0, axis=first_of)
    dirs = np.asarray(h.get("space directions", np.diag(h.get("spacings", [1.0] * 3))), float)
    dirs = dirs[~np.isnan(dirs).any(axis=1)]  # the spatial axes' rows
    origin = np.asarray(h.get("space origin", [0.0, 0.0, 0.0]), float)
    signs = np.array(TO_RAS.get(h.get("space"), [1, 1, 1]), float)
    affine = np.eye(4)
    affine[:3, :3] = (dirs * signs).T  # column j: axis j's step in RAS
    affine[:3, 3] = origin * signs
    meta = {"shape": [int(x) for x in back.shape], "affine": affine.tolist(),
            "values": [float(x) for x in back.ravel(order="F")]}
    with open(path + ".json", "w") as f:
        json.dump(meta, f)


def nrrd_files(out):
    """NRRD as 3D Slicer writes it (LPS, oblique directions, gzip) and its variants."""
    c, s = np.cos(0.4), np.sin(0.4)
    dirs = np.array([[c * 1.1, s * 1.1, 0], [-s * 0.9, c * 0.9, 0], [0, 0, 2.5]])
    lps = {"space": "left-posterior-superior", "space directions": dirs,
           "space origin": np.array([-12.5, 30.25, -7.0]), "kinds": ["domain"] * 3}
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64,
               np.uint64, np.float32, np.float64):
        for enc in ("raw", "gzip", "ascii"):
            save_nrrd(out, f"nrrd_{np.dtype(dt).name}_{enc}.nrrd", values(dt),
                      dict(lps, encoding=enc))
    save_nrrd(out, "nrrd_bigendian.nrrd", values(np.float32).astype(">f4"),
              dict(lps, encoding="raw"))
    for space, name in (("right-anterior-superior", "ras"), ("left-anterior-superior", "las")):
        save_nrrd(out, f"nrrd_{name}.nrrd", values(np.int16),
                  dict(lps, space=space, encoding="gzip"))
    # A Slicer segmentation style file: a list axis of two layers first.
    two = np.stack([values(np.int16), values(np.int16) + 100], axis=0)
    layered = dict(lps, encoding="gzip", kinds=["list", "domain", "domain", "domain"])
    layered["space directions"] = np.vstack([np.full((1, 3), np.nan), dirs])
    save_nrrd(out, "nrrd_list_first.nrrd", two, layered, first_of=0)
    # No orientation, only spacings.
    save_nrrd(out, "nrrd_spacings.nrrd", values(np.int16),
              {"encoding": "raw", "spacings": [1.5, 2.0, 0.75]})


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
