#!/usr/bin/env python3
"""Independent per-label Dice / IoU / HD95 / volume computation with numpy + nibabel.

Usage: dice.py PRED.nii[.gz] TRUTH.nii[.gz] LABEL [LABEL ...]

Prints JSON {label: {"dice": d, "iou": j, "hd95": h, "pred_ml": p, "truth_ml": t}} where
volumes are in millilitres from the voxel size of TRUTH's affine. Dice is 1 when a label is
absent from both; hd95 is null when either mask is empty. HD95 uses surface voxels (mask
voxels with a 6-neighbour outside the mask), brute-force pairwise distances in mm, numpy's
linear percentile, and the max of the two directions.
Requires: numpy, nibabel.
"""
import json
import sys

import nibabel as nib
import numpy as np


def surface_points(mask, spacing):
    padded = np.pad(mask, 1)
    inner = padded[1:-1, 1:-1, 1:-1].copy()
    for axis in range(3):
        for shift in (1, -1):
            inner &= np.roll(padded, shift, axis=axis)[1:-1, 1:-1, 1:-1]
    surf = mask & ~inner
    return np.argwhere(surf) * np.asarray(spacing)


def directed(a, b):
    # Nearest distance from each point of a to the set b, in chunks to bound memory.
    out = []
    for i in range(0, len(a), 2048):
        d = np.sqrt(((a[i:i + 2048, None, :] - b[None, :, :]) ** 2).sum(-1))
        out.append(d.min(1))
    return np.concatenate(out)


def hd95(p, t, spacing):
    if not p.any() or not t.any():
        return None
    sp, st = surface_points(p, spacing), surface_points(t, spacing)
    return float(max(np.percentile(directed(sp, st), 95), np.percentile(directed(st, sp), 95)))


def main(pred_path, truth_path, labels):
    pred_img, truth_img = nib.load(pred_path), nib.load(truth_path)
    pred = np.rint(np.asanyarray(pred_img.dataobj)).astype(np.int64)
    truth = np.rint(np.asanyarray(truth_img.dataobj)).astype(np.int64)
    if pred.shape != truth.shape:
        sys.exit(f"shape mismatch {pred.shape} vs {truth.shape}")
    voxel_ml = abs(np.linalg.det(truth_img.affine[:3, :3])) / 1000.0
    spacing = np.sqrt((truth_img.affine[:3, :3] ** 2).sum(0))
    out = {}
    for lab in labels:
        p, t = pred == lab, truth == lab
        inter = np.logical_and(p, t).sum()
        union = np.logical_or(p, t).sum()
        total = p.sum() + t.sum()
        out[str(lab)] = {
            "dice": 1.0 if total == 0 else float(2.0 * inter / total),
            "iou": 1.0 if union == 0 else float(inter / union),
            "hd95": hd95(p, t, spacing),
            "pred_ml": float(p.sum() * voxel_ml),
            "truth_ml": float(t.sum() * voxel_ml),
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:]])
