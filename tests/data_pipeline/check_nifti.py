#!/usr/bin/env python3
"""Report what nibabel reads from a NIfTI file, as JSON on stdout (used by brainsam's tests).

Usage: check_nifti.py FILE [--values]

Keys: shape, dtype, affine (img.affine), qform_affine, canonical_affine (of
nib.as_closest_canonical), sform_code, qform_code, intent_code,
sum, min, max, p0_5 / p99_5 (numpy percentiles of the first volume), labels ({value: count} for integer data) and, with --values, every voxel of the
first 3-D volume in Fortran (x fastest) order.
Requires: numpy, nibabel.
"""
import json
import sys

import nibabel as nib
import numpy as np


def main(path, with_values):
    img = nib.load(path)
    hdr = img.header
    data = np.asanyarray(img.dataobj)
    out = {
        "shape": list(img.shape),
        "dtype": str(hdr.get_data_dtype()),
        "affine": img.affine.tolist(),
        "qform_affine": img.get_qform().tolist(),
        "canonical_affine": nib.as_closest_canonical(img).affine.tolist(),
        "sform_code": int(hdr["sform_code"]),
        "qform_code": int(hdr["qform_code"]),
        "intent_code": int(hdr["intent_code"]),
        "sum": float(np.sum(data, dtype=np.float64)),
        "min": float(np.min(data)),
        "max": float(np.max(data)),
    }
    first = data if data.ndim == 3 else data[..., 0]
    lo, hi = np.percentile(first.astype(np.float64), [0.5, 99.5])
    out["p0_5"], out["p99_5"] = float(lo), float(hi)
    if np.issubdtype(data.dtype, np.integer):
        u, c = np.unique(data, return_counts=True)
        out["labels"] = {str(int(k)): int(v) for k, v in zip(u, c)}
    if with_values:
        out["values"] = [float(x) for x in first.ravel(order="F")]
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], "--values" in sys.argv[2:])
